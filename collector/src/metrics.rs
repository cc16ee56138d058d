//! The collector's own metrics and readiness, served as `/metrics`, `/healthz` and
//! `/readyz` by core's ops router.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prescale_core::ops::Probe;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How a step ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `collected` (live), `missed` (Prometheus unreachable; to fill), `filled` (from a
    /// range query later), `given_up` (written as missing values).
    pub outcome: &'static str,
}

/// Every metric the collector exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Steps by outcome.
    pub steps: Family<OutcomeLabels, Counter>,
    /// Failed Prometheus query attempts (retries included).
    pub query_errors: Counter,
    /// Rows made durable in the spool.
    pub rows_spooled: Counter,
    /// Rows written to the store.
    pub rows_flushed: Counter,
    /// Flush attempts that failed (the rows stay in the spool).
    pub flush_errors: Counter,
    /// Time to write one sealed segment to the store.
    pub flush_seconds: Histogram,
    /// Time to query and spool one live step.
    pub step_seconds: Histogram,
    /// Rows in the spool not yet in the store.
    pub spool_rows: Gauge,
    /// Bytes of the spool's segment files.
    pub spool_bytes: Gauge,
    /// Steps still to fill from Prometheus.
    pub gap_steps: Gauge,
    /// Unix time of the last step collected or filled.
    pub last_step: Gauge<f64, AtomicU64>,
    /// Rows dropped unflushed because the spool reached its bound.
    pub spool_dropped_rows: Counter,
    /// Services in the inventory at the last step.
    pub services: Gauge,
    /// Services refused at the last step: over `services.max`, or ScaledObjects with bad
    /// metadata.
    pub services_refused: Gauge,
    ready: Arc<AtomicBool>,
    store_down: Arc<AtomicBool>,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family under `prescale_collector_`.
    pub fn new() -> Self {
        let mut root = Registry::default();
        prescale_core::ops::register_build_info(&mut root, "collector");
        let registry = root.sub_registry_with_prefix("prescale_collector");
        let steps = Family::<OutcomeLabels, Counter>::default();
        let query_errors = Counter::default();
        let rows_spooled = Counter::default();
        let rows_flushed = Counter::default();
        let flush_errors = Counter::default();
        let flush_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let step_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let spool_rows = Gauge::default();
        let spool_bytes = Gauge::default();
        let gap_steps = Gauge::default();
        let last_step = Gauge::<f64, AtomicU64>::default();
        let spool_dropped_rows = Counter::default();
        let services = Gauge::default();
        let services_refused = Gauge::default();
        registry.register("steps", "Steps by outcome", steps.clone());
        registry.register("services", "Services in the inventory at the last step", services.clone());
        registry.register(
            "services_refused",
            "Services refused at the last step: over services.max, or ScaledObjects with bad metadata",
            services_refused.clone(),
        );
        registry.register(
            "spool_dropped_rows",
            "Rows dropped unflushed because the spool reached its bound (spool_max_bytes, spool_max_age)",
            spool_dropped_rows.clone(),
        );
        registry.register("query_errors", "Failed Prometheus query attempts, retries included", query_errors.clone());
        registry.register("rows_spooled", "Rows made durable in the local spool", rows_spooled.clone());
        registry.register("rows_flushed", "Rows written to the store as Parquet", rows_flushed.clone());
        registry.register("flush_errors", "Flushes that failed; their rows stay spooled", flush_errors.clone());
        registry.register("flush_duration_seconds", "Time to write one spool segment", flush_seconds.clone());
        registry.register("step_duration_seconds", "Time to query and spool one live step", step_seconds.clone());
        registry.register("spool_rows", "Rows in the spool not yet in the store", spool_rows.clone());
        registry.register("spool_bytes", "Bytes of the spool's segment files", spool_bytes.clone());
        registry.register("gap_steps", "Steps still to fill from Prometheus", gap_steps.clone());
        registry.register(
            "last_step_timestamp_seconds",
            "Unix time of the last step collected or filled",
            last_step.clone(),
        );
        Self {
            steps,
            query_errors,
            rows_spooled,
            rows_flushed,
            flush_errors,
            flush_seconds,
            step_seconds,
            spool_rows,
            spool_bytes,
            gap_steps,
            last_step,
            spool_dropped_rows,
            services,
            services_refused,
            ready: Arc::new(AtomicBool::new(false)),
            store_down: Arc::new(AtomicBool::new(false)),
            registry: Arc::new(root),
        }
    }

    /// Counts one step with its outcome.
    pub fn step(&self, outcome: &'static str) {
        self.steps.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Marks the collector ready (spool recovered, loop running).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Marks the store unreachable (flushes failing) or reachable again.
    pub fn set_store_down(&self, down: bool) {
        self.store_down.store(down, Ordering::Relaxed);
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        prescale_core::ops::encode(&self.registry)
    }
}

/// The collector's `/metrics` and readiness, served by core's ops router.
impl Probe for Metrics {
    fn metrics(&self) -> String {
        self.encode()
    }

    fn not_ready(&self) -> Option<&'static str> {
        if !self.ready.load(Ordering::Relaxed) {
            return Some("recovering the spool");
        }
        // Steps are still collected into the spool, but an outage should be seen.
        self.store_down.load(Ordering::Relaxed).then_some("the store is unreachable; rows wait in the spool")
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn exposes_every_family_and_readiness() {
        let m = Metrics::new();
        m.step("collected");
        m.last_step.set(1.7e9);
        let app = prescale_core::ops::router(Arc::new(m.clone()));
        let res = app.clone().oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        m.set_ready(true);
        let res = app.clone().oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        // A store outage shows in readiness while rows keep spooling.
        m.set_store_down(true);
        let res = app.clone().oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        m.set_store_down(false);
        let text = m.encode();
        for name in [
            "prescale_collector_steps_total{outcome=\"collected\"} 1",
            "prescale_collector_query_errors_total",
            "prescale_collector_rows_spooled_total",
            "prescale_collector_rows_flushed_total",
            "prescale_collector_flush_duration_seconds_bucket",
            "prescale_collector_spool_rows",
            "prescale_collector_gap_steps",
            "prescale_collector_spool_dropped_rows_total",
            "prescale_collector_last_step_timestamp_seconds 1700000000",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
    }
}
