//! The least privilege of `prescale-scaler run` for a list of targets: in each namespace,
//! `get` and `update` of `<kind>s/scale` (`deployments/scale`, `statefulsets/scale`,
//! `rollouts/scale` in `argoproj.io`, ...) for exactly the workloads listed
//! (`resourceNames`), bound to the scaler's ServiceAccount. `deploy/base/scaler-rbac.yaml`
//! is the namespace-wide fallback for when the targets are not known up front.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::kube_backend::Target;

/// The ServiceAccount, Role and RoleBinding name.
pub const NAME: &str = "prescale-scaler";

/// A `v1` `List` of a Role and a RoleBinding per namespace of `targets`: one rule per
/// API group and resource, naming exactly the targets' workloads. Targets whose kind is
/// unknown (no API resource) are left out; `RunConfig::validate` refuses them first.
pub fn for_targets(targets: &[Target], service_account_namespace: &str) -> Value {
    // namespace -> (group, plural) -> names
    let mut by_namespace: BTreeMap<&str, BTreeMap<(String, String), Vec<String>>> = BTreeMap::new();
    for t in targets {
        let Some(r) = t.api_resource() else { continue };
        by_namespace.entry(&t.namespace).or_default().entry((r.group, r.plural)).or_default().push(t.name.clone());
    }
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), NAME.to_owned()),
        ("app.kubernetes.io/part-of".to_owned(), "prescale".to_owned()),
    ]);
    let meta = |namespace: &str| ObjectMeta {
        name: Some(NAME.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels.clone()),
        ..ObjectMeta::default()
    };
    let mut items = Vec::new();
    for (namespace, resources) in by_namespace {
        let rules = resources
            .into_iter()
            .map(|((group, plural), mut names)| {
                names.sort();
                names.dedup();
                PolicyRule {
                    api_groups: Some(vec![group]),
                    resources: Some(vec![format!("{plural}/scale")]),
                    resource_names: Some(names),
                    verbs: vec!["get".into(), "update".into()],
                    ..PolicyRule::default()
                }
            })
            .collect();
        let role = Role { metadata: meta(namespace), rules: Some(rules) };
        let binding = RoleBinding {
            metadata: meta(namespace),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: NAME.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: NAME.into(),
                namespace: Some(service_account_namespace.to_owned()),
                ..Subject::default()
            }]),
        };
        let mut role = serde_json::to_value(role).expect("a Role serialises");
        role["apiVersion"] = json!("rbac.authorization.k8s.io/v1");
        role["kind"] = json!("Role");
        let mut binding = serde_json::to_value(binding).expect("a RoleBinding serialises");
        binding["apiVersion"] = json!("rbac.authorization.k8s.io/v1");
        binding["kind"] = json!("RoleBinding");
        items.push(role);
        items.push(binding);
    }
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}
