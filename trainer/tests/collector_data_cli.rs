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

    // The model carries its policy tuned on validation, safest first; and the scaling
    // benchmark runs on the collector's Parquet with it.
    let menu = manifest["policy"]["entries"].as_array().expect("a tuned policy menu");
    assert!(!menu.is_empty(), "{}", manifest["policy"]);
    let sim_out = dir.path().join("sim");
    let sim = ok(&trainer(
        &server,
        &[
            "simulate",
            "--data",
            "s3://data/metrics",
            "--service",
            "shop/order",
            "--models",
            models,
            "--version",
            version,
            "--out",
            sim_out.to_str().unwrap(),
        ],
    )
    .await);
    assert!(sim.contains("| predictive |") && sim.contains("x the HPA frontier"), "{sim}");
    assert!(std::fs::read_to_string(sim_out.join("frontier.csv")).unwrap().lines().count() > 82);

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

/// `--services 'shop/*'` over one cluster's folder: one fleet model for the matching
/// services (none of the other cluster's), its per-service work split into two shards
/// run one at a time as Kubernetes' Indexed Job runs them; publication waits for both
/// and names the one missing; each service is served by what won on its validation part,
/// and a service with two hours of history is cold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fleet_model_for_every_service_a_selector_names_split_into_shards() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("s3")).unwrap();
    let server = S3Server::start(&dir.path().join("s3")).await.unwrap();
    server.create_bucket("data").unwrap();
    let store = S3Store::new(server.client(), "data", "");
    let east = table::Layout::new("metrics", "collector-0").unwrap().in_cluster("east").unwrap();
    let mut east_rows = rows();
    let last = east_rows.iter().map(|r| r.timestamp).max().unwrap();
    let young: Vec<FeatureRow> = east_rows
        .iter()
        .filter(|r| r.service.name() == "order" && r.timestamp > last - Duration::hours(2))
        .map(|r| FeatureRow { service: ServiceId::new("shop", "new").unwrap(), ..r.clone() })
        .collect();
    east_rows.extend(young);
    table::write_rows(&store, &east, east_rows).await.unwrap();
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
    let data = ["--data", "s3://data/metrics", "--cluster", "east"];
    let mut train = vec!["--train-config", config, "--max-seconds", "5", "train"];
    train.extend(data);
    train.extend(["--services", "shop/*", "--shards", "2", "--no-evaluate", "--models", root]);
    let out = ok(&trainer(&server, &train).await);
    assert!(out.contains("next: prescale-trainer evaluate"), "{out}");
    let version = out.lines().find_map(|l| l.strip_prefix("stored fleet model ")).unwrap().split(' ').next().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{root}/{version}/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["fleet"]["services"], serde_json::json!(["shop/cart", "shop/new", "shop/order"]));
    assert_eq!(manifest["fleet"]["shards"], 2);

    // Nothing evaluated: publication is refused naming both shards, even with --force.
    let refused = trainer(&server, &["publish", "--models", root, version, "--force"]).await;
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("shards 0/2, 1/2 of 2 not finished"), "{err}");
    let evaluate = |shard: &'static str| {
        let mut args = vec!["evaluate", "--models", root, "--version", version, "--shard", shard];
        args.extend(data);
        args
    };
    // A shard of another split is refused before anything is written.
    let wrong = trainer(&server, &evaluate("1/3")).await;
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success() && err.contains("split into 2 shards"), "{err}");
    let first = ok(&trainer(&server, &evaluate("0/2")).await);
    assert!(first.contains("served by"), "{first}");
    let refused = trainer(&server, &["publish", "--models", root, version]).await;
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("shard 1/2 of 2 not finished"), "{err}");
    ok(&trainer(&server, &evaluate("1/2")).await);
    // Rerunning one shard alone rewrites its part only.
    ok(&trainer(&server, &evaluate("0/2")).await);
    ok(&trainer(&server, &["publish", "--models", root, version]).await);
    let listed = ok(&trainer(&server, &["list", "--models", root]).await);
    assert!(listed.contains(&format!("* {version}  fleet of 3 services (shop/*)")), "{listed}");

    let services: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{root}/{version}/services.json")).unwrap()).unwrap();
    let services = services.as_object().unwrap();
    assert_eq!(services.keys().collect::<Vec<_>>(), ["shop/cart", "shop/new", "shop/order"]);
    for name in ["shop/cart", "shop/order"] {
        let e = &services[name];
        assert_eq!(e["cold"], false, "{name}: {e}");
        let maes = e["validation_mae"].as_object().unwrap();
        for candidate in ["transformer", "persistence", "seasonal_naive", "holt_winters", "ridge", "adaptive_smoothing"]
        {
            assert!(maes[candidate].as_f64().unwrap() > 0.0, "{name}: {candidate} not scored: {e}");
        }
        let (best, _) = maes.iter().min_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap())).unwrap();
        let served = if e["served"]["forecaster"] == "transformer" {
            "transformer".to_owned()
        } else {
            e["served"]["model"]["kind"].as_str().unwrap().to_owned()
        };
        assert_eq!(&served, best, "{name} is served by the lowest validation MAE: {e}");
        assert!(e["backtest"]["models"][&served]["horizon"]["mae"].as_f64().unwrap() > 0.0, "{e}");
    }
    let young = &services["shop/new"];
    assert_eq!(young["cold"], true, "{young}");
    assert_eq!(young["served"]["forecaster"], "transformer");
    assert!(!models.join("tools").exists() && !listed.contains("tools"), "west's service is not east's");

    // No match in that cluster: an error naming the selector, nothing trained.
    let mut none = vec!["--train-config", config, "train"];
    none.extend(data);
    none.extend(["--services", "tools/*", "--models", root]);
    let none = trainer(&server, &none).await;
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(!none.status.success() && err.contains("\"tools/*\""), "{err}");
}

