//! The predictor's `/metrics`: what it serves, what it forecast, how good past forecasts
//! were, which model, and every fallback.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `namespace` and `service`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub service: String,
}

/// The `quantile` label of the forecast series: Prometheus' convention (`"0.5"`, as a
/// summary writes it), for the p50 and the p90.
pub const QUANTILES: [&str; 2] = ["0.5", "0.9"];

/// A forecast point.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForecastLabels {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub service: String,
    /// `p50` or `p90`.
    pub quantile: &'static str,
    /// Seconds ahead.
    pub horizon_seconds: u32,
}

/// The policy setting a service runs.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub service: String,
    /// Where the setting comes from: `objective` (chosen from the model's tuned menu for
    /// the service's objective) or `configured`.
    pub source: &'static str,
    /// The setting in words (`PolicySettings::describe`: durations in steps).
    pub setting: String,
}

/// The model of a service.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub service: String,
    /// Model version.
    pub version: String,
    /// The forecaster of that version serving the service (`transformer`, a baseline).
    pub forecaster: String,
}

/// The reason of the last decision (1 for the current one).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub service: String,
    /// The policy term that decided.
    pub reason: &'static str,
}

/// A fallback or an outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// What happened.
    pub kind: &'static str,
}

/// A fallback: for one service (`namespace`, `service`), or for every service at once
/// (both empty: Prometheus unreachable, a query failed). Bounded: a service's series go
/// with the service ([`Metrics::forget`]).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    /// The service's namespace; empty for a fallback of every service.
    pub namespace: String,
    /// The service's name; empty for a fallback of every service.
    pub service: String,
    /// What happened.
    pub kind: &'static str,
}

impl FallbackLabels {
    /// A fallback of every service.
    pub fn every(kind: &'static str) -> Self {
        Self { namespace: String::new(), service: String::new(), kind }
    }
}

/// The fallbacks taken for one service at a time.
pub const SERVICE_FALLBACKS: [&str; 4] = ["no_model", "short_history", "forecast_failed", "stale"];

