//! `prescale-demo`: the whole Prescale loop on one machine, as `make demo` runs it.
//!
//! It starts the storefront (`storefront run`, a process per service), a real Prometheus scraping it (with the
//! shipped rules from `deploy/prometheus/rules`), k6 replaying the built-in synthetic day
//! at a compressed speed ([`traffic`]), and the collector writing Parquet to a local
//! folder; writes each service's synthetic history (the same shape) into the collector's
//! store with `prescale-trainer import`, trains one fleet model for the seven services
//! from it and publishes it (each service served by what did best on its own validation
//! part); then starts the predictor, whose live page
//! (`GET /`) and API the demo's terminal view ([`view`]) read. Each part is the real
//! binary, configured by the files of [`configs`] and supervised by [`procs`].

pub mod configs;
pub mod procs;
pub mod traffic;
pub mod view;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::procs::Procs;
use prescale_policy::ServicesResponse;

use crate::view::Coverage;

/// The ports the demo's parts listen on (all on 127.0.0.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// The storefront's gateway.
    pub gateway: u16,
    /// The first of six consecutive ports for the storefront's other services.
    pub backends: u16,
    /// Prometheus.
    pub prometheus: u16,
    /// The collector's `/metrics`.
    pub collector: u16,
    /// The predictor's HTTP API, `/metrics` and live page.
    pub predictor_http: u16,
    /// The predictor's gRPC external scaler.
    pub predictor_grpc: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            gateway: 8080,
            backends: 4000,
            prometheus: 9090,
            collector: 9101,
            predictor_http: 9100,
            predictor_grpc: 9500,
        }
    }
}

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Working folder (wiped at start): logs, configs, data, store, models.
    pub dir: PathBuf,
    /// The project's root (for `loadtest/` and `deploy/`).
    pub repo: PathBuf,
    /// Where the Prescale binaries are (`storefront`, `prescale-*`).
    pub bin_dir: PathBuf,
    /// The step, seconds: one collected row and one decision per service per step.
    pub step_secs: u64,
    /// Requests/s at the busiest minute of the synthetic day.
    pub peak: f64,
    /// Compressed days of synthetic history per service the fleet model trains on.
    pub train_days: usize,
    /// The fleet model's training budget, seconds.
    pub train_seconds: u64,
    /// The model's context, steps: forecasts start once this much history is in
    /// Prometheus.
    pub context: usize,
    /// Hour of the synthetic day the load starts at.
    pub start_hour: usize,
    /// Ports.
    pub ports: Ports,
    /// Keep the trainer's progress off the terminal (tests).
    pub quiet: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("target-demo"),
            repo: PathBuf::from("."),
            bin_dir: PathBuf::from("target/debug"),
            step_secs: 10,
            peak: 40.0,
            train_days: 40,
            train_seconds: 120,
            context: 36,
            start_hour: 4,
            ports: Ports::default(),
            quiet: false,
        }
    }
}

/// A tool the demo runs: `$VAR` if set, else the name on `PATH`.
fn tool(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(name), PathBuf::from)
}

/// The running demo.
#[derive(Debug)]
pub struct Demo {
    settings: Settings,
    procs: Procs,
    http: reqwest::Client,
}

