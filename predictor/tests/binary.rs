//! The `prescale-predictor` binary wired end to end: against a real Prometheus it steps on
//! its own, answers KEDA over gRPC and people over HTTP, and stops cleanly on SIGTERM;
//! bad settings are refused with status 64 naming the field.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prescale_predictor::proto::external_scaler_client::ExternalScalerClient;
use prescale_predictor::proto::{GetMetricsRequest, ScaledObjectRef};
use prescale_testkit::prometheus::Prometheus;
use prescale_testkit::tools::free_port;

fn config(dir: &std::path::Path, prometheus: &str, http: u16, grpc: u16) -> std::path::PathBuf {
    let path = dir.join("predictor.toml");
    std::fs::write(
        &path,
        format!(
            r#"step = "1s"
query_delay = "500ms"
history = "30s"
staleness = "3s"
listen = "127.0.0.1:{http}"
grpc_listen = "127.0.0.1:{grpc}"
[prometheus]
url = "{prometheus}"
timeout = "2s"
[catalog]
base = "storefront"
window = "5s"
[models]
location = {models:?}
[policy]
capacity = 10.0
min_replicas = 2
startup = "2s"
lookahead = "10s"
[[services]]
service = "storefront/order"
"#,
            models = dir.join("models").display().to_string()
        ),
    )
    .unwrap();
    path
}

