//! The KEDA resources of `keda/`: schema-valid after KEDA's CRD, one ScaledObject per way
//! of `keda.md`, each pointing at things that exist (the Deployment it scales, the
//! predictor's and Prometheus' Services and ports, the TriggerAuthentication), and each
//! trigger's metadata accepted by the real predictor: the gRPC server for `external` and
//! `external-push`, the HTTP API for `metrics-api`, a one-element PromQL aggregation for
//! `prometheus`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use prescale_checks::keda::{ScaledObject, TriggerAuthentication};
use prescale_checks::kustomize::build;
use prescale_checks::repo;
use prescale_core::ServiceId;
use prescale_policy::{Decision, Reason};
use prescale_predictor::config::PredictorConfig;
use prescale_predictor::grpc;
use prescale_predictor::http::{Api, app};
use prescale_predictor::metrics::Metrics;
use prescale_predictor::proto::external_scaler_client::ExternalScalerClient;
use prescale_predictor::proto::{GetMetricsRequest, ScaledObjectRef};
use prescale_predictor::state::{Served, Shared};
use serde_json::Value;
use tower::ServiceExt;

fn resources() -> (Vec<ScaledObject>, Vec<TriggerAuthentication>) {
    let objects = build(&repo().join("keda")).unwrap_or_else(|e| panic!("keda/: {e}"));
    let mut scaled = Vec::new();
    let mut auths = Vec::new();
    for o in &objects {
        match o["kind"].as_str() {
            Some("ScaledObject") => scaled.push(ScaledObject::from_value(o).unwrap_or_else(|e| panic!("{e}"))),
            Some("TriggerAuthentication") => {
                auths.push(TriggerAuthentication::from_value(o).unwrap_or_else(|e| panic!("{e}")))
            }
            other => panic!("keda/ holds a {other:?}"),
        }
    }
    (scaled, auths)
}

fn prod() -> Vec<Value> {
    build(&repo().join("deploy/overlays/prod")).unwrap()
}

/// The services the shipped ScaledObjects declare, read as the predictor's inventory
/// reads them: every one points at the predictor and is accepted, with its settings.
fn declared(config: &PredictorConfig) -> BTreeMap<String, prescale_core::inventory::Overrides> {
    use prescale_core::inventory::scaled_object::{PredictorAt, read};
    let host = config.scaled_objects.as_ref().expect("the predictor follows the ScaledObjects").predictor.clone();
    let objects = build(&repo().join("keda")).unwrap_or_else(|e| panic!("keda/: {e}"));
    let mut out = BTreeMap::new();
    for o in objects.iter().filter(|o| o["kind"] == "ScaledObject") {
        let (id, overrides) = read(o, &PredictorAt { host: host.clone() })
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("{}: no trigger on the predictor {host}", o["metadata"]["name"]));
        assert_eq!(id.name(), o["spec"]["scaleTargetRef"]["name"], "the service is the scale target");
        assert!(overrides.capacity.is_some(), "{id}: its capacity is declared with it");
        out.insert(id.to_string(), overrides);
    }
    out
}

fn predictor_config(objects: &[Value]) -> PredictorConfig {
    let cm = objects.iter().find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "predictor-config").unwrap();
    prescale_core::config::from_toml_str(cm["data"]["predictor.toml"].as_str().unwrap()).unwrap()
}

/// `host:port` of an address or URL.
fn host_port(address: &str) -> (String, u16) {
    let rest = address.split("://").nth(1).unwrap_or(address);
    let authority = rest.split('/').next().unwrap();
    let (host, port) = authority.rsplit_once(':').unwrap_or_else(|| panic!("{address} names no port"));
    (host.to_owned(), port.parse().unwrap())
}

/// Asserts that `host:port` is `<service>.<namespace>.svc.cluster.local` and a port of that
/// Service in the deployment.
fn assert_service_port(objects: &[Value], address: &str, service: &str, namespace: &str) -> u16 {
    let (host, port) = host_port(address);
    assert_eq!(host, format!("{service}.{namespace}.svc.cluster.local"), "{address}");
    let svc = objects
        .iter()
        .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == service && o["metadata"]["namespace"] == namespace)
        .unwrap_or_else(|| panic!("deploy/ has no Service {namespace}/{service}"));
    assert!(
        svc["spec"]["ports"].as_array().unwrap().iter().any(|p| p["port"] == port),
        "{address}: Service {service} has no port {port}"
    );
    port
}

