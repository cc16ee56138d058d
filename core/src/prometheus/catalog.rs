//! The feature catalog: which PromQL gives each feature of the core schema.
//!
//! A template is PromQL with three placeholders: `{namespace}` and `{service}` (the
//! service being sampled) and `{window}` (the range of `rate()` and friends, from
//! config, because a 1 s test step and a 30 s production step need different ranges).
//! Each rendered query must return at most one series: the feature's value for that
//! service at the evaluation time. A feature the catalog leaves out is stored as missing.
//!
//! Two catalogs ship: [`CatalogName::Kubernetes`] (cAdvisor, kube-state-metrics and the
//! NGINX ingress controller) and [`CatalogName::Storefront`] (the storefront's own
//! metrics, scraped with `namespace` and `service` target labels, for local runs). Config
//! starts from one of them and may replace or drop single features. Every template is
//! parsed at start, so a typo stops the collector before it writes anything.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::{Feature, ServiceId};
use serde::{Deserialize, Serialize};

/// A built-in catalog to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogName {
    /// cAdvisor CPU and working-set memory, kube-state-metrics requests, limits and
    /// available replicas, NGINX ingress rate, p95 latency, 5xx ratio and in-flight
    /// requests (Little's law: the rate of the latency sum).
    #[default]
    Kubernetes,
    /// The storefront's own `/metrics`, for local runs without a cluster.
    Storefront,
    /// No built-in templates: every feature comes from `[catalog.features]`.
    None,
}

/// The `[catalog]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// The built-in catalog to start from.
    pub base: CatalogName,
    /// What `{window}` becomes: the range of `rate()` and `histogram_quantile()`. At least
    /// two scrape intervals, so every window holds two samples.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Per-feature templates replacing the base's; an empty string drops the feature.
    pub features: BTreeMap<String, String>,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self { base: CatalogName::Kubernetes, window: Duration::from_secs(120), features: BTreeMap::new() }
    }
}

/// Why a catalog was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A key of `[catalog.features]` is not a feature of the schema.
    #[error("catalog.features: {0}")]
    UnknownFeature(#[from] crate::schema::UnknownFeature),
    /// A template does not parse as PromQL once its placeholders are filled.
    #[error("catalog feature `{feature}`: the PromQL does not parse: {message}\n  query: {query}")]
    BadPromql {
        /// The feature whose template is wrong.
        feature: String,
        /// The rendered query.
        query: String,
        /// The parser's complaint.
        message: String,
    },
    /// `{namespace}` or `{service}` outside a quoted string: it would render to PromQL for
    /// some services and not others (`a-0a0`, `and`), so it may only be a label value.
    #[error(
        "catalog feature `{feature}`: {placeholder} must be inside quotes (a label value such as service=\"{placeholder}\"); outside them some service names do not parse"
    )]
    UnquotedPlaceholder {
        /// The feature whose template is wrong.
        feature: String,
        /// `{namespace}` or `{service}`.
        placeholder: &'static str,
    },
    /// `{window}` is too short to be a PromQL duration.
    #[error("catalog.window must be at least 1s, got {0:?}")]
    BadWindow(Duration),
    /// The catalog gives no feature at all.
    #[error("the catalog defines no feature: choose a base catalog or add [catalog.features]")]
    Empty,
}

/// The validated templates, one per covered feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    templates: BTreeMap<Feature, String>,
    window: String,
}

impl Catalog {
    /// The catalog `config` describes, every template checked.
    pub fn from_config(config: &CatalogConfig) -> Result<Self, CatalogError> {
        if config.window < Duration::from_secs(1) {
            return Err(CatalogError::BadWindow(config.window));
        }
        let mut templates: BTreeMap<Feature, String> =
            builtin(config.base).iter().map(|(f, q)| (*f, (*q).to_owned())).collect();
        for (name, query) in &config.features {
            let feature: Feature = name.parse()?;
            if query.trim().is_empty() {
                templates.remove(&feature);
            } else {
                templates.insert(feature, query.clone());
            }
        }
        if templates.is_empty() {
            return Err(CatalogError::Empty);
        }
        for (feature, template) in &templates {
            if let Some(placeholder) = unquoted_placeholder(template) {
                return Err(CatalogError::UnquotedPlaceholder { feature: feature.name().to_owned(), placeholder });
            }
        }
        let catalog = Self { templates, window: promql_duration(config.window) };
        let probe = ServiceId::new("probe-namespace", "probe-service").expect("a valid probe id");
        for feature in catalog.features() {
            let query = catalog.render(feature, &probe).expect("the feature is in the catalog");
            promql_parser::parser::parse(&query).map_err(|message| CatalogError::BadPromql {
                feature: feature.name().to_owned(),
                query: query.clone(),
                message,
            })?;
        }
        Ok(catalog)
    }

