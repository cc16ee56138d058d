//! The predictor's settings: one TOML file (`--config`), `PRESCALE__*` overrides.
//!
//! ```toml
//! step = "30s"
//! shadow = false
//! [prometheus]
//! url = "http://prometheus:9090"
//! [catalog]
//! base = "kubernetes"
//! [models]
//! location = "s3://prescale-models/prod"     # <location>/<namespace>/<name> per service
//! [policy]                                   # defaults for every service
//! capacity = 50.0
//! [[services]]
//! service = "shop/order"
//! capacity = 80.0                            # any policy field may be overridden
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use prescale_collector::catalog::{Catalog, CatalogConfig};
use prescale_collector::source::{PrometheusConfig, ServicesConfig};
use prescale_core::config::{StoreConfig, TelemetryConfig};
use prescale_core::{Location, ServiceId, StepGrid};
use prescale_scaler::policy::{PolicyConfig, Quantile};
use serde::{Deserialize, Serialize};

/// Everything the predictor needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictorConfig {
    /// The step: one decision per service per step; must be the models' step.
    #[serde(default)]
    pub step: StepGrid,
    /// Wait after a step boundary before querying it (scrapes settle).
    #[serde(default = "default_query_delay", with = "humantime_serde")]
    pub query_delay: Duration,
    /// History kept per service, read from Prometheus: at least the model's context; a
    /// day lets the forecast use the same time yesterday.
    #[serde(default = "default_history", with = "humantime_serde")]
    pub history: Duration,
    /// How long the last decision is served while Prometheus is unreachable; after that
    /// gRPC calls fail with `Unavailable` so KEDA's own fallback takes over.
    #[serde(default = "default_staleness", with = "humantime_serde")]
    pub staleness: Duration,
    /// Compute and export, act on nothing: KEDA is told to keep the replicas ready now.
    #[serde(default)]
    pub shadow: bool,
    /// How often the models' `latest` pointers are checked.
    #[serde(default = "default_reload_interval", with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Bearer token of the admin endpoints (reload, shadow); unset disables them. Better
    /// set through `PRESCALE__ADMIN_TOKEN` than in the file.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// HTTP: the JSON API, `/metrics`, health, OpenAPI, admin.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// gRPC: KEDA's external scaler.
    #[serde(default = "default_grpc_listen")]
    pub grpc_listen: SocketAddr,
    /// TLS of the gRPC server; with `client_ca`, clients must present a certificate.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Where Prometheus is.
    #[serde(default)]
    pub prometheus: PrometheusConfig,
    /// The collector's feature catalog: the same PromQL the training data came from.
    #[serde(default)]
    pub catalog: CatalogConfig,
    /// Where the models are: one folder per service, `<location>/<namespace>/<name>`.
    pub models: StoreConfig,
    /// Policy defaults for every service.
    pub policy: PolicyDefaults,
    /// The services to forecast.
    pub services: Vec<ServiceEntry>,
    /// Logging.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

/// The `[tls]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server.
    pub key: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// Policy settings; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyDefaults {
    /// Requests per second one replica serves within its latency objective.
    pub capacity: f64,
    /// Fewest replicas.
    pub min_replicas: u32,
    /// Most replicas.
    pub max_replicas: u32,
    /// Pod startup.
    #[serde(with = "humantime_serde")]
    pub startup: Duration,
    /// How far ahead the forecast term looks.
    #[serde(with = "humantime_serde")]
    pub lookahead: Duration,
    /// The quantile to cover.
    pub quantile: Quantile,
    /// Extra share of demand.
    pub headroom: f64,
    /// Utilisation of the reactive floor.
    pub floor_utilisation: f64,
    /// Scale-down stabilisation.
    #[serde(with = "humantime_serde")]
    pub scale_down_window: Duration,
    /// Largest change per decision.
    pub max_change: Option<u32>,
    /// The burst profile's quantile to cover (0.5, 0.75 or 0.9), when the model carries
    /// a profile; unset: no burst term.
    pub burst_quantile: Option<f64>,
    /// How long after the pod startup the burst term also covers.
    #[serde(with = "humantime_serde")]
    pub burst_span: Duration,
}

impl Default for PolicyDefaults {
    fn default() -> Self {
        Self {
            capacity: 50.0,
            min_replicas: 1,
            max_replicas: 50,
            startup: Duration::from_secs(120),
            lookahead: Duration::from_secs(600),
            quantile: Quantile::P90,
            headroom: 0.1,
            floor_utilisation: 0.8,
            scale_down_window: Duration::from_secs(300),
            max_change: None,
            burst_quantile: None,
            burst_span: Duration::ZERO,
        }
    }
}

/// One `[[services]]` entry: the service, its models and policy overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// `namespace/name`.
    pub service: String,
    /// Its models, if not `<models.location>/<namespace>/<name>`.
    #[serde(default)]
    pub models: Option<Location>,
    /// Overrides of `[policy]`.
    #[serde(default)]
    pub capacity: Option<f64>,
    /// Overrides of `[policy]`.
    #[serde(default)]
    pub min_replicas: Option<u32>,
    /// Overrides of `[policy]`.
    #[serde(default)]
    pub max_replicas: Option<u32>,
}

