//! The whole loop under faults, as `make demo`'s parts run it but with 1 s steps: the
//! storefront (in this process), a real Prometheus, a real S3 protocol server, and the
//! collector and predictor binaries. Each binary is killed with SIGKILL at random moments
//! five times and restarted as it is (no repair); Prometheus is stopped for a minute and
//! the store for two. Afterwards every step of the run is in the store exactly once (a
//! step Prometheus could not give is a row of missing values), and the predictor never
//! served a decision older than its staleness limit as fresh. Runs beside the demo's test
//! (same test binary), which mostly waits; takes about five minutes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prescale_core::FeatureRow;
use prescale_core::store::{ObjectStore, S3Store};
use prescale_policy::ServicesResponse;
use prescale_testkit::prometheus::Prometheus;
use prescale_testkit::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use prescale_testkit::tools::free_port;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The predictor's staleness limit in this test.
const STALENESS: Duration = Duration::from_secs(5);
/// How late a fresh answer may reach this test after the predictor decided it is fresh:
/// the poll's own time on a busy 2-core machine.
const TRANSIT: Duration = Duration::from_secs(2);

/// A binary run with its log appended to a file, restartable.
struct Proc {
    name: &'static str,
    cmd: Box<dyn Fn() -> Command + Send>,
    log: PathBuf,
    health: String,
    child: Option<Child>,
    starts: usize,
}

impl Proc {
    fn start(&mut self) {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = (self.cmd)().stdout(Stdio::null()).stderr(file).spawn().unwrap();
        self.child = Some(child);
        self.starts += 1;
    }

    /// Waits until it answers `/healthz` (it started by itself, whatever a kill left).
    async fn wait_alive(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("{} exited with {status} on start {}; log:\n{}", self.name, self.starts, self.log_tail());
            }
            if reqwest::get(&self.health).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} never answered on start {}:\n{}",
                self.name,
                self.starts,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let status = child.wait().unwrap();
            assert!(status.success(), "{} exited with {status} on SIGTERM:\n{}", self.name, self.log_tail());
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the monitor saw of the predictor's answers.
#[derive(Debug, Default)]
struct Served {
    fresh: u64,
    marked_stale: u64,
    refused: u64,
    unreachable: u64,
    violations: Vec<String>,
}

/// Polls the predictor's list and one service (what KEDA's metrics-api trigger reads)
/// until `stop`, recording any decision served as fresh but older than the limit.
async fn monitor(base: String, seen: Arc<Mutex<Served>>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let limit = chrono::Duration::from_std(STALENESS + TRANSIT).unwrap();
    while !*stop.borrow() {
        // Bodies read first: the lock is never held across an await.
        let list = match http.get(format!("{base}/api/v1/services")).send().await {
            Ok(r) if r.status().is_success() => Some(r.json::<ServicesResponse>().await.map_err(|e| e.to_string())),
            Ok(r) => Some(Err(format!("answered {}", r.status()))),
            Err(_) => None,
        };
        let one = match http.get(format!("{base}/api/v1/services/storefront/order")).send().await {
            Ok(r) if r.status().is_success() => {
                Some(r.json::<prescale_policy::Served>().await.map(Some).map_err(|e| e.to_string()))
            }
            Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => Some(Ok(None)),
            Ok(r) => Some(Err(format!("answered {}", r.status()))),
            Err(_) => None,
        };
        let now = Utc::now();
        {
            let mut seen = seen.lock().unwrap();
            match list {
                Some(Ok(body)) => {
                    for s in body.services {
                        let age = now - s.decision.time;
                        if s.stale {
                            seen.marked_stale += 1;
                        } else if age > limit {
                            seen.violations.push(format!("list served {} as fresh at {age}", s.decision.service));
                        } else {
                            seen.fresh += 1;
                        }
                    }
                }
                Some(Err(e)) => seen.violations.push(format!("list: {e}")),
                None => seen.unreachable += 1,
            }
            match one {
                Some(Ok(Some(s))) if now - s.decision.time > limit => {
                    seen.violations.push(format!("storefront/order served at {} old", now - s.decision.time))
                }
                Some(Ok(Some(_))) => seen.fresh += 1,
                Some(Ok(None)) => seen.refused += 1,
                Some(Err(e)) => seen.violations.push(format!("storefront/order: {e}")),
                None => seen.unreachable += 1,
            }
        }
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
    }
}

/// Kills each of `procs` `kills` times at random moments within `span`, each staying dead
/// 1 to 4 s and then restarted as it is.
async fn kill_randomly(rng: &mut SmallRng, procs: &mut [&mut Proc], kills: usize, span: Duration) {
    let mut events: Vec<(Duration, usize)> = (0..procs.len())
        .flat_map(|p| (0..kills).map(move |_| p))
        .map(|p| (Duration::from_millis(rng.random_range(0..span.as_millis() as u64)), p))
        .collect();
    events.sort();
    let started = Instant::now();
    for (at, p) in events {
        if let Some(wait) = at.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        procs[p].kill();
        tokio::time::sleep(Duration::from_millis(rng.random_range(1000..4000))).await;
        procs[p].start();
        procs[p].wait_alive().await;
    }
    let rest = span.saturating_sub(started.elapsed());
    tokio::time::sleep(rest).await;
}

