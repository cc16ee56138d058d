//! Backfill against a real Prometheus holding a known synthetic history (cAdvisor,
//! kube-state-metrics and NGINX ingress series, loaded with `promtool`; services that are
//! Deployments, a StatefulSet and an Argo Rollout), through the shipped `kubernetes` catalog, into a real S3 protocol server: every step's values are
//! what the history implies, a rerun writes nothing twice, and `inspect` reports it.

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use common::{collector, ok, output, stored_rows, write_config};
use prescale_core::{Feature, FeatureRow};
use prescale_testkit::prometheus::{Prometheus, load_openmetrics};
use prescale_testkit::s3::S3Server;

const SCRAPE: i64 = 15;
const WINDOW: i64 = 60;
const MINUTES: i64 = 40;
const BUCKETS: [f64; 5] = [0.05, 0.1, 0.25, 0.5, 1.0];
/// The services and the kind of workload each is: Deployments, a StatefulSet and an
/// Argo Rollout. `order-history` is a decoy whose pods look like `order`'s to a careless
/// matcher, `cart-db`'s pods (`cart-db-0`) look like a Deployment `cart`'s to a pod-name
/// pattern, and a Job's pod named `order-migrate-...` belongs to no service at all.
const SERVICES: [(&str, Kind); 5] = [
    ("order", Kind::Deployment),
    ("cart", Kind::Deployment),
    ("order-history", Kind::Deployment),
    ("cart-db", Kind::StatefulSet),
    ("checkout", Kind::Rollout),
];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Deployment,
    StatefulSet,
    Rollout,
}

/// The pods of a service, as its controller names them.
fn pods(svc: &str, kind: Kind) -> [String; 2] {
    match kind {
        Kind::StatefulSet => [format!("{svc}-0"), format!("{svc}-1")],
        Kind::Deployment | Kind::Rollout => [format!("{svc}-5f7d8c9b4-abcde"), format!("{svc}-5f7d8c9b4-fghij")],
    }
}

