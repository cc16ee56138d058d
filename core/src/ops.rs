//! The operations endpoints every long-running component serves: `/metrics` (the
//! OpenMetrics text of its registry), `/healthz` (the process answers) and `/readyz`
//! (it can do its job: a spool recovered, a first decision made).
//!
//! A component implements [`Probe`] and merges [`router`] into its own routes, so
//! probes and scrapes behave the same in the collector, the predictor, the scaler and the
//! storefront.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

/// The content type of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the ops endpoints ask a component.
pub trait Probe: Send + Sync + 'static {
    /// The text exposition of the component's metrics.
    fn metrics(&self) -> String;

    /// Why the component cannot do its job yet (the `/readyz` body with a 503);
    /// `None` when it can.
    fn not_ready(&self) -> Option<&'static str> {
        None
    }
}

/// The text exposition of a registry.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

impl Probe for Registry {
    fn metrics(&self) -> String {
        encode(self)
    }
}

/// Registers `prescale_build_info{component, version}` (always 1) on `registry`, which must
/// be unprefixed: every component exports the same family, so one query lists what runs
/// where and at which version.
pub fn register_build_info(registry: &mut Registry, component: &str) {
    // A gauge at 1, as `go_build_info` and most exporters do (an OpenMetrics `info` type
    // would not parse in Prometheus' classic text format).
    let info = prometheus_client::metrics::family::Family::<
        Vec<(String, String)>,
        prometheus_client::metrics::gauge::Gauge,
    >::default();
    info.get_or_create(&vec![
        ("component".to_owned(), component.to_owned()),
        ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
    ])
    .set(1);
    registry.register("prescale_build_info", "The component and the version it was built from", info);
}

/// `/metrics`, `/healthz` and `/readyz` for a component.
pub fn router(probe: Arc<dyn Probe>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(probe)
}

async fn metrics(State(probe): State<Arc<dyn Probe>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], probe.metrics())
}

async fn ready(State(probe): State<Arc<dyn Probe>>) -> impl IntoResponse {
    match probe.not_ready() {
        None => (StatusCode::OK, "ready"),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

#[cfg(test)]
mod build_info_tests {
    use super::*;

    #[test]
    fn build_info_names_the_component_and_version() {
        let mut r = Registry::default();
        register_build_info(&mut r, "collector");
        let text = encode(&r);
        let line =
            format!("prescale_build_info{{component=\"collector\",version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        assert!(text.contains(&line), "{text}");
        assert!(text.contains("# TYPE prescale_build_info gauge"), "{text}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use prometheus_client::metrics::counter::Counter;
    use tower::ServiceExt;

    use super::*;

    struct Component {
        registry: Registry,
        ready: AtomicBool,
    }

    impl Probe for Component {
        fn metrics(&self) -> String {
            encode(&self.registry)
        }
        fn not_ready(&self) -> Option<&'static str> {
            (!self.ready.load(Ordering::Relaxed)).then_some("recovering")
        }
    }

    async fn get(app: &Router, path: &str) -> (StatusCode, String) {
        let res = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = res.status();
        (status, String::from_utf8(to_bytes(res.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap())
    }

    #[tokio::test]
    async fn metrics_health_and_readiness() {
        let mut registry = Registry::default();
        let steps = Counter::<u64>::default();
        registry.register("steps", "Steps", steps.clone());
        steps.inc();
        let component = Arc::new(Component { registry, ready: AtomicBool::new(false) });
        let app = router(component.clone());
        assert_eq!(get(&app, "/healthz").await, (StatusCode::OK, "ok".into()));
        assert_eq!(get(&app, "/readyz").await, (StatusCode::SERVICE_UNAVAILABLE, "recovering".into()));
        component.ready.store(true, Ordering::Relaxed);
        assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
        let (status, text) = get(&app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("steps_total 1"), "{text}");
    }
}
