//! The predictor's settings: one TOML file (`--config`), `PRESCALE__*` overrides, checked
//! once by [`PredictorConfig::build`] into the [`Predictor`](crate::run::Predictor) that
//! runs them.
//!
//! ```toml
//! step = "30s"
//! shadow = false
//! # fleet_model = "s3://prescale-models/prod/fleet"  # one fleet model for every service
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

use prescale_core::config::{FieldError, StoreConfig, TelemetryConfig};
use prescale_core::inventory::Overrides;
use prescale_core::prometheus::catalog::{Catalog, CatalogConfig};
use prescale_core::prometheus::source::{PrometheusConfig, ScaledObjectsConfig, ServicesConfig};
use prescale_core::store::S3Options;
use prescale_core::{Location, ServiceId, StepGrid};
use prescale_policy::PolicySettings;
use prescale_policy::settings::Quantile;
use serde::{Deserialize, Serialize};

use crate::run::Predictor;

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
    /// A file holding `true` or `false` that sets shadow mode instead of `shadow`, read at
    /// start and every `shadow_file_interval` (in a cluster: the `predictor-shadow`
    /// ConfigMap, mounted in every replica). The admin endpoint then refuses to change it.
    #[serde(default)]
    pub shadow_file: Option<PathBuf>,
    /// How often `shadow_file` is read.
    #[serde(default = "default_shadow_file_interval", with = "humantime_serde")]
    pub shadow_file_interval: Duration,
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
    /// Where the models are: one folder per service, `<location>/<namespace>/<name>`, and
    /// how to reach S3 there (`[models.s3]`; the `--s3-*` flags win).
    pub models: StoreConfig,
    /// A fleet model's folder (`prescale-trainer train --services ...`): every service
    /// without a `models` entry of its own is served from it, each by the forecaster
    /// chosen for it, and a service it was not trained on by its transformer with a wider
    /// p90. Unset: `<models.location>/<namespace>/<name>` per service.
    #[serde(default)]
    pub fleet_model: Option<Location>,
    /// Policy defaults for every service.
    #[serde(default)]
    pub policy: PolicySettings,
    /// Services to forecast, with settings that win over their ScaledObject's.
    #[serde(default)]
    pub services: Vec<ServiceEntry>,
    /// Scheduled floors (`[[schedule]]`): a dated minimum for the services an entry's
    /// `services` selector names, in force within its cron window or date range in its
    /// timezone (`prescale_policy::schedule`).
    #[serde(default, rename = "schedule")]
    pub schedules: Vec<prescale_policy::ScheduleSettings>,
    /// Forecast every service a KEDA ScaledObject pointing at this predictor declares,
    /// with the settings of its trigger metadata; followed without restarts.
    #[serde(default)]
    pub scaled_objects: Option<ScaledObjectsConfig>,
    /// The most services forecast at once; past it, services are refused and counted.
    #[serde(default = "default_max_services")]
    pub max_services: usize,
    /// The HPA's tolerance (its `--horizontal-pod-autoscaler-tolerance`, 0.1 by default):
    /// the HPA ignores a metric within it of the current replicas, so a rise of one pod at
    /// ten or more replicas would never happen. What KEDA is told is then the smallest
    /// count past it (at most about 10% more than decided), judged against what the HPA
    /// last acted on while pods start ([`crate::hpa_view`]); a fall within it stays
    /// ignored, the safe side. 0 tells KEDA the decisions as they are.
    #[serde(default = "default_hpa_tolerance")]
    pub hpa_tolerance: f64,
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
    /// Overrides of `[policy]`: the largest share of under-provisioned time accepted.
    #[serde(default)]
    pub objective: Option<f64>,
}

fn default_hpa_tolerance() -> f64 {
    0.1
}
fn default_max_services() -> usize {
    10_000
}
fn default_query_delay() -> Duration {
    Duration::from_secs(2)
}
fn default_history() -> Duration {
    Duration::from_secs(86_400 + 600)
}
fn default_shadow_file_interval() -> Duration {
    Duration::from_secs(5)
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
    /// Its policy: `[policy]` with the entry's overrides.
    pub policy: PolicySettings,
    /// The scheduled floors that name it (checked when the config was built).
    pub schedules: Vec<prescale_policy::ScheduleSettings>,
}

/// Shortest admin token accepted: an empty or short one would open the admin endpoints
/// to anyone who guesses it.
pub const MIN_ADMIN_TOKEN: usize = 16;

fn bad(field: impl Into<String>, reason: impl ToString) -> FieldError {
    FieldError::new(field, reason)
}

