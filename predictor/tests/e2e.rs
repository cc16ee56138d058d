//! End to end: the storefront (in this process), a real Prometheus scraping it and the
//! predictor every second, the predictor with 1 s steps and a small model trained on the
//! shape of the load, and k6 driving a ramp through the gateway. The predicted replicas
//! reach their peak before the observed demand does, and the `prometheus` trigger's query
//! returns exactly one element per service.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prescale_core::StepGrid;
use prescale_core::config::from_toml_str;
use prescale_core::store::{LocalStore, S3Options};
use prescale_models::forecaster::TransformerModel;
use prescale_models::series::{Series, Split};
use prescale_models::train::{Quiet, TrainConfig};
use prescale_predictor::config::PredictorConfig;
use prescale_predictor::run::Listeners;
use prescale_testkit::prometheus::Prometheus;
use prescale_testkit::tools::{free_port, k6};

mod common;

/// The load's shape, requests/s at second `s` of an 80 s period: 20 s flat, a 30 s ramp
/// up, a 30 s ramp down.
fn shape(s: usize) -> f64 {
    let (low, high) = (12.0, 48.0);
    match s % 80 {
        p if p < 20 => low,
        p if p < 50 => low + (high - low) * (p - 20) as f64 / 30.0,
        p => high - (high - low) * (p - 50) as f64 / 30.0,
    }
}

/// Training data: ramps like the load's (30 s up, 30 s down) to peaks of 30 to 60
/// requests/s, apart by 10 to 40 s of low traffic at irregular times, so that what the
/// model learns is the shape of a ramp in progress, not a clock.
fn ramps(len: usize) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(len);
    let mut k: u64 = 1;
    while out.len() < len {
        k = k.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let flat = 10 + (k >> 33) as usize % 31;
        let high = 30.0 + ((k >> 17) % 31) as f64;
        let low = 12.0;
        out.extend((0..flat).map(|_| Some(low)));
        out.extend((0..30).map(|i| Some(low + (high - low) * i as f64 / 30.0)));
        out.extend((0..30).map(|i| Some(high - (high - low) * i as f64 / 30.0)));
    }
    out.truncate(len);
    out
}

async fn publish_model(folder: &Path) {
    let grid = StepGrid::from_secs(1).unwrap();
    let start = DateTime::parse_from_rfc3339("2024-03-04T00:00:00Z").unwrap().with_timezone(&Utc);
    let series = Series::new("storefront/gateway", grid, start, ramps(6000)).unwrap();
    let config = TrainConfig { max_epochs: 4, ..TrainConfig::small(None) };
    let (model, _) = TransformerModel::train(&series, Split::of(series.len()), 60, &config, &mut Quiet).unwrap();
    common::publish(&LocalStore::new(folder), &model, "v1", 1.0).await;
}

/// The storefront's services, each on its own free port, in this process.
async fn start_storefront(data_dir: &Path) -> Vec<(&'static str, u16)> {
    use storefront::{Service, Settings, spawn_all};
    let ports: BTreeMap<Service, u16> = Service::ALL.iter().map(|s| (*s, free_port())).collect();
    spawn_all(&Settings::dev(data_dir, &ports, 64).unwrap(), "127.0.0.1", &ports, std::future::pending())
        .await
        .unwrap();
    ports.into_iter().map(|(s, p)| (s.name(), p)).collect()
}

