//! Bad settings are refused at start, with exit status 64 and a message naming the
//! culprit, before anything is created.

use std::process::Command;

fn run(dir: &std::path::Path, body: &str, command: &str) -> (i32, String) {
    let config = dir.join("c.toml");
    std::fs::write(&config, format!("spool_dir = {:?}\n{body}", dir.join("spool").display().to_string())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_prescale-collector"))
        .arg("--config")
        .arg(&config)
        .arg(command)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

const GOOD: &str = "[store]\nlocation = \"s3://bucket/prefix\"\n[services]\nlist = [\"shop/order\"]\n";

#[test]
fn bad_settings_are_refused_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (format!("{GOOD}[catalog.features]\nrequests = \"up\"\n"), "\"requests\""),
        (
            format!(
                "{GOOD}[catalog.features]\nin_flight = \"sum by (namespace, service) (http_requests_in_flight{{namespace=~\\\"{{namespaces}}\\\"}}\"\n"
            ),
            "in_flight",
        ),
        (
            format!(
                "{GOOD}[catalog.features]\nin_flight = 'sum(http_requests_in_flight{{service=\"{{service}}\"}})'\n"
            ),
            "sum by (namespace, service)",
        ),
        (
            format!("{GOOD}[catalog.features]\nin_flight = 'http_requests_in_flight'\n"),
            "aggregate by (namespace, service)",
        ),
        (GOOD.replace("s3://bucket/prefix", "s3://"), "location"),
        (GOOD.replace("s3://bucket/prefix", "ftp://host/x"), "location"),
        (format!("{GOOD}[services.discover]\nquery = \"group by (service) (up\"\n"), "services.discover.query"),
        (format!("{GOOD}[prometheus]\nurl = \"http://p:9090\"\ntimeout = \"soon\"\n"), "timeout"),
        (format!("stepp = \"30s\"\n{GOOD}"), "stepp"),
    ];
    for (body, needle) in cases {
        for command in ["run", "check"] {
            let (code, stderr) = run(dir.path(), &body, command);
            assert_eq!(code, 64, "{command} with {body:?} gave {code}: {stderr}");
            assert!(stderr.contains(needle), "{command}: expected {needle:?} in: {stderr}");
        }
    }
    assert!(!dir.path().join("spool").exists(), "a refused start must not create the spool");

    let (code, stderr) = run(dir.path(), GOOD, "check");
    assert_eq!(code, 0, "{stderr}");
}
