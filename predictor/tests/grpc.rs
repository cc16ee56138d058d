//! KEDA's external-scaler interface through a real gRPC client generated from the same
//! proto (`proto/externalscaler.proto`, written field for field from `keda.md`), against
//! the server on a loopback port.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use prescale_core::ServiceId;
use prescale_policy::{Decision, Reason};
use prescale_predictor::grpc;
use prescale_predictor::metrics::Metrics;
use prescale_predictor::proto::external_scaler_client::ExternalScalerClient;
use prescale_predictor::proto::{GetMetricsRequest, ScaledObjectRef};
use prescale_predictor::state::{Served, Shared};
use tonic::Code;
use tonic::transport::Channel;

fn served(id: &ServiceId, replicas: u32, age_seconds: i64) -> (ServiceId, Served) {
    let decision = Decision {
        service: id.clone(),
        time: Utc::now() - chrono::Duration::seconds(age_seconds),
        desired_replicas: replicas,
        observed_demand: Some(12.0),
        forecast: None,
        reason: Reason::Reactive,
        ready_replicas: None,
        reactive_replicas: None,
    };
    (id.clone(), Served { decision, replicas, shadow: false, stale: false })
}

async fn start(shared: Arc<Shared>) -> ExternalScalerClient<Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(grpc::serve(shared, listener, None, std::future::pending()));
    for _ in 0..50 {
        if let Ok(c) = ExternalScalerClient::connect(format!("http://{addr}")).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gRPC server did not come up");
}

fn object(meta: &[(&str, &str)]) -> ScaledObjectRef {
    ScaledObjectRef {
        name: "order-scaler".into(),
        namespace: "shop".into(),
        scaler_metadata: meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>(),
    }
}

fn ids() -> (ServiceId, ServiceId) {
    (ServiceId::new("shop", "order").unwrap(), ServiceId::new("shop", "cart").unwrap())
}

#[tokio::test]
async fn metric_spec_metrics_and_activity_follow_the_decisions() {
    let (order, cart) = ids();
    let shared =
        Arc::new(Shared::new(vec![order.clone(), cart.clone()], false, Duration::from_secs(300), Metrics::new()));
    shared.publish(vec![served(&order, 7, 0), served(&cart, 0, 0)]);
    let mut client = start(shared.clone()).await;

    let spec = client.get_metric_spec(object(&[("service", "order")])).await.unwrap().into_inner();
    assert_eq!(spec.metric_specs.len(), 1);
    let s = &spec.metric_specs[0];
    #[allow(deprecated)]
    let target = s.target_size;
    assert_eq!((s.metric_name.as_str(), s.target_size_float, target), (grpc::METRIC_NAME, 1.0, 1));

    let request = |meta: &[(&str, &str)]| GetMetricsRequest {
        scaled_object_ref: Some(object(meta)),
        metric_name: "s0-ml_predicted_replicas".into(),
    };
    let values = client
        .get_metrics(request(&[("service", "order"), ("scalerAddress", "predictor:9500")]))
        .await
        .unwrap()
        .into_inner();
    #[allow(deprecated)]
    let (float, int) = (values.metric_values[0].metric_value_float, values.metric_values[0].metric_value);
    assert_eq!((float, int), (7.0, 7), "the predicted replicas of the named service");
    let values = client.get_metrics(request(&[("service", "shop/cart")])).await.unwrap().into_inner();
    assert_eq!(values.metric_values[0].metric_value_float, 0.0);

    assert!(client.is_active(object(&[("service", "order")])).await.unwrap().into_inner().result);
    assert!(!client.is_active(object(&[("service", "cart")])).await.unwrap().into_inner().result);

    // StreamIsActive: the current state at once, then each change.
    let mut stream = client.stream_is_active(object(&[("service", "cart")])).await.unwrap().into_inner();
    let first = tokio::time::timeout(Duration::from_secs(2), stream.message()).await.unwrap().unwrap().unwrap();
    assert!(!first.result, "cart starts inactive");
    shared.publish(vec![served(&cart, 2, 0)]);
    let next = tokio::time::timeout(Duration::from_secs(2), stream.message()).await.unwrap().unwrap().unwrap();
    assert!(next.result, "cart turned active");

    let status = client.stream_metric_spec(object(&[("service", "order")])).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
}

