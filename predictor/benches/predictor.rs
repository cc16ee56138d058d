//! `make bench`: the predictor's serving latency and step time.
//!
//! - `GetMetrics` through a real gRPC client on loopback with 10,000 services registered,
//!   offered at 1,000 calls/s for 10 s (each call on its own task, so a slow call does not
//!   slow the offered rate; the server on a runtime of its own, one worker thread, as in
//!   its own process): p50, p99 and max latency.
//! - One step for 100, 1,000 and 10,000 services (`BENCH_PREDICTOR_SERVICES`) against a
//!   real Prometheus holding six hours of their metrics, every service forecast by a small
//!   trained transformer: the first step (two hours read with range queries) and the
//!   steady steps (one grouped instant query per feature for all services, then the
//!   forecasts, batched per model). The model is one folder all services name, as a fleet
//!   model is (`BENCH_PREDICTOR_MODEL=each`: a copy per service, so one forward pass
//!   each). Memory per service: the predictor's own count of its windows and buffers
//!   (`prescale_predictor_window_bytes`) and the process's resident growth.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};
use prescale_core::prometheus::Source;
use prescale_core::prometheus::catalog::{Catalog, CatalogConfig, CatalogName};
use prescale_core::prometheus::source::{PrometheusConfig, ServicesConfig};
use prescale_core::store::{LocalStore, S3Options};
use prescale_core::{ServiceId, StepGrid};
use prescale_models::forecaster::TransformerModel;
use prescale_models::series::{Series, Split};
use prescale_models::train::{Quiet, TrainConfig};
use prescale_policy::{Decision, PolicySettings, Quantile, Reason};
use prescale_predictor::config::ServicePlan;
use prescale_predictor::engine::Engine;
use prescale_predictor::grpc;
use prescale_predictor::metrics::Metrics;
use prescale_predictor::model::Models;
use prescale_predictor::proto::external_scaler_client::ExternalScalerClient;
use prescale_predictor::proto::{GetMetricsRequest, ScaledObjectRef};
use prescale_predictor::state::{Served, Shared};
use prescale_testkit::curve;
use prescale_testkit::prometheus::{Prometheus, load_openmetrics};

#[path = "../tests/common/mod.rs"]
mod common;

const STEP: i64 = 30;

/// Services registered for the gRPC latency.
const GRPC_SERVICES: usize = 10_000;

/// The sizes of the step measurement: `BENCH_PREDICTOR_SERVICES`, or 100 and 1,000.
fn sizes() -> Vec<usize> {
    std::env::var("BENCH_PREDICTOR_SERVICES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1000, 10_000])
}

/// Whether every service has a copy of the model in a folder of its own.
fn model_each() -> bool {
    std::env::var("BENCH_PREDICTOR_MODEL").is_ok_and(|v| v == "each")
}

/// The process's resident memory now, bytes (Linux).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn rate(t: f64, i: usize) -> f64 {
    (20.0 + i as f64) * (1.5 + (std::f64::consts::TAU * t / 3600.0).sin())
}

