//! The trainer on the collector's own output: Parquet rows on a real S3 protocol server
//! (Hive-style layout, as the collector writes them), through `train`, `list`,
//! `evaluate` and `publish`.

use std::process::Output;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use prescale_core::schema::{Feature, FeatureRow};
use prescale_core::store::{ObjectStore, S3Store};
use prescale_core::{ServiceId, table};
use prescale_testkit::s3::{ACCESS_KEY, S3Server, SECRET_KEY};

/// Three days of one-minute rows for two services: a daily wave in demand, with CPU,
/// memory, latency and replicas following it, and an hour missing.
fn rows() -> Vec<FeatureRow> {
    let start = DateTime::parse_from_rfc3339("2024-03-04T00:00:00Z").unwrap().with_timezone(&Utc);
    let mut rows = Vec::new();
    for i in 0..3 * 1440i64 {
        if (2000..2060).contains(&i) {
            continue; // the collector was down: those steps have no rows at all
        }
        let day = (i % 1440) as f64 / 1440.0;
        let noise = ((i * 7919) % 17) as f64 / 17.0 - 0.5;
        let rps = 100.0 + 80.0 * (std::f64::consts::TAU * day).sin() + 5.0 * noise;
        for (name, scale) in [("order", 1.0), ("cart", 0.3)] {
            let mut r = FeatureRow::empty(start + Duration::minutes(i), ServiceId::new("shop", name).unwrap());
            let rps = rps * scale;
            r.set(Feature::RequestsPerSecond, Some(rps));
            r.set(Feature::CpuCores, Some(0.01 * rps + 0.02 * noise));
            r.set(Feature::CpuRequestCores, Some(2.0));
            r.set(Feature::MemoryBytes, Some(2e8 + 1e6 * rps));
            r.set(Feature::ReplicasReady, Some((rps / 20.0).ceil()));
            r.set(Feature::LatencyP95Seconds, Some(0.05 + 0.0005 * rps));
            r.set(Feature::InFlight, Some(0.05 * rps));
            rows.push(r);
        }
    }
    rows
}

/// Writes rows one file per hour, as the collector lays them out.
async fn write_hive(store: &dyn ObjectStore, rows: &[FeatureRow]) {
    let mut by_hour = std::collections::BTreeMap::<String, Vec<FeatureRow>>::new();
    for r in rows {
        let key = format!(
            "metrics/date={}/hour={}/test-{}.parquet",
            r.timestamp.format("%Y-%m-%d"),
            r.timestamp.format("%H"),
            r.timestamp.format("%Y%m%dT%H0000Z")
        );
        by_hour.entry(key).or_default().push(r.clone());
    }
    for (key, rows) in by_hour {
        store.put(&key, Bytes::from(table::to_parquet(&rows).unwrap())).await.unwrap();
    }
}