#[test]
fn every_way_is_shipped_and_points_at_what_deploy_creates() {
    let (scaled, auths) = resources();
    let ways: BTreeSet<&str> = scaled.iter().flat_map(|s| s.spec.triggers.iter().map(|t| t.kind.as_str())).collect();
    assert_eq!(ways, BTreeSet::from(["external", "external-push", "metrics-api", "prometheus"]));
    let objects = prod();
    let config = predictor_config(&objects);
    let served: BTreeSet<String> = declared(&config).into_keys().collect();
    assert!(config.services.is_empty(), "the services are declared once, in the ScaledObjects");
    let mut targets = BTreeSet::new();
    for so in &scaled {
        let ns = so.metadata.namespace.as_deref().expect("a namespace");
        let name = so.metadata.name.as_deref().unwrap();
        let target = &so.spec.scale_target_ref.name;
        assert!(targets.insert(target.clone()), "two ScaledObjects scale {target}");
        assert!(
            objects.iter().any(|o| o["kind"] == "Deployment"
                && o["metadata"]["name"] == target.as_str()
                && o["metadata"]["namespace"] == ns),
            "{name}: no Deployment {ns}/{target}"
        );
        let fallback = so.spec.fallback.as_ref().unwrap_or_else(|| panic!("{name}: no fallback"));
        assert!(fallback.replicas >= so.spec.min_replica_count.unwrap_or(0), "{name}: fallback below the minimum");
        assert!(
            so.spec.advanced.as_ref().and_then(|a| a.horizontal_pod_autoscaler_config.as_ref()).is_some(),
            "{name}"
        );
        for t in &so.spec.triggers {
            let m = &t.metadata;
            match t.kind.as_str() {
                "external" | "external-push" => {
                    let port = assert_service_port(&objects, &m["scalerAddress"], "predictor", "prescale");
                    assert_eq!(config.grpc_listen.port(), port, "{name}: the predictor's gRPC port");
                    assert!(served.contains(&format!("{}/{}", m["namespace"], m["service"])), "{name}: {m:?}");
                    assert_eq!(m.get("enableTLS").map(String::as_str), Some("true"), "{name}: mutual TLS");
                    let auth = t.authentication_ref.as_ref().expect("TLS material");
                    let ta = auths
                        .iter()
                        .find(|a| {
                            a.metadata.name.as_deref() == Some(auth.name.as_str())
                                && a.metadata.namespace.as_deref() == Some(ns)
                        })
                        .unwrap_or_else(|| panic!("{name}: no TriggerAuthentication {ns}/{}", auth.name));
                    let params: BTreeSet<&str> =
                        ta.spec.secret_target_ref.iter().map(|r| r.parameter.as_str()).collect();
                    assert_eq!(params, BTreeSet::from(["caCert", "tlsClientCert", "tlsClientKey"]));
                    assert!(
                        config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
                        "the predictor requires client certificates"
                    );
                }
                "metrics-api" => {
                    let port = assert_service_port(&objects, &m["url"], "predictor", "prescale");
                    assert_eq!(config.listen.port(), port, "{name}: the predictor's HTTP port");
                    assert_eq!(m["targetValue"], "1");
                }
                "prometheus" => {
                    assert_service_port(&objects, &m["serverAddress"], "prometheus", "prescale");
                    assert_eq!(m.get("ignoreNullValues").map(String::as_str), Some("false"), "{name}");
                    assert_eq!(m["threshold"], "1");
                }
                _ => unreachable!(),
            }
        }
    }
}