async fn json(url: &str) -> Option<serde_json::Value> {
    reqwest::get(url).await.ok()?.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predicted_replicas_rise_before_the_observed_peak() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("storefront")).unwrap();
    let services = start_storefront(&dir.path().join("storefront")).await;
    let gateway = services.iter().find(|(n, _)| *n == "gateway").unwrap().1;
    let (http, grpc) = (free_port(), free_port());

    let mut scrape = String::from("  - job_name: storefront\n    honor_labels: true\n    static_configs:\n");
    for (name, port) in &services {
        scrape.push_str(&format!(
            "      - targets: [\"127.0.0.1:{port}\"]\n        labels: {{namespace: storefront, service: {name}}}\n"
        ));
    }
    scrape
        .push_str(&format!("  - job_name: predictor\n    static_configs:\n      - targets: [\"127.0.0.1:{http}\"]\n"));
    let prometheus = tokio::task::block_in_place(|| Prometheus::start(&dir.path().join("prometheus"), "1s", &scrape));

    let models = dir.path().join("models");
    publish_model(&models.join("storefront/gateway")).await;
    let config: PredictorConfig = from_toml_str(&format!(
        r#"step = "1s"
query_delay = "1s"
history = "120s"
reload_interval = "5s"
listen = "127.0.0.1:{http}"
grpc_listen = "127.0.0.1:{grpc}"
[prometheus]
url = "{url}"
timeout = "2s"
[catalog]
base = "storefront"
window = "5s"
[models]
location = {models:?}
[policy]
capacity = 8.0
startup = "5s"
lookahead = "30s"
scale_down_window = "5s"
[[services]]
service = "storefront/gateway"
"#,
        url = prometheus.url(),
        models = models.display().to_string()
    ))
    .unwrap();
    let listeners = Listeners::bind(&config).await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let predictor = tokio::spawn(config.build(&S3Options::default()).unwrap().run(listeners, async move {
        let _ = stop_rx.await;
    }));

    // The ramp, through the gateway: 20 s low, 30 s up, 30 s down, 10 s low.
    let trace = dir.path().join("ramp.csv");
    let mut csv = String::from("timestamp,requests\n");
    let t0 = DateTime::parse_from_rfc3339("2024-03-04T00:00:00Z").unwrap().with_timezone(&Utc);
    for s in 0..90 {
        csv.push_str(&format!("{},{}\n", (t0 + chrono::Duration::seconds(s)).to_rfc3339(), shape(s as usize)));
    }
    std::fs::write(&trace, csv).unwrap();
    let script_path = prescale_testkit::repo_root().join("loadtest/profile.js");
    let script = script_path.to_str().expect("a UTF-8 path");
    let mut cmd = Command::new(k6());
    cmd.args(["run", "--quiet", "--no-color"]).args([
        "-e",
        &format!("BASE_URL=http://127.0.0.1:{gateway}"),
        "-e",
        &format!("TRACE={}", trace.display()),
        "-e",
        "COMPRESS=1",
        "-e",
        "STAGE_SECONDS=1",
        "-e",
        "PEAK=48",
        script,
    ]);
    // Let the predictor see some low traffic first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let k6_run = tokio::task::spawn_blocking(move || cmd.output().unwrap());

    let api = format!("http://127.0.0.1:{http}/api/v1/services/storefront/gateway");
    let began = Instant::now();
    let mut samples: Vec<(f64, u32, f64)> = Vec::new();
    let mut forecasts: Vec<String> = Vec::new();
    while !k6_run.is_finished() {
        if let Some(v) = json(&api).await
            && let (Some(r), Some(d)) = (v["replicas"].as_u64(), v["observed_demand"].as_f64())
        {
            samples.push((began.elapsed().as_secs_f64(), r as u32, d));
            let p90: Vec<String> = v["forecast"]["p90"]
                .as_array()
                .map(|a| a.iter().step_by(10).map(|x| format!("{:.0}", x.as_f64().unwrap_or(0.0))).collect())
                .unwrap_or_default();
            forecasts.push(format!(
                "{:.1}s d={d:.1} r={r} reason={} p90={}",
                began.elapsed().as_secs_f64(),
                v["reason"]["kind"],
                p90.join(",")
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let out = k6_run.await.unwrap();
    assert!(out.status.success(), "k6 failed:\n{}", String::from_utf8_lossy(&out.stderr));

    let last = json(&api).await.unwrap();
    assert!(last["forecast"].is_object(), "the predictor serves forecasts: {last}");
    let observed = last["observed_demand"].as_f64().unwrap();
    assert_eq!(last["reactive_replicas"].as_u64(), Some((observed / 8.0 - 1e-9).ceil() as u64), "{last}");
    // From the moment demand starts to rise: when the replicas first reach what the peak
    // demand needs (capacity 8 at the reactive floor's 80% utilisation), and when demand
    // itself first needs that many. The forecast must get there first, by some seconds.
    let need = |d: f64| (d / 0.8 / 8.0).ceil() as u32;
    let ramp = samples.iter().position(|s| s.2 > 15.0).expect("the ramp shows in observed demand");
    let rising = &samples[ramp..];
    let peak_demand = rising.iter().map(|s| s.2).fold(0.0, f64::max);
    let t_demand = rising.iter().find(|s| s.2 == peak_demand).unwrap().0;
    let peak_need = need(peak_demand);
    let t_reactive = rising.iter().find(|s| need(s.2) >= peak_need).unwrap().0;
    let t_predicted = rising.iter().find(|s| s.1 >= peak_need).map_or(f64::INFINITY, |s| s.0);
    let summary = format!(
        "the peak ({peak_demand:.1} req/s at {t_demand:.1} s) needs {peak_need} replicas: predicted at {t_predicted:.1} s, needed by demand from {t_reactive:.1} s\n{}",
        forecasts.join("\n")
    );
    assert!(t_predicted + 3.0 < t_reactive, "{summary}");
    println!("{}", summary.lines().next().unwrap_or_default());

    // The `prometheus` trigger's query: exactly one element for the service.
    let query = format!(
        "{}/api/v1/query?query=ml_predicted_replicas%7Bnamespace%3D%22storefront%22%2Cservice%3D%22gateway%22%7D",
        prometheus.url()
    );
    let result = json(&query).await.unwrap();
    assert_eq!(result["data"]["result"].as_array().map(Vec::len), Some(1), "{result}");

    let _ = stop_tx.send(());
    predictor.await.unwrap().unwrap();
}