async fn trainer(server: &S3Server, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_prescale-trainer"));
    cmd.args(args)
        .env("PRESCALE_S3_ENDPOINT", server.endpoint())
        .env("PRESCALE_S3_PATH_STYLE", "true")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1");
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

fn ok(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "stdout:\n{text}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trains_evaluates_and_publishes_from_collector_parquet_on_s3() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("s3")).unwrap();
    let server = S3Server::start(&dir.path().join("s3")).await.unwrap();
    server.create_bucket("data").unwrap();
    write_hive(&S3Store::new(server.client(), "data", ""), &rows()).await;
    let config = prescale_models::train::write_small_config(dir.path()).unwrap();
    let models = dir.path().join("models");
    let (config, models) = (config.to_str().unwrap(), models.to_str().unwrap());
    let out = dir.path().join("out");

    let train = ok(&trainer(
        &server,
        &[
            "--train-config",
            config,
            "train",
            "--data",
            "s3://data/metrics",
            "--service",
            "shop/order",
            "--models",
            models,
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .await);
    assert!(train.contains("covariates:") && train.contains("explain"), "{train}");
    let version = train.lines().find_map(|l| l.strip_prefix("stored model ")).unwrap().split(' ').next().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let pre = &report["preprocessing"];
    let kept = pre["components"].as_array().unwrap().len();
    let ratios: Vec<f64> =
        pre["explained_variance_ratio"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(kept >= 1 && ratios[..kept].iter().sum::<f64>() >= 0.9, "{pre}");
    assert!(
        !pre["columns"].as_array().unwrap().iter().any(|c| c == "cpu_request_cores"),
        "a constant covariate carries nothing: {pre}"
    );
    assert_eq!(report["split"]["steps"], 3 * 1440, "the missing hour is kept as missing steps");

    // Not published yet: `list` shows it without the `latest` mark; evaluate needs a version.
    let listed = ok(&trainer(&server, &["list", "--models", models]).await);
    assert!(listed.contains(&format!("  {version}  trained on shop/order")), "{listed}");
    let eval = ok(&trainer(
        &server,
        &["evaluate", "--models", models, "--version", version, "--data", "s3://data/metrics", "--service", "order"],
    )
    .await);
    assert!(eval.contains("| transformer |") && eval.contains("| persistence |"), "{eval}");

    ok(&trainer(&server, &["publish", "--models", models, version, "--force"]).await);
    let listed = ok(&trainer(&server, &["list", "--models", models]).await);
    assert!(listed.contains(&format!("* {version}")), "{listed}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{models}/{version}/manifest.json")).unwrap()).unwrap();
    assert!(manifest["features"].as_array().unwrap().len() > 1, "covariates are recorded with the model");
    assert!(manifest["params"]["preprocess"]["offsets"].is_array(), "the fitted scaler is saved with the model");

    // A model trained with covariates refuses data without them, saying so.
    let trace = dir.path().join("t.csv");
    let start = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap();
    let csv: String =
        (0..300).map(|i| format!("{},{}\n", (start + Duration::minutes(i)).to_rfc3339(), 100 + i % 7)).collect();
    std::fs::write(&trace, format!("timestamp,requests\n{csv}")).unwrap();
    let bad = trainer(&server, &["evaluate", "--models", models, "--trace", trace.to_str().unwrap()]).await;
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("trained on covariates"), "{err}");

    // An unknown service names the ones that exist.
    let bad = trainer(
        &server,
        &["--train-config", config, "backtest", "--data", "s3://data/metrics", "--service", "nope", "--out", "x"],
    )
    .await;
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("shop/cart") && err.contains("shop/order"), "{err}");
}

/// `--services 'shop/*'` over one cluster's folder: a model per matching service, each in
/// `<models>/<namespace>/<name>` where the predictor looks, none for the other cluster's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trains_every_service_a_selector_names_in_one_cluster() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("s3")).unwrap();
    let server = S3Server::start(&dir.path().join("s3")).await.unwrap();
    server.create_bucket("data").unwrap();
    let store = S3Store::new(server.client(), "data", "");
    let east = table::Layout::new("metrics", "collector-0").unwrap().in_cluster("east").unwrap();
    table::write_rows(&store, &east, rows()).await.unwrap();
    let west = table::Layout::new("metrics", "collector-0").unwrap().in_cluster("west").unwrap();
    let mut others = rows();
    others.retain(|r| r.service.name() == "order");
    for r in &mut others {
        r.service = ServiceId::new("tools", "build").unwrap();
    }
    table::write_rows(&store, &west, others).await.unwrap();
    let config = prescale_models::train::write_small_config(dir.path()).unwrap();
    let models = dir.path().join("models");
    let (config, root) = (config.to_str().unwrap(), models.to_str().unwrap());
    let args = |selector: &'static str, cluster: &'static str| {
        vec![
            "--train-config",
            config,
            "--max-seconds",
            "5",
            "train",
            "--data",
            "s3://data/metrics",
            "--cluster",
            cluster,
            "--services",
            selector,
            "--models",
            root,
        ]
    };
    let out = ok(&trainer(&server, &args("shop/*", "east")).await);
    assert!(out.contains("training 2 services matching \"shop/*\"") && out.contains("trained 2 services"), "{out}");
    for service in ["shop/order", "shop/cart"] {
        let listed = ok(&trainer(&server, &["list", "--models", &format!("{root}/{service}")]).await);
        assert!(listed.contains(&format!("trained on {service}")), "{listed}");
    }
    assert!(!models.join("tools").exists(), "west's service is not east's");
    // No match in that cluster: an error naming the selector, nothing trained.
    let none = trainer(&server, &args("tools/*", "east")).await;
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(!none.status.success() && err.contains("\"tools/*\""), "{err}");
    assert!(!models.join("tools").exists());
}
