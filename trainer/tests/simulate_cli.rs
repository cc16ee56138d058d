//! `prescale-scaler simulate` on a real trace writes the spec's `decisions.csv`.

use std::collections::BTreeMap;
use std::process::Command;

fn scaler() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prescale-scaler"))
}

#[test]
fn simulate_writes_decisions_for_every_policy_and_step() {
    let trace = prescale_testkit::traces::require("azure_functions_1day_1min.csv");
    let dir = tempfile::tempdir().unwrap();
    let config = prescale_testkit::small_train_config(dir.path());
    let out = dir.path().join("out");
    let run = scaler()
        .args(["simulate", "--train-config", config.to_str().unwrap(), "--trace"])
        .arg(&trace)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("| predictive |") && stdout.contains("| oracle |"), "{stdout}");
    assert!(stdout.contains("burst term"), "the tuning says whether it chose a burst term: {stdout}");

    let csv = std::fs::read_to_string(out.join("decisions.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("timestamp,policy,desired_replicas"));
    let mut per_policy = BTreeMap::<String, Vec<u32>>::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 3, "{line}");
        chrono::DateTime::parse_from_rfc3339(f[0]).unwrap();
        let n: u32 = f[2].parse().unwrap();
        assert!((1..=50).contains(&n), "{line}");
        per_policy.entry(f[1].to_owned()).or_default().push(n);
    }
    assert_eq!(per_policy.keys().map(String::as_str).collect::<Vec<_>>(), ["hpa", "oracle", "predictive"]);
    let steps = 1440 - 1440 * 4 / 5;
    assert!(per_policy.values().all(|v| v.len() == steps), "one row per test step");

    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let policies = summary["policies"].as_array().unwrap();
    let oracle = policies.iter().find(|p| p["policy"] == "oracle").unwrap();
    assert_eq!(oracle["under_steps"], 0, "the oracle is never short");
    assert!((oracle["relative_to_oracle"].as_f64().unwrap() - 1.0).abs() < 1e-12);
    assert!(std::fs::read_to_string(out.join("plot.svg")).unwrap().contains("predictive"));
}

#[test]
fn bad_capacity_is_refused() {
    let trace = prescale_testkit::traces::require("azure_functions_1day_1min.csv");
    let dir = tempfile::tempdir().unwrap();
    let run = scaler()
        .args(["simulate", "--capacity", "0", "--trace"])
        .arg(&trace)
        .arg("--out")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("capacity 0"));
    assert!(!dir.path().join("o").exists());
}

#[test]
fn run_refuses_a_bad_config_with_the_config_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scaler.toml");
    std::fs::write(&config, "predictor_url = \"http://127.0.0.1:1\"\nshadoww = false\n").unwrap();
    let run = scaler().args(["run", "--config"]).arg(&config).output().unwrap();
    assert_eq!(run.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&run.stderr).contains("shadoww"));
}

#[test]
fn estimate_capacity_reads_collector_parquet() {
    use prescale_core::schema::{Feature, FeatureRow};
    let dir = tempfile::tempdir().unwrap();
    let start = chrono::DateTime::parse_from_rfc3339("2024-03-04T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let rows: Vec<FeatureRow> = (0..100)
        .map(|i| {
            let mut r = FeatureRow::empty(
                start + chrono::Duration::seconds(30 * i),
                prescale_core::ServiceId::new("shop", "order").unwrap(),
            );
            let busy = i >= 80;
            r.set(Feature::RequestsPerSecond, Some(if busy { 90.0 } else { 20.0 + i as f64 / 4.0 }));
            r.set(Feature::ReplicasReady, Some(2.0));
            r.set(Feature::LatencyP95Seconds, Some(if busy { 1.5 } else { 0.1 }));
            r
        })
        .collect();
    let folder = dir.path().join("metrics/date=2024-03-04/hour=00");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("c-1.parquet"), prescale_core::table::to_parquet(&rows).unwrap()).unwrap();
    let run = scaler()
        .args(["estimate-capacity", "--service", "order", "--quantile", "1", "--data"])
        .arg(dir.path().join("metrics"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{out}{}", String::from_utf8_lossy(&run.stderr));
    // The busiest healthy step: 20 + 79/4 = 39.75 rps on 2 replicas.
    assert!(out.contains("19.875 requests/s per replica") && out.contains("20 steps over it"), "{out}");
}