async fn grpc_latency(rt_services: &[ServiceId]) {
    let shared = Arc::new(Shared::new(rt_services.to_vec(), false, Duration::from_secs(300), Metrics::new()));
    let served = rt_services
        .iter()
        .map(|id| {
            let decision = Decision {
                service: id.clone(),
                time: Utc::now(),
                desired_replicas: 3,
                observed_demand: Some(10.0),
                forecast: None,
                reason: Reason::Reactive,
                ready_replicas: None,
                reactive_replicas: None,
            };
            (id.clone(), Served { decision, replicas: 3, shadow: false, stale: false })
        })
        .collect();
    shared.publish(served);
    // The server on a runtime and thread of its own, as in its own process: KEDA is
    // another process (usually on another node), and a client sharing the server's
    // workers would queue the server's answers behind its own tasks.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            grpc::serve(shared, listener, None, std::future::pending()).await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = ExternalScalerClient::connect(format!("http://{addr}")).await.unwrap();
    let (rate, seconds) = (1000u64, 10u64);
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..rate * seconds {
        ticker.tick().await;
        let mut c = client.clone();
        let name = rt_services[k as usize % rt_services.len()].name().to_owned();
        tasks.spawn(async move {
            let object = ScaledObjectRef {
                name: "bench".into(),
                namespace: "bench".into(),
                scaler_metadata: [("service".to_owned(), name)].into_iter().collect(),
            };
            let began = Instant::now();
            c.get_metrics(GetMetricsRequest { scaled_object_ref: Some(object), metric_name: String::new() })
                .await
                .unwrap();
            began.elapsed().as_secs_f64() * 1000.0
        });
    }
    let mut latencies: Vec<f64> = tasks.join_all().await;
    println!(
        "  GetMetrics at {rate} calls/s for {seconds} s, {} services registered: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} calls)",
        rt_services.len(),
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.99),
        percentile(&mut latencies, 1.0),
        latencies.len()
    );
}

