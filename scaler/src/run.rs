//! `prescale-scaler run`: poll the predictor's decisions and apply them to workloads
//! (Deployments, StatefulSets, Argo Rollouts: anything with a scale subresource).
//!
//! Every interval it reads `GET {predictor}/api/v1/services`, and for each decision whose
//! `namespace/name` matches a configured [`Target`] applies it through the [`Applier`]
//! (shadow mode by default: it reads and reports only). It serves core's ops endpoints
//! (`/metrics`: what it would set or set, per Deployment, and what each attempt did).
//! A predictor that cannot be reached leaves every Deployment as it is; so does a decision
//! the predictor marks stale or one older than `max_decision_age` (during a Prometheus
//! outage the last count would otherwise be re-applied every interval, undoing an
//! operator's manual scaling), and so does every decision while the predictor is in shadow
//! mode (an operator turned it on to stop acting). Both are counted
//! (`prescale_scaler_actions_total{action="stale"|"predictor_shadow"}`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use prescale_policy::{NotActionable, ServicesResponse};

use crate::kube_backend::{Applied, Applier, ApplyError, Target};

/// `prescale-scaler run` settings (TOML, `PRESCALE__...` overrides).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Base URL of the predictor's HTTP API.
    pub predictor_url: String,
    /// How often to poll and apply.
    #[serde(with = "humantime_serde", default = "default_interval")]
    pub interval: Duration,
    /// Report only, write nothing (the default, until an operator turns it off).
    #[serde(default = "default_shadow")]
    pub shadow: bool,
    /// Where `/metrics`, `/healthz` and `/readyz` listen.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The workloads that may be scaled.
    #[serde(default)]
    pub targets: Vec<Target>,
    /// Decisions older than this are not applied, whatever the predictor says of them
    /// (predictors before the `stale` field did not say).
    #[serde(with = "humantime_serde", default = "default_max_decision_age")]
    pub max_decision_age: Duration,
}

fn default_max_decision_age() -> Duration {
    Duration::from_secs(300)
}

impl RunConfig {
    /// Checks the settings at start, naming the first bad field: a URL the client can use,
    /// a positive interval, and targets that are Kubernetes names, listed once, with
    /// `1 <= min_replicas <= max_replicas <= i32::MAX` (the scale subresource's type).
    pub fn validate(&self) -> Result<(), prescale_core::config::FieldError> {
        use prescale_core::config::FieldError;
        let url = reqwest::Url::parse(&self.predictor_url).map_err(|e| FieldError::new("predictor_url", e))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FieldError::new("predictor_url", format!("{} is not an http(s) URL", self.predictor_url)));
        }
        if self.interval.is_zero() {
            return Err(FieldError::new("interval", "must be positive"));
        }
        if self.max_decision_age.is_zero() {
            return Err(FieldError::new("max_decision_age", "must be positive"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let field = |name: &str| format!("targets[{i}].{name}");
            prescale_core::service::validate_label("namespace", &t.namespace)
                .map_err(|e| FieldError::new(field("namespace"), e))?;
            prescale_core::service::validate_label("name", &t.name).map_err(|e| FieldError::new(field("name"), e))?;
            if t.api_resource().is_none() {
                return Err(match &t.api_version {
                    Some(v) => FieldError::new(
                        field("api_version"),
                        format!("{v:?} with kind {:?} is not group/version and a kind name", t.kind),
                    ),
                    None => FieldError::new(
                        field("kind"),
                        format!(
                            "{:?} is not a kind known without api_version (Deployment, StatefulSet, ReplicaSet, Rollout)",
                            t.kind
                        ),
                    ),
                });
            }
            // The predictor names a service by namespace and name: one workload per name.
            if !seen.insert((t.namespace.as_str(), t.name.as_str())) {
                return Err(FieldError::new(field("name"), format!("{}/{} is listed twice", t.namespace, t.name)));
            }
            if t.max_replicas > i32::MAX as u32 {
                return Err(FieldError::new(
                    field("max_replicas"),
                    format!("{} is above {}", t.max_replicas, i32::MAX),
                ));
            }
            if t.min_replicas > t.max_replicas {
                return Err(FieldError::new(
                    field("min_replicas"),
                    format!("{} is above max_replicas {}", t.min_replicas, t.max_replicas),
                ));
            }
        }
        Ok(())
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_shadow() -> bool {
    true
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9102))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WorkloadLabels {
    namespace: String,
    kind: String,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ActionLabels {
    namespace: String,
    kind: String,
    name: String,
    action: String,
}

/// The scaler's own metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    desired: Family<WorkloadLabels, Gauge>,
    current: Family<WorkloadLabels, Gauge>,
    actions: Family<ActionLabels, Counter>,
    poll_errors: Counter,
    shadow: Gauge,
}

impl Metrics {
    /// Registers the metrics.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "prescale_scaler_desired_replicas",
            "Replicas the last decision asked for",
            self.desired.clone(),
        );
        registry.register(
            "prescale_scaler_current_replicas",
            "Replicas the workload had when the decision was applied",
            self.current.clone(),
        );
        registry.register(
            "prescale_scaler_actions",
            "Decisions applied, by outcome (scaled, unchanged, shadow, refused, error; not applied: stale, predictor_shadow)",
            self.actions.clone(),
        );
        registry.register(
            "prescale_scaler_poll_errors",
            "Failed reads of the predictor's decisions",
            self.poll_errors.clone(),
        );
        registry.register("prescale_scaler_shadow_mode", "1 when decisions are only reported", self.shadow.clone());
    }
}

