//! A real Prometheus on loopback (Debian's `prometheus` package, as `make setup` installs
//! it), with history loaded by `promtool tsdb create-blocks-from openmetrics`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::free_port;

/// The `prometheus` binary: `$PROMETHEUS`, else on `PATH`. Panics loudly when missing.
pub fn prometheus_bin() -> PathBuf {
    tool("PROMETHEUS", "prometheus")
}

/// The `promtool` binary: `$PROMTOOL`, else on `PATH`. Panics loudly when missing.
pub fn promtool_bin() -> PathBuf {
    tool("PROMTOOL", "promtool")
}

fn tool(var: &str, name: &str) -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os(var).map(PathBuf::from).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("\n\n*** {name} not found (${var} or PATH); `make setup` installs Debian's prometheus package ***\n")
    })
}

/// Turns OpenMetrics text (ending in `# EOF`) into TSDB blocks in `data_dir`.
pub fn load_openmetrics(data_dir: &Path, openmetrics: &str) {
    std::fs::create_dir_all(data_dir).expect("creating the TSDB folder");
    let file = data_dir.with_extension("om");
    std::fs::write(&file, openmetrics).expect("writing the OpenMetrics file");
    let out = Command::new(promtool_bin())
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(data_dir)
        .output()
        .expect("running promtool");
    assert!(
        out.status.success(),
        "promtool create-blocks-from failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Prometheus server; dropping it kills it.
#[derive(Debug)]
pub struct Prometheus {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    secured: Option<Secured>,
}

/// What a Prometheus started with [`Prometheus::start_secured`] requires: TLS with a
/// certificate signed by `pki.ca`, and basic auth as `username` with the password in
/// `password_file`.
#[derive(Debug, Clone)]
pub struct Secured {
    /// The CA and certificates.
    pub pki: crate::certs::Pki,
    /// The only user.
    pub username: String,
    /// A file holding the user's password.
    pub password_file: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus with its TSDB in `dir/data` (history loaded with
    /// [`load_openmetrics`] into that folder is served) and `scrape_configs` (YAML list
    /// items, may be empty) scraped every `scrape_interval`. Waits until it is ready.
    pub fn start(dir: &Path, scrape_interval: &str, scrape_configs: &str) -> Self {
        let mut p = Self::configured(dir, scrape_interval, scrape_configs);
        p.launch();
        p
    }

    /// As [`Prometheus::start`], but serving only HTTPS (a fresh CA's certificate for
    /// `127.0.0.1`) to the user `prescale` with a random password (`--web.config.file`).
    /// Its [`url`](Self::url) is then `https://`.
    pub fn start_secured(dir: &Path, scrape_interval: &str, scrape_configs: &str) -> (Self, Secured) {
        let pki = crate::certs::Pki::generate(&dir.join("pki"), "prescale");
        let password = format!("pw-{}-{}", std::process::id(), free_port());
        let hash = bcrypt::hash(&password, 4).expect("hashing the password");
        let password_file = dir.join("password");
        std::fs::create_dir_all(dir).expect("creating the Prometheus folder");
        std::fs::write(&password_file, format!("{password}\n")).expect("writing the password file");
        let web = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  prescale: {hash}\n",
            pki.server_cert.display(),
            pki.server_key.display()
        );
        std::fs::write(dir.join("web.yml"), web).expect("writing web.yml");
        let secured = Secured { pki, username: "prescale".into(), password_file };
        let mut p = Self::configured(dir, scrape_interval, scrape_configs);
        p.secured = Some(secured.clone());
        p.launch();
        (p, secured)
    }

    /// As [`Prometheus::start`], evaluating the rule groups of `rules` (a rule file's YAML).
    pub fn start_with_rules(dir: &Path, scrape_interval: &str, scrape_configs: &str, rules: &str) -> Self {
        let mut p = Self::configured(dir, scrape_interval, scrape_configs);
        let file = dir.join("rules.yml");
        std::fs::write(&file, rules).expect("writing the rules");
        let config = std::fs::read_to_string(dir.join("prometheus.yml")).expect("reading prometheus.yml");
        std::fs::write(dir.join("prometheus.yml"), format!("rule_files: ['{}']\n{config}", file.display()))
            .expect("writing prometheus.yml");
        p.launch();
        p
    }

    fn configured(dir: &Path, scrape_interval: &str, scrape_configs: &str) -> Self {
        let scrape = if scrape_configs.trim().is_empty() { "[]".to_owned() } else { format!("\n{scrape_configs}") };
        let config = format!(
            "global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: {scrape_interval}\nscrape_configs: {scrape}\n"
        );
        std::fs::create_dir_all(dir.join("data")).expect("creating the Prometheus folder");
        std::fs::write(dir.join("prometheus.yml"), config).expect("writing prometheus.yml");
        Self { dir: dir.to_owned(), port: free_port(), child: None, secured: None }
    }

    /// The data folder, for [`load_openmetrics`].
    pub fn data_dir(dir: &Path) -> PathBuf {
        dir.join("data")
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("prometheus.log"))
            .expect("opening the Prometheus log");
        let mut command = Command::new(prometheus_bin());
        command
            .arg(format!("--config.file={}", self.dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", self.dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--storage.tsdb.retention.time=30d");
        if self.secured.is_some() {
            command.arg(format!("--web.config.file={}", self.dir.join("web.yml").display()));
        }
        let logged_before = std::fs::metadata(self.dir.join("prometheus.log")).map_or(0, |m| m.len() as usize);
        let child = command.stdout(Stdio::null()).stderr(log).spawn().expect("starting prometheus");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("http://127.0.0.1:{}/-/ready", self.port);
        while Instant::now() < deadline {
            // Plain HTTP cannot reach a TLS-only server: its log says when it is ready.
            let ready = if self.secured.is_some() {
                let log = std::fs::read(self.dir.join("prometheus.log")).unwrap_or_default();
                String::from_utf8_lossy(log.get(logged_before..).unwrap_or_default())
                    .contains("Server is ready to receive web requests")
            } else {
                http_ok(&url)
            };
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        panic!("Prometheus did not become ready in 60 s; its log:\n{log}");
    }

    /// `http://127.0.0.1:PORT` (`https://` when secured).
    pub fn url(&self) -> String {
        let scheme = if self.secured.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGTERM, then SIGKILL after 10 s); the port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (up to 60 s) until `count` targets of scrape job `job` are up, then two
    /// more seconds, so each target's first scrape falls before whatever starts next.
    pub fn wait_for_targets(&self, job: &str, count: usize) {
        let url = format!("{}/api/v1/query?query=count(up%7Bjob%3D%22{job}%22%7D%3D%3D1)", self.url());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let body = http_get(&url).map(|(_, b)| b).unwrap_or_default();
            if body.contains(&format!("\"{count}\"]")) {
                break;
            }
            assert!(Instant::now() < deadline, "Prometheus never saw {count} `{job}` targets up: {body}");
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(2));
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a GET of `url` answers 200, with a plain blocking socket (no runtime needed).
fn http_ok(url: &str) -> bool {
    http_get(url).is_some_and(|(status, _)| status == 200)
}

/// A blocking HTTP/1.0 GET on loopback: the status and body, or `None` when nothing
/// answers.
fn http_get(url: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(host).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut response = Vec::new();
    let _ = s.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_owned());
    Some((status, body))
}