#[tokio::test]
async fn a_closed_activity_stream_ends_its_task_even_when_activity_never_changes() {
    let (order, cart) = ids();
    let shared =
        Arc::new(Shared::new(vec![order.clone(), cart.clone()], false, Duration::from_secs(300), Metrics::new()));
    shared.publish(vec![served(&order, 3, 0), served(&cart, 3, 0)]);
    let mut client = start(shared.clone()).await;
    let before = shared.subscribers();
    let mut stream = client.stream_is_active(object(&[("service", "order")])).await.unwrap().into_inner();
    assert!(tokio::time::timeout(Duration::from_secs(2), stream.message()).await.unwrap().unwrap().unwrap().result);
    assert_eq!(shared.subscribers(), before + 1, "one subscriber per open stream");
    drop(stream);
    // Steps keep coming with the same activity: nothing is ever sent on the closed stream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while shared.subscribers() > before {
        assert!(tokio::time::Instant::now() < deadline, "the stream's task outlived it");
        shared.publish(vec![served(&order, 3, 0)]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bad_metadata_is_refused_naming_the_key() {
    let (order, cart) = ids();
    let shared =
        Arc::new(Shared::new(vec![order.clone(), cart.clone()], false, Duration::from_secs(300), Metrics::new()));
    shared.publish(vec![served(&order, 3, 0)]);
    let mut client = start(shared).await;
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[], "`service` is missing"),
        (&[("service", "order"), ("quantile", "p99")], "quantile"),
        (&[("service", "payments")], "shop/payments"),
        (&[("service", "order"), ("activationReplicas", "two")], "activationReplicas"),
        (&[("service", "other/order")], "other/order"),
    ];
    for (meta, needle) in cases {
        let status = client.get_metric_spec(object(meta)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{meta:?}: {status:?}");
        assert!(status.message().contains(needle), "{meta:?}: expected {needle:?} in {:?}", status.message());
        let status = client
            .get_metrics(GetMetricsRequest { scaled_object_ref: Some(object(meta)), metric_name: String::new() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
    let status = client
        .get_metrics(GetMetricsRequest { scaled_object_ref: None, metric_name: String::new() })
        .await
        .unwrap_err();
    assert!(status.message().contains("scaledObjectRef"));
}

#[tokio::test]
async fn no_decision_or_a_stale_one_fails_unavailable_for_kedas_fallback() {
    let (order, cart) = ids();
    let shared =
        Arc::new(Shared::new(vec![order.clone(), cart.clone()], false, Duration::from_secs(60), Metrics::new()));
    shared.publish(vec![served(&order, 4, 120)]);
    let mut client = start(shared).await;
    let get = |svc: &str| GetMetricsRequest {
        scaled_object_ref: Some(object(&[("service", svc)])),
        metric_name: String::new(),
    };
    let stale = client.get_metrics(get("order")).await.unwrap_err();
    assert_eq!(stale.code(), Code::Unavailable);
    assert!(stale.message().contains("staleness"), "{}", stale.message());
    let none = client.get_metrics(get("cart")).await.unwrap_err();
    assert_eq!(none.code(), Code::Unavailable);
    assert!(client.is_active(object(&[("service", "order")])).await.is_err());
}

/// A CA, a server certificate for `localhost` and a client certificate, as the gRPC
/// server's settings.
fn certificates(dir: &std::path::Path) -> prescale_predictor::config::TlsConfig {
    let pki = prescale_testkit::certs::Pki::generate(dir, "keda-operator");
    prescale_predictor::config::TlsConfig { cert: pki.server_cert, key: pki.server_key, client_ca: Some(pki.ca) }
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    grpc::install_tls_provider();
    let dir = tempfile::tempdir().unwrap();
    let tls = certificates(dir.path());
    let (order, _) = ids();
    let shared = Arc::new(Shared::new(vec![order.clone()], false, Duration::from_secs(300), Metrics::new()));
    shared.publish(vec![served(&order, 5, 0)]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_tls = tls.clone();
    tokio::spawn(async move { grpc::serve(shared, listener, Some(&server_tls), std::future::pending()).await });
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    let ca = Certificate::from_pem(read(tls.client_ca.as_ref().unwrap()));
    let connect = |identity: Option<Identity>| {
        let mut config = ClientTlsConfig::new().ca_certificate(ca.clone()).domain_name("localhost");
        if let Some(id) = identity {
            config = config.identity(id);
        }
        async move {
            let channel =
                Channel::from_shared(format!("https://{addr}")).unwrap().tls_config(config)?.connect().await?;
            Ok::<_, tonic::transport::Error>(ExternalScalerClient::new(channel))
        }
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let request =
        || GetMetricsRequest { scaled_object_ref: Some(object(&[("service", "order")])), metric_name: String::new() };

    let identity = Identity::from_pem(read(&dir.path().join("client.pem")), read(&dir.path().join("client-key.pem")));
    let mut client = connect(Some(identity)).await.unwrap();
    let values = client.get_metrics(request()).await.unwrap().into_inner();
    assert_eq!(values.metric_values[0].metric_value_float, 5.0, "served over mutual TLS");

    // Without a client certificate the handshake or the call fails.
    let refused = match connect(None).await {
        Err(_) => true,
        Ok(mut c) => c.get_metrics(request()).await.is_err(),
    };
    assert!(refused, "a client without a certificate must be refused");
}

#[tokio::test]
async fn any_metadata_map_gets_an_answer_or_a_refusal_naming_a_key() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    let (order, cart) = ids();
    let shared =
        Arc::new(Shared::new(vec![order.clone(), cart.clone()], false, Duration::from_secs(300), Metrics::new()));
    shared.publish(vec![served(&order, 3, 0), served(&cart, 1, 0)]);
    let client = start(shared).await;
    // Keys KEDA and users send, and others; values plausible and hostile.
    let keys = prop::sample::select(vec![
        "service",
        "namespace",
        "activationReplicas",
        "scalerAddress",
        "enableTLS",
        "quantile",
        "",
        "SERVICE",
        "ns",
    ]);
    let values = prop_oneof![
        prop::sample::select(vec!["order", "cart", "shop/order", "shop/cart", "other/order", "2", "-1", "", "/"])
            .prop_map(str::to_owned),
        "\\PC{0,30}",
        "[0-9]{1,25}",
    ];
    let maps = prop::collection::hash_map(keys, values, 0..5);
    let mut runner = TestRunner::new(Config { cases: 300, failure_persistence: None, ..Config::default() });
    let mut cases = Vec::new();
    for _ in 0..300 {
        cases.push(maps.new_tree(&mut runner).unwrap().current());
    }
    for meta in cases {
        let pairs: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut c = client.clone();
        match c.get_metric_spec(object(&pairs)).await {
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status.code(), Code::InvalidArgument, "{meta:?}: {status:?}");
                assert!(status.message().contains("scalerMetadata"), "{meta:?}: {}", status.message());
            }
        }
        let request = GetMetricsRequest { scaled_object_ref: Some(object(&pairs)), metric_name: String::new() };
        match c.get_metrics(request).await {
            Ok(r) => assert_eq!(r.into_inner().metric_values.len(), 1, "{meta:?}"),
            Err(status) => {
                assert!(matches!(status.code(), Code::InvalidArgument | Code::Unavailable), "{meta:?}: {status:?}")
            }
        }
    }
}
