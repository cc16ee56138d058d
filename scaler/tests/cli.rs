//! `prescale-scaler`'s command line: a bad `run` config, and `estimate-capacity` over the
//! collector's Parquet.

use std::process::Command;

fn scaler() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prescale-scaler"))
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