/// Its ready-replica series: kube-state-metrics' for Deployments and StatefulSets, Argo
/// Rollouts' controller's for Rollouts.
fn replicas_series(svc: &str, kind: Kind) -> (&'static str, String) {
    match kind {
        Kind::Deployment => {
            ("kube_deployment_status_replicas_available", format!(r#"namespace="shop",deployment="{svc}""#))
        }
        Kind::StatefulSet => {
            ("kube_statefulset_status_replicas_ready", format!(r#"namespace="shop",statefulset="{svc}""#))
        }
        Kind::Rollout => ("rollout_info_replicas_available", format!(r#"namespace="shop",name="{svc}""#)),
    }
}

/// Series name + labels → samples (unix seconds, value).
type History = BTreeMap<(String, String), Vec<(i64, f64)>>;

/// A history for each service: request counters by status, a latency histogram, CPU
/// counters and memory gauges of two pods, requests and limits, the pods' owners (as
/// kube-state-metrics exports them) and ready replicas, all changing minute by minute; and
/// a Job's pod using CPU.
fn history(start: i64) -> History {
    let mut h = History::new();
    let mut push =
        |name: &str, labels: String, t: i64, v: f64| h.entry((name.to_owned(), labels)).or_default().push((t, v));
    for (k, (svc, kind)) in SERVICES.iter().enumerate() {
        let (svc, kind) = (*svc, *kind);
        let k = k as f64 * if svc == "order-history" { 10.0 } else { 1.0 };
        let ingress = format!(r#"namespace="shop",service="{svc}""#);
        let pods = pods(svc, kind);
        let (mut ok_c, mut err_c, mut sum_c, mut count_c) = (0.0, 0.0, 0.0, 0.0);
        let mut buckets = [0.0; 5];
        let mut cpu = [0.0; 2];
        for j in 0..=(MINUTES * 60 / SCRAPE) {
            let t = start + j * SCRAPE;
            if j > 0 {
                // The interval (t - 15 s, t] belongs to the minute it starts in.
                let m = ((t - SCRAPE - start) / 60) as f64;
                let ok_rate = 10.0 + 5.0 * k + 3.0 * (m % 7.0);
                let err_rate = 0.5 * (m % 3.0);
                let total = ok_rate + if svc == "cart" { 0.0 } else { err_rate };
                ok_c += ok_rate * SCRAPE as f64;
                err_c += err_rate * SCRAPE as f64;
                count_c += total * SCRAPE as f64;
                sum_c += total * (0.1 + 0.01 * (m % 4.0)) * SCRAPE as f64;
                let fractions = [0.3, 0.6, 0.85, 0.9 + 0.01 * (m % 5.0), 0.99];
                for (b, f) in buckets.iter_mut().zip(fractions) {
                    *b += total * f * SCRAPE as f64;
                }
                cpu[0] += (0.2 + 0.05 * (m % 5.0) + 0.1 * k) * SCRAPE as f64;
                cpu[1] += 0.3 * SCRAPE as f64;
            }
            let m = ((t - start) / 60) as f64;
            push("nginx_ingress_controller_requests", format!(r#"{ingress},status="200""#), t, ok_c);
            if svc != "cart" {
                push("nginx_ingress_controller_requests", format!(r#"{ingress},status="503""#), t, err_c);
            }
            let hist = "nginx_ingress_controller_request_duration_seconds";
            for (le, b) in BUCKETS.iter().zip(buckets) {
                push(&format!("{hist}_bucket"), format!(r#"{ingress},le="{le}""#), t, b);
            }
            push(&format!("{hist}_bucket"), format!(r#"{ingress},le="+Inf""#), t, count_c);
            push(&format!("{hist}_sum"), ingress.clone(), t, sum_c);
            push(&format!("{hist}_count"), ingress.clone(), t, count_c);
            for (p, pod) in pods.iter().enumerate() {
                let c = format!(r#"namespace="shop",pod="{pod}",container="app""#);
                push("container_cpu_usage_seconds_total", c.clone(), t, cpu[p]);
                push("container_memory_working_set_bytes", c, t, 1e8 + 1e6 * m + 5e5 * p as f64);
                let r = |res: &str| format!(r#"namespace="shop",pod="{pod}",container="app",resource="{res}""#);
                push("kube_pod_container_resource_requests", r("cpu"), t, 0.25);
                push("kube_pod_container_resource_requests", r("memory"), t, 1.28e8);
                push("kube_pod_container_resource_limits", r("cpu"), t, 0.5);
                push("kube_pod_container_resource_limits", r("memory"), t, 2.56e8);
                let owner = match kind {
                    Kind::StatefulSet => format!(r#"owner_kind="StatefulSet",owner_name="{svc}""#),
                    _ => format!(r#"owner_kind="ReplicaSet",owner_name="{svc}-5f7d8c9b4""#),
                };
                push(
                    "kube_pod_owner",
                    format!(r#"namespace="shop",pod="{pod}",{owner},owner_is_controller="true""#),
                    t,
                    1.0,
                );
            }
            if kind != Kind::StatefulSet {
                let owner = if kind == Kind::Rollout { "Rollout" } else { "Deployment" };
                // The current ReplicaSet and an old one scaled to zero, both owned.
                for rs in ["5f7d8c9b4", "6c8b7a9d5"] {
                    let labels = format!(
                        r#"namespace="shop",replicaset="{svc}-{rs}",owner_kind="{owner}",owner_name="{svc}",owner_is_controller="true""#
                    );
                    push("kube_replicaset_owner", labels, t, 1.0);
                }
            }
            let (name, labels) = replicas_series(svc, kind);
            push(name, labels, t, 2.0 + (m % 3.0) + k);
        }
    }
    // A migration Job's pod: its name looks like `order`'s pods, its owner says otherwise.
    let job_pod = r#"namespace="shop",pod="order-migrate-x7k2p""#;
    for j in 0..=(MINUTES * 60 / SCRAPE) {
        let t = start + j * SCRAPE;
        push("container_cpu_usage_seconds_total", format!(r#"{job_pod},container="migrate""#), t, 5.0 * j as f64);
        push("container_memory_working_set_bytes", format!(r#"{job_pod},container="migrate""#), t, 7e8);
        push(
            "kube_pod_owner",
            format!(r#"{job_pod},owner_kind="Job",owner_name="order-migrate",owner_is_controller="true""#),
            t,
            1.0,
        );
    }
    h
}

fn openmetrics(h: &History) -> String {
    let mut out = String::new();
    for ((name, labels), samples) in h {
        for (t, v) in samples {
            out.push_str(&format!("{name}{{{labels}}} {v} {t}\n"));
        }
    }
    out.push_str("# EOF\n");
    out
}

fn at(h: &History, name: &str, labels: &str, t: i64) -> f64 {
    let s = &h[&(name.to_owned(), labels.to_owned())];
    s.iter().rev().find(|(ts, _)| *ts <= t).map(|(_, v)| *v).unwrap()
}

/// What `rate(x[60s])` is at `t` with samples on both window edges: no extrapolation.
fn rate(h: &History, name: &str, labels: &str, t: i64) -> f64 {
    (at(h, name, labels, t) - at(h, name, labels, t - WINDOW)) / WINDOW as f64
}

/// Prometheus' `histogram_quantile` over (upper bound, cumulative rate) buckets.
fn quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    let rank = q * buckets.last().unwrap().1;
    let b = buckets[..buckets.len() - 1].iter().position(|(_, c)| *c >= rank).unwrap_or(buckets.len() - 1);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    let (mut start, end, mut count, mut rank) = (0.0, buckets[b].0, buckets[b].1, rank);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// The row the `kubernetes` catalog should give for `svc` at `t`.
fn expected(h: &History, svc: &str, t: i64) -> [Option<f64>; Feature::COUNT] {
    let kind = SERVICES.iter().find(|(s, _)| *s == svc).unwrap().1;
    let ingress = format!(r#"namespace="shop",service="{svc}""#);
    let pods = pods(svc, kind);
    let req = "nginx_ingress_controller_requests";
    let ok = rate(h, req, &format!(r#"{ingress},status="200""#), t);
    let err = if svc == "cart" { 0.0 } else { rate(h, req, &format!(r#"{ingress},status="503""#), t) };
    let hist = "nginx_ingress_controller_request_duration_seconds";
    let mut buckets: Vec<(f64, f64)> = BUCKETS
        .iter()
        .map(|le| (*le, rate(h, &format!("{hist}_bucket"), &format!(r#"{ingress},le="{le}""#), t)))
        .collect();
    buckets.push((f64::INFINITY, rate(h, &format!("{hist}_bucket"), &format!(r#"{ingress},le="+Inf""#), t)));
    let pod_sum = |name: &str, extra: &str, rated: bool| -> f64 {
        pods.iter()
            .map(|p| {
                let l = format!(r#"namespace="shop",pod="{p}",container="app"{extra}"#);
                if rated { rate(h, name, &l, t) } else { at(h, name, &l, t) }
            })
            .sum()
    };
    let mut v = [None; Feature::COUNT];
    v[Feature::CpuCores.index()] = Some(pod_sum("container_cpu_usage_seconds_total", "", true));
    v[Feature::CpuRequestCores.index()] =
        Some(pod_sum("kube_pod_container_resource_requests", r#",resource="cpu""#, false));
    v[Feature::CpuLimitCores.index()] =
        Some(pod_sum("kube_pod_container_resource_limits", r#",resource="cpu""#, false));
    v[Feature::MemoryBytes.index()] = Some(pod_sum("container_memory_working_set_bytes", "", false));
    v[Feature::MemoryRequestBytes.index()] =
        Some(pod_sum("kube_pod_container_resource_requests", r#",resource="memory""#, false));
    v[Feature::MemoryLimitBytes.index()] =
        Some(pod_sum("kube_pod_container_resource_limits", r#",resource="memory""#, false));
    v[Feature::RequestsPerSecond.index()] = Some(ok + err);
    v[Feature::LatencyP95Seconds.index()] = Some(quantile(0.95, &buckets));
    v[Feature::ErrorRatio.index()] = Some(err / (ok + err));
    v[Feature::InFlight.index()] = Some(rate(h, &format!("{hist}_sum"), &ingress, t));
    let (name, labels) = replicas_series(svc, kind);
    v[Feature::ReplicasReady.index()] = Some(at(h, name, &labels, t));
    v
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_reproduces_a_known_history_and_never_writes_a_row_twice() {
    let dir = tempfile::tempdir().unwrap();
    // Start 20 minutes before an hour so the rows span two hour partitions.
    let hour = (Utc::now() - Duration::hours(2)).duration_trunc(Duration::hours(1)).unwrap();
    let start = (hour + Duration::minutes(40)).timestamp();
    let h = history(start);
    let prom_dir = dir.path().join("prometheus");
    load_openmetrics(&Prometheus::data_dir(&prom_dir), &openmetrics(&h));
    let prometheus = Prometheus::start(&prom_dir, "15s", "");

    std::fs::create_dir_all(dir.path().join("s3")).unwrap();
    let server = S3Server::start(&dir.path().join("s3")).await.unwrap();
    server.create_bucket("data").unwrap();
    let (config, _) = write_config(
        dir.path(),
        &prometheus.url(),
        r#"step = "30s"
chunk_steps = 25
[catalog]
base = "kubernetes"
window = "60s"
[services.discover]
query = 'group by (namespace, service) (label_replace(kube_deployment_status_replicas_available{namespace="shop"}, "service", "$1", "deployment", "(.+)") or label_replace(kube_statefulset_status_replicas_ready{namespace="shop"}, "service", "$1", "statefulset", "(.+)") or label_replace(rollout_info_replicas_available{namespace="shop"}, "service", "$1", "name", "(.+)"))'
service_label = "service""#,
    );
    let ts = |s: i64| DateTime::from_timestamp(s, 0).unwrap().to_rfc3339();
    // Every step with a full rate window, through the last sample.
    let (from, to) = (start + WINDOW, start + MINUTES * 60);
    let backfill = |server: &S3Server| {
        let mut cmd = collector(server, &config);
        cmd.args(["backfill", "--from", &ts(from), "--to", &ts(to)]);
        output(cmd)
    };
    let first = ok(&backfill(&server).await);
    let steps = (to - from) / 30 + 1;
    assert!(first.contains(&format!("backfilled {steps} steps of 5 services")), "{first}");

    let rows = stored_rows(&server).await;
    assert_eq!(rows.len() as i64, steps * 5, "one row per service per step");
    let mut checked = 0;
    for row in &rows {
        let t = row.timestamp.timestamp();
        let want = expected(&h, row.service.name(), t);
        for f in Feature::ALL {
            let (got, want) = (row.get(f), want[f.index()]);
            assert!(
                matches!((got, want), (Some(a), Some(b)) if close(a, b)),
                "{} at {}: {f} is {got:?}, the history says {want:?}",
                row.service,
                row.timestamp
            );
            checked += 1;
        }
    }
    assert_eq!(checked, steps * 5 * Feature::COUNT as i64);
    let partitions: std::collections::BTreeSet<String> =
        rows.iter().map(|r: &FeatureRow| r.timestamp.format("%H").to_string()).collect();
    assert_eq!(partitions.len(), 2, "the range spans two hours");

    // A rerun finds every row stored and writes nothing.
    let again = ok(&backfill(&server).await);
    assert!(again.contains(&format!("0 rows written in 0 objects (0 bytes), {} already stored", steps * 5)), "{again}");
    assert_eq!(stored_rows(&server).await.len(), rows.len());

    // inspect sees the range, the services and no gaps.
    let mut cmd = collector(&server, &config);
    cmd.args(["inspect", "s3://data"]);
    let text = ok(&output(cmd).await);
    assert!(text.contains(&format!("rows       {}", steps * 5)), "{text}");
    assert!(text.contains("step       30 s"), "{text}");
    for (svc, _) in SERVICES {
        let line = text.lines().find(|l| l.starts_with(&format!("shop/{svc} "))).unwrap_or_else(|| panic!("{text}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[1..5], &[steps.to_string().as_str(), "0", "0", "0"], "{line}");
    }

    // A range in the future is refused and changes nothing.
    let mut cmd = collector(&server, &config);
    cmd.args(["backfill", "--from", &ts(from), "--to", &(Utc::now() + Duration::hours(1)).to_rfc3339()]);
    let out = output(cmd).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in the future"));
    assert_eq!(stored_rows(&server).await.len(), rows.len());
}