/// Why a round or the loop stopped short.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The predictor's decisions could not be read; nothing was applied.
    #[error("reading decisions from {url}: {source}")]
    Poll {
        /// The URL read.
        url: String,
        /// What the HTTP client reported.
        #[source]
        source: reqwest::Error,
    },
    /// The ops endpoint could not listen.
    #[error("listen {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// One poll-and-apply round; returns what happened per target.
pub async fn round(
    http: &reqwest::Client,
    config: &RunConfig,
    applier: &Applier,
    metrics: &Metrics,
) -> Result<Vec<(Target, Result<Applied, ApplyError>)>, RunError> {
    let url = format!("{}/api/v1/services", config.predictor_url.trim_end_matches('/'));
    let response: ServicesResponse = async { http.get(&url).send().await?.error_for_status()?.json().await }
        .await
        .inspect_err(|_| {
            metrics.poll_errors.inc();
        })
        .map_err(|source| RunError::Poll { url: url.clone(), source })?;
    let mut results = Vec::new();
    for served in &response.services {
        let decision = &served.decision;
        let Some(target) = config
            .targets
            .iter()
            .find(|t| decision.service.namespace() == t.namespace && decision.service.name() == t.name)
        else {
            tracing::debug!(service = %decision.service, "no target configured; not scaled");
            continue;
        };
        let labels = WorkloadLabels {
            namespace: target.namespace.clone(),
            kind: target.kind.clone(),
            name: target.name.clone(),
        };
        let count = |action: &str| {
            metrics
                .actions
                .get_or_create(&ActionLabels {
                    namespace: labels.namespace.clone(),
                    kind: labels.kind.clone(),
                    name: labels.name.clone(),
                    action: action.into(),
                })
                .inc();
        };
        match served.actionable(response.shadow, chrono::Utc::now(), config.max_decision_age) {
            Ok(_) => {}
            Err(NotActionable::Stale) => {
                tracing::warn!(
                    service = %decision.service,
                    age_seconds = (chrono::Utc::now() - decision.time).num_seconds(),
                    "the decision is stale; leaving the Deployment as it is"
                );
                count("stale");
                continue;
            }
            Err(NotActionable::Shadow) => {
                tracing::info!(service = %decision.service, "the predictor is in shadow mode; not scaling");
                count("predictor_shadow");
                continue;
            }
        }
        metrics.desired.get_or_create(&labels).set(i64::from(decision.desired_replicas));
        let result = applier.apply(target, decision.desired_replicas).await;
        let action = match &result {
            Ok(Applied::Shadow { from, to }) => {
                tracing::info!(service = %decision.service, from, to, reason = decision.reason.label(), "shadow: would scale");
                metrics.current.get_or_create(&labels).set(i64::from(*from));
                "shadow"
            }
            Ok(Applied::Unchanged { replicas }) => {
                metrics.current.get_or_create(&labels).set(i64::from(*replicas));
                "unchanged"
            }
            Ok(Applied::Scaled { from, to, .. }) => {
                tracing::info!(service = %decision.service, from, to, reason = decision.reason.label(), "scaled");
                metrics.current.get_or_create(&labels).set(i64::from(*to));
                "scaled"
            }
            Err(e @ ApplyError::OutOfBounds { .. }) => {
                tracing::warn!("{e}");
                "refused"
            }
            Err(e) => {
                tracing::warn!("{e}");
                "error"
            }
        };
        count(action);
        results.push((target.clone(), result));
    }
    Ok(results)
}

/// Runs until `shutdown` resolves (the binary passes Ctrl-C or SIGTERM).
pub async fn run(config: RunConfig, client: kube::Client, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let applier = Applier::new(client, config.shadow);
    let metrics = Arc::new(Metrics::default());
    metrics.shadow.set(i64::from(config.shadow));
    let mut registry = Registry::default();
    prescale_core::ops::register_build_info(&mut registry, "scaler");
    metrics.register(&mut registry);
    let app = prescale_core::ops::router(Arc::new(registry));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Listen { addr: config.listen, source })?;
    tracing::info!(listen = %config.listen, shadow = config.shadow, targets = config.targets.len(), "scaler running");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(RunError::Client)?;
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                if let Err(e) = round(&http, &config, &applier, &metrics).await {
                    tracing::warn!("{e}; leaving every Deployment as it is");
                }
            }
        }
    }
    server.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        predictor_url = "http://predictor:9100"
        interval = "30s"
        max_decision_age = "5m"
        shadow = false
        [[targets]]
        namespace = "shop"
        deployment = "order"
        min_replicas = 1
        max_replicas = 20
    "#;

    #[test]
    fn the_good_config_is_valid() {
        let config: RunConfig = prescale_core::config::from_toml_str(GOOD).unwrap();
        config.validate().unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, failure_persistence: None, ..Default::default() })]

        /// Any value of the settings replaced by anything, or an unknown key added: loaded
        /// and checked, or refused naming what was wrong, never a panic.
        #[test]
        fn any_edit_of_a_good_config_is_loaded_or_refused(text in prescale_testkit::props::edited_toml(GOOD)) {
            let checked = prescale_core::config::from_toml_str::<RunConfig>(&text)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map_err(|e| e.to_string()));
            if let Err(e) = checked {
                proptest::prop_assert!(!e.trim().is_empty());
            }
        }
    }
}
