//! Live collection end to end: the storefront (in this process), a real Prometheus
//! scraping it every second, the collector binary with 1 s steps, and a real S3 protocol
//! server. Under k6 load every step gets exactly one row per service; through a
//! Prometheus restart, an S3 outage and a SIGKILL in the middle of a flush, no step is
//! lost and no row is written twice.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Running, STOREFRONT_COLLECTOR, assert_one_row_per_service_per_step, collector, get, ok, output, sample,
    start_storefront, stored_rows, storefront_scrape, write_config,
};
use prescale_core::Feature;
use prescale_testkit::prometheus::Prometheus;
use prescale_testkit::s3::S3Server;
use prescale_testkit::tools::k6;

struct Rig {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    services: Vec<(&'static str, u16)>,
    prometheus: Prometheus,
    s3: S3Server,
    config: std::path::PathBuf,
    metrics_url: String,
}

/// Storefront, Prometheus (scraping it every second, and waited for until it has seen
/// every service) and S3, with a collector config for them.
async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    std::fs::create_dir_all(root.join("storefront")).unwrap();
    let services = start_storefront(&root.join("storefront")).await;
    let prom_dir = root.join("prometheus");
    let prometheus = tokio::task::block_in_place(|| Prometheus::start(&prom_dir, "1s", &storefront_scrape(&services)));
    // Every target's first scrape before the collector's first step.
    tokio::task::block_in_place(|| prometheus.wait_for_targets("storefront", services.len()));
    std::fs::create_dir_all(root.join("s3")).unwrap();
    let s3 = S3Server::start(&root.join("s3")).await.unwrap();
    s3.create_bucket("data").unwrap();
    let (config, metrics_url) = write_config(&root, &prometheus.url(), STOREFRONT_COLLECTOR);
    Rig { _dir: dir, root, services, prometheus, s3, config, metrics_url }
}

impl Rig {
    fn start_collector(&self) -> Running {
        let mut cmd = collector(&self.s3, &self.config);
        cmd.arg("run");
        Running::spawn(cmd, &self.root.join("collector.log"))
    }

    async fn metrics(&self) -> String {
        get(&self.metrics_url).await.unwrap_or_default()
    }

    /// Waits until the collector's metric `series` reaches `at_least`.
    async fn wait_for(&self, series: &str, at_least: f64, running: &Running) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while sample(&self.metrics().await, series) < at_least {
            assert!(Instant::now() < deadline, "{series} never reached {at_least}; log:\n{}", running.log_text());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn names(&self) -> Vec<&'static str> {
        self.services.iter().map(|(n, _)| *n).collect()
    }
}

