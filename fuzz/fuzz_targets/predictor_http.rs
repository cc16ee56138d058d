//! Any HTTP request to the predictor's API (paths, methods, headers, JSON bodies): an answer
//! below 500, or 503 when there is no fresh decision; never a panic, and the admin
//! endpoints never act without the token.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use prescale_core::ServiceId;
use prescale_policy::{Decision, Reason, Served};
use prescale_predictor::http::{Api, app};
use prescale_predictor::metrics::Metrics;
use prescale_predictor::state::Shared;
use tower::ServiceExt;

const TOKEN: &str = "fuzzing-admin-token-0123456789";

#[derive(Debug, Arbitrary)]
struct Input {
    method: u8,
    path: String,
    authorization: Option<String>,
    right_token: bool,
    content_type: Option<String>,
    body: Vec<u8>,
    decided: bool,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

fuzz_target!(|input: Input| {
    let ids: Vec<ServiceId> = ["storefront/order", "shop/order"].iter().map(|s| s.parse().unwrap()).collect();
    let shared = Arc::new(Shared::new(ids.clone(), false, Duration::from_secs(60), Metrics::new()));
    if input.decided {
        shared.publish(
            ids.iter()
                .map(|id| {
                    let decision = Decision {
                        service: id.clone(),
                        time: chrono::Utc::now(),
                        desired_replicas: 2,
                        observed_demand: None,
                        forecast: None,
                        reason: Reason::Reactive,
                        ready_replicas: None,
                        reactive_replicas: None,
                    };
                    (id.clone(), Served { decision, replicas: 2, shadow: false, stale: false })
                })
                .collect(),
        );
    }
    let api = Api { shared: shared.clone(), admin_token: Some(TOKEN.into()), reload: Default::default() };
    let method = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"][usize::from(input.method) % 7];
    let path = if input.path.starts_with('/') { input.path } else { format!("/{}", input.path) };
    let mut request = http::Request::builder().method(method).uri(&path);
    let authorization = if input.right_token { Some(format!("Bearer {TOKEN}")) } else { input.authorization };
    if let Some(a) = &authorization {
        request = request.header("authorization", a.as_str());
    }
    if let Some(c) = &input.content_type {
        request = request.header("content-type", c.as_str());
    }
    let Ok(request) = request.body(Body::from(input.body)) else { return };
    let shadow_before = shared.shadow();
    let status = runtime().block_on(async {
        let response = app(api).oneshot(request).await.expect("the router is infallible");
        let status = response.status();
        response.into_body().collect().await.expect("the body reads");
        status
    });
    assert!(status.as_u16() < 500 || status.as_u16() == 503, "{method} {path} answered {status}");
    if !input.right_token {
        assert_eq!(shared.shadow(), shadow_before, "{method} {path} changed shadow mode without the token");
    }
});
