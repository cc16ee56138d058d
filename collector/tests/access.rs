//! Reaching Prometheus-compatible backends that want more than a URL, through the
//! collector's (and the predictor's) source: a real Prometheus requiring basic auth over
//! TLS with the right, wrong and corrected password and without its CA; and a gateway
//! that records what it is sent (bearer token re-read when its file changes, a tenant
//! header), as Mimir or Thanos behind a proxy would.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use prescale_core::prometheus::access::{BasicAuth, TlsConfig};
use prescale_core::prometheus::catalog::{Catalog, CatalogConfig, CatalogName};
use prescale_core::prometheus::source::{PrometheusConfig, QueryError, ServicesConfig, Source};
use prescale_core::{Feature, ServiceId};
use prescale_testkit::prometheus::{Prometheus, load_openmetrics};
use prometheus_client::metrics::counter::Counter;

const START: i64 = 1_699_999_200;

fn catalog() -> Catalog {
    Catalog::from_config(&CatalogConfig {
        base: CatalogName::None,
        window: Duration::from_secs(60),
        features: [(
            "in_flight".to_owned(),
            r#"sum by (namespace, service) (inflight{namespace=~"{namespaces}"})"#.to_owned(),
        )]
        .into_iter()
        .collect(),
    })
    .unwrap()
}

/// Ten minutes of `shop/a` in flight, 3 + step % 4, as OpenMetrics.
fn history() -> String {
    (0..=40)
        .map(|j| format!("inflight{{namespace=\"shop\",service=\"a\"}} {} {}\n", 3 + j % 4, START + j * 15))
        .chain(std::iter::once("# EOF\n".to_owned()))
        .collect()
}

fn source(config: PrometheusConfig) -> Result<Source, String> {
    let services = ServicesConfig { list: vec!["shop/a".into()], ..Default::default() };
    Source::new(PrometheusConfig { retries: 0, ..config }, catalog(), services, Counter::default())
        .map_err(|e| e.to_string())
}

fn shop_a() -> Vec<ServiceId> {
    vec!["shop/a".parse().unwrap()]
}

#[test]
fn basic_auth_over_tls_with_right_wrong_and_corrected_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let prom_dir = dir.path().join("prometheus");
    load_openmetrics(&Prometheus::data_dir(&prom_dir), &history());
    let (prometheus, secured) = Prometheus::start_secured(&prom_dir, "15s", "");
    assert!(prometheus.url().starts_with("https://"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Step 21 of the history: 3 + 21 % 4.
    let t = Utc.timestamp_opt(START + 315, 0).unwrap();
    let tls = TlsConfig { ca_file: Some(secured.pki.ca.clone()), ..Default::default() };
    let wrong_file = dir.path().join("wrong-password");
    std::fs::write(&wrong_file, "not-the-password\n").unwrap();
    let config = |password_file: &std::path::Path| PrometheusConfig {
        url: prometheus.url(),
        basic_auth: Some(BasicAuth { username: secured.username.clone(), password_file: password_file.to_owned() }),
        tls: tls.clone(),
        ..Default::default()
    };

    // The right credentials: the value.
    let right = source(config(&secured.password_file)).unwrap();
    let rows = rt.block_on(right.rows_at(t, &shop_a())).unwrap();
    assert_eq!(rows[0].get(Feature::InFlight), Some(4.0));

    // The wrong password: the step fails (to be filled later), saying why.
    let wrong = source(config(&wrong_file)).unwrap();
    let err = rt.block_on(wrong.rows_at(t, &shop_a())).unwrap_err();
    assert!(matches!(err, QueryError::Unauthorized { status: 401, .. }), "{err}");
    assert!(err.is_transient() && err.to_string().contains("refused the credentials"), "{err}");

    // The password file corrected in place: the same source reads it and succeeds.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::copy(&secured.password_file, &wrong_file).unwrap();
    let rows = rt.block_on(wrong.rows_at(t, &shop_a())).unwrap();
    assert_eq!(rows[0].get(Feature::InFlight), Some(4.0));

    // Without the CA the server is not trusted; without a password no answer.
    let untrusted = source(PrometheusConfig { tls: TlsConfig::default(), ..config(&secured.password_file) }).unwrap();
    let err = rt.block_on(untrusted.rows_at(t, &shop_a())).unwrap_err();
    assert!(matches!(err, QueryError::Unreachable { .. }) && err.to_string().contains("certificate"), "{err}");
    let anonymous = source(PrometheusConfig { basic_auth: None, ..config(&secured.password_file) }).unwrap();
    let err = rt.block_on(anonymous.rows_at(t, &shop_a())).unwrap_err();
    assert!(matches!(err, QueryError::Unauthorized { status: 401, .. }), "{err}");
}

#[test]
fn bad_access_settings_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "abc\n").unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let https = || PrometheusConfig { url: "https://127.0.0.1:1".into(), ..Default::default() };
    let basic = |file: &std::path::Path| Some(BasicAuth { username: "u".into(), password_file: file.to_owned() });
    let cases = [
        (PrometheusConfig { bearer_token_file: Some(dir.path().join("missing")), ..https() }, "bearer_token_file"),
        (PrometheusConfig { bearer_token_file: Some(empty.clone()), ..https() }, "bearer_token_file"),
        (PrometheusConfig { bearer_token_file: Some(token.clone()), basic_auth: basic(&token), ..https() }, "not both"),
        (
            PrometheusConfig {
                basic_auth: Some(BasicAuth { username: "a:b".into(), password_file: token.clone() }),
                ..https()
            },
            "basic_auth.username",
        ),
        (PrometheusConfig { basic_auth: basic(&empty), ..https() }, "password_file"),
        (
            PrometheusConfig { tls: TlsConfig { ca_file: Some(garbage.clone()), ..Default::default() }, ..https() },
            "ca_file",
        ),
        (
            PrometheusConfig { tls: TlsConfig { cert_file: Some(garbage.clone()), ..Default::default() }, ..https() },
            "key_file",
        ),
        (
            PrometheusConfig {
                url: "http://127.0.0.1:1".into(),
                tls: TlsConfig { ca_file: Some(garbage.clone()), ..Default::default() },
                ..Default::default()
            },
            "https://",
        ),
        (
            PrometheusConfig { headers: BTreeMap::from([("bad header".into(), "x".into())]), ..https() },
            "headers.bad header",
        ),
        (
            PrometheusConfig { headers: BTreeMap::from([("Authorization".into(), "x".into())]), ..https() },
            "headers.Authorization",
        ),
    ];
    for (config, needle) in cases {
        let err = source(config).unwrap_err();
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
}

