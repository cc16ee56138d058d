//! The least privilege of `prescale-scaler run` for a list of targets: in each namespace,
//! `get` and `update` of `deployments/scale` for exactly the Deployments listed
//! (`resourceNames`), bound to the scaler's ServiceAccount. `deploy/base/scaler-rbac.yaml`
//! is the namespace-wide fallback for when the targets are not known up front.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::kube_backend::Target;

/// The ServiceAccount, Role and RoleBinding name.
pub const NAME: &str = "prescale-scaler";

/// A `v1` `List` of a Role and a RoleBinding per namespace of `targets`.
pub fn for_targets(targets: &[Target], service_account_namespace: &str) -> Value {
    let mut by_namespace: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for t in targets {
        by_namespace.entry(&t.namespace).or_default().push(t.deployment.clone());
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
    for (namespace, mut deployments) in by_namespace {
        deployments.sort();
        deployments.dedup();
        let role = Role {
            metadata: meta(namespace),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec!["apps".into()]),
                resources: Some(vec!["deployments/scale".into()]),
                resource_names: Some(deployments),
                verbs: vec!["get".into(), "update".into()],
                ..PolicyRule::default()
            }]),
        };
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
