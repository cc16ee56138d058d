//! The Kubernetes backend against a mocked API server (`tower-test`'s mock pair, as
//! kube-rs's own tests do): the requests it makes, retry on conflict, refusal outside
//! bounds, and nothing written in shadow mode. Then `run`'s round end to end: decisions
//! from a real HTTP server, applied through the mocked API.

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use prescale_policy::{Decision, Reason, Served, ServicesResponse};
use prescale_scaler::kube_backend::{Applied, Applier, ApplyError, Target};
use serde_json::{Value, json};
use tower_test::mock::{Handle, pair};

const SCALE_PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/order/scale";

fn target() -> Target {
    Target::deployment("shop", "order", 1, 10)
}

fn scale(replicas: i32, version: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "order", "namespace": "shop", "resourceVersion": version},
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas}
    }))
    .unwrap()
}

fn conflict() -> Response<Body> {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Operation cannot be fulfilled: the object has been modified", "reason": "Conflict", "code": 409
    });
    Response::builder().status(StatusCode::CONFLICT).body(Body::from(serde_json::to_vec(&status).unwrap())).unwrap()
}

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn mock() -> (Client, ApiHandle) {
    let (service, handle) = pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

/// Asserts that the client sends nothing more (it may have hung up).
async fn expect_no_request(handle: &mut ApiHandle) {
    let next = tokio::time::timeout(std::time::Duration::from_millis(100), handle.next_request()).await;
    assert!(matches!(next, Err(_) | Ok(None)), "unexpected request: {:?}", next.ok().flatten().map(|(r, _)| r));
}

/// Answers one GET of the scale.
async fn expect_get(handle: &mut ApiHandle, replicas: i32, version: &str) {
    expect_get_at(handle, SCALE_PATH, replicas, version).await;
}

/// Answers one GET of the scale at `path`.
async fn expect_get_at(handle: &mut ApiHandle, path: &str, replicas: i32, version: &str) {
    let (request, send) = handle.next_request().await.expect("a GET of the scale");
    assert_eq!(request.method(), Method::GET);
    assert_eq!(request.uri().path(), path);
    send.send_response(Response::builder().body(Body::from(scale(replicas, version))).unwrap());
}

/// Receives one PUT of the scale, returns its body, and answers with `response`.
async fn expect_put(handle: &mut ApiHandle, response: Response<Body>) -> Value {
    expect_put_at(handle, SCALE_PATH, response).await
}

/// Receives one PUT of the scale at `path`, returns its body, and answers with `response`.
async fn expect_put_at(handle: &mut ApiHandle, path: &str, response: Response<Body>) -> Value {
    let (request, send) = handle.next_request().await.expect("a PUT of the scale");
    assert_eq!(request.method(), Method::PUT);
    assert_eq!(request.uri().path(), path);
    let body = request.into_body().collect_bytes().await.unwrap();
    send.send_response(response);
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn statefulsets_and_argo_rollouts_scale_through_their_own_scale_subresource() {
    for (kind, api_version, path) in [
        ("StatefulSet", None, "/apis/apps/v1/namespaces/shop/statefulsets/order/scale"),
        ("Rollout", None, "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/order/scale"),
        ("Widget", Some("example.com/v2"), "/apis/example.com/v2/namespaces/shop/widgets/order/scale"),
    ] {
        let target = Target {
            kind: kind.into(),
            api_version: api_version.map(str::to_owned),
            ..Target::deployment("shop", "order", 1, 10)
        };
        let (client, mut handle) = mock();
        let api = tokio::spawn(async move {
            expect_get_at(&mut handle, path, 3, "7").await;
            let put =
                expect_put_at(&mut handle, path, Response::builder().body(Body::from(scale(6, "8"))).unwrap()).await;
            assert_eq!(put["spec"]["replicas"], 6);
            assert_eq!(put["metadata"]["resourceVersion"], "7");
            expect_no_request(&mut handle).await;
        });
        let applied = Applier::new(client, false).apply(&target, 6).await.unwrap();
        assert_eq!(applied, Applied::Scaled { from: 3, to: 6, conflicts: 0 }, "{kind}");
        api.await.unwrap();
    }
    // A kind the scaler cannot place without its API version: refused before any request.
    let (client, mut handle) = mock();
    let unknown = Target { kind: "Widget".into(), ..Target::deployment("shop", "order", 1, 10) };
    let err = Applier::new(client, false).apply(&unknown, 5).await.unwrap_err();
    assert!(matches!(err, ApplyError::UnknownKind { .. }) && err.to_string().contains("shop/Widget/order"), "{err}");
    expect_no_request(&mut handle).await;
}

#[tokio::test]
async fn scales_through_the_scale_subresource_conditionally() {
    let (client, mut handle) = mock();
    let api = tokio::spawn(async move {
        expect_get(&mut handle, 2, "41").await;
        let put = expect_put(&mut handle, Response::builder().body(Body::from(scale(5, "42"))).unwrap()).await;
        assert_eq!(put["spec"]["replicas"], 5);
        assert_eq!(put["metadata"]["resourceVersion"], "41", "the write is conditional on what was read");
        expect_no_request(&mut handle).await;
    });
    let applied = Applier::new(client, false).apply(&target(), 5).await.unwrap();
    assert_eq!(applied, Applied::Scaled { from: 2, to: 5, conflicts: 0 });
    api.await.unwrap();
}

#[tokio::test]
async fn retries_on_conflict_with_a_fresh_read() {
    let (client, mut handle) = mock();
    let api = tokio::spawn(async move {
        expect_get(&mut handle, 2, "41").await;
        expect_put(&mut handle, conflict()).await;
        // Someone scaled to 3 meanwhile: the retry reads that and writes over version 43.
        expect_get(&mut handle, 3, "43").await;
        let put = expect_put(&mut handle, Response::builder().body(Body::from(scale(6, "44"))).unwrap()).await;
        assert_eq!(put["metadata"]["resourceVersion"], "43");
    });
    let applied = Applier::new(client, false).apply(&target(), 6).await.unwrap();
    assert_eq!(applied, Applied::Scaled { from: 3, to: 6, conflicts: 1 });
    api.await.unwrap();
}

#[tokio::test]
async fn refuses_outside_bounds_without_a_request() {
    let (client, mut handle) = mock();
    let applier = Applier::new(client, false);
    for desired in [0, 11] {
        let err = applier.apply(&target(), desired).await.unwrap_err();
        assert!(matches!(err, ApplyError::OutOfBounds { .. }), "{err}");
        assert!(err.to_string().contains("outside the allowed [1, 10]"), "{err}");
    }
    expect_no_request(&mut handle).await;
}

#[tokio::test]
async fn shadow_mode_reads_and_writes_nothing() {
    let (client, mut handle) = mock();
    let api = tokio::spawn(async move {
        expect_get(&mut handle, 2, "41").await;
        expect_no_request(&mut handle).await; // shadow mode must not write
    });
    let applied = Applier::new(client, true).apply(&target(), 7).await.unwrap();
    assert_eq!(applied, Applied::Shadow { from: 2, to: 7 });
    api.await.unwrap();
}

#[tokio::test]
async fn unchanged_replicas_write_nothing() {
    let (client, mut handle) = mock();
    let api = tokio::spawn(async move {
        expect_get(&mut handle, 4, "41").await;
        expect_no_request(&mut handle).await;
    });
    assert_eq!(Applier::new(client, false).apply(&target(), 4).await.unwrap(), Applied::Unchanged { replicas: 4 });
    api.await.unwrap();
}

fn served(decision: Decision) -> Served {
    let replicas = decision.desired_replicas;
    Served { decision, replicas, shadow: false, stale: false }
}

#[tokio::test]
async fn a_round_applies_the_predictors_decisions_to_configured_targets_only() {
    // The predictor's API, served for real on loopback.
    let decisions = ServicesResponse {
        services: vec![
            served(order_decision(chrono::Duration::zero())),
            served(Decision {
                service: "shop/unlisted".parse().unwrap(),
                time: chrono::Utc::now(),
                desired_replicas: 9,
                observed_demand: None,
                forecast: None,
                reason: Reason::Reactive,
                ready_replicas: None,
                reactive_replicas: None,
            }),
        ],
        shadow: false,
    };
    let url = predictor_serving(decisions).await;

    let config: prescale_scaler::run::RunConfig = prescale_core::config::from_toml_str(&format!(
        "predictor_url = \"{url}\"\nshadow = false\n[[targets]]\nnamespace = \"shop\"\ndeployment = \"order\"\nmin_replicas = 1\nmax_replicas = 10\n"
    ))
    .unwrap();
    let (client, mut handle) = mock();
    let api = tokio::spawn(async move {
        expect_get(&mut handle, 2, "7").await;
        let put = expect_put(&mut handle, Response::builder().body(Body::from(scale(4, "8"))).unwrap()).await;
        assert_eq!(put["spec"]["replicas"], 4);
    });
    let metrics = prescale_scaler::run::Metrics::default();
    let http = reqwest::Client::new();
    let results =
        prescale_scaler::run::round(&http, &config, &Applier::new(client, config.shadow), &metrics).await.unwrap();
    assert_eq!(results.len(), 1, "only the configured Deployment is touched");
    assert_eq!(*results[0].1.as_ref().unwrap(), Applied::Scaled { from: 2, to: 4, conflicts: 0 });
    api.await.unwrap();

    // The predictor down: an error, and nothing is touched.
    let down: prescale_scaler::run::RunConfig =
        prescale_core::config::from_toml_str("predictor_url = \"http://127.0.0.1:9\"\n").unwrap();
    assert!(down.shadow, "shadow is the default");
    let (client, _handle) = mock();
    let err = prescale_scaler::run::round(&http, &down, &Applier::new(client, true), &metrics).await.unwrap_err();
    assert!(err.to_string().contains("reading decisions from http://127.0.0.1:9"), "{err}");
}

#[test]
fn the_rbac_manifest_grants_only_the_scale_subresource() {
    let text = std::fs::read_to_string(prescale_testkit::repo_root().join("deploy/base/scaler-rbac.yaml")).unwrap();
    let docs: Vec<Value> = text
        .split("\n---")
        .filter(|d| d.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')))
        .map(|d| serde_yaml_ng::from_str(d).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Role", "RoleBinding"]);
    let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(docs[0].clone()).unwrap();
    for rule in role.rules.unwrap() {
        assert!(rule.resources.unwrap().iter().all(|r| r.ends_with("/scale")), "only scale subresources");
        assert!(rule.resource_names.is_some_and(|n| !n.is_empty()), "only named workloads");
        let mut verbs = rule.verbs.clone();
        verbs.sort();
        assert_eq!(verbs, ["get", "update"], "exactly what Applier uses: get_scale and replace_scale");
    }
    let _: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(docs[1].clone()).unwrap();
}

/// Serves `decisions` as the predictor's `GET /api/v1/services` on loopback; its base URL.
async fn predictor_serving(decisions: ServicesResponse) -> String {
    let app = axum::Router::new()
        .route("/api/v1/services", axum::routing::get(move || async move { axum::Json(decisions.clone()) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn order_decision(age: chrono::Duration) -> Decision {
    Decision {
        service: "shop/order".parse().unwrap(),
        time: chrono::Utc::now() - age,
        desired_replicas: 4,
        observed_demand: Some(30.0),
        forecast: None,
        reason: Reason::ReactiveFloor,
        ready_replicas: None,
        reactive_replicas: None,
    }
}

/// One round against `decisions` with writes on; asserts the API is never called and
/// answers the scaler's metrics.
async fn round_touching_nothing(decisions: ServicesResponse) -> String {
    let url = predictor_serving(decisions).await;
    let config: prescale_scaler::run::RunConfig = prescale_core::config::from_toml_str(&format!(
        "predictor_url = \"{url}\"\nshadow = false\n[[targets]]\nnamespace = \"shop\"\ndeployment = \"order\"\nmin_replicas = 1\nmax_replicas = 10\n"
    ))
    .unwrap();
    let (client, mut handle) = mock();
    let metrics = prescale_scaler::run::Metrics::default();
    let applier = Applier::new(client, false);
    let http = reqwest::Client::new();
    let round = prescale_scaler::run::round(&http, &config, &applier, &metrics);
    let results = tokio::time::timeout(std::time::Duration::from_secs(3), round)
        .await
        .expect("the round waited on the Kubernetes API: it tried to scale")
        .unwrap();
    assert!(results.is_empty(), "{results:?}");
    expect_no_request(&mut handle).await;
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    prescale_core::ops::encode(&registry)
}

#[tokio::test]
async fn stale_decisions_are_not_applied() {
    // Marked stale by the predictor.
    let mut marked = served(order_decision(chrono::Duration::seconds(5)));
    marked.stale = true;
    let text = round_touching_nothing(ServicesResponse { services: vec![marked], shadow: false }).await;
    assert!(
        text.contains(
            r#"prescale_scaler_actions_total{namespace="shop",kind="Deployment",name="order",action="stale"} 1"#
        ),
        "{text}"
    );
    // Not marked (an older predictor), but older than max_decision_age.
    let old = served(order_decision(chrono::Duration::minutes(30)));
    let text = round_touching_nothing(ServicesResponse { services: vec![old], shadow: false }).await;
    assert!(text.contains(r#"action="stale"} 1"#), "{text}");
}

#[tokio::test]
async fn the_predictors_shadow_mode_stops_the_scaler() {
    let mut shadowed = served(order_decision(chrono::Duration::seconds(5)));
    shadowed.shadow = true;
    let text = round_touching_nothing(ServicesResponse { services: vec![shadowed.clone()], shadow: true }).await;
    assert!(text.contains(r#"action="predictor_shadow"} 1"#), "{text}");
}
