//! `make bench`: the collector at 100, 1,000 and 10,000 services with every feature
//! (`BENCH_SERVICES=100,1000` for other sizes).
//!
//! A synthetic exporter in this process exposes, for N services, the series the
//! `kubernetes` catalog reads (NGINX ingress counters and latency histogram, cAdvisor CPU
//! and memory, kube-state-metrics requests, limits and replicas: 18 series a service); a
//! real Prometheus scrapes it every `BENCH_SCRAPE_SECONDS` (default 15, as
//! `deploy/prometheus/prometheus.yml` ships; the collector's step and the catalog's rate
//! window follow: a step of one scrape, a window of four). Printed for each N:
//! - the wall time of one step through the collector's source, and the queries it cost
//!   (Prometheus' own count of answered queries: one per feature, whatever N);
//! - Parquet bytes per row for the rows of consecutive steps in one file;
//! - the `prescale-collector` binary collecting live (a step per scrape, flushes every
//!   two steps, to a local folder) for eight steps: its mean step time and peak resident
//!   memory.
//!
//! Then a table of the curve, recorded with the predictor's in
//! `target-bench/fleet-scale.{csv,svg}` (see `prescale_testkit::curve`).

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use chrono::Utc;
use prescale_core::prometheus::catalog::{Catalog, CatalogConfig, CatalogName};
use prescale_core::prometheus::source::{PrometheusConfig, ServicesConfig, Source};
use prescale_core::table;
use prescale_testkit::curve;
use prescale_testkit::prometheus::Prometheus;
use prescale_testkit::tools::free_port;
use prometheus_client::metrics::counter::Counter;

