//! `prescale-trainer simulate` on a real trace writes the spec's `decisions.csv`.

use std::collections::BTreeMap;
use std::process::Command;

fn trainer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prescale-trainer"))
}

#[test]
fn simulate_writes_decisions_for_every_policy_and_step() {
    let trace = prescale_testkit::traces::require("azure_functions_1day_1min.csv");
    let dir = tempfile::tempdir().unwrap();
    let config = prescale_models::train::write_small_config(dir.path()).unwrap();
    let out = dir.path().join("out");
    let run = trainer()
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

    // The frontiers: 27 HPA targets at 3 windows, every predictive setting, the oracle.
    let frontier = std::fs::read_to_string(out.join("frontier.csv")).unwrap();
    let mut lines = frontier.lines();
    assert_eq!(lines.next(), Some("policy,setting,under_provisioned_steps,replica_hours"));
    let mut count = BTreeMap::<String, usize>::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 4, "{line}");
        f[2].parse::<usize>().unwrap();
        assert!(f[3].parse::<f64>().unwrap() > 0.0, "{line}");
        *count.entry(f[0].to_owned()).or_default() += 1;
    }
    assert_eq!(count["hpa"], 81);
    assert_eq!(count["oracle"], 1);
    assert_eq!(count["predictive"], summary["tuning"]["candidates"].as_u64().unwrap() as usize);
    let h = &summary["headline"];
    let ratio = h["ratio_to_hpa_frontier"].as_f64().unwrap();
    let expect = h["replica_hours"].as_f64().unwrap() / h["hpa_frontier_replica_hours"].as_f64().unwrap();
    assert!(ratio.is_finite() && (ratio - expect).abs() < 1e-9, "{h}");
    assert!(stdout.contains("x the HPA frontier"), "{stdout}");
    // The objective defaults to the HPA's own share on validation.
    assert_eq!(summary["tuning"]["objective_is_hpas"], true);
    let mechanics: Vec<&str> =
        summary["mechanics"].as_array().unwrap().iter().map(|m| m["policy"].as_str().unwrap()).collect();
    assert_eq!(mechanics, ["hpa+tolerance", "predictive+keda_defaults", "predictive+shipped"]);
    let svg = std::fs::read_to_string(out.join("frontier.svg")).unwrap();
    assert!(svg.contains("frontier") && svg.contains("oracle"), "the frontier plot names its curves");
}

/// Runs `simulate` with a bad flag and checks it is refused, naming `expected`, before
/// anything is written.
fn refused(flag: &str, value: &str, expected: &str) {
    let trace = prescale_testkit::traces::require("azure_functions_1day_1min.csv");
    let dir = tempfile::tempdir().unwrap();
    let run = trainer()
        .args(["simulate", flag, value, "--trace"])
        .arg(&trace)
        .arg("--out")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains(expected), "{stderr}");
    assert!(!dir.path().join("o").exists());
}

#[test]
fn an_objective_that_is_not_a_share_is_refused_before_anything_runs() {
    refused("--objective", "1.5", "--objective 1.5");
}

#[test]
fn bad_capacity_is_refused() {
    refused("--capacity", "0", "capacity 0");
}