fn decision(id: &ServiceId, replicas: u32) -> (ServiceId, Served) {
    let decision = Decision {
        service: id.clone(),
        time: Utc::now(),
        desired_replicas: replicas,
        observed_demand: Some(40.0),
        forecast: None,
        reason: Reason::Reactive,
        ready_replicas: Some(2),
        reactive_replicas: Some(replicas),
    };
    (id.clone(), Served { decision, replicas, shadow: false, stale: false })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_predictor_accepts_every_triggers_metadata() {
    let (scaled, _) = resources();
    let config = predictor_config(&prod());
    let ids: Vec<ServiceId> = declared(&config).keys().map(|s| s.parse::<ServiceId>().unwrap()).collect();
    let shared = Arc::new(Shared::new(ids.clone(), false, Duration::from_secs(300), Metrics::new()));
    let expected: BTreeMap<String, u32> =
        ids.iter().enumerate().map(|(i, id)| (id.to_string(), 3 + i as u32)).collect();
    shared.publish(ids.iter().map(|id| decision(id, expected[&id.to_string()])).collect());

    // The gRPC server as KEDA dials it (TLS itself is covered by the predictor's tests).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(grpc::serve(shared.clone(), listener, None, std::future::pending()));
    let mut client = None;
    for _ in 0..50 {
        if let Ok(c) = ExternalScalerClient::connect(format!("http://{addr}")).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = client.expect("the gRPC server came up");
    let api = app(Api { shared: shared.clone(), admin_token: None, reload: Default::default() });

    let mut checked = 0;
    for so in &scaled {
        let name = so.metadata.name.clone().unwrap();
        let namespace = so.metadata.namespace.clone().unwrap();
        for t in &so.spec.triggers {
            let m = &t.metadata;
            match t.kind.as_str() {
                "external" | "external-push" => {
                    // KEDA sends the whole trigger metadata, with the ScaledObject's name and namespace.
                    let object = ScaledObjectRef {
                        name: name.clone(),
                        namespace: namespace.clone(),
                        scaler_metadata: m.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<HashMap<_, _>>(),
                    };
                    let spec = client.get_metric_spec(object.clone()).await.unwrap_or_else(|e| panic!("{name}: {e}"));
                    let spec = spec.into_inner();
                    assert_eq!(spec.metric_specs[0].target_size_float, 1.0);
                    let values = client
                        .get_metrics(GetMetricsRequest {
                            scaled_object_ref: Some(object.clone()),
                            metric_name: format!("s0-{}", spec.metric_specs[0].metric_name),
                        })
                        .await
                        .unwrap_or_else(|e| panic!("{name}: {e}"))
                        .into_inner();
                    let want = expected[&format!("{}/{}", m["namespace"], m["service"])];
                    assert_eq!(values.metric_values[0].metric_value_float, f64::from(want), "{name}");
                    assert!(client.is_active(object.clone()).await.unwrap().into_inner().result, "{name}");
                    if t.kind == "external-push" {
                        let mut stream = client.stream_is_active(object).await.unwrap().into_inner();
                        let first = tokio::time::timeout(Duration::from_secs(2), stream.message()).await;
                        assert!(first.unwrap().unwrap().unwrap().result, "{name}: the stream opens with the state");
                    }
                }
                "metrics-api" => {
                    let path = m["url"].split("9100").nth(1).unwrap().to_owned();
                    let res = api
                        .clone()
                        .oneshot(axum::http::Request::get(&path).body(axum::body::Body::empty()).unwrap())
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 200, "{name}: GET {path}");
                    let body: Value =
                        serde_json::from_slice(&axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap()).unwrap();
                    let service = path.trim_start_matches("/api/v1/services/");
                    assert_eq!(
                        body[&m["valueLocation"]].as_u64(),
                        Some(u64::from(expected[service])),
                        "{name}: {body}"
                    );
                }
                "prometheus" => {
                    let expr = promql_parser::parser::parse(&m["query"]).unwrap_or_else(|e| panic!("{name}: {e}"));
                    // An aggregation without `by` returns exactly one element.
                    match expr {
                        promql_parser::parser::Expr::Aggregate(a) => assert!(a.modifier.is_none(), "{name}: grouped"),
                        other => panic!("{name}: {other:?} may return several elements"),
                    }
                    assert!(m["query"].contains("ml_predicted_replicas"));
                }
                _ => unreachable!(),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}