/// The sizes measured: `BENCH_SERVICES`, or 100, 1,000 and 10,000.
fn sizes() -> Vec<usize> {
    std::env::var("BENCH_SERVICES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1000, 10_000])
}

fn exposition(started: Instant, services: usize) -> String {
    let s = started.elapsed().as_secs_f64();
    let mut out = String::with_capacity(services * 2200);
    for i in 0..services {
        let svc = format!("svc-{i:05}");
        let rate = 5.0 + (i % 50) as f64;
        let ing = format!(r#"namespace="bench",service="{svc}""#);
        let pod = format!(r#"namespace="bench",pod="{svc}-6d5f7c8b9-x{i:05}",container="app""#);
        // The owner series the catalog maps pods to workloads with (kube-state-metrics').
        let _ = writeln!(
            out,
            "kube_pod_owner{{namespace=\"bench\",pod=\"{svc}-6d5f7c8b9-x{i:05}\",owner_kind=\"ReplicaSet\",owner_name=\"{svc}-6d5f7c8b9\"}} 1"
        );
        let _ = writeln!(
            out,
            "kube_replicaset_owner{{namespace=\"bench\",replicaset=\"{svc}-6d5f7c8b9\",owner_kind=\"Deployment\",owner_name=\"{svc}\"}} 1"
        );
        let _ = writeln!(out, "nginx_ingress_controller_requests{{{ing},status=\"200\"}} {}", rate * s);
        let _ = writeln!(out, "nginx_ingress_controller_requests{{{ing},status=\"503\"}} {}", 0.01 * rate * s);
        let total = 1.01 * rate * s;
        for (le, f) in [("0.05", 0.3), ("0.1", 0.6), ("0.25", 0.85), ("0.5", 0.95), ("1", 0.99), ("+Inf", 1.0)] {
            let _ = writeln!(
                out,
                "nginx_ingress_controller_request_duration_seconds_bucket{{{ing},le=\"{le}\"}} {}",
                f * total
            );
        }
        let _ = writeln!(out, "nginx_ingress_controller_request_duration_seconds_sum{{{ing}}} {}", 0.12 * total);
        let _ = writeln!(out, "nginx_ingress_controller_request_duration_seconds_count{{{ing}}} {total}");
        let _ = writeln!(out, "container_cpu_usage_seconds_total{{{pod}}} {}", 0.01 * rate * s);
        let _ = writeln!(out, "container_memory_working_set_bytes{{{pod}}} {}", 1e8 + 1e6 * (i % 7) as f64);
        for (res, req, lim) in [("cpu", 0.25, 0.5), ("memory", 1.28e8, 2.56e8)] {
            let _ = writeln!(out, "kube_pod_container_resource_requests{{{pod},resource=\"{res}\"}} {req}");
            let _ = writeln!(out, "kube_pod_container_resource_limits{{{pod},resource=\"{res}\"}} {lim}");
        }
        let _ = writeln!(
            out,
            "kube_deployment_status_replicas_available{{namespace=\"bench\",deployment=\"{svc}\"}} {}",
            1 + i % 5
        );
    }
    out
}

fn percentile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Prometheus' own count of answered queries (instant and range).
async fn answered(prometheus: &str) -> f64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = reqwest::get(format!("{prometheus}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("prometheus_http_requests_total{") && l.contains(r#"code="200""#))
        .filter(|l| l.contains(r#"handler="/api/v1/query""#) || l.contains(r#"handler="/api/v1/query_range""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One size's figures.
struct Figures {
    services: usize,
    step_p50: f64,
    step_max: f64,
    queries_per_step: f64,
    live_step: f64,
    peak_mib: f64,
    bytes_per_row: f64,
}

/// Prometheus' scrape interval, the collector's step: `BENCH_SCRAPE_SECONDS`, or 15.
fn scrape_seconds() -> u64 {
    std::env::var("BENCH_SCRAPE_SECONDS").ok().and_then(|v| v.parse().ok()).filter(|s| *s > 0).unwrap_or(15)
}

/// The catalog's rate window: four scrapes.
fn window() -> Duration {
    Duration::from_secs(4 * scrape_seconds())
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let exporter_port = free_port();
    let started = Instant::now();
    let size = Arc::new(AtomicUsize::new(0));
    let served = size.clone();
    rt.spawn(async move {
        let app = Router::new()
            .route("/metrics", get(move || async move { exposition(started, served.load(Ordering::Relaxed)) }));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", exporter_port)).await.unwrap();
        axum::serve(listener, app).await.unwrap();
    });
    let every = scrape_seconds();
    let scrape = format!(
        "  - job_name: synthetic\n    honor_labels: true\n    scrape_timeout: {every}s\n    static_configs:\n      - targets: [\"127.0.0.1:{exporter_port}\"]\n"
    );
    let prometheus = Prometheus::start(&dir.path().join("prometheus"), &format!("{every}s"), &scrape);
    let mut table = Vec::new();
    for n in sizes() {
        size.store(n, Ordering::Relaxed);
        println!(
            "collector bench: {n} services, every feature (kubernetes catalog), Prometheus scraping every {every} s"
        );
        // The rate window full of scrapes of the new size, and one more.
        std::thread::sleep(window() + Duration::from_secs(every));
        table.push(measure(&rt, dir.path(), &prometheus.url(), n));
    }
    println!(
        "\n  | services | step p50 (s) | step max (s) | queries/step | live step (s) | peak RSS (MiB) | Parquet bytes/row |"
    );
    println!("  |---:|---:|---:|---:|---:|---:|---:|");
    for f in &table {
        println!(
            "  | {} | {:.3} | {:.3} | {:.1} | {:.3} | {:.0} | {:.1} |",
            f.services, f.step_p50, f.step_max, f.queries_per_step, f.live_step, f.peak_mib, f.bytes_per_row
        );
    }
    let points: Vec<curve::Point> = table
        .iter()
        .map(|f| curve::Point {
            component: "collector".into(),
            services: f.services,
            step_seconds: f.live_step,
            memory_mib: f.peak_mib,
        })
        .collect();
    match curve::record(&curve::folder(), "collector", &points) {
        Ok(svg) => println!("  the curve (live step, peak RSS): {}", svg.display()),
        Err(e) => println!("  the curve was not drawn: {e}"),
    }
}

fn catalog_for_timing() -> Catalog {
    Catalog::from_config(&CatalogConfig {
        base: CatalogName::Kubernetes,
        window: window(),
        features: Default::default(),
    })
    .unwrap()
}

/// Where a step's time goes: each feature's query sent alone, with Prometheus' own
/// evaluation time (`stats=all`) beside the wall time of the answer, body read, not parsed.
fn prometheus_time(rt: &tokio::runtime::Runtime, prometheus: &str, t: chrono::DateTime<Utc>, catalog: &Catalog) {
    let client = reqwest::Client::new();
    let (mut eval, mut wall, mut slowest) = (0.0, 0.0, (String::new(), 0.0f64));
    for feature in catalog.features() {
        let query = catalog.render(feature, &["bench"]).unwrap();
        let began = Instant::now();
        let body = rt.block_on(async {
            let url = format!("{prometheus}/api/v1/query");
            let time = t.timestamp().to_string();
            let form = [("query", query.as_str()), ("time", time.as_str()), ("stats", "all")];
            client.post(url).form(&form).send().await.ok()?.text().await.ok()
        });
        let took = began.elapsed().as_secs_f64();
        let evaluated = body
            .as_deref()
            .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
            .and_then(|v| v["data"]["stats"]["timings"]["evalTotalTime"].as_f64())
            .unwrap_or(f64::NAN);
        eval += evaluated;
        wall += took;
        if evaluated > slowest.1 {
            slowest = (feature.name().to_owned(), evaluated);
        }
    }
    println!(
        "  each feature's query alone: Prometheus evaluated them in {eval:.3} s in all (slowest {} {:.3} s), {wall:.3} s wall with the answers' transfer",
        slowest.0, slowest.1
    );
}

fn measure(rt: &tokio::runtime::Runtime, dir: &std::path::Path, prometheus: &str, n: usize) -> Figures {
    let list: Vec<String> = (0..n).map(|i| format!("bench/svc-{i:05}")).collect();
    let catalog = Catalog::from_config(&CatalogConfig {
        base: CatalogName::Kubernetes,
        window: window(),
        features: Default::default(),
    })
    .unwrap();
    let prom = PrometheusConfig { url: prometheus.to_owned(), timeout: Duration::from_secs(30), ..Default::default() };
    let services = ServicesConfig { list: list.clone(), ..Default::default() };
    let errors = Counter::default();
    let source = Source::new(prom.clone(), catalog, services.clone(), errors.clone()).unwrap();
    let ids = services.listed().unwrap();

    let grid = prescale_core::StepGrid::from_secs(scrape_seconds()).unwrap();
    let last = grid.floor(Utc::now()) - grid.delta();
    let mut times = Vec::new();
    let mut rows = Vec::new();
    let before = rt.block_on(answered(prometheus));
    for k in (0..5).rev() {
        let t = last - grid.delta() * k;
        let begun = Instant::now();
        let step = rt.block_on(source.rows_at(t, &ids)).unwrap();
        times.push(begun.elapsed().as_secs_f64());
        rows.extend(step);
    }
    let queries_per_step = (rt.block_on(answered(prometheus)) - before) / 5.0;
    prometheus_time(rt, prometheus, last, &catalog_for_timing());
    let filled = rows.iter().filter(|r| r.values.iter().all(Option::is_some)).count();
    let (step_p50, step_max) = (percentile(times.clone(), 0.5), percentile(times, 1.0));
    println!(
        "  one step: {queries_per_step:.1} queries (concurrency {}), p50 {step_p50:.3} s, max {step_max:.3} s over 5 steps; {filled} of {} rows have every feature; {} query errors",
        prom.concurrency,
        rows.len(),
        errors.get()
    );
    let bytes = table::to_parquet(&rows).unwrap();
    let bytes_per_row = bytes.len() as f64 / rows.len() as f64;
    println!("  Parquet: {} rows in one file, {} bytes, {bytes_per_row:.1} bytes/row (zstd)", rows.len(), bytes.len());

    // The binary collecting live: its step time and peak memory.
    let every = scrape_seconds();
    let run = dir.join(format!("live-{n}"));
    std::fs::create_dir_all(&run).unwrap();
    let config = run.join("collector.toml");
    let metrics_port = free_port();
    std::fs::write(
        &config,
        format!(
            "step = \"{every}s\"\nquery_delay = \"1s\"\nflush_interval = \"{}s\"\nspool_dir = {:?}\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [prometheus]\nurl = {:?}\ntimeout = \"30s\"\n[store]\nlocation = {:?}\n[catalog]\nwindow = \"{}s\"\n[services]\nlist = {:?}\n",
            2 * every,
            run.join("spool").display().to_string(),
            prometheus,
            run.join("store").display().to_string(),
            window().as_secs(),
            list
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_prescale-collector"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(8 * every));
    let peak_mib = peak_rss_mb(child.id()).unwrap_or(f64::NAN);
    let metrics = rt.block_on(async {
        reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics")).await.ok()?.text().await.ok()
    });
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
    let value = |name: &str| -> f64 {
        metrics
            .as_deref()
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let (sum, count) = (
        value("prescale_collector_step_duration_seconds_sum"),
        value("prescale_collector_step_duration_seconds_count"),
    );
    let live_step = sum / count;
    println!(
        "  live binary, {} s: peak RSS {peak_mib:.0} MiB, {count} steps collected (mean step {live_step:.3} s), {} rows flushed",
        8 * every,
        value("prescale_collector_rows_flushed_total")
    );
    Figures { services: n, step_p50, step_max, queries_per_step, live_step, peak_mib, bytes_per_row }
}