    /// The features this catalog gives, in schema order.
    pub fn features(&self) -> impl Iterator<Item = Feature> + '_ {
        self.templates.keys().copied()
    }

    /// The query for one feature of one service; `None` when the catalog leaves the
    /// feature out.
    pub fn render(&self, feature: Feature, service: &ServiceId) -> Option<String> {
        let template = self.templates.get(&feature)?;
        Some(
            template
                .replace("{namespace}", service.namespace())
                .replace("{service}", service.name())
                .replace("{window}", &self.window),
        )
    }
}

impl fmt::Display for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (feature, template) in &self.templates {
            writeln!(f, "{feature}: {template}")?;
        }
        Ok(())
    }
}

/// The first of `{namespace}` and `{service}` found outside a PromQL string literal
/// (double, single or back quotes; backslash escapes inside the first two).
fn unquoted_placeholder(template: &str) -> Option<&'static str> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in template.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q != '`' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if matches!(c, '"' | '\'' | '`') => quote = Some(c),
            None => {
                for placeholder in ["{namespace}", "{service}"] {
                    if template[i..].starts_with(placeholder) {
                        return Some(placeholder);
                    }
                }
            }
        }
    }
    None
}

/// A duration as PromQL writes it: whole seconds, or milliseconds when needed.
fn promql_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}

/// The built-in templates of a catalog.
pub fn builtin(name: CatalogName) -> Vec<(Feature, &'static str)> {
    match name {
        CatalogName::None => Vec::new(),
        CatalogName::Kubernetes => KUBERNETES.to_vec(),
        CatalogName::Storefront => STOREFRONT.to_vec(),
    }
}

// Pods of a Deployment are named `<deployment>-<replicaset hash>-<pod hash>`; the matcher
// is spelled out in each template and a test checks that they all agree.
const KUBERNETES: [(Feature, &str); 11] = [
    (
        Feature::CpuCores,
        r#"sum(rate(container_cpu_usage_seconds_total{namespace="{namespace}",pod=~"{service}-[a-z0-9]+-[a-z0-9]+",container!="",container!="POD"}[{window}]))"#,
    ),
    (
        Feature::CpuRequestCores,
        r#"sum(kube_pod_container_resource_requests{namespace="{namespace}",pod=~"{service}-[a-z0-9]+-[a-z0-9]+",resource="cpu"})"#,
    ),
    (
        Feature::CpuLimitCores,
        r#"sum(kube_pod_container_resource_limits{namespace="{namespace}",pod=~"{service}-[a-z0-9]+-[a-z0-9]+",resource="cpu"})"#,
    ),
    (
        Feature::MemoryBytes,
        r#"sum(container_memory_working_set_bytes{namespace="{namespace}",pod=~"{service}-[a-z0-9]+-[a-z0-9]+",container!="",container!="POD"})"#,
    ),
    (
        Feature::MemoryRequestBytes,
        r#"sum(kube_pod_container_resource_requests{namespace="{namespace}",pod=~"{service}-[a-z0-9]+-[a-z0-9]+",resource="memory"})"#,
    ),
    (
        Feature::MemoryLimitBytes,
        r#"sum(kube_pod_container_resource_limits{namespace="{namespace}",pod=~"{service}-[a-z0-9]+-[a-z0-9]+",resource="memory"})"#,
    ),
    (
        Feature::RequestsPerSecond,
        r#"sum(rate(nginx_ingress_controller_requests{namespace="{namespace}",service="{service}"}[{window}]))"#,
    ),
    (
        Feature::LatencyP95Seconds,
        r#"histogram_quantile(0.95, sum by (le) (rate(nginx_ingress_controller_request_duration_seconds_bucket{namespace="{namespace}",service="{service}"}[{window}])))"#,
    ),
    (
        // No 5xx series at all means no errors, so the numerator falls back to 0; no
        // requests at all leaves the ratio missing (0/0), which is the truth.
        Feature::ErrorRatio,
        r#"(sum(rate(nginx_ingress_controller_requests{namespace="{namespace}",service="{service}",status=~"5.."}[{window}])) or vector(0)) / sum(rate(nginx_ingress_controller_requests{namespace="{namespace}",service="{service}"}[{window}]))"#,
    ),
    (
        // Little's law: seconds spent in requests per second is the mean number in flight.
        Feature::InFlight,
        r#"sum(rate(nginx_ingress_controller_request_duration_seconds_sum{namespace="{namespace}",service="{service}"}[{window}]))"#,
    ),
    (
        Feature::ReplicasReady,
        r#"sum(kube_deployment_status_replicas_available{namespace="{namespace}",deployment="{service}"})"#,
    ),
];

