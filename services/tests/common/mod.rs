//! Shared by the storefront's process-level tests: `storefront all` started as a process on
//! free ports, a raw HTTP/1.1 client (so request targets reach the gateway exactly as
//! written, dot segments and all), and the calls a user makes through the gateway.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prescale_testkit::tools::free_ports;
use serde_json::{Value, json};
use storefront::Service;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A `storefront all` process; dropping it kills it.
#[derive(Debug)]
pub struct Storefront {
    child: Child,
    /// Each service's port.
    pub ports: Vec<(Service, u16)>,
    log: std::path::PathBuf,
}

impl Drop for Storefront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Storefront {
    /// Starts `storefront <args> all` with every service on a free port (`ports` overrides
    /// some) and waits until the gateway serves the catalogue.
    pub async fn start(dir: &Path, args: &[String], ports: &[(Service, u16)]) -> Self {
        let mut free = free_ports(Service::ALL.len()).into_iter();
        let ports: Vec<(Service, u16)> = Service::ALL
            .iter()
            .map(|s| {
                (*s, ports.iter().find(|(o, _)| o == s).map_or_else(|| free.next().expect("a port each"), |(_, p)| *p))
            })
            .collect();
        let log = dir.join(format!("storefront-{}.log", ports[0].1));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_storefront"));
        cmd.args(args).args(["--recommender-work", "1000", "all"]);
        for (s, p) in &ports {
            cmd.arg("--port").arg(format!("{}={p}", s.name()));
        }
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd.stdout(Stdio::null()).stderr(out).spawn().unwrap();
        let mut me = Self { child, ports, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) =
                raw(me.port(Service::Gateway), "GET", "/api/product/products?per_page=1", &[], "").await
            {
                break;
            }
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("storefront exited with {status}:\n{}", me.log());
            }
            assert!(Instant::now() < deadline, "storefront did not come up:\n{}", me.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        me
    }

    /// `storefront --dev --data-dir <dir> all`.
    pub async fn dev(dir: &Path) -> Self {
        Self::start(dir, &["--dev".into(), "--data-dir".into(), dir.join("data").display().to_string()], &[]).await
    }

    /// A service's port.
    pub fn port(&self, s: Service) -> u16 {
        self.ports.iter().find(|(o, _)| *o == s).unwrap().1
    }

    /// The gateway's base URL.
    pub fn gateway(&self) -> String {
        format!("http://127.0.0.1:{}", self.port(Service::Gateway))
    }

    /// What the process logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Sends one request with the target exactly as given; answers the status and body.
pub async fn raw(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("no answer within 20 s"))??;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let body = text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_owned());
    Ok((status, body))
}

/// A JSON client for the gateway.
#[derive(Debug, Clone)]
pub struct Client {
    /// The HTTP client.
    pub http: reqwest::Client,
}

impl Default for Client {
    fn default() -> Self {
        Self { http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap() }
    }
}

impl Client {
    /// Sends `method url` with a JSON body, a token and extra headers; answers status and JSON.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method.parse().unwrap(), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Registers `name` through `gateway` (201).
    pub async fn register(&self, gateway: &str, name: &str) -> i64 {
        let (s, user) =
            self.send("POST", &format!("{gateway}/api/authen/register"), None, &[], Some(creds(name))).await;
        assert_eq!(s, 201, "{user}");
        user["id"].as_i64().unwrap()
    }

    /// Logs `name` in through `gateway`; its token.
    pub async fn login(&self, gateway: &str, name: &str) -> String {
        let (s, t) = self.send("POST", &format!("{gateway}/api/authen/login"), None, &[], Some(creds(name))).await;
        assert_eq!(s, 200, "{t}");
        t["token"].as_str().unwrap().to_owned()
    }

    /// A product's stock through `gateway`.
    pub async fn stock(&self, gateway: &str, product: i64) -> i64 {
        let (s, v) =
            self.send("GET", &format!("{gateway}/api/product/products/{product}/stock"), None, &[], None).await;
        assert_eq!(s, 200, "{v}");
        v["stock"].as_i64().unwrap()
    }
}

/// A user's credentials.
pub fn creds(name: &str) -> Value {
    json!({"username": name, "password": "a long enough password"})
}