fn default_query_delay() -> Duration {
    Duration::from_secs(2)
}
fn default_history() -> Duration {
    Duration::from_secs(86_400 + 600)
}
fn default_staleness() -> Duration {
    Duration::from_secs(300)
}
fn default_reload_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9100))
}
fn default_grpc_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9500))
}

/// A service with everything resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePlan {
    /// Which service.
    pub id: ServiceId,
    /// Where its models are.
    pub models: Location,
    /// Its policy, in steps.
    pub policy: PolicyConfig,
}

impl PredictorConfig {
    /// Checks the settings and resolves every service; errors name the field.
    pub fn validate(&self) -> Result<(Catalog, Vec<ServicePlan>), String> {
        let catalog = Catalog::from_config(&self.catalog).map_err(|e| e.to_string())?;
        if !catalog.features().any(|f| f == prescale_core::Feature::RequestsPerSecond) {
            return Err("catalog: requests_per_second is what the models forecast; the catalog must give it".into());
        }
        if self.services.is_empty() {
            return Err("services: list at least one [[services]] entry".into());
        }
        if self.history < self.step.duration() * 2 {
            return Err(format!("history ({:?}) must cover at least two steps", self.history));
        }
        let steps = |d: Duration| self.step.steps_in(d);
        let mut plans = Vec::new();
        for (i, entry) in self.services.iter().enumerate() {
            let field = |name: &str| format!("services[{i}].{name}");
            let (ns, name) = entry
                .service
                .split_once('/')
                .ok_or_else(|| format!("{}: {:?} must be written namespace/name", field("service"), entry.service))?;
            let id = ServiceId::new(ns, name).map_err(|e| format!("{}: {e}", field("service")))?;
            if plans.iter().any(|p: &ServicePlan| p.id == id) {
                return Err(format!("{}: {id} is listed twice", field("service")));
            }
            let d = &self.policy;
            let policy = PolicyConfig {
                capacity: entry.capacity.unwrap_or(d.capacity),
                min_replicas: entry.min_replicas.unwrap_or(d.min_replicas),
                max_replicas: entry.max_replicas.unwrap_or(d.max_replicas),
                startup_steps: steps(d.startup),
                lookahead_steps: steps(d.lookahead),
                quantile: d.quantile,
                headroom: d.headroom,
                floor_utilisation: d.floor_utilisation,
                scale_down_window: steps(d.scale_down_window),
                max_change: d.max_change,
                burst_quantile: d.burst_quantile,
                burst_span_steps: steps(d.burst_span),
            };
            policy.validate().map_err(|e| format!("services[{i}] ({id}): {e}"))?;
            let models = entry.models.clone().unwrap_or_else(|| self.models.location.join(&format!("{ns}/{name}")));
            plans.push(ServicePlan { id, models, policy });
        }
        if let Some(tls) = &self.tls {
            for (what, path) in
                [("tls.cert", Some(&tls.cert)), ("tls.key", Some(&tls.key)), ("tls.client_ca", tls.client_ca.as_ref())]
            {
                if let Some(p) = path.filter(|p| !p.is_file()) {
                    return Err(format!("{what}: {} is not a file", p.display()));
                }
            }
        }
        Ok((catalog, plans))
    }

    /// The collector's services section for these services.
    pub fn services_config(&self, plans: &[ServicePlan]) -> ServicesConfig {
        ServicesConfig { list: plans.iter().map(|p| p.id.to_string()).collect(), discover: None }
    }
}

#[cfg(test)]
mod tests {
    use prescale_core::config::from_toml_str;

    use super::*;

    pub(crate) const GOOD: &str = r#"
        step = "1s"
        [catalog]
        base = "storefront"
        window = "5s"
        [models]
        location = "/tmp/models"
        [policy]
        capacity = 20.0
        startup = "5s"
        lookahead = "10s"
        [[services]]
        service = "storefront/gateway"
        capacity = 40.0
        [[services]]
        service = "storefront/product"
        models = "/elsewhere/product"
    "#;

    #[test]
    fn services_resolve_with_overrides_and_model_folders() {
        let config: PredictorConfig = from_toml_str(GOOD).unwrap();
        let (_, plans) = config.validate().unwrap();
        assert_eq!(plans[0].policy.capacity, 40.0);
        assert_eq!(plans[1].policy.capacity, 20.0);
        assert_eq!((plans[0].policy.startup_steps, plans[0].policy.lookahead_steps), (5, 10));
        assert_eq!(plans[0].models, "/tmp/models/storefront/gateway".parse().unwrap());
        assert_eq!(plans[1].models, "/elsewhere/product".parse().unwrap());
    }

    #[test]
    fn bad_settings_name_the_field() {
        let cases = [
            (GOOD.replace("storefront/product", "product"), "services[1].service"),
            (GOOD.replace("capacity = 40.0", "capacity = -1.0"), "capacity"),
            (GOOD.replace("lookahead = \"10s\"", "lookahead = \"2s\""), "lookahead_steps"),
            (GOOD.replace("storefront/product", "storefront/gateway"), "listed twice"),
        ];
        for (toml, needle) in cases {
            let err = from_toml_str::<PredictorConfig>(&toml)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map(|_| ()));
            let err = err.unwrap_err();
            assert!(err.contains(needle), "expected {needle:?} in {err}");
        }
    }
}