/// Every metric the predictor exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Replicas served to KEDA (in shadow mode: the replicas ready now).
    pub predicted_replicas: Family<ServiceLabels, Gauge<f64, AtomicU64>>,
    /// Replicas the policy decided, served or not (shadow).
    pub decided_replicas: Family<ServiceLabels, Gauge<f64, AtomicU64>>,
    /// Forecast demand per horizon and quantile.
    pub forecast: Family<ForecastLabels, Gauge<f64, AtomicU64>>,
    /// Demand observed at the last step.
    pub observed: Family<ServiceLabels, Gauge<f64, AtomicU64>>,
    /// Replicas ready at the last step, as observed.
    pub ready_replicas: Family<ServiceLabels, Gauge<f64, AtomicU64>>,
    /// For a service stating an objective and served by a model with a tuned policy:
    /// the validation share of short steps of the setting it runs, and whether that meets
    /// the objective (absent otherwise).
    pub objective_validation_share: Family<ServiceLabels, Gauge<f64, AtomicU64>>,
    /// 1 when the setting run meets the service's objective on validation, 0 when none
    /// did and the safest runs.
    pub objective_met: Family<ServiceLabels, Gauge>,
    /// Replicas the demand observed at the last step needs by itself (the reactive need).
    pub reactive_replicas: Family<ServiceLabels, Gauge<f64, AtomicU64>>,
    /// Absolute error of the forecast made one horizon ago for the last step, requests/s.
    pub forecast_error: Family<ServiceLabels, Gauge<f64, AtomicU64>>,
    /// 1 for the model version in use.
    pub model_info: Family<ModelLabels, Gauge>,
    /// 1 for the policy setting each service runs (one series per service).
    pub policy_info: Family<PolicyLabels, Gauge>,
    /// Seconds since the model in use was trained.
    pub model_age: Family<ServiceLabels, Gauge<f64, AtomicU64>>,
    /// 1 for the reason of the last decision.
    pub reason: Family<ReasonLabels, Gauge>,
    /// Fallbacks taken: `no_model`, `short_history`, `prometheus_unreachable`, `stale`.
    pub fallbacks: Family<FallbackLabels, Counter>,
    /// Model reload checks by outcome.
    pub reloads: Family<KindLabels, Counter>,
    /// Time of one step for every service.
    pub step_seconds: Histogram,
    /// 1 in shadow mode.
    pub shadow: Gauge,
    /// Unix time of the last step computed.
    pub last_step: Gauge<f64, AtomicU64>,
    /// Times the model reloader ended unexpectedly (and was restarted).
    pub reloader_failures: Counter,
    /// Services forecast at the last step.
    pub services: Gauge,
    /// Services refused at the last step: over `max_services`, ScaledObjects with bad
    /// metadata, or settings the policy refused.
    pub services_refused: Gauge,
    /// Bytes the services' recent history and the step's input buffers hold: the
    /// predictor's memory that grows with the number of services (models aside).
    pub window_bytes: Gauge,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Self {
        let mut r = Registry::default();
        let m = Self {
            predicted_replicas: Family::default(),
            decided_replicas: Family::default(),
            forecast: Family::default(),
            observed: Family::default(),
            ready_replicas: Family::default(),
            objective_validation_share: Family::default(),
            objective_met: Family::default(),
            policy_info: Family::default(),
            reactive_replicas: Family::default(),
            forecast_error: Family::default(),
            model_info: Family::default(),
            model_age: Family::default(),
            reason: Family::default(),
            fallbacks: Family::default(),
            reloads: Family::default(),
            step_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            shadow: Gauge::default(),
            last_step: Gauge::default(),
            reloader_failures: Counter::default(),
            services: Gauge::default(),
            services_refused: Gauge::default(),
            window_bytes: Gauge::default(),
            registry: Arc::new(Registry::default()),
        };
        r.register("ml_predicted_replicas", "Replicas served to KEDA", m.predicted_replicas.clone());
        prescale_core::ops::register_build_info(&mut r, "predictor");
        let p = r.sub_registry_with_prefix("prescale_predictor");
        p.register(
            "decided_replicas",
            "Replicas the policy decided (served unless in shadow mode)",
            m.decided_replicas.clone(),
        );
        p.register("forecast_requests_per_second", "Forecast demand by horizon and quantile", m.forecast.clone());
        p.register("observed_requests_per_second", "Demand observed at the last step", m.observed.clone());
        p.register("ready_replicas", "Replicas ready at the last step, as observed", m.ready_replicas.clone());
        p.register(
            "reactive_replicas",
            "Replicas the demand observed at the last step needs by itself",
            m.reactive_replicas.clone(),
        );
        p.register(
            "forecast_error_requests_per_second",
            "Absolute error of the forecast made one horizon ago for the last step",
            m.forecast_error.clone(),
        );
        p.register("model_info", "The model version and forecaster in use", m.model_info.clone());
        p.register(
            "policy_info",
            "The policy setting each service runs and where it comes from (objective or configured)",
            m.policy_info.clone(),
        );
        p.register(
            "objective_validation_share",
            "Validation share of short steps of the policy setting chosen for the service's objective",
            m.objective_validation_share.clone(),
        );
        p.register(
            "objective_met",
            "1 when the chosen setting met the service's objective on validation, 0 when the safest runs instead",
            m.objective_met.clone(),
        );
        p.register("model_age_seconds", "Seconds since the model in use was built", m.model_age.clone());
        p.register("decision_reason", "1 for the policy term that set the last decision", m.reason.clone());
        p.register("fallbacks", "Fallbacks taken, by service (empty: every service) and kind", m.fallbacks.clone());
        p.register("model_reloads", "Model reload checks, by outcome", m.reloads.clone());
        p.register("step_duration_seconds", "Time of one step for every service", m.step_seconds.clone());
        p.register("shadow", "1 in shadow mode", m.shadow.clone());
        p.register("last_step_timestamp_seconds", "Unix time of the last step computed", m.last_step.clone());
        p.register(
            "reloader_failures",
            "Times the model reloader ended unexpectedly and was restarted",
            m.reloader_failures.clone(),
        );
        p.register("services", "Services forecast at the last step", m.services.clone());
        p.register(
            "services_refused",
            "Services refused at the last step: over max_services, ScaledObjects with bad metadata, or refused settings",
            m.services_refused.clone(),
        );
        p.register(
            "window_bytes",
            "Bytes of the services' recent history and the step's input buffers (models aside)",
            m.window_bytes.clone(),
        );
        Self { registry: Arc::new(r), ..m }
    }

    /// Drops the per-service series of a service no longer forecast, so dashboards and
    /// KEDA's `prometheus` trigger do not read a gone service's last values forever.
    pub fn forget(&self, service: &ServiceLabels) {
        self.predicted_replicas.remove(service);
        self.decided_replicas.remove(service);
        self.observed.remove(service);
        self.ready_replicas.remove(service);
        self.reactive_replicas.remove(service);
        self.forecast_error.remove(service);
        self.model_age.remove(service);
        self.objective_validation_share.remove(service);
        self.objective_met.remove(service);
        for kind in SERVICE_FALLBACKS {
            self.fallbacks.remove(&FallbackLabels {
                namespace: service.namespace.clone(),
                service: service.service.clone(),
                kind,
            });
        }
    }

    /// Counts a fallback of every service.
    pub fn fallback(&self, kind: &'static str) {
        self.fallbacks.get_or_create(&FallbackLabels::every(kind)).inc();
    }

    /// Counts a fallback of one service.
    pub fn fallback_for(&self, service: &ServiceLabels, kind: &'static str) {
        self.fallbacks
            .get_or_create(&FallbackLabels {
                namespace: service.namespace.clone(),
                service: service.service.clone(),
                kind,
            })
            .inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        prescale_core::ops::encode(&self.registry)
    }
}

#[cfg(test)]
mod fallback_tests {
    use super::*;

    #[test]
    fn fallbacks_name_the_service_and_go_with_it() {
        let m = Metrics::new();
        let order = ServiceLabels { namespace: "shop".into(), service: "order".into() };
        m.fallback_for(&order, "no_model");
        m.fallback("prometheus_unreachable");
        let text = m.encode();
        assert!(
            text.contains(r#"prescale_predictor_fallbacks_total{namespace="shop",service="order",kind="no_model"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"prescale_predictor_fallbacks_total{namespace="",service="",kind="prometheus_unreachable"} 1"#
            ),
            "{text}"
        );
        m.forget(&order);
        let text = m.encode();
        assert!(!text.contains(r#"service="order""#), "{text}");
        assert!(text.contains("prometheus_unreachable"), "{text}");
        assert!(text.contains("prescale_build_info{component=\"predictor\""), "{text}");
    }
}