impl PredictorConfig {
    /// Checks the settings once and resolves every service into the predictor that runs
    /// them, naming the first bad field; the `--s3-*` flags win over `[models.s3]`.
    pub fn build(mut self, s3_flags: &S3Options) -> Result<Predictor, FieldError> {
        let catalog = Catalog::from_config(&self.catalog).map_err(|e| bad("catalog", e))?;
        if !catalog.features().any(|f| f == prescale_core::Feature::RequestsPerSecond) {
            return Err(bad("catalog", "requests_per_second is what the models forecast; the catalog must give it"));
        }
        if self.services.is_empty() && self.scaled_objects.is_none() {
            return Err(bad(
                "services",
                "list at least one [[services]] entry, or follow the ScaledObjects ([scaled_objects])",
            ));
        }
        if !(0.0..1.0).contains(&self.hpa_tolerance) {
            return Err(bad("hpa_tolerance", format!("{} is not in [0, 1)", self.hpa_tolerance)));
        }
        if self.max_services == 0 {
            return Err(bad("max_services", "must be at least 1"));
        }
        for (field, d) in
            [("reload_interval", self.reload_interval), ("shadow_file_interval", self.shadow_file_interval)]
        {
            if d.is_zero() {
                return Err(bad(field, "must be positive"));
            }
        }
        if let Some(so) = &self.scaled_objects {
            let check = ServicesConfig { scaled_objects: Some(so.clone()), ..Default::default() };
            check.validate().map_err(|e| bad(e.field.replace("services.", ""), e.reason))?;
        }
        if let Some(token) = &self.admin_token
            && token.trim().len() < MIN_ADMIN_TOKEN
        {
            return Err(bad(
                "admin_token",
                format!(
                    "must be at least {MIN_ADMIN_TOKEN} characters (not blank); leave it unset to disable the admin endpoints"
                ),
            ));
        }
        if self.history < self.step.duration() * 2 {
            return Err(bad("history", format!("{:?} must cover at least two steps", self.history)));
        }
        let mut entries = std::collections::BTreeMap::new();
        for (i, entry) in self.services.iter().enumerate() {
            let id: ServiceId = entry.service.parse().map_err(|e| bad(format!("services[{i}].service"), e))?;
            if entries.insert(id.clone(), entry.clone()).is_some() {
                return Err(bad(format!("services[{i}].service"), format!("{id} is listed twice")));
            }
        }
        // The listed services are planned as the inventory's are at every step.
        for (i, entry) in self.schedules.iter().enumerate() {
            prescale_policy::Schedule::new(entry).map_err(|e| match e {
                prescale_policy::PolicyError::Config { field, reason }
                | prescale_policy::PolicyError::Input { field, reason } => {
                    bad(format!("schedule[{i}].{field}"), reason)
                }
            })?;
            if entry.services.trim().is_empty() {
                return Err(bad(format!("schedule[{i}].services"), "an empty selector names no service"));
            }
        }
        let planner = Planner {
            step: self.step,
            policy: self.policy.clone(),
            models: self.models.location.clone(),
            fleet: self.fleet_model.clone(),
            entries,
            schedules: self.schedules.clone(),
        };
        let mut plans = Vec::new();
        for (i, entry) in self.services.iter().enumerate() {
            let id: ServiceId = entry.service.parse().expect("checked above");
            let plan = planner.plan(&id, &Overrides::default()).map_err(|e| bad(format!("services[{i}] ({id})"), e))?;
            plans.push(plan);
        }
        if let Some(tls) = &self.tls {
            for (what, path) in
                [("tls.cert", Some(&tls.cert)), ("tls.key", Some(&tls.key)), ("tls.client_ca", tls.client_ca.as_ref())]
            {
                if let Some(p) = path.filter(|p| !p.is_file()) {
                    return Err(bad(what, format!("{} is not a file", p.display())));
                }
            }
        }
        self.models.s3 = s3_flags.over(&self.models.s3);
        Ok(Predictor { config: self, catalog, plans, planner })
    }

    /// The `[services]` of the predictor's Prometheus source: the listed services and,
    /// when set, the ScaledObjects, within `max_services`.
    pub fn services_config(&self) -> ServicesConfig {
        ServicesConfig {
            list: self.services.iter().map(|e| e.service.clone()).collect(),
            discover: None,
            scaled_objects: self.scaled_objects.clone(),
            max: self.max_services,
        }
    }
}

/// Turns an inventory entry into a service's plan: `[policy]`, under the ScaledObject's
/// settings, under the `[[services]]` entry's.
#[derive(Debug, Clone)]
pub struct Planner {
    step: StepGrid,
    policy: PolicySettings,
    models: Location,
    fleet: Option<Location>,
    entries: std::collections::BTreeMap<ServiceId, ServiceEntry>,
    schedules: Vec<prescale_policy::ScheduleSettings>,
}