/// `--from`/`--to`: the fit reads only those steps (a service whose rows all fall before
/// them is not part of the fleet), the manifest records the resolved range, and the
/// shards read the same steps without being told; a reversed range or a second range for
/// the shards is refused, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_range_is_what_the_fleet_and_its_shards_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("s3")).unwrap();
    let server = S3Server::start(&dir.path().join("s3")).await.unwrap();
    server.create_bucket("data").unwrap();
    let mut all = rows();
    let first = all.iter().map(|r| r.timestamp).min().unwrap();
    let old: Vec<FeatureRow> = all
        .iter()
        .filter(|r| r.service.name() == "order" && r.timestamp < first + Duration::hours(6))
        .map(|r| FeatureRow { service: ServiceId::new("shop", "old").unwrap(), ..r.clone() })
        .collect();
    all.extend(old);
    write_hive(&S3Store::new(server.client(), "data", ""), &all).await;
    let config = prescale_models::train::write_small_config(dir.path()).unwrap();
    let models = dir.path().join("models");
    let (config, root) = (config.to_str().unwrap(), models.to_str().unwrap());
    let from = "2024-03-04T12:00:00Z";
    let train = |range: [&'static str; 4]| {
        let mut args = vec!["--train-config", config, "--max-seconds", "5", "train", "--data", "s3://data/metrics"];
        args.extend(range);
        args.extend(["--services", "shop/*", "--shards", "1", "--no-evaluate", "--models", root]);
        args
    };
    let out = ok(&trainer(&server, &train(["--from", from, "--to", "2024-03-06T23:59:00Z"])).await);
    let version = out.lines().find_map(|l| l.strip_prefix("stored fleet model ")).unwrap().split(' ').next().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{root}/{version}/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["fleet"]["services"], serde_json::json!(["shop/cart", "shop/order"]), "{manifest}");
    let recorded = &manifest["fleet"]["range"];
    assert_eq!(recorded["from"], from, "{recorded}");
    assert_eq!(recorded["to"], "2024-03-06T23:59:00Z", "{recorded}");
    assert_eq!(manifest["training"]["from"], from, "the fit's first step is the range's");

    // The shard reads the recorded steps by itself; told a range, it refuses.
    let evaluate =
        ["evaluate", "--models", root, "--version", version, "--shard", "0/1", "--data", "s3://data/metrics"];
    let mut told = evaluate.to_vec();
    told.extend(["--from", "2d"]);
    let refused = trainer(&server, &told).await;
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("drop --from/--to") && err.contains(from), "{err}");
    let evaluated = ok(&trainer(&server, &evaluate).await);
    assert!(evaluated.contains("2 services evaluated"), "{evaluated}");
    ok(&trainer(&server, &["publish", "--models", root, version]).await);
    let services: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{root}/{version}/services.json")).unwrap()).unwrap();
    assert_eq!(services.as_object().unwrap().len(), 2);

    // A reversed range and an unreadable bound: refused, naming them, nothing stored.
    let versions = std::fs::read_dir(root).unwrap().count();
    let reversed = trainer(&server, &train(["--from", "2024-03-06T00:00:00Z", "--to", "2024-03-05T00:00:00Z"])).await;
    let err = String::from_utf8_lossy(&reversed.stderr);
    assert!(
        !reversed.status.success()
            && err.contains("--from 2024-03-06T00:00:00Z is not before --to 2024-03-05T00:00:00Z"),
        "{err}"
    );
    let garbled = trainer(&server, &train(["--from", "soon", "--to", "2024-03-05T00:00:00Z"])).await;
    let err = String::from_utf8_lossy(&garbled.stderr);
    assert!(!garbled.status.success() && err.contains("\"soon\"") && err.contains("RFC 3339"), "{err}");
    assert_eq!(std::fs::read_dir(root).unwrap().count(), versions, "nothing stored");
}
