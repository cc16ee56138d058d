//! The feature catalog: which PromQL gives each feature of the core schema.
//!
//! A template is **one query for all services**: it aggregates `by (namespace, service)`
//! so that each series of its result is one service's value of the feature, and a step
//! costs one query per feature however many services there are. Two placeholders:
//! `{namespaces}`, the namespaces of the services being sampled as a regex alternation
//! (`namespace=~"{namespaces}"`, so Prometheus reads only those), and `{window}`, the range
//! of `rate()` and friends, from config, because a 1 s test step and a 30 s production
//! step need different ranges. A service absent from a result has the feature missing
//! (never zero); a feature the catalog leaves out is stored as missing.
//!
//! Two catalogs ship: [`CatalogName::Kubernetes`] (cAdvisor, kube-state-metrics and the
//! NGINX ingress controller; pods are mapped to their Deployment, StatefulSet or Argo Rollout
//! through kube-state-metrics' owner series) and
//! [`CatalogName::Storefront`] (the storefront's own metrics, scraped with `namespace` and
//! `service` target labels, for local runs). Config starts from one of them and may
//! replace or drop single features. Every template is parsed and checked to group by
//! service at start, so a typo stops the collector before it writes anything.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::Feature;
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
    /// `{namespaces}` outside a quoted string: it is a regex, so only a label matcher's
    /// value (`namespace=~"{namespaces}"`) makes sense of it.
    #[error(
        "catalog feature `{feature}`: {{namespaces}} must be inside quotes, as a regex matcher's value: namespace=~\"{{namespaces}}\""
    )]
    UnquotedPlaceholder {
        /// The feature whose template is wrong.
        feature: String,
    },
    /// A per-service placeholder: templates are one query for all services now.
    #[error(
        "catalog feature `{feature}`: {placeholder} is gone; a template is one query for all services: aggregate with `sum by (namespace, service) (...)` and select namespaces with namespace=~\"{{namespaces}}\""
    )]
    PerServicePlaceholder {
        /// The feature whose template is wrong.
        feature: String,
        /// `{namespace}` or `{service}`.
        placeholder: &'static str,
    },
    /// The result would not be one series per service.
    #[error(
        "catalog feature `{feature}`: the query must aggregate by (namespace, service) so each series is one service ({why})\n  query: {query}"
    )]
    NotGrouped {
        /// The feature whose template is wrong.
        feature: String,
        /// The rendered query.
        query: String,
        /// What is missing.
        why: &'static str,
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
            let feature = feature.name().to_owned();
            for placeholder in ["{namespace}", "{service}"] {
                if template.contains(placeholder) {
                    return Err(CatalogError::PerServicePlaceholder { feature, placeholder });
                }
            }
            if unquoted(template, "{namespaces}") {
                return Err(CatalogError::UnquotedPlaceholder { feature });
            }
        }
        let catalog = Self { templates, window: promql_duration(config.window) };
        for feature in catalog.features() {
            let query = catalog.render(feature, &["probe-a", "probe-b"]).expect("the feature is in the catalog");
            let name = feature.name().to_owned();
            let expr = promql_parser::parser::parse(&query).map_err(|message| CatalogError::BadPromql {
                feature: name.clone(),
                query: query.clone(),
                message,
            })?;
            if let Err(why) = groups_by_service(&expr) {
                return Err(CatalogError::NotGrouped { feature: name, query, why });
            }
        }
        Ok(catalog)
    }

    /// The features this catalog gives, in schema order.
    pub fn features(&self) -> impl Iterator<Item = Feature> + '_ {
        self.templates.keys().copied()
    }

    /// The query for one feature of every service in `namespaces` (DNS labels, so the
    /// alternation needs no escaping); `None` when the catalog leaves the feature out.
    pub fn render(&self, feature: Feature, namespaces: &[&str]) -> Option<String> {
        let template = self.templates.get(&feature)?;
        Some(template.replace("{namespaces}", &namespaces.join("|")).replace("{window}", &self.window))
    }
}

/// The labels every catalog query's series carry: which service a value belongs to.
pub const SERVICE_LABELS: [&str; 2] = ["namespace", "service"];

