//! `make bench`: the collector at 1,000 services with every feature.
//!
//! A synthetic exporter in this process exposes, for 1,000 services, the series the
//! `kubernetes` catalog reads (NGINX ingress counters and latency histogram, cAdvisor CPU
//! and memory, kube-state-metrics requests, limits and replicas: about 18,000 series); a
//! real Prometheus scrapes it every 5 s. Printed:
//! - the wall time of one step (11,000 instant queries) through the collector's source;
//! - Parquet bytes per row for the rows of consecutive steps in one file;
//! - the peak resident memory of the `prescale-collector` binary collecting live (5 s
//!   steps, 10 s flushes to a local folder) for 40 s.

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use chrono::Utc;
use prescale_core::prometheus::catalog::{Catalog, CatalogConfig, CatalogName};
use prescale_core::prometheus::source::{PrometheusConfig, ServicesConfig, Source};
use prescale_core::table;
use prescale_testkit::prometheus::Prometheus;
use prescale_testkit::tools::free_port;
use prometheus_client::metrics::counter::Counter;

const SERVICES: usize = 1000;

fn exposition(started: Instant) -> String {
    let s = started.elapsed().as_secs_f64();
    let mut out = String::with_capacity(4 << 20);
    for i in 0..SERVICES {
        let svc = format!("svc-{i:04}");
        let rate = 5.0 + (i % 50) as f64;
        let ing = format!(r#"namespace="bench",service="{svc}""#);
        let pod = format!(r#"namespace="bench",pod="{svc}-6d5f7c8b9-x{i:04}",container="app""#);
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

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let exporter_port = free_port();
    let started = Instant::now();
    rt.spawn(async move {
        let app = Router::new().route("/metrics", get(move || async move { exposition(started) }));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", exporter_port)).await.unwrap();
        axum::serve(listener, app).await.unwrap();
    });
    let scrape =
        format!("  - job_name: synthetic\n    static_configs:\n      - targets: [\"127.0.0.1:{exporter_port}\"]\n");
    // `honor_labels` keeps the exporter's own `namespace` and `service` labels.
    let scrape = scrape.replace("    static_configs", "    honor_labels: true\n    static_configs");
    let prometheus = Prometheus::start(&dir.path().join("prometheus"), "5s", &scrape);
    println!("collector bench: {SERVICES} services, every feature (kubernetes catalog), Prometheus scraping every 5 s");
    std::thread::sleep(Duration::from_secs(50));

    let list: Vec<String> = (0..SERVICES).map(|i| format!("bench/svc-{i:04}")).collect();
    let catalog = Catalog::from_config(&CatalogConfig {
        base: CatalogName::Kubernetes,
        window: Duration::from_secs(20),
        features: Default::default(),
    })
    .unwrap();
    let prom = PrometheusConfig { url: prometheus.url(), timeout: Duration::from_secs(30), ..Default::default() };
    let services = ServicesConfig { list: list.clone(), ..Default::default() };
    let errors = Counter::default();
    let source = Source::new(prom.clone(), catalog, services.clone(), errors.clone()).unwrap();
    let ids = services.listed().unwrap();

    let grid = prescale_core::StepGrid::from_secs(5).unwrap();
    let last = grid.floor(Utc::now()) - grid.delta();
    let mut times = Vec::new();
    let mut rows = Vec::new();
    for k in (0..5).rev() {
        let t = last - grid.delta() * k;
        let begun = Instant::now();
        let step = rt.block_on(source.rows_at(t, &ids)).unwrap();
        times.push(begun.elapsed().as_secs_f64());
        rows.extend(step);
    }
    let filled = rows.iter().filter(|r| r.values.iter().all(Option::is_some)).count();
    println!(
        "  one step, {} queries (concurrency {}): p50 {:.2} s, max {:.2} s over {} steps; {} of {} rows have every feature; {} query errors",
        11,
        prom.concurrency,
        percentile(times.clone(), 0.5),
        percentile(times, 1.0),
        5,
        filled,
        rows.len(),
        errors.get()
    );
    let bytes = table::to_parquet(&rows).unwrap();
    println!(
        "  Parquet: {} rows in one file, {} bytes, {:.1} bytes/row (zstd)",
        rows.len(),
        bytes.len(),
        bytes.len() as f64 / rows.len() as f64
    );

    // The binary collecting live: its peak memory.
    let config = dir.path().join("collector.toml");
    let metrics_port = free_port();
    std::fs::write(
        &config,
        format!(
            "step = \"5s\"\nquery_delay = \"1s\"\nflush_interval = \"10s\"\nspool_dir = {:?}\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [prometheus]\nurl = {:?}\ntimeout = \"30s\"\n[store]\nlocation = {:?}\n[catalog]\nwindow = \"20s\"\n[services]\nlist = {:?}\n",
            dir.path().join("spool").display().to_string(),
            prometheus.url(),
            dir.path().join("store").display().to_string(),
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
    std::thread::sleep(Duration::from_secs(40));
    let peak = peak_rss_mb(child.id());
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
    println!(
        "  live binary, 40 s: peak RSS {:.0} MiB, {} steps collected (mean step {:.2} s), {} rows flushed",
        peak.unwrap_or(f64::NAN),
        count,
        sum / count,
        value("prescale_collector_rows_flushed_total")
    );
}
