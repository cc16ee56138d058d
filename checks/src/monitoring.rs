//! The Prometheus Operator's `ServiceMonitor` and `PrometheusRule`
//! (monitoring.coreos.com/v1) as serde types that refuse unknown fields, after the
//! Operator's CRD schemas, for the fields this repository uses (a field outside them is
//! refused, not skipped, so a misspelling cannot pass). [`scrape_config`] renders a
//! ServiceMonitor endpoint as the Operator renders it into Prometheus' configuration: the
//! job name, `honor_labels`, and the target labels it adds.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A `ServiceMonitor`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceMonitor {
    /// `monitoring.coreos.com/v1`.
    pub api_version: String,
    /// `ServiceMonitor`.
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// The spec.
    pub spec: ServiceMonitorSpec,
}

/// `spec` of a `ServiceMonitor`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// The Services scraped.
    pub selector: LabelSelector,
    /// Their namespaces (default: the ServiceMonitor's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    /// A Service label whose value becomes the `job` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_label: Option<String>,
    /// The endpoints scraped on each Service.
    pub endpoints: Vec<Endpoint>,
}

/// `namespaceSelector`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<bool>,
    /// These namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_names: Option<Vec<String>>,
}

/// One endpoint of a `ServiceMonitor`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Endpoint {
    /// The Service port's name.
    pub port: String,
    /// The path (default `/metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Scrape interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Keep the target's own labels on conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honor_labels: Option<bool>,
}

/// A `PrometheusRule`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrometheusRule {
    /// `monitoring.coreos.com/v1`.
    pub api_version: String,
    /// `PrometheusRule`.
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// The rule groups, as in a Prometheus rule file.
    pub spec: RuleSpec,
}

/// `spec` of a `PrometheusRule`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The groups.
    pub groups: Vec<RuleGroup>,
}

/// A rule group.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleGroup {
    /// Its name.
    pub name: String,
    /// Evaluation interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// A recording or alerting rule.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Recorded series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Alert name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// The PromQL.
    pub expr: String,
    /// How long the alert must hold.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Checks that `o` is a well-formed object of one of these kinds (`None`: another kind).
pub fn check(o: &Value) -> Option<Result<(), String>> {
    let what = crate::typed::describe(o);
    let result = match o["kind"].as_str()? {
        "ServiceMonitor" => serde_json::from_value::<ServiceMonitor>(o.clone()).map(|_| ()).map_err(|e| e.to_string()),
        "PrometheusRule" => match serde_json::from_value::<PrometheusRule>(o.clone()) {
            // Every rule records or alerts, never both.
            Ok(r) => {
                match r.spec.groups.iter().flat_map(|g| &g.rules).find(|x| x.record.is_some() == x.alert.is_some()) {
                    Some(bad) => Err(format!("rule {:?} must either record or alert", bad.expr)),
                    None => Ok(()),
                }
            }
            Err(e) => Err(e.to_string()),
        },
        _ => return None,
    };
    Some(result.map_err(|e| format!("{what}: {e}")))
}

/// The scrape configuration the Operator generates for endpoint `index` of `monitor`
/// scraping `targets` (`host:port` of the Service's pods, standing in for its endpoint
/// discovery): job `serviceMonitor/<namespace>/<name>/<index>`, `honor_labels` as the
/// endpoint says, and the target labels it adds (`namespace`, `service`, `pod`,
/// `container`, `endpoint`, `job`), as YAML list items for `scrape_configs`.
pub fn scrape_config(monitor: &ServiceMonitor, index: usize, service: &str, targets: &[(String, String)]) -> String {
    let namespace = monitor.metadata.namespace.as_deref().unwrap_or("default");
    let name = monitor.metadata.name.as_deref().unwrap_or_default();
    let e = &monitor.spec.endpoints[index];
    let mut out = format!(
        "  - job_name: serviceMonitor/{namespace}/{name}/{index}\n    honor_labels: {}\n    metrics_path: {}\n    scheme: {}\n    static_configs:\n",
        e.honor_labels.unwrap_or(false),
        e.path.as_deref().unwrap_or("/metrics"),
        e.scheme.as_deref().unwrap_or("http"),
    );
    for (address, pod) in targets {
        out.push_str(&format!(
            "      - targets: ['{address}']\n        labels: {{namespace: '{namespace}', service: '{service}', pod: '{pod}', container: '{service}', endpoint: '{}', job: '{service}'}}\n",
            e.port
        ));
    }
    out
}
