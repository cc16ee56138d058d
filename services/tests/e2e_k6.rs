//! End to end: `storefront all` on loopback, a short k6 journey run against the gateway
//! with no failed checks, and the gateway's `/metrics` counting exactly what k6 sent.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prescale_testkit::tools::{free_ports, k6};
use storefront::Service;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gateway_requests(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("gateway_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_k6_journey_passes_its_checks_and_moves_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<(Service, u16)> = Service::ALL.iter().copied().zip(free_ports(Service::ALL.len())).collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_storefront"));
    cmd.arg("--dev").arg("--data-dir").arg(dir.path()).args(["--recommender-work", "1000", "all"]);
    for (s, p) in &ports {
        cmd.arg("--port").arg(format!("{}={p}", s.name()));
    }
    let _server = Running(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let gateway = format!("http://127.0.0.1:{}", ports[0].1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let http = reqwest::Client::new();
    let get = |url: &str| -> Option<String> {
        rt.block_on(async {
            let r = http.get(url).send().await.ok()?;
            if r.status().is_success() { r.text().await.ok() } else { None }
        })
    };
    while get(&format!("{gateway}/api/product/products?per_page=1")).is_none() {
        assert!(Instant::now() < deadline, "storefront did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = gateway_requests(&get(&format!("{gateway}/metrics")).unwrap());

    let summary = dir.path().join("summary.json");
    let script_path = prescale_testkit::repo_root().join("loadtest/journeys.js");
    let script = script_path.to_str().expect("a UTF-8 path");
    let run = Command::new(k6())
        .args(["run", "--quiet", "--no-color", "--summary-export"])
        .arg(&summary)
        .args(["-e", &format!("BASE_URL={gateway}"), "-e", "VUS=3", "-e", "DURATION=6s", "-e", "USERS=3", script])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "k6 failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["metrics"]["checks"]["fails"], 0, "{}", s["metrics"]["checks"]);
    let sent = s["metrics"]["http_reqs"]["count"].as_f64().unwrap();
    assert!(sent > 20.0, "k6 sent only {sent} requests");

    let after = gateway_requests(&get(&format!("{gateway}/metrics")).unwrap());
    // Every k6 request went through the gateway; the metrics scrapes themselves are not counted.
    assert_eq!(after - before, sent, "gateway counted {} of k6's {sent} requests", after - before);
    let product = get(&format!("http://127.0.0.1:{}/metrics", ports[4].1)).unwrap();
    assert!(product.contains(r#"route="/products/{id}",method="GET",status="200""#), "{product}");
}

/// `storefront run authen` with `secret` (or none) in `STOREFRONT_JWT_SECRET`: it must
/// refuse to start, creating nothing; answers what it printed.
fn refused_start(secret: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_storefront"));
    match secret {
        Some(s) => cmd.env("STOREFRONT_JWT_SECRET", s),
        None => cmd.env_remove("STOREFRONT_JWT_SECRET"),
    };
    let out = cmd.arg("--data-dir").arg(dir.path()).args(["run", "authen", "--port", "0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing was created");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn refuses_to_start_without_a_signing_secret() {
    let err = refused_start(None);
    assert!(err.contains("STOREFRONT_JWT_SECRET") && err.contains("--dev"), "{err}");
}

#[test]
fn refuses_a_signing_secret_shorter_than_32_bytes() {
    let err = refused_start(Some("only-twenty-four-bytes!!"));
    assert!(err.contains("STOREFRONT_JWT_SECRET") && err.contains("32 bytes"), "{err}");
}