impl Planner {
    /// The plan of `id` with the inventory's `overrides`, or why its settings are refused.
    pub fn plan(&self, id: &ServiceId, overrides: &Overrides) -> Result<ServicePlan, String> {
        let entry = self.entries.get(id);
        let d = &self.policy;
        let quantile = match overrides.quantile.as_deref() {
            None => d.quantile,
            Some("p50") => Quantile::P50,
            Some("p90") => Quantile::P90,
            Some(q) => return Err(format!("quantile {q:?} is not p50 or p90")),
        };
        let policy = PolicySettings {
            capacity: entry.and_then(|e| e.capacity).or(overrides.capacity).unwrap_or(d.capacity),
            min_replicas: entry.and_then(|e| e.min_replicas).or(overrides.min_replicas).unwrap_or(d.min_replicas),
            max_replicas: entry.and_then(|e| e.max_replicas).or(overrides.max_replicas).unwrap_or(d.max_replicas),
            startup: overrides.startup.unwrap_or(d.startup),
            lookahead: overrides.lookahead.unwrap_or(d.lookahead),
            quantile,
            headroom: overrides.headroom.unwrap_or(d.headroom),
            floor_utilisation: overrides.floor_utilisation.unwrap_or(d.floor_utilisation),
            scale_down_window: overrides.scale_down_window.unwrap_or(d.scale_down_window),
            max_change: overrides.max_change.or(d.max_change),
            burst_quantile: overrides.burst_quantile.or(d.burst_quantile),
            burst_span: overrides.burst_span.unwrap_or(d.burst_span),
            forecast_scale_down: d.forecast_scale_down,
            shortfall_penalty: d.shortfall_penalty,
            objective: entry.and_then(|e| e.objective).or(overrides.objective).or(d.objective),
        };
        policy.validate(self.step).map_err(|e| e.to_string())?;
        let models = entry
            .and_then(|e| e.models.clone())
            .or_else(|| self.fleet.clone())
            .unwrap_or_else(|| self.models.join(&format!("{}/{}", id.namespace(), id.name())));
        let schedules = self.schedules.iter().filter(|s| id.matches(&s.services)).cloned().collect();
        Ok(ServicePlan { id: id.clone(), models, policy, schedules })
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, failure_persistence: None, ..Default::default() })]

        /// Any value of the settings replaced by anything, or an unknown key added: built
        /// into a predictor or refused naming what was wrong, never a panic.
        #[test]
        fn any_edit_of_a_good_config_is_built_or_refused(text in prescale_testkit::props::edited_toml(GOOD)) {
            let built = from_toml_str::<PredictorConfig>(&text)
                .map_err(|e| e.to_string())
                .and_then(|c| c.build(&S3Options::default()).map_err(|e| e.to_string()));
            if let Err(e) = built {
                proptest::prop_assert!(!e.trim().is_empty());
            }
        }
    }

    #[test]
    fn services_resolve_with_overrides_and_model_folders() {
        let config: PredictorConfig = from_toml_str(GOOD).unwrap();
        let predictor = config.build(&S3Options::default()).unwrap();
        let plans = &predictor.plans;
        assert_eq!(plans[0].policy.capacity, 40.0);
        assert_eq!(plans[1].policy.capacity, 20.0);
        let steps = plans[0].policy.in_steps(predictor.config.step);
        assert_eq!((steps.startup, steps.lookahead), (5, 10));
        assert_eq!(plans[0].models, "/tmp/models/storefront/gateway".parse().unwrap());
        assert_eq!(plans[1].models, "/elsewhere/product".parse().unwrap());
    }

    #[test]
    fn the_models_s3_settings_are_read_and_flags_win() {
        let toml = GOOD.replace(
            "location = \"/tmp/models\"",
            "location = \"s3://models/prod\"\n[models.s3]\nendpoint = \"http://minio:9000\"\npath_style = true",
        );
        let config: PredictorConfig = from_toml_str(&toml).unwrap();
        let from_file = config.clone().build(&S3Options::default()).unwrap().config.models.s3;
        assert_eq!(from_file.endpoint.as_deref(), Some("http://minio:9000"));
        assert!(from_file.path_style);
        let flags = S3Options { endpoint: Some("http://127.0.0.1:9000".into()), ..S3Options::default() };
        let merged = config.build(&flags).unwrap().config.models.s3;
        assert_eq!(merged.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(merged.path_style, "a flag left unset keeps the file's value");
    }

    #[test]
    fn bad_settings_name_the_field() {
        let cases = [
            (GOOD.replace("storefront/product", "product"), "services[1].service"),
            (GOOD.replace("capacity = 40.0", "capacity = -1.0"), "capacity"),
            (GOOD.replace("lookahead = \"10s\"", "lookahead = \"2s\""), "lookahead"),
            (GOOD.replace("storefront/product", "storefront/gateway"), "listed twice"),
        ];
        for (toml, needle) in cases {
            let err = from_toml_str::<PredictorConfig>(&toml)
                .map_err(|e| e.to_string())
                .and_then(|c| c.build(&S3Options::default()).map(|_| ()).map_err(|e| e.to_string()));
            let err = err.unwrap_err();
            assert!(err.contains(needle), "expected {needle:?} in {err}");
        }
    }
}