/// Whether the outermost vector operation of `expr` keeps one series per service: an
/// aggregation `by` both labels (or `without` neither), possibly inside parentheses,
/// functions such as `histogram_quantile`, or arithmetic with another such vector or a
/// number. A bare selector would return a series per pod or instance.
fn groups_by_service(expr: &promql_parser::parser::Expr) -> Result<(), &'static str> {
    use promql_parser::parser::{Expr, LabelModifier};
    match expr {
        Expr::Aggregate(a) => match &a.modifier {
            Some(LabelModifier::Include(l))
                if SERVICE_LABELS.iter().all(|want| l.labels.iter().any(|have| have == want)) =>
            {
                Ok(())
            }
            Some(LabelModifier::Exclude(l)) if !l.labels.iter().any(|have| SERVICE_LABELS.contains(&have.as_str())) => {
                Ok(())
            }
            _ => Err("an aggregation that drops `namespace` or `service`"),
        },
        Expr::Paren(p) => groups_by_service(&p.expr),
        Expr::Unary(u) => groups_by_service(&u.expr),
        Expr::Binary(b) => {
            let (l, r) = (groups_by_service(&b.lhs), groups_by_service(&b.rhs));
            let scalar = |e: &Expr| matches!(e, Expr::NumberLiteral(_));
            match (l, r) {
                (Ok(()), Ok(())) => Ok(()),
                (Ok(()), Err(_)) if scalar(&b.rhs) => Ok(()),
                (Err(_), Ok(())) if scalar(&b.lhs) => Ok(()),
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        }
        Expr::Call(c) => {
            let vectors: Vec<_> = c
                .args
                .args
                .iter()
                .filter(|a| !matches!(***a, Expr::NumberLiteral(_) | Expr::StringLiteral(_)))
                .collect();
            match vectors.as_slice() {
                [] => Err("a function of no vector"),
                args => args.iter().try_for_each(|a| groups_by_service(a)),
            }
        }
        Expr::Subquery(s) => groups_by_service(&s.expr),
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) => {
            Err("a bare selector: wrap it in `sum by (namespace, service) (...)`")
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => Err("no series at all"),
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

/// Whether `placeholder` occurs outside a PromQL string literal (double, single or back
/// quotes; backslash escapes inside the first two).
fn unquoted(template: &str, placeholder: &str) -> bool {
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
            None if template[i..].starts_with(placeholder) => return true,
            None => {}
        }
    }
    false
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

// Which workload each pod belongs to, from kube-state-metrics' owner series: a
// StatefulSet's pods directly (`kube_pod_owner`), a Deployment's or an Argo Rollout's
// through the ReplicaSet that owns them (`kube_replicaset_owner`). One series per pod, so
// a feature joins it `on (namespace, pod) group_left (service)`; pods of Jobs, DaemonSets
// and bare pods have no such owner and fall out. Pod names are not parsed: a StatefulSet
// `cart-db` (pods `cart-db-0`) would look like a Deployment `cart`'s to a pattern.
macro_rules! pod_service {
    () => {
        r#"max by (namespace, pod, service) (label_replace(kube_pod_owner{namespace=~"{namespaces}",owner_kind="StatefulSet"}, "service", "$1", "owner_name", "(.+)") or on (namespace, pod) (label_replace(kube_pod_owner{namespace=~"{namespaces}",owner_kind="ReplicaSet"}, "replicaset", "$1", "owner_name", "(.+)") * on (namespace, replicaset) group_left (service) max by (namespace, replicaset, service) (label_replace(kube_replicaset_owner{namespace=~"{namespaces}",owner_kind=~"Deployment|Rollout"}, "service", "$1", "owner_name", "(.+)"))))"#
    };
}

/// `sum by (namespace, service)` of a per-pod (or per-container) vector, its pods mapped
/// to their workloads.
macro_rules! per_workload {
    ($pods:literal) => {
        concat!(
            "sum by (namespace, service) (",
            $pods,
            " * on (namespace, pod) group_left (service) ",
            pod_service!(),
            ")"
        )
    };
}

/// The pod-to-workload mapping every per-pod template uses.
#[cfg(test)]
const POD_SERVICE: &str = pod_service!();

const KUBERNETES: [(Feature, &str); 11] = [
    (
        Feature::CpuCores,
        per_workload!(
            r#"rate(container_cpu_usage_seconds_total{namespace=~"{namespaces}",container!="",container!="POD"}[{window}])"#
        ),
    ),
    (
        Feature::CpuRequestCores,
        per_workload!(r#"kube_pod_container_resource_requests{namespace=~"{namespaces}",resource="cpu"}"#),
    ),
    (
        Feature::CpuLimitCores,
        per_workload!(r#"kube_pod_container_resource_limits{namespace=~"{namespaces}",resource="cpu"}"#),
    ),
    (
        Feature::MemoryBytes,
        per_workload!(
            r#"container_memory_working_set_bytes{namespace=~"{namespaces}",container!="",container!="POD"}"#
        ),
    ),
    (
        Feature::MemoryRequestBytes,
        per_workload!(r#"kube_pod_container_resource_requests{namespace=~"{namespaces}",resource="memory"}"#),
    ),
    (
        Feature::MemoryLimitBytes,
        per_workload!(r#"kube_pod_container_resource_limits{namespace=~"{namespaces}",resource="memory"}"#),
    ),
    (
        Feature::RequestsPerSecond,
        r#"sum by (namespace, service) (rate(nginx_ingress_controller_requests{namespace=~"{namespaces}"}[{window}]))"#,
    ),
    (
        Feature::LatencyP95Seconds,
        r#"histogram_quantile(0.95, sum by (namespace, service, le) (rate(nginx_ingress_controller_request_duration_seconds_bucket{namespace=~"{namespaces}"}[{window}])))"#,
    ),
    (
        // A service with requests but no 5xx series has no errors, so the numerator falls
        // back to 0 times its request rate (`or vector(0)` would lose the labels); a
        // service with no requests at all keeps the ratio missing, which is the truth.
        Feature::ErrorRatio,
        r#"(sum by (namespace, service) (rate(nginx_ingress_controller_requests{namespace=~"{namespaces}",status=~"5.."}[{window}])) or 0 * sum by (namespace, service) (rate(nginx_ingress_controller_requests{namespace=~"{namespaces}"}[{window}]))) / sum by (namespace, service) (rate(nginx_ingress_controller_requests{namespace=~"{namespaces}"}[{window}]))"#,
    ),
    (
        // Little's law: seconds spent in requests per second is the mean number in flight.
        Feature::InFlight,
        r#"sum by (namespace, service) (rate(nginx_ingress_controller_request_duration_seconds_sum{namespace=~"{namespaces}"}[{window}]))"#,
    ),
    (
        // Ready replicas of whichever kind the service is: kube-state-metrics' Deployment
        // and StatefulSet series, Argo Rollouts' own controller metric.
        Feature::ReplicasReady,
        r#"sum by (namespace, service) (label_replace(kube_deployment_status_replicas_available{namespace=~"{namespaces}"}, "service", "$1", "deployment", "(.+)")) or sum by (namespace, service) (label_replace(kube_statefulset_status_replicas_ready{namespace=~"{namespaces}"}, "service", "$1", "statefulset", "(.+)")) or sum by (namespace, service) (label_replace(rollout_info_replicas_available{namespace=~"{namespaces}"}, "service", "$1", "name", "(.+)"))"#,
    ),
];

// The storefront's metrics carry a `service` label; Prometheus adds `namespace` (and the
// same `service`) as target labels. Requests and limits do not exist outside a cluster.
const STOREFRONT: [(Feature, &str); 7] = [
    (
        Feature::CpuCores,
        r#"sum by (namespace, service) (rate(process_cpu_seconds_total{namespace=~"{namespaces}"}[{window}]))"#,
    ),
    (Feature::MemoryBytes, r#"sum by (namespace, service) (process_resident_memory_bytes{namespace=~"{namespaces}"})"#),
    (
        Feature::RequestsPerSecond,
        r#"sum by (namespace, service) (rate(http_requests_total{namespace=~"{namespaces}"}[{window}]))"#,
    ),
    (
        Feature::LatencyP95Seconds,
        r#"histogram_quantile(0.95, sum by (namespace, service, le) (rate(http_request_duration_seconds_bucket{namespace=~"{namespaces}"}[{window}])))"#,
    ),
    (
        Feature::ErrorRatio,
        r#"(sum by (namespace, service) (rate(http_requests_total{namespace=~"{namespaces}",status=~"5.."}[{window}])) or 0 * sum by (namespace, service) (rate(http_requests_total{namespace=~"{namespaces}"}[{window}]))) / sum by (namespace, service) (rate(http_requests_total{namespace=~"{namespaces}"}[{window}]))"#,
    ),
    (Feature::InFlight, r#"sum by (namespace, service) (http_requests_in_flight{namespace=~"{namespaces}"})"#),
    // A target that answers its scrape is a ready replica; a known target that is down
    // counts 0, an unknown service stays missing.
    (Feature::ReplicasReady, r#"sum by (namespace, service) (up{namespace=~"{namespaces}"})"#),
];

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::strategy::Strategy as _;

    /// Templates as operators write them, the placeholder inside and outside quotes, old
    /// per-service ones, plus any text.
    fn template() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::prop_oneof![
            proptest::sample::select(vec![
                r#"sum by (namespace, service) (rate(http_requests_total{namespace=~"{namespaces}"}[{window}]))"#,
                r#"sum by (service, namespace, le) (x{namespace=~'{namespaces}'})"#,
                r#"max without (pod) (up{namespace=~"{namespaces}"})"#,
                r#"sum(rate(http_requests_total{namespace="{namespace}",service="{service}"}[{window}]))"#,
                "{namespaces}",
                "sum by (namespace, service) ({namespaces})",
                r#"up{namespace=~"{namespaces}"}"#,
                r#"sum(up{namespace=~"{namespaces}"})"#,
                "",
                "sum(",
            ])
            .prop_map(str::to_owned),
            "\\PC{0,40}",
        ]
    }

    /// Namespaces a user may have: DNS labels, PromQL keywords among them.
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
        /// renders PromQL that parses for every set of valid namespaces, not only the probe.
        #[test]
        fn any_catalog_is_refused_or_renders_valid_promql_for_every_namespace_set(
            base in proptest::sample::select(vec![CatalogName::Kubernetes, CatalogName::Storefront, CatalogName::None]),
            window_ms in 0u64..100_000_000,
            features in proptest::collection::vec(
                (proptest::prop_oneof![
                    proptest::sample::select(Feature::ALL.iter().map(|f| f.name().to_owned()).collect::<Vec<_>>()),
                    "[a-z_]{1,10}",
                ], template()),
                0..4,
            ),
            namespaces in proptest::collection::vec(label(), 1..5),
        ) {
            let config = CatalogConfig {
                base,
                window: Duration::from_millis(window_ms),
                features: features.into_iter().collect(),
            };
            let Ok(catalog) = Catalog::from_config(&config) else { return Ok(()) };
            let namespaces: Vec<&str> = namespaces.iter().map(String::as_str).collect();
            for feature in catalog.features() {
                let query = catalog.render(feature, &namespaces).unwrap();
                proptest::prop_assert!(
                    promql_parser::parser::parse(&query).is_ok(),
                    "{feature} checked but renders for {namespaces:?} to {query}"
                );
            }
        }
    }

    #[test]
    fn the_placeholder_outside_quotes_is_refused_naming_it() {
        for template in ["{namespaces}", r#"sum by (namespace, service) (x{a="b"}) + {namespaces}"#] {
            let err = Catalog::from_config(&config(CatalogName::None, &[("requests_per_second", template)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("requests_per_second") && err.contains("must be inside quotes"), "{template}: {err}");
        }
        let quoted = r#"sum by (namespace, service) (rate(x{namespace=~"{namespaces}",b=~`{namespaces}`,c="\"{namespaces}"}[{window}]))"#;
        Catalog::from_config(&config(CatalogName::None, &[("requests_per_second", quoted)])).unwrap();
    }

    /// A per-service template from before grouped queries: refused with the way forward.
    #[test]
    fn a_per_service_template_is_refused_saying_how_to_group() {
        let old = r#"sum(rate(http_requests_total{namespace="{namespace}",service="{service}"}[{window}]))"#;
        let err =
            Catalog::from_config(&config(CatalogName::None, &[("requests_per_second", old)])).unwrap_err().to_string();
        assert!(err.contains("requests_per_second") && err.contains("sum by (namespace, service)"), "{err}");
    }

    #[test]
    fn a_query_that_is_not_one_series_per_service_is_refused() {
        for (template, why) in [
            (r#"up{namespace=~"{namespaces}"}"#, "bare selector"),
            (r#"sum(up{namespace=~"{namespaces}"})"#, "drops"),
            (r#"sum by (namespace) (up{namespace=~"{namespaces}"})"#, "drops"),
            (r#"max without (service) (up{namespace=~"{namespaces}"})"#, "drops"),
            (r#"sum by (namespace, service) (up{namespace=~"{namespaces}"}) / sum(up)"#, "drops"),
            ("vector(1)", "no vector"),
        ] {
            let err = Catalog::from_config(&config(CatalogName::None, &[("replicas_ready", template)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("replicas_ready") && err.contains("aggregate by (namespace, service)"), "{err}");
            assert!(err.contains(why), "{template}: {err}");
        }
        for good in [
            r#"sum by (namespace, service) (up{namespace=~"{namespaces}"}) * 2"#,
            r#"max without (pod, instance) (up{namespace=~"{namespaces}"})"#,
            r#"clamp_min(sum by (service, namespace) (up{namespace=~"{namespaces}"}), 0)"#,
        ] {
            Catalog::from_config(&config(CatalogName::None, &[("replicas_ready", good)])).unwrap();
        }
    }

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
        // Every template reading per-pod series maps pods through the owner series.
        for (_, template) in KUBERNETES.iter().filter(|(_, t)| t.contains("container")) {
            assert!(template.contains(POD_SERVICE), "{template}");
        }
    }

    #[test]
    fn render_fills_every_placeholder() {
        let c = Catalog::from_config(&config(CatalogName::Storefront, &[])).unwrap();
        let q = c.render(Feature::RequestsPerSecond, &["shop", "tools"]).unwrap();
        assert_eq!(q, r#"sum by (namespace, service) (rate(http_requests_total{namespace=~"shop|tools"}[5s]))"#);
        assert_eq!(c.render(Feature::CpuLimitCores, &["shop"]), None);
    }

    #[test]
    fn overrides_replace_and_drop_features() {
        let c = Catalog::from_config(&config(
            CatalogName::Storefront,
            &[
                ("in_flight", ""),
                ("cpu_limit_cores", r#"sum by (namespace, service) (limits{namespace=~"{namespaces}"})"#),
            ],
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