// The storefront's metrics carry a `service` label; Prometheus adds `namespace` (and the
// same `service`) as target labels. Requests and limits do not exist outside a cluster.
const STOREFRONT: [(Feature, &str); 7] = [
    (
        Feature::CpuCores,
        r#"sum(rate(process_cpu_seconds_total{namespace="{namespace}",service="{service}"}[{window}]))"#,
    ),
    (Feature::MemoryBytes, r#"sum(process_resident_memory_bytes{namespace="{namespace}",service="{service}"})"#),
    (
        Feature::RequestsPerSecond,
        r#"sum(rate(http_requests_total{namespace="{namespace}",service="{service}"}[{window}]))"#,
    ),
    (
        Feature::LatencyP95Seconds,
        r#"histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{namespace="{namespace}",service="{service}"}[{window}])))"#,
    ),
    (
        Feature::ErrorRatio,
        r#"(sum(rate(http_requests_total{namespace="{namespace}",service="{service}",status=~"5.."}[{window}])) or vector(0)) / sum(rate(http_requests_total{namespace="{namespace}",service="{service}"}[{window}]))"#,
    ),
    (Feature::InFlight, r#"sum(http_requests_in_flight{namespace="{namespace}",service="{service}"})"#),
    // A target that answers its scrape is a ready replica; a known target that is down
    // counts 0, an unknown service stays missing.
    (Feature::ReplicasReady, r#"sum(up{namespace="{namespace}",service="{service}"})"#),
];

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::strategy::Strategy as _;

    /// Templates as operators write them, placeholders inside and outside quotes, plus
    /// any text.
    fn template() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::prop_oneof![
            proptest::sample::select(vec![
                r#"sum(rate(http_requests_total{namespace="{namespace}",service="{service}"}[{window}]))"#,
                r#"max(up{service="{service}"})"#,
                "{service}",
                "sum({service})",
                "rate({service}_total[{window}])",
                "{namespace}_{service}",
                r#"x{a="{service}"} offset {window}"#,
                "",
                "sum(",
            ])
            .prop_map(str::to_owned),
            "\\PC{0,40}",
        ]
    }

    /// Service names a user may have: DNS labels, PromQL keywords among them.
    fn label() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::prop_oneof![
            proptest::sample::select(vec![
                "and", "or", "unless", "by", "on", "offset", "bool", "inf", "nan", "sum", "x"
            ])
            .prop_map(str::to_owned),
            "[a-z]([a-z0-9-]{0,10}[a-z0-9])?",
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, failure_persistence: None, ..Default::default() })]

        /// Any `[catalog]`: checked, or refused naming the feature; and a checked catalog
        /// renders PromQL that parses for every valid service, not only for the probe.
        #[test]
        fn any_catalog_is_refused_or_renders_valid_promql_for_every_service(
            base in proptest::sample::select(vec![CatalogName::Kubernetes, CatalogName::Storefront, CatalogName::None]),
            window_ms in 0u64..100_000_000,
            features in proptest::collection::vec(
                (proptest::prop_oneof![
                    proptest::sample::select(Feature::ALL.iter().map(|f| f.name().to_owned()).collect::<Vec<_>>()),
                    "[a-z_]{1,10}",
                ], template()),
                0..4,
            ),
            namespace in label(),
            name in label(),
        ) {
            let config = CatalogConfig {
                base,
                window: Duration::from_millis(window_ms),
                features: features.into_iter().collect(),
            };
            let Ok(catalog) = Catalog::from_config(&config) else { return Ok(()) };
            let id = ServiceId::new(&namespace, &name).unwrap();
            for feature in catalog.features() {
                let query = catalog.render(feature, &id).unwrap();
                proptest::prop_assert!(
                    promql_parser::parser::parse(&query).is_ok(),
                    "{feature} checked but renders for {id} to {query}"
                );
            }
        }
    }

    /// Failing first: `{service}` as a metric name passed the probe's check
    /// (`probe-service` parses as a subtraction) yet broke for `a-0a0` or `and`.
    #[test]
    fn a_placeholder_outside_quotes_is_refused_naming_it() {
        for template in ["{service}", "sum({namespace}_requests)", r#"x{a="b"} + {service}"#] {
            let err = Catalog::from_config(&config(CatalogName::None, &[("requests_per_second", template)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("requests_per_second") && err.contains("must be inside quotes"), "{template}: {err}");
        }
        let quoted =
            r#"sum(rate(x{namespace="{namespace}",a='{service}',b=~`{service}.*`,c="\"{service}"}[{window}]))"#;
        Catalog::from_config(&config(CatalogName::None, &[("requests_per_second", quoted)])).unwrap();
    }

    const K8S_PODS: &str = r#"namespace="{namespace}",pod=~"{service}-[a-z0-9]+-[a-z0-9]+""#;

    fn config(base: CatalogName, features: &[(&str, &str)]) -> CatalogConfig {
        CatalogConfig {
            base,
            window: Duration::from_secs(5),
            features: features.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn builtin_catalogs_parse_and_kubernetes_covers_every_feature() {
        let k8s = Catalog::from_config(&config(CatalogName::Kubernetes, &[])).unwrap();
        assert_eq!(k8s.features().collect::<Vec<_>>(), Feature::ALL.to_vec());
        let store = Catalog::from_config(&config(CatalogName::Storefront, &[])).unwrap();
        assert!(store.features().any(|f| f == Feature::RequestsPerSecond));
        for (_, template) in KUBERNETES.iter().filter(|(_, t)| t.contains("pod=~")) {
            assert!(template.contains(K8S_PODS), "{template}");
        }
    }

    #[test]
    fn render_fills_every_placeholder() {
        let c = Catalog::from_config(&config(CatalogName::Storefront, &[])).unwrap();
        let q = c.render(Feature::RequestsPerSecond, &ServiceId::new("shop", "order").unwrap()).unwrap();
        assert_eq!(q, r#"sum(rate(http_requests_total{namespace="shop",service="order"}[5s]))"#);
        assert_eq!(c.render(Feature::CpuLimitCores, &ServiceId::new("shop", "order").unwrap()), None);
    }

    #[test]
    fn overrides_replace_and_drop_features() {
        let c = Catalog::from_config(&config(
            CatalogName::Storefront,
            &[("in_flight", ""), ("cpu_limit_cores", r#"sum(limits{app="{service}"})"#)],
        ))
        .unwrap();
        let features: Vec<Feature> = c.features().collect();
        assert!(!features.contains(&Feature::InFlight));
        assert!(features.contains(&Feature::CpuLimitCores));
    }

    #[test]
    fn bad_catalogs_are_refused_with_the_culprit_named() {
        let err = Catalog::from_config(&config(CatalogName::None, &[("cpu", "up")])).unwrap_err().to_string();
        assert!(err.contains("\"cpu\"") && err.contains("catalog.features"), "{err}");
        let err = Catalog::from_config(&config(CatalogName::None, &[("cpu_cores", "sum(rate(x[{window}])")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cpu_cores") && err.contains("does not parse"), "{err}");
        let err = Catalog::from_config(&config(CatalogName::None, &[("cpu_cores", "rate(x{svc}[1m])")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cpu_cores"), "{err}");
        assert!(matches!(Catalog::from_config(&config(CatalogName::None, &[])), Err(CatalogError::Empty)));
    }
}