async fn stored_rows(server: &S3Server) -> Vec<FeatureRow> {
    let store = S3Store::new(server.client(), "data", "");
    let mut rows = Vec::new();
    for o in store.list("metrics/").await.unwrap() {
        rows.extend(prescale_core::table::from_parquet(&store.get(&o.key).await.unwrap()).unwrap());
    }
    rows
}

fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn sealed_segments(spool: &Path) -> usize {
    std::fs::read_dir(spool)
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("sealed-")).count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_survives_kills_and_outages_losing_and_repeating_no_step() {
    let seed: u64 =
        std::env::var("FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| Utc::now().timestamp() as u64);
    eprintln!("faults: seed {seed} (FAULT_SEED={seed} repeats this run's moments)");
    let mut rng = SmallRng::seed_from_u64(seed);
    let exe = std::env::current_exe().unwrap();
    let bin_dir: PathBuf = exe.parent().and_then(|p| p.parent()).unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();

    // The storefront, every service on its own port, scraped every second.
    let ports: BTreeMap<storefront::Service, u16> =
        storefront::Service::ALL.iter().map(|s| (*s, free_port())).collect();
    std::fs::create_dir_all(root.join("storefront")).unwrap();
    storefront::spawn_all(
        &storefront::Settings::dev(root.join("storefront"), &ports, 32).unwrap(),
        "127.0.0.1",
        &ports,
        std::future::pending(),
    )
    .await
    .unwrap();
    let mut scrape = String::from("  - job_name: storefront\n    honor_labels: true\n    static_configs:\n");
    for (service, port) in &ports {
        scrape.push_str(&format!(
            "      - targets: [\"127.0.0.1:{port}\"]\n        labels: {{namespace: storefront, service: {}}}\n",
            service.name()
        ));
    }
    let mut prometheus = tokio::task::block_in_place(|| Prometheus::start(&root.join("prometheus"), "1s", &scrape));
    // Every service scraped before the collector's first step: a step with only the
    // services seen so far would be a correct row set, but not the one this test expects.
    tokio::task::block_in_place(|| prometheus.wait_for_targets("storefront", ports.len()));
    std::fs::create_dir_all(root.join("s3")).unwrap();
    let mut s3 = S3Server::start(&root.join("s3")).await.unwrap();
    s3.create_bucket("data").unwrap();

    let (collector_port, http, grpc) = (free_port(), free_port(), free_port());
    let spool = root.join("spool");
    std::fs::write(
        root.join("collector.toml"),
        format!(
            r#"step = "1s"
query_delay = "1s"
flush_interval = "3s"
spool_dir = {spool:?}
listen = "127.0.0.1:{collector_port}"
[catalog]
base = "storefront"
window = "5s"
[services.discover]
query = 'group by (namespace, service) (up{{job="storefront"}})'
[prometheus]
url = "{prom}"
timeout = "2s"
retries = 1
backoff = "100ms"
[store]
location = "s3://data"
"#,
            spool = spool.display().to_string(),
            prom = prometheus.url(),
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("predictor.toml"),
        format!(
            r#"step = "1s"
query_delay = "500ms"
history = "30s"
staleness = "{staleness}s"
listen = "127.0.0.1:{http}"
grpc_listen = "127.0.0.1:{grpc}"
[prometheus]
url = "{prom}"
timeout = "2s"
[catalog]
base = "storefront"
window = "5s"
[models]
location = {models:?}
[policy]
capacity = 10.0
min_replicas = 1
startup = "2s"
lookahead = "10s"
[[services]]
service = "storefront/order"
[[services]]
service = "storefront/gateway"
"#,
            staleness = STALENESS.as_secs(),
            prom = prometheus.url(),
            models = root.join("models").display().to_string(),
        ),
    )
    .unwrap();
    let endpoint = s3.endpoint();
    let (collector_bin, collector_toml) = (bin_dir.join("prescale-collector"), root.join("collector.toml"));
    assert!(collector_bin.is_file(), "{} is not built: `make build` first", collector_bin.display());
    let mut collector = Proc {
        name: "collector",
        cmd: Box::new(move || {
            let mut cmd = Command::new(&collector_bin);
            cmd.arg("--config")
                .arg(&collector_toml)
                .arg("run")
                .env("PRESCALE_S3_ENDPOINT", &endpoint)
                .env("PRESCALE_S3_PATH_STYLE", "true")
                .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
                .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
                .env("AWS_REGION", "us-east-1")
                .env("RUST_LOG", "info");
            cmd
        }),
        log: root.join("collector.log"),
        health: format!("http://127.0.0.1:{collector_port}/healthz"),
        child: None,
        starts: 0,
    };
    let (predictor_bin, predictor_toml) = (bin_dir.join("prescale-predictor"), root.join("predictor.toml"));
    let mut predictor = Proc {
        name: "predictor",
        cmd: Box::new(move || {
            let mut cmd = Command::new(&predictor_bin);
            cmd.arg("--config").arg(&predictor_toml).arg("run").env("RUST_LOG", "info");
            cmd
        }),
        log: root.join("predictor.log"),
        health: format!("http://127.0.0.1:{http}/healthz"),
        child: None,
        starts: 0,
    };
    let run_started = Utc::now();
    collector.start();
    predictor.start();
    collector.wait_alive().await;
    predictor.wait_alive().await;

    let seen = Arc::new(Mutex::new(Served::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(monitor(format!("http://127.0.0.1:{http}"), seen.clone(), stop_rx));

    // Kills with everything else up, then during each outage: five of each in all.
    kill_randomly(&mut rng, &mut [&mut collector, &mut predictor], 2, Duration::from_secs(40)).await;
    tokio::task::block_in_place(|| prometheus.stop());
    kill_randomly(&mut rng, &mut [&mut collector, &mut predictor], 1, Duration::from_secs(60)).await;
    tokio::task::block_in_place(|| prometheus.restart());
    tokio::time::sleep(Duration::from_secs(15)).await;
    s3.stop().await;
    kill_randomly(&mut rng, &mut [&mut collector, &mut predictor], 2, Duration::from_secs(120)).await;
    s3.restart().await.unwrap();
    assert_eq!((collector.starts, predictor.starts), (6, 6), "five kills and restarts each");

    // Back to normal: every gap filled and the spool drained, without a hand on it.
    let metrics_url = format!("http://127.0.0.1:{collector_port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let m = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap_or_default();
        if sample(&m, "prescale_collector_gap_steps") == 0.0 && sealed_segments(&spool) == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gaps {} and {} sealed segments left after 120 s:\n{}",
            sample(&m, "prescale_collector_gap_steps"),
            sealed_segments(&spool),
            collector.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let run_ended = Utc::now();
    let _ = stop_tx.send(true);
    watcher.await.unwrap();
    predictor.terminate();
    collector.terminate();
    assert_eq!(sealed_segments(&spool), 0, "everything flushed at shutdown");
    assert!(
        !spool.join("quarantine").exists() || std::fs::read_dir(spool.join("quarantine")).unwrap().count() == 0,
        "a kill left a segment to quarantine: {:?}",
        std::fs::read_dir(spool.join("quarantine")).map(|d| d.count())
    );

    // Every step from the first to the last: one row per storefront service, once.
    let rows = stored_rows(&s3).await;
    let mut by_step: BTreeMap<DateTime<Utc>, Vec<String>> = BTreeMap::new();
    for r in &rows {
        by_step.entry(r.timestamp).or_default().push(r.service.to_string());
    }
    let want: Vec<String> = {
        let mut w: Vec<String> = ports.keys().map(|s| format!("storefront/{}", s.name())).collect();
        w.sort();
        w
    };
    let first = *by_step.keys().next().expect("rows were stored");
    let last = *by_step.keys().last().unwrap();
    let mut problems = Vec::new();
    let mut missing_values = 0;
    let mut t = first;
    while t <= last {
        let mut got = by_step.get(&t).cloned().unwrap_or_default();
        got.sort();
        if got != want {
            problems.push(format!("{t}: {got:?}"));
        }
        t += chrono::Duration::seconds(1);
    }
    for r in &rows {
        if r.values.iter().all(Option::is_none) {
            missing_values += 1;
        }
    }
    let steps = (last - first).num_seconds() + 1;
    assert!(problems.is_empty(), "{} of {steps} steps are wrong:\n{}", problems.len(), problems.join("\n"));
    assert!(first <= run_started + chrono::Duration::seconds(5), "rows start at {first}, the run at {run_started}");
    assert!(last >= run_ended - chrono::Duration::seconds(10), "rows end at {last}, the run at {run_ended}");

    let seen = seen.lock().unwrap();
    eprintln!(
        "faults: {steps} steps x {} services stored once ({missing_values} rows of missing values); predictor answers: \
         {} fresh, {} marked stale, {} refused (503), {} while down",
        want.len(),
        seen.fresh,
        seen.marked_stale,
        seen.refused,
        seen.unreachable
    );
    assert!(seen.violations.is_empty(), "decisions served past staleness:\n{}", seen.violations.join("\n"));
    // The outage was seen: the one service's decision refused (stale, or none yet after a
    // restart during the outage; the list marks stale ones only while the process that
    // made them lives, so it may have none to mark).
    assert!(seen.refused > 0, "the Prometheus outage never made the predictor refuse a decision: {seen:?}");
    drop(prometheus);
}