/// Starts the binary on `config`, its log in `dir`, and waits until `/readyz` answers.
async fn start_ready(dir: &std::path::Path, config: &std::path::Path, http: u16) -> (std::process::Child, String) {
    let log = std::fs::File::create(dir.join("predictor.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_prescale-predictor"))
        .arg("--config")
        .arg(config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{http}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(format!("{base}/readyz")).await.map(|r| r.status().is_success()).unwrap_or(false) {
        assert!(
            Instant::now() < deadline,
            "never ready:\n{}",
            std::fs::read_to_string(dir.join("predictor.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (child, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_steps_and_serves_grpc_and_http() {
    let dir = tempfile::tempdir().unwrap();
    // Prometheus scraping itself is enough to answer the catalog's queries (empty).
    let prometheus = tokio::task::block_in_place(|| Prometheus::start(&dir.path().join("prometheus"), "1s", ""));
    let (http, grpc) = (free_port(), free_port());
    let path = config(dir.path(), &prometheus.url(), http, grpc);
    let (mut child, base) = start_ready(dir.path(), &path, http).await;
    let body: serde_json::Value =
        reqwest::get(format!("{base}/api/v1/services/order")).await.unwrap().json().await.unwrap();
    // No model and no demand: no forecast, raised to the minimum.
    assert_eq!(body["reason"]["kind"], "min_bound", "{body}");
    assert!(body["forecast"].is_null(), "{body}");
    assert_eq!(body["replicas"], 2, "{body}");
    let openapi: serde_json::Value = reqwest::get(format!("{base}/openapi.json")).await.unwrap().json().await.unwrap();
    assert!(openapi["paths"]["/api/v1/services/{namespace}/{name}"].is_object());
    let page = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let page = page.text().await.unwrap();
    assert!(page.contains(r#"fetch("api/v1/services""#), "the live page reads the API");
    assert!(page.contains(r#"fetch("api/v1/history""#), "the live page reads the server's last hour");
    // The server keeps each service's steps: a page opened now draws the past at once.
    let deadline = Instant::now() + Duration::from_secs(15);
    let history = loop {
        let h: serde_json::Value = reqwest::get(format!("{base}/api/v1/history")).await.unwrap().json().await.unwrap();
        if h["services"][0]["points"].as_array().is_some_and(|p| p.len() >= 3) {
            break h;
        }
        assert!(Instant::now() < deadline, "no history: {h}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(history["span_seconds"], 3600);
    assert_eq!(history["services"][0]["service"], "storefront/order");
    let points = history["services"][0]["points"].as_array().unwrap();
    let times: Vec<&str> = points.iter().map(|p| p["time"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    assert!(points.iter().all(|p| p["decided_replicas"] == 2 && p["served_replicas"] == 2), "{points:?}");

    let mut client = ExternalScalerClient::connect(format!("http://127.0.0.1:{grpc}")).await.unwrap();
    let object = ScaledObjectRef {
        name: "order".into(),
        namespace: "storefront".into(),
        scaler_metadata: [("service".to_owned(), "order".to_owned())].into_iter().collect(),
    };
    let values = client
        .get_metrics(GetMetricsRequest { scaled_object_ref: Some(object), metric_name: "ml_predicted_replicas".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(values.metric_values[0].metric_value_float, 2.0);

    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"ml_predicted_replicas{namespace="storefront",service="order"} 2.0"#), "{metrics}");
    assert!(metrics.contains(r#"prescale_predictor_model_reloads_total{kind="nothing_published"}"#), "{metrics}");

    // Prometheus stopped: the last decision is served until it is `staleness` old, then
    // gRPC fails Unavailable (KEDA's fallback takes over) and the JSON API answers 503.
    let mut prometheus = prometheus;
    tokio::task::block_in_place(|| prometheus.stop());
    let stopped = Instant::now();
    let object = ScaledObjectRef {
        name: "order".into(),
        namespace: "storefront".into(),
        scaler_metadata: [("service".to_owned(), "order".to_owned())].into_iter().collect(),
    };
    let call = GetMetricsRequest { scaled_object_ref: Some(object), metric_name: String::new() };
    let status = loop {
        match client.get_metrics(call.clone()).await {
            Ok(_) => {
                assert!(stopped.elapsed() < Duration::from_secs(10), "still serving 10 s after Prometheus stopped");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(stopped.elapsed() >= Duration::from_secs(1), "the last decision was served for a while first");
    assert!(status.message().contains("staleness"), "{}", status.message());
    let res = reqwest::get(format!("{base}/api/v1/services/order")).await.unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        metrics
            .contains(r#"prescale_predictor_fallbacks_total{namespace="",service="",kind="prometheus_unreachable"}"#),
        "{metrics}"
    );

    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "exit {status}");
}

/// Against a Prometheus that requires basic auth over TLS: with the right password the
/// predictor decides; with a wrong one it never becomes ready and its log names the
/// credentials, not a vague outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_behind_basic_auth_over_tls_is_read_with_the_right_credentials_only() {
    let dir = tempfile::tempdir().unwrap();
    let (prometheus, secured) =
        tokio::task::block_in_place(|| Prometheus::start_secured(&dir.path().join("prometheus"), "1s", ""));
    let access = |password_file: &std::path::Path| {
        format!(
            "[prometheus.basic_auth]\nusername = {:?}\npassword_file = {:?}\n[prometheus.tls]\nca_file = {:?}\n",
            secured.username,
            password_file.display().to_string(),
            secured.pki.ca.display().to_string()
        )
    };
    let with_access = |path: &std::path::Path, password_file: &std::path::Path| {
        let text = std::fs::read_to_string(path).unwrap();
        let text = text.replace("[catalog]", &format!("{}[catalog]", access(password_file)));
        std::fs::write(path, text).unwrap();
    };

    let (http, grpc) = (free_port(), free_port());
    let path = config(dir.path(), &prometheus.url(), http, grpc);
    with_access(&path, &secured.password_file);
    let (mut child, base) = start_ready(dir.path(), &path, http).await;
    let body: serde_json::Value =
        reqwest::get(format!("{base}/api/v1/services/order")).await.unwrap().json().await.unwrap();
    assert_eq!(body["replicas"], 2, "{body}");
    let _ = child.kill();
    let _ = child.wait();

    let wrong_dir = dir.path().join("wrong");
    std::fs::create_dir_all(&wrong_dir).unwrap();
    let wrong = wrong_dir.join("password");
    std::fs::write(&wrong, "guess\n").unwrap();
    let (http, grpc) = (free_port(), free_port());
    let path = config(&wrong_dir, &prometheus.url(), http, grpc);
    with_access(&path, &wrong);
    let log = std::fs::File::create(wrong_dir.join("predictor.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_prescale-predictor"))
        .args(["--config", path.to_str().unwrap(), "run"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let said = loop {
        let text = std::fs::read_to_string(wrong_dir.join("predictor.log")).unwrap_or_default();
        if text.contains("refused the credentials (HTTP 401)") {
            break text;
        }
        assert!(Instant::now() < deadline, "no word of the credentials:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ready = reqwest::get(format!("http://127.0.0.1:{http}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503, "{said}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn bad_settings_exit_64_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "http://127.0.0.1:9", 1, 2);
    let text = std::fs::read_to_string(&path).unwrap();
    for (broken, needle) in [
        (text.replace("storefront/order", "order"), "services[0].service"),
        (text.replace("capacity = 10.0", "capacity = 0.0"), "capacity"),
        (format!("admin_token = \"\"\n{text}"), "admin_token"),
        (format!("admin_token = \"   \"\n{text}"), "admin_token"),
        (text.replace("[policy]", "[policy]\nquantile = \"p99\""), "quantile"),
        (
            text.replace("base = \"storefront\"", "base = \"storefront\"\n[catalog.features]\nlatency = \"up\""),
            "latency",
        ),
    ] {
        std::fs::write(&path, broken).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_prescale-predictor"))
            .arg("--config")
            .arg(&path)
            .arg("check")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "expected {needle:?} in {stderr}");
    }
}

/// The live predictor against its own generated OpenAPI document, with schemathesis: every
/// documented operation called with generated valid and invalid input, every answer's
/// status and body as documented, and no 5xx (Prometheus is up, so decisions are fresh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_api_answers_as_its_openapi_document_says() {
    const TOKEN: &str = "schemathesis-admin-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let prometheus = tokio::task::block_in_place(|| Prometheus::start(&dir.path().join("prometheus"), "1s", ""));
    let (http, grpc) = (free_port(), free_port());
    let path = config(dir.path(), &prometheus.url(), http, grpc);
    // A staleness far above any pause of a busy machine: no decision may go stale mid-run.
    let settings = std::fs::read_to_string(&path).unwrap().replace(r#"staleness = "3s""#, r#"staleness = "10m""#);
    std::fs::write(&path, format!("admin_token = \"{TOKEN}\"\n{settings}")).unwrap();
    let (mut child, base) = start_ready(dir.path(), &path, http).await;
    let output = tokio::task::spawn_blocking({
        let base = base.clone();
        let report = dir.path().join("report");
        move || {
            Command::new(prescale_testkit::tools::schemathesis())
                .args(["run", &format!("{base}/openapi.json"), "--checks", "all"])
                .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
                .args(["--max-examples", "40", "--seed", "1", "--no-color"])
                .args(["--report", "junit", "--report-dir"])
                .arg(&report)
                .env("SCHEMATHESIS_HOOKS", "")
                // Its cache of found failures goes to the temporary folder, not the tree.
                .current_dir(report.parent().unwrap())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Every documented operation was exercised (the JUnit report has a case per
    // operation), but the document itself, which schemathesis loaded rather than tested.
    let doc: serde_json::Value = serde_json::from_str(prescale_predictor::http::OPENAPI.as_str()).unwrap();
    let mut documented: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| format!("{} {path}", m.to_uppercase())))
        .filter(|op| op != "GET /openapi.json")
        .collect();
    documented.sort();
    let mut tested: Vec<String> = std::fs::read_dir(dir.path().join("report"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .flat_map(|xml| {
            xml.split("<testcase name=\"").skip(1).map(|t| t.split('"').next().unwrap().to_owned()).collect::<Vec<_>>()
        })
        .collect();
    tested.sort();
    tested.dedup();
    assert_eq!(tested, documented, "operations tested by schemathesis against those documented");
    assert!(status.success(), "the predictor exited {status}");
    drop(prometheus);
}

/// Shadow mode from a file every replica reads (the `predictor-shadow` ConfigMap in a
/// cluster): two predictor processes follow it together, the admin endpoint refuses to
/// flip one of them, and a file saying something else changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_follow_one_shadow_file() {
    let dir = tempfile::tempdir().unwrap();
    let prometheus = tokio::task::block_in_place(|| Prometheus::start(&dir.path().join("prometheus"), "1s", ""));
    let shadow = dir.path().join("shadow");
    std::fs::write(&shadow, "false\n").unwrap();
    const TOKEN: &str = "0123456789abcdef0123456789abcdef";
    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        let home = dir.path().join(name);
        std::fs::create_dir_all(&home).unwrap();
        let (http, grpc) = (free_port(), free_port());
        let path = config(&home, &prometheus.url(), http, grpc);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            format!(
                "shadow_file = {:?}\nshadow_file_interval = \"200ms\"\nadmin_token = \"{TOKEN}\"\n{text}",
                shadow.display().to_string()
            ),
        )
        .unwrap();
        replicas.push(start_ready(&home, &path, http).await);
    }
    let shadows = || async {
        let mut out = Vec::new();
        for (_, base) in &replicas {
            let body: serde_json::Value =
                reqwest::get(format!("{base}/api/v1/services")).await.unwrap().json().await.unwrap();
            out.push(body["shadow"].as_bool().unwrap());
        }
        out
    };
    let until = |want: bool| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = shadows().await;
            if now.iter().all(|s| *s == want) {
                return;
            }
            assert!(Instant::now() < deadline, "replicas say {now:?}, the file {want}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert_eq!(shadows().await, [false, false]);
    std::fs::write(&shadow, "true\n").unwrap();
    until(true).await;
    // One replica cannot be flipped on its own.
    let res = reqwest::Client::new()
        .put(format!("{}/api/v1/admin/shadow", replicas[0].1))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"shadow": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::CONFLICT);
    assert!(res.text().await.unwrap().contains("predictor-shadow"));
    assert_eq!(shadows().await, [true, true]);
    std::fs::write(&shadow, "false\n").unwrap();
    until(false).await;
    // Something else in the file: the last setting holds.
    std::fs::write(&shadow, "maybe\n").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(shadows().await, [false, false]);
    let metrics = reqwest::get(format!("{}/metrics", replicas[1].1)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("prescale_predictor_shadow 0"), "{metrics}");
    for (mut child, _) in replicas {
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
        assert!(status.success(), "exit {status}");
    }
    // At start, a file that is not true or false is refused, naming it.
    let (http, grpc) = (free_port(), free_port());
    let home = dir.path().join("c");
    std::fs::create_dir_all(&home).unwrap();
    let path = config(&home, &prometheus.url(), http, grpc);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("shadow_file = {:?}\n{text}", shadow.display().to_string())).unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_prescale-predictor")).arg("--config").arg(&path).arg("run").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shadow_file") && err.contains("maybe"), "{err}");
}