impl Demo {
    /// Starts every part and returns once the predictor answers. Anything missing
    /// (binaries, busy ports, the project's files) is refused before anything starts.
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        let s = settings;
        for f in ["loadtest/profile.js", "loadtest/journeys.js", "deploy/prometheus/rules"] {
            if !s.repo.join(f).exists() {
                bail!("{} not found: run from the project's root or pass --repo", s.repo.join(f).display());
            }
        }
        for b in ["storefront", "prescale-collector", "prescale-trainer", "prescale-predictor"] {
            if !s.bin_dir.join(b).is_file() {
                bail!(
                    "{} not found: build first (cargo build --workspace --bins) or pass --bin-dir",
                    s.bin_dir.join(b).display()
                );
            }
        }
        let p = s.ports;
        let mut ports: Vec<(String, u16)> =
            configs::storefront_ports(&s).into_iter().map(|(n, p)| (n.to_owned(), p)).collect();
        ports.extend([
            ("prometheus".to_owned(), p.prometheus),
            ("collector".to_owned(), p.collector),
            ("predictor".to_owned(), p.predictor_http),
            ("predictor gRPC".to_owned(), p.predictor_grpc),
        ]);
        for (name, port) in &ports {
            if std::net::TcpListener::bind(("127.0.0.1", *port)).is_err() {
                bail!("port {port} (for {name}) is in use; stop what holds it or pick other ports (see --help)");
            }
        }
        if s.dir.exists() {
            std::fs::remove_dir_all(&s.dir).with_context(|| format!("cannot clear {}", s.dir.display()))?;
        }
        let dir = std::path::absolute(&s.dir)?;
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let mut demo = Demo { procs: Procs::new(&logs), settings: s, http: reqwest::Client::new() };
        match demo.launch(&dir).await {
            Ok(()) => Ok(demo),
            Err(e) => {
                demo.stop().await;
                Err(e)
            }
        }
    }

    async fn launch(&mut self, dir: &Path) -> anyhow::Result<()> {
        let s = self.settings.clone();
        let bin = |name: &str| s.bin_dir.join(name);
        let say = |what: &str| println!("demo: {what}");
        // The synthetic history ends before anything runs, so the collector's rows (from
        // the steps it sees live) never share a step with it.
        let history_end = chrono::Utc::now() - chrono::Duration::seconds(s.step_secs as i64);

        // One process per service, as pods are: each service's CPU and memory are then its
        // own (a process serving several reports neither).
        say("starting the storefront (7 services, a process each)");
        let ports = configs::storefront_ports(&s);
        for (name, port) in &ports {
            let mut cmd = Command::new(bin("storefront"));
            cmd.arg("--dev").arg("--data-dir").arg(dir.join("storefront"));
            for (other, other_port) in &ports {
                cmd.arg("--upstream").arg(format!("{other}=http://127.0.0.1:{other_port}"));
            }
            cmd.arg("run").arg(name).arg("--port").arg(port.to_string());
            self.procs.spawn(&format!("storefront-{name}"), &mut cmd)?;
        }
        for (name, port) in &ports {
            self.wait_http(&format!("storefront-{name}"), &format!("http://127.0.0.1:{port}/readyz"), 60).await?;
        }

        say("starting Prometheus");
        std::fs::write(dir.join("prometheus.yml"), configs::prometheus_yml(&s))?;
        let mut cmd = Command::new(tool("PROMETHEUS", "prometheus"));
        cmd.arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("prometheus").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", s.ports.prometheus));
        self.procs.spawn("prometheus", &mut cmd)?;
        self.wait_http("prometheus", &format!("http://127.0.0.1:{}/-/ready", s.ports.prometheus), 60).await?;

        say("starting k6: the synthetic day, one day per hour of wall-clock time at 10 s steps");
        let load = dir.join("load.csv");
        std::fs::write(&load, traffic::load_csv(s.start_hour, 24))?;
        let mut cmd = Command::new(tool("K6", "k6"));
        cmd.args(["run", "--quiet", "--no-color", "--no-summary"])
            .arg("-e")
            .arg(format!("BASE_URL=http://127.0.0.1:{}", s.ports.gateway))
            .arg("-e")
            .arg(format!("TRACE={}", load.display()))
            .arg("-e")
            .arg(format!("COMPRESS={}", traffic::compress(s.step_secs as f64)))
            .arg("-e")
            .arg(format!("PEAK={}", s.peak))
            .arg("-e")
            .arg("MIX=journeys")
            .arg(s.repo.join("loadtest/profile.js"));
        self.procs.spawn("k6", &mut cmd)?;

        say("starting the collector (Parquet under store/)");
        let collector = dir.join("collector.toml");
        std::fs::write(&collector, configs::collector_toml(&s, dir))?;
        let mut cmd = Command::new(bin("prescale-collector"));
        cmd.arg("run").arg("--config").arg(&collector);
        self.procs.spawn("collector", &mut cmd)?;
        self.wait_http("collector", &format!("http://127.0.0.1:{}/healthz", s.ports.collector), 60).await?;

        self.train(dir, history_end).await?;

        say("starting the predictor");
        let predictor = dir.join("predictor.toml");
        std::fs::write(&predictor, configs::predictor_toml(&s, dir))?;
        let mut cmd = Command::new(bin("prescale-predictor"));
        cmd.arg("run").arg("--config").arg(&predictor);
        self.procs.spawn("predictor", &mut cmd)?;
        self.wait_http("predictor", &format!("{}/readyz", self.predictor_url()), 120).await?;
        Ok(())
    }

    /// Writes each service's synthetic history into the collector's store (as if the
    /// collector had run for `train_days` compressed days before `history_end`), then
    /// trains one fleet model for the seven services from it and publishes it: each
    /// service is served by whatever did best on its own validation part (the
    /// transformer or a baseline), so no gate is forced.
    async fn train(&mut self, dir: &Path, history_end: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
        let s = self.settings.clone();
        println!(
            "demo: training one fleet model for the 7 services on {} synthetic days each ({} s budget; progress below)",
            s.train_days, s.train_seconds
        );
        let history = dir.join("synthetic-history");
        std::fs::create_dir_all(&history)?;
        let gateway = configs::SERVICES[0].1;
        let trainer = s.bin_dir.join("prescale-trainer");
        let data = configs::table(dir);
        let mut import = Command::new(&trainer);
        import.arg("import").arg("--data").arg(&data).arg("--end").arg(history_end.to_rfc3339());
        for (seed, (name, capacity)) in configs::SERVICES.iter().enumerate() {
            // Each service carries its share of the gateway's traffic (as their
            // capacities are sized), with noise of its own.
            let csv =
                traffic::training_csv(s.train_days, s.step_secs as f64, s.peak * capacity / gateway, seed as u64 + 7);
            let path = history.join(format!("{name}.csv"));
            std::fs::write(&path, csv)?;
            import.arg("--trace").arg(format!("storefront/{name}={}", path.display()));
        }
        self.run_trainer("import", &mut import).await?;
        let train_config = dir.join("train.toml");
        std::fs::write(&train_config, configs::train_toml(&s))?;
        let mut cmd = Command::new(&trainer);
        cmd.arg("--train-config")
            .arg(&train_config)
            .arg("train")
            .arg("--data")
            .arg(&data)
            .arg("--services")
            .arg("storefront/*")
            .arg("--models")
            .arg(configs::fleet_models(dir))
            .arg("--publish");
        self.run_trainer("train", &mut cmd).await
    }

    /// Runs the trainer to its end, its output on the terminal (and its progress bars
    /// unless quiet) and in its log.
    async fn run_trainer(&mut self, what: &str, cmd: &mut Command) -> anyhow::Result<()> {
        if self.settings.quiet {
            cmd.stderr(std::process::Stdio::piped());
        }
        // Interrupted while training: the trainer goes with the demo.
        cmd.kill_on_drop(true).process_group(0);
        let out = cmd.stdout(std::process::Stdio::piped()).output().await.context("cannot run prescale-trainer")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        print!("{stdout}");
        let log = self.procs.log("trainer");
        let before = std::fs::read_to_string(&log).unwrap_or_default();
        std::fs::write(&log, format!("{before}== prescale-trainer {what}\n{stdout}{stderr}"))?;
        if !out.status.success() {
            bail!("prescale-trainer {what} failed ({}):\n{stderr}", out.status);
        }
        Ok(())
    }

    async fn wait_http(&mut self, name: &str, url: &str, secs: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(r) = self.http.get(url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            self.procs.check()?;
            if Instant::now() > deadline {
                bail!(
                    "{name} is not ready after {secs} s ({url}); the end of its log:\n{}",
                    procs::tail(&self.procs.log(name), 15)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The predictor's base URL; its live page is at `/`.
    pub fn predictor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.settings.ports.predictor_http)
    }

    /// Prometheus' base URL.
    pub fn prometheus_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.settings.ports.prometheus)
    }

    /// The storefront's gateway.
    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.settings.ports.gateway)
    }

    /// The predictor's decisions (`GET /api/v1/services`); an error if a part has died.
    pub async fn decisions(&mut self) -> anyhow::Result<ServicesResponse> {
        self.procs.check()?;
        let url = format!("{}/api/v1/services", self.predictor_url());
        let r = self.http.get(&url).timeout(Duration::from_secs(5)).send().await?;
        Ok(r.error_for_status()?.json().await?)
    }

    /// How many services get forecasts now.
    pub async fn coverage(&mut self) -> anyhow::Result<Coverage> {
        Ok(view::coverage(&self.decisions().await?))
    }

    /// Where the demo keeps everything.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Stops every part, last started first.
    pub async fn stop(&mut self) {
        self.procs.stop(Duration::from_secs(15)).await;
    }
}
