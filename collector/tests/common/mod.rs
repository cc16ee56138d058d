//! Helpers shared by the collector's tests: the binary with S3 settings, and the rows a
//! store holds.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use prescale_core::FeatureRow;
use prescale_core::store::{ObjectStore, S3Store};
use prescale_core::table;
use prescale_testkit::s3::{ACCESS_KEY, S3Server, SECRET_KEY};

/// The collector binary, pointed at `server` for S3.
pub fn collector(server: &S3Server, config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prescale-collector"));
    cmd.arg("--config")
        .arg(config)
        .env("PRESCALE_S3_ENDPOINT", server.endpoint())
        .env("PRESCALE_S3_PATH_STYLE", "true")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env("RUST_LOG", "info,prescale_collector=debug");
    cmd
}

/// Runs a command to completion off the async runtime.
pub async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "stdout:\n{text}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    text
}

/// A collector process with its log in a file; killed (SIGKILL) on drop.
pub struct Running {
    pub child: Child,
    pub log: std::path::PathBuf,
}

impl Running {
    pub fn spawn(mut cmd: Command, log: &Path) -> Self {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = cmd.stdout(Stdio::null()).stderr(file).spawn().unwrap();
        Self { child, log: log.to_owned() }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait: the graceful path, with its final flush.
    pub fn terminate(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "collector exited with {status}; log:\n{}", self.log_text());
    }

    /// SIGKILL: a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every row below `metrics/` in bucket `data`.
pub async fn stored_rows(server: &S3Server) -> Vec<FeatureRow> {
    let store = S3Store::new(server.client(), "data", "");
    let mut rows = Vec::new();
    for o in store.list("metrics/").await.unwrap() {
        rows.extend(table::from_parquet(&store.get(&o.key).await.unwrap()).unwrap());
    }
    rows
}

/// A config file for a collector against `prometheus`, storing in `s3://data`; returns
/// it and the URL of the collector's `/metrics`.
pub fn write_config(dir: &Path, prometheus: &str, body: &str) -> (std::path::PathBuf, String) {
    let path = dir.join("collector.toml");
    let port = prescale_testkit::tools::free_port();
    let text = format!(
        "spool_dir = {spool:?}\nlisten = \"127.0.0.1:{port}\"\n{body}\n[prometheus]\nurl = {prometheus:?}\ntimeout = \"2s\"\nretries = 1\nbackoff = \"100ms\"\n[store]\nlocation = \"s3://data\"\n",
        spool = dir.join("spool").display().to_string(),
    );
    std::fs::write(&path, text).unwrap();
    (path, format!("http://127.0.0.1:{port}/metrics"))
}

/// The storefront's services, each on its own free port, in this process.
pub async fn start_storefront(data_dir: &Path) -> Vec<(&'static str, u16)> {
    use storefront::{Service, Settings, spawn_all};
    let ports: std::collections::BTreeMap<Service, u16> =
        Service::ALL.iter().map(|s| (*s, prescale_testkit::tools::free_port())).collect();
    spawn_all(&Settings::dev(data_dir, &ports, 32).unwrap(), "127.0.0.1", &ports, std::future::pending())
        .await
        .unwrap();
    ports.into_iter().map(|(s, p)| (s.name(), p)).collect()
}

/// A Prometheus scrape job for the storefront: `namespace` and `service` target labels,
/// as the storefront catalog expects (`honor_labels` keeps the metrics' own `service`).
pub fn storefront_scrape(ports: &[(&str, u16)]) -> String {
    let mut out = String::from("  - job_name: storefront\n    honor_labels: true\n    static_configs:\n");
    for (name, port) in ports {
        out.push_str(&format!(
            "      - targets: [\"127.0.0.1:{port}\"]\n        labels: {{namespace: storefront, service: {name}}}\n"
        ));
    }
    out
}

/// Collector settings for 1 s steps over the storefront.
pub const STOREFRONT_COLLECTOR: &str = r#"step = "1s"
query_delay = "1s"
flush_interval = "3s"
[catalog]
base = "storefront"
window = "5s"
[services.discover]
query = 'group by (namespace, service) (up{job="storefront"})'"#;

/// Steps in order, each with its rows' service names; panics unless every step from the
/// first to the last has exactly one row per service of `services`.
pub fn assert_one_row_per_service_per_step(rows: &[FeatureRow], services: &[&str]) -> usize {
    use std::collections::BTreeMap;
    let mut by_step: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for r in rows {
        assert_eq!(r.service.namespace(), "storefront");
        by_step.entry(r.timestamp.timestamp_millis()).or_default().push(r.service.name().to_owned());
    }
    let mut want: Vec<String> = services.iter().map(|s| s.to_string()).collect();
    want.sort();
    let first = *by_step.keys().next().expect("some rows");
    let last = *by_step.keys().last().unwrap();
    let mut problems = Vec::new();
    for t in (first..=last).step_by(1000) {
        let mut got = by_step.get(&t).cloned().unwrap_or_default();
        got.sort();
        if got != want {
            problems.push(format!("step {t}: {got:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} steps are wrong:\n{}",
        problems.len(),
        (last - first) / 1000 + 1,
        problems.join("\n")
    );
    ((last - first) / 1000 + 1) as usize
}

/// A GET returning the body, or `None`.
pub async fn get(url: &str) -> Option<String> {
    let r = reqwest::get(url).await.ok()?;
    if r.status().is_success() { r.text().await.ok() } else { None }
}

/// The value of one sample line of a metrics text (`name{labels}` exactly), or 0.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}
