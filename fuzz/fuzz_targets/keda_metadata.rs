//! KEDA's gRPC requests as a ScaledObject (anyone who can create one) shapes them: the
//! metadata map, names and metric name answered with a value or with `InvalidArgument` /
//! `Unavailable` naming what was wrong; never a panic or an internal error.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use prescale_core::ServiceId;
use prescale_policy::{Decision, Reason, Served};
use prescale_predictor::grpc::Scaler;
use prescale_predictor::metrics::Metrics;
use prescale_predictor::proto::external_scaler_server::ExternalScaler;
use prescale_predictor::proto::{GetMetricsRequest, ScaledObjectRef};
use prescale_predictor::state::Shared;
use tonic::{Code, Request};

#[derive(Debug, Arbitrary)]
struct Input {
    name: String,
    namespace: String,
    metadata: Vec<(String, String)>,
    metric_name: String,
    /// 0: nothing decided; 1: fresh decisions; 2: stale ones.
    decided: u8,
    shadow: bool,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

fn served(id: &ServiceId, age: chrono::Duration) -> Served {
    Served {
        decision: Decision {
            service: id.clone(),
            time: chrono::Utc::now() - age,
            desired_replicas: 3,
            observed_demand: Some(10.0),
            forecast: None,
            reason: Reason::Reactive,
            ready_replicas: Some(2),
            reactive_replicas: Some(3),
        },
        replicas: 3,
        shadow: false,
        stale: false,
    }
}

fn expected(code: Code) -> bool {
    matches!(code, Code::Ok | Code::InvalidArgument | Code::Unavailable | Code::NotFound)
}

fuzz_target!(|input: Input| {
    let ids: Vec<ServiceId> =
        ["storefront/order", "shop/order", "storefront/cart"].iter().map(|s| s.parse().unwrap()).collect();
    let shared = Arc::new(Shared::new(ids.clone(), input.shadow, Duration::from_secs(60), Metrics::new()));
    match input.decided % 3 {
        0 => {}
        1 => shared.publish(ids.iter().map(|id| (id.clone(), served(id, chrono::Duration::zero()))).collect()),
        _ => shared.publish(ids.iter().map(|id| (id.clone(), served(id, chrono::Duration::hours(1)))).collect()),
    }
    let scaler = Scaler::new(shared);
    let object = ScaledObjectRef {
        name: input.name,
        namespace: input.namespace,
        scaler_metadata: input.metadata.into_iter().collect::<HashMap<_, _>>(),
    };
    runtime().block_on(async {
        let codes = [
            scaler.is_active(Request::new(object.clone())).await.err().map(|s| s.code()),
            scaler.get_metric_spec(Request::new(object.clone())).await.err().map(|s| s.code()),
            scaler
                .get_metrics(Request::new(GetMetricsRequest {
                    scaled_object_ref: Some(object.clone()),
                    metric_name: input.metric_name,
                }))
                .await
                .err()
                .map(|s| s.code()),
            scaler
                .get_metrics(Request::new(GetMetricsRequest { scaled_object_ref: None, metric_name: String::new() }))
                .await
                .err()
                .map(|s| s.code()),
        ];
        for code in codes.into_iter().flatten() {
            assert!(expected(code), "unexpected gRPC status {code:?}");
        }
    });
});
