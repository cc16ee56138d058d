//! The Prometheus files of `deploy/prometheus`, with Debian's `promtool`: the scrape config
//! (its rule files pointed at this folder) and the rules are valid, the rules' own unit
//! tests pass, and the ConfigMaps of the deployment carry these same files.

use std::process::Command;

use prescale_checks::kustomize::build;
use prescale_checks::repo;
use prescale_testkit::prometheus::promtool_bin;

fn promtool(args: &[&str]) -> String {
    let out = Command::new(promtool_bin()).args(args).output().unwrap_or_else(|e| {
        panic!("promtool not found ({e}): install Debian's prometheus package (make setup does) or set PROMTOOL")
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn config_and_rules_pass_promtool() {
    let dir = repo().join("deploy/prometheus");
    let tmp = tempfile::tempdir().unwrap();
    // The cluster mounts the rules at /etc/prometheus/rules; check the file as shipped,
    // with only that path moved to the repository's copy.
    let config = std::fs::read_to_string(dir.join("prometheus.yml")).unwrap();
    assert!(config.contains("/etc/prometheus/rules/*.yml"));
    let local = config.replace("/etc/prometheus/rules", &dir.join("rules").display().to_string());
    std::fs::write(tmp.path().join("prometheus.yml"), local).unwrap();
    let out = promtool(&["check", "config", tmp.path().join("prometheus.yml").to_str().unwrap()]);
    assert!(out.contains("SUCCESS: 1 rule files found"), "{out}");
    let out = promtool(&["check", "rules", dir.join("rules/prescale.yml").to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");
    let out =
        Command::new(promtool_bin()).current_dir(&dir).args(["test", "rules", "rules.test.yml"]).output().unwrap();
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_deployment_mounts_these_files() {
    let objects = build(&repo().join("deploy/overlays/prod")).unwrap();
    let data = |name: &str, key: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name)
            .and_then(|o| o["data"][key].as_str())
            .unwrap_or_else(|| panic!("no ConfigMap {name} with {key}"))
            .to_owned()
    };
    let dir = repo().join("deploy/prometheus");
    assert_eq!(
        data("prometheus-config", "prometheus.yml"),
        std::fs::read_to_string(dir.join("prometheus.yml")).unwrap()
    );
    assert_eq!(
        data("prometheus-rules", "prescale.yml"),
        std::fs::read_to_string(dir.join("rules/prescale.yml")).unwrap()
    );
}