fn spool_files(dir: &Path, prefix: &str) -> usize {
    std::fs::read_dir(dir.join("spool"))
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(prefix)).count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_k6_load_every_step_has_one_row_per_service() {
    let rig = rig().await;
    let running = rig.start_collector();
    rig.wait_for("prescale_collector_steps_total{outcome=\"collected\"}", 1.0, &running).await;

    let gateway = format!("http://127.0.0.1:{}", rig.services.iter().find(|(n, _)| *n == "gateway").unwrap().1);
    let summary = rig.root.join("k6.json");
    let script_path = prescale_testkit::repo_root().join("loadtest/journeys.js");
    let script = script_path.to_str().expect("a UTF-8 path");
    let mut cmd = Command::new(k6());
    cmd.args(["run", "--quiet", "--no-color", "--summary-export"]).arg(&summary).args([
        "-e",
        &format!("BASE_URL={gateway}"),
        "-e",
        "VUS=3",
        "-e",
        "DURATION=60s",
        "-e",
        "USERS=3",
        script,
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    assert!(out.status.success(), "k6 failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let metrics = rig.metrics().await;
    running.terminate();

    let rows = stored_rows(&rig.s3).await;
    let steps = assert_one_row_per_service_per_step(&rows, &rig.names());
    assert!(steps >= 60, "only {steps} steps in a minute and more of collection");
    assert_eq!(sample(&metrics, "prescale_collector_query_errors_total"), 0.0, "{metrics}");
    // The load shows: the gateway served requests in most steps.
    let busy = rows
        .iter()
        .filter(|r| r.service.name() == "gateway")
        .filter(|r| r.get(Feature::RequestsPerSecond).is_some_and(|v| v > 1.0))
        .count();
    assert!(busy * 10 >= steps * 8, "the gateway had load in only {busy} of {steps} steps");
    assert!(rows.iter().any(|r| r.get(Feature::LatencyP95Seconds).is_some_and(|v| v > 0.0)));
    assert!(rows.iter().all(|r| r.get(Feature::ReplicasReady) == Some(1.0)), "one ready replica each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_and_s3_outages_and_a_crash_mid_flush_lose_and_repeat_nothing() {
    let mut rig = rig().await;
    let running = rig.start_collector();
    rig.wait_for("prescale_collector_rows_flushed_total", 1.0, &running).await;

    // Prometheus down for 5 s: those steps become gaps, filled from range queries once
    // it is back (its lookback still answers for them).
    let prometheus_stopped = chrono::Utc::now();
    tokio::task::block_in_place(|| rig.prometheus.stop());
    rig.wait_for("prescale_collector_steps_total{outcome=\"missed\"}", 3.0, &running).await;
    tokio::task::block_in_place(|| rig.prometheus.restart());
    rig.wait_for("prescale_collector_steps_total{outcome=\"filled\"}", 3.0, &running).await;
    let m = rig.metrics().await;
    assert_eq!(sample(&m, "prescale_collector_gap_steps"), 0.0, "{m}");

    // S3 down for two flush intervals: the rows wait in the spool.
    rig.s3.stop().await;
    rig.wait_for("prescale_collector_flush_errors_total", 2.0, &running).await;
    assert!(spool_files(&rig.root, "sealed-") >= 1, "rows wait in sealed spool files");
    rig.s3.restart().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while spool_files(&rig.root, "sealed-") > 0 {
        assert!(Instant::now() < deadline, "the spool never drained:\n{}", running.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A slow store, and SIGKILL while a flush is writing.
    rig.s3.set_put_delay(Duration::from_millis(1500));
    let seen = running.log_text().matches("flushing").count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while running.log_text().matches("flushing").count() == seen {
        assert!(Instant::now() < deadline, "no flush started; log:\n{}", running.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.kill();
    let killed = chrono::Utc::now();
    assert!(spool_files(&rig.root, "sealed-") >= 1, "the killed flush left its spool file");
    rig.s3.set_put_delay(Duration::ZERO);
    // Dead for a few steps, which the restarted collector must fill.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Restarted on the same spool: it redoes the flush under the same names and fills
    // the steps it missed while dead.
    let running = rig.start_collector();
    rig.wait_for("prescale_collector_steps_total{outcome=\"filled\"}", 1.0, &running).await;
    rig.wait_for("prescale_collector_rows_flushed_total", 1.0, &running).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    running.terminate();
    assert_eq!(spool_files(&rig.root, "sealed-"), 0, "everything flushed at shutdown");

    let rows = stored_rows(&rig.s3).await;
    assert_one_row_per_service_per_step(&rows, &rig.names());
    // The contiguous range covers the Prometheus outage and the time the collector was dead.
    let first = rows.iter().map(|r| r.timestamp).min().unwrap();
    let last = rows.iter().map(|r| r.timestamp).max().unwrap();
    assert!(first < prometheus_stopped, "rows start at {first}, after Prometheus stopped at {prometheus_stopped}");
    assert!(last > killed + chrono::Duration::seconds(3), "rows end at {last}, before the restart after {killed}");
}

/// A backfill run as a second process beside a live collector on the same spool and
/// store, while the live one fills the steps it missed in a crash and flushes: between
/// them every step is stored exactly once, the backfill writing only the steps from
/// before the live collector started and leaving it the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_beside_a_live_collector_stores_every_step_once() {
    let rig = rig().await;
    // Prometheus has the storefront's history from here; the collector starts later.
    let history_from = chrono::Utc::now() + chrono::Duration::seconds(1);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let running = rig.start_collector();
    rig.wait_for("prescale_collector_rows_flushed_total", 1.0, &running).await;
    // A crash: the steps while it is dead become gaps the restarted collector fills.
    running.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let running = rig.start_collector();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let to = chrono::Utc::now();
    let mut cmd = collector(&rig.s3, &rig.config);
    cmd.args(["backfill", "--from", &history_from.to_rfc3339(), "--to", &to.to_rfc3339()]);
    let report = ok(&output(cmd).await);
    let left: u64 = report
        .trim()
        .split(", ")
        .find_map(|part| part.strip_suffix(" left to the live collector")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count of rows left to the live collector: {report}"));
    assert!(left > 0, "the backfill left the live collector nothing: {report}");

    rig.wait_for("prescale_collector_steps_total{outcome=\"filled\"}", 1.0, &running).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    running.terminate();
    let rows = stored_rows(&rig.s3).await;
    assert_one_row_per_service_per_step(&rows, &rig.names());
    let first = rows.iter().map(|r| r.timestamp).min().unwrap();
    assert!(first <= history_from + chrono::Duration::seconds(1), "rows start at {first}, history at {history_from}");
}