async fn step_time(dir: &std::path::Path, services: &[ServiceId]) -> curve::Point {
    let n = services.len();
    let end = (Utc::now() - chrono::Duration::minutes(2)).duration_trunc(chrono::Duration::seconds(STEP)).unwrap();
    let start = end.timestamp() - 6 * 3600;
    let mut om = String::new();
    for (i, id) in services.iter().enumerate() {
        let labels = format!(r#"namespace="{}",service="{}""#, id.namespace(), id.name());
        let mut count = 0.0;
        let mut lines = (String::new(), String::new());
        for t in (start..=end.timestamp()).step_by(15) {
            count += rate(t as f64, i) * 15.0;
            lines.0.push_str(&format!("http_requests_total{{{labels}}} {count} {t}\n"));
            lines.1.push_str(&format!("up{{{labels}}} 1 {t}\n"));
        }
        om.push_str(&lines.0);
        om.push_str(&lines.1);
    }
    // OpenMetrics wants each metric family in one block.
    let mut by_family: Vec<&str> = om.lines().collect();
    by_family.sort_by_key(|l| l.split('{').next().unwrap_or_default().to_owned());
    let om = by_family.join("\n") + "\n# EOF\n";
    let prom_dir = dir.join("prometheus");
    load_openmetrics(&Prometheus::data_dir(&prom_dir), &om);
    let prometheus = Prometheus::start(&prom_dir, "15s", "");

    let grid = StepGrid::from_secs(STEP as u64).unwrap();
    let t0 = DateTime::parse_from_rfc3339("2024-03-04T00:00:00Z").unwrap().with_timezone(&Utc);
    let values: Vec<Option<f64>> = (0..2400).map(|k| Some(rate((t0.timestamp() + k * STEP) as f64, 10))).collect();
    let series = Series::new("bench", grid, t0, values).unwrap();
    let config = TrainConfig { max_epochs: 2, ..TrainConfig::small(Some(120)) };
    let (model, _) = TransformerModel::train(&series, Split::of(series.len()), 20, &config, &mut Quiet).unwrap();
    let mut plans = Vec::new();
    let shared_folder = dir.join("models").join("fleet");
    if !model_each() {
        common::publish(&LocalStore::new(&shared_folder), &model, "v1", STEP as f64).await;
    }
    for id in services {
        let folder = if model_each() {
            let folder = dir.join("models").join(id.namespace()).join(id.name());
            common::publish(&LocalStore::new(&folder), &model, "v1", STEP as f64).await;
            folder
        } else {
            shared_folder.clone()
        };
        plans.push(ServicePlan {
            id: id.clone(),
            models: folder.to_str().unwrap().parse().unwrap(),
            policy: PolicySettings {
                capacity: 10.0,
                min_replicas: 1,
                max_replicas: 100,
                startup: grid.duration() * 4,
                lookahead: grid.duration() * 20,
                quantile: Quantile::P90,
                headroom: 0.1,
                floor_utilisation: 0.8,
                scale_down_window: grid.duration() * 10,
                max_change: None,
                burst_quantile: None,
                burst_span: Duration::ZERO,
                forecast_scale_down: false,
                shortfall_penalty: None,
                objective: None,
            },
            schedules: Vec::new(),
        });
    }
    let catalog = Catalog::from_config(&CatalogConfig {
        base: CatalogName::Storefront,
        window: Duration::from_secs(60),
        features: Default::default(),
    })
    .unwrap();
    let source = Source::new(
        PrometheusConfig { url: prometheus.url(), timeout: Duration::from_secs(30), ..Default::default() },
        catalog,
        ServicesConfig { list: services.iter().map(|s| s.to_string()).collect(), ..Default::default() },
        Default::default(),
    )
    .unwrap();
    drop(model);
    let rss_before = rss();
    let metrics = Metrics::new();
    let locations: Vec<_> = plans.iter().map(|p| (p.id.clone(), p.models.clone())).collect();
    let models = Arc::new(Models::open(grid, &locations, &S3Options::default()).await.unwrap());
    models.reload(&metrics).await;
    let shared = Arc::new(Shared::new(services.to_vec(), false, Duration::from_secs(86_400), metrics));
    let mut engine = Engine::new(grid, 240, source, models, shared.clone(), plans).unwrap();
    let first_t = end - chrono::Duration::minutes(30);
    let began = Instant::now();
    engine.step(first_t).await.unwrap();
    let first = began.elapsed().as_secs_f64();
    let mut steady = Vec::new();
    for k in 1..=10 {
        let began = Instant::now();
        engine.step(first_t + chrono::Duration::seconds(STEP * k)).await.unwrap();
        steady.push(began.elapsed().as_secs_f64());
    }
    let forecasts = services.iter().filter(|s| shared.served(s).is_ok_and(|d| d.decision.forecast.is_some())).count();
    let window_bytes = shared.metrics.window_bytes.get() as f64;
    let grown = rss().saturating_sub(rss_before) as f64;
    let models = if model_each() { "a model folder each" } else { "one model folder for all" };
    println!(
        "  one step for {n} services (storefront catalog, 7 features each, {models}): first step {:.2} s (2 h of history by range queries), then p50 {:.3} s, max {:.3} s over 10 steps; {forecasts} of {n} decisions from forecasts; windows and buffers {:.1} KiB per service, resident memory grown {:.1} KiB per service ({:.0} MiB)",
        first,
        percentile(&mut steady.clone(), 0.5),
        percentile(&mut steady, 1.0),
        window_bytes / n as f64 / 1024.0,
        grown / n as f64 / 1024.0,
        grown / 1048576.0,
    );
    curve::Point {
        component: "predictor".into(),
        services: n,
        step_seconds: percentile(&mut steady, 0.5),
        memory_mib: grown / 1048576.0,
    }
}

fn main() {
    if std::env::var("BENCH_REDRAW").is_ok_and(|v| v == "1") {
        match curve::redraw(&curve::folder()) {
            Ok(svg) => println!("predictor bench: the curve redrawn from its figures: {}", svg.display()),
            Err(e) => println!("predictor bench: the curve was not drawn: {e}"),
        }
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ids = |n: usize| -> Vec<ServiceId> {
        (0..n).map(|i| ServiceId::new("bench", format!("svc-{i:05}")).unwrap()).collect()
    };
    println!("predictor bench");
    rt.block_on(grpc_latency(&ids(GRPC_SERVICES)));
    let mut points = Vec::new();
    for n in sizes() {
        points.push(rt.block_on(step_time(&dir.path().join(n.to_string()), &ids(n))));
    }
    if !model_each() && !points.is_empty() {
        match curve::record(&curve::folder(), "predictor", &points) {
            Ok(svg) => println!("  the curve (steady step p50, resident growth): {}", svg.display()),
            Err(e) => println!("  the curve was not drawn: {e}"),
        }
    }
}