/// What the gateway saw: (Authorization, X-Scope-OrgID) of each query.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

#[tokio::test]
async fn a_rotated_bearer_token_and_the_tenant_header_reach_the_gateway() {
    use axum::http::HeaderMap;
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let answer = move |headers: HeaderMap| {
        let record = record.clone();
        async move {
            let get = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            record.lock().unwrap().push((get("authorization"), get("x-scope-orgid")));
            axum::Json(serde_json::json!({
                "status": "success",
                "data": {"resultType": "vector", "result": [
                    {"metric": {"namespace": "shop", "service": "a"}, "value": [START + 300, "7"]}
                ]}
            }))
        }
    };
    let app = axum::Router::new().route("/api/v1/query", axum::routing::get(answer.clone()).post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let src = source(PrometheusConfig {
        url,
        bearer_token_file: Some(token.clone()),
        headers: BTreeMap::from([("X-Scope-OrgID".into(), "team-a".into())]),
        ..Default::default()
    })
    .unwrap();
    let t = Utc.timestamp_opt(START + 300, 0).unwrap();
    let rows = src.rows_at(t, &shop_a()).await.unwrap();
    assert_eq!(rows[0].get(Feature::InFlight), Some(7.0));
    // Rotated as a kubelet does a projected token: a new file renamed over the old.
    let next = dir.path().join("token.new");
    std::fs::write(&next, "second-token-longer\n").unwrap();
    std::fs::rename(&next, &token).unwrap();
    src.rows_at(t, &shop_a()).await.unwrap();
    // Gone for a moment mid-rotation: the last token read goes on being used.
    std::fs::remove_file(&token).unwrap();
    src.rows_at(t, &shop_a()).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let expected = [
        ("Bearer first-token", "team-a"),
        ("Bearer second-token-longer", "team-a"),
        ("Bearer second-token-longer", "team-a"),
    ];
    assert_eq!(seen, expected.map(|(a, b)| (a.to_owned(), b.to_owned())).to_vec());
}

/// The collector binary itself: a backfill through a Prometheus behind basic auth over
/// TLS stores every step with the right password, and with a wrong one fails naming the
/// credentials and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_binary_backfills_through_basic_auth_over_tls() {
    use common::{collector, output, stored_rows, write_config};
    use prescale_testkit::s3::S3Server;
    let dir = tempfile::tempdir().unwrap();
    let prom_dir = dir.path().join("prometheus");
    load_openmetrics(&Prometheus::data_dir(&prom_dir), &history());
    let (prometheus, secured) = tokio::task::block_in_place(|| Prometheus::start_secured(&prom_dir, "15s", ""));
    std::fs::create_dir_all(dir.path().join("s3")).unwrap();
    let server = S3Server::start(&dir.path().join("s3")).await.unwrap();
    server.create_bucket("data").unwrap();
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "guess\n").unwrap();
    let ts = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap().to_rfc3339();
    let backfill = |password_file: &std::path::Path| {
        let body = r#"step = "15s"
[catalog]
base = "none"
window = "60s"
[catalog.features]
in_flight = 'sum by (namespace, service) (inflight{namespace=~"{namespaces}"})'
[services]
list = ["shop/a"]
"#;
        let (config, _) = write_config(dir.path(), &prometheus.url(), body);
        let access = format!(
            "[prometheus.basic_auth]\nusername = {:?}\npassword_file = {:?}\n[prometheus.tls]\nca_file = {:?}\n",
            secured.username,
            password_file.display().to_string(),
            secured.pki.ca.display().to_string()
        );
        let text = std::fs::read_to_string(&config).unwrap().replace("[store]", &format!("{access}[store]"));
        std::fs::write(&config, text).unwrap();
        let mut cmd = collector(&server, &config);
        cmd.args(["backfill", "--from", &ts(START + 60), "--to", &ts(START + 600)]);
        output(cmd)
    };

    let out = backfill(&wrong).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("refused the credentials (HTTP 401)"), "{stderr}");
    assert!(stored_rows(&server).await.is_empty());

    let out = backfill(&secured.password_file).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let rows = stored_rows(&server).await;
    assert_eq!(rows.len(), 37, "{stdout}");
    assert!(rows.iter().all(|r| r.get(Feature::InFlight).is_some()));
}
