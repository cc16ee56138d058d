//! `prescale-trainer backtest` on a real trace writes exactly the evaluation spec's files.

use std::process::Command;

use chrono::DateTime;

fn trainer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prescale-trainer"))
}

#[test]
fn backtest_writes_the_evaluation_files() {
    let trace = prescale_testkit::traces::require("azure_functions_1day_1min.csv");
    let dir = tempfile::tempdir().unwrap();
    let config = prescale_models::train::write_small_config(dir.path()).unwrap();
    let out = dir.path().join("out");
    let run = trainer()
        .args(["--train-config", config.to_str().unwrap(), "backtest", "--trace"])
        .arg(&trace)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let csv = std::fs::read_to_string(out.join("forecasts.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("model,origin,target,p50,p90"));
    let mut per_model = std::collections::BTreeMap::<String, usize>::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 5, "{line}");
        let origin = DateTime::parse_from_rfc3339(f[1]).unwrap();
        let target = DateTime::parse_from_rfc3339(f[2]).unwrap();
        assert_eq!((target - origin).num_seconds(), 600, "{line}");
        let (p50, p90): (f64, f64) = (f[3].parse().unwrap(), f[4].parse().unwrap());
        assert!(p50.is_finite() && p90 >= p50 - 1e-9, "{line}");
        *per_model.entry(f[0].to_owned()).or_default() += 1;
    }
    let names: Vec<&str> = per_model.keys().map(String::as_str).collect();
    assert_eq!(names, ["holt_winters", "persistence", "ridge", "seasonal_naive", "transformer"]);
    let counts: std::collections::BTreeSet<usize> = per_model.values().copied().collect();
    assert_eq!(counts.len(), 1, "every model forecasts the same origins: {per_model:?}");

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let models = report["models"].as_array().unwrap();
    assert_eq!(models.len(), 5);
    for m in models {
        for key in ["mae", "rmse", "mase", "pinball_p90", "coverage_p90"] {
            assert!(m["horizon"].get(key).is_some() && m["all_horizons"].get(key).is_some(), "{m}");
        }
    }
    assert_eq!(report["horizon_steps"], 10);
    assert!(report["total_seconds"].as_f64().unwrap() > 0.0);
    let svg = std::fs::read_to_string(out.join("plot.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("p90"));
}

#[test]
fn bad_trace_is_refused_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("bad.csv");
    std::fs::write(&trace, "timestamp,requests\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,NaN\n").unwrap();
    let run =
        trainer().args(["backtest", "--trace"]).arg(&trace).arg("--out").arg(dir.path().join("o")).output().unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("bad.csv line 3"), "{err}");
    assert!(!dir.path().join("o").exists(), "nothing is written for bad input");
}
