//! Kubernetes objects into their `k8s-openapi` types, strictly: the object is parsed into
//! the type of its kind, written back, and every field of the input must come back with
//! the same value. A misspelt or misplaced field (which the API server would drop or
//! refuse) is reported with its path.

use k8s_openapi::api::{apps, batch, core, networking, policy, rbac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why an object is not a valid Kubernetes object.
#[derive(Debug, thiserror::Error)]
pub enum TypeError {
    /// Its kind is not one this check knows.
    #[error("{0}: unknown kind")]
    UnknownKind(String),
    /// It does not parse into its type.
    #[error("{object}: {message}")]
    Parse {
        /// `Kind/name`.
        object: String,
        /// The parser's message.
        message: String,
    },
    /// A field is not part of the type, or is not what it parsed as.
    #[error("{object}: field {path} is not a field of the type (or has the wrong form)")]
    Dropped {
        /// `Kind/name`.
        object: String,
        /// The field's path.
        path: String,
    },
}

/// `Kind/name` of an object.
pub fn describe(o: &Value) -> String {
    format!("{}/{}", o["kind"].as_str().unwrap_or("?"), o["metadata"]["name"].as_str().unwrap_or("?"))
}

/// Checks that `o` is a well-formed object of its kind.
pub fn check(o: &Value) -> Result<(), TypeError> {
    if let Some(result) = crate::monitoring::check(o) {
        return result.map_err(|message| TypeError::Parse { object: describe(o), message });
    }
    match o["kind"].as_str().unwrap_or_default() {
        "Namespace" => strict::<core::v1::Namespace>(o),
        "ConfigMap" => strict::<core::v1::ConfigMap>(o),
        "Secret" => strict::<core::v1::Secret>(o),
        "Service" => strict::<core::v1::Service>(o),
        "ServiceAccount" => strict::<core::v1::ServiceAccount>(o),
        "PersistentVolumeClaim" => strict::<core::v1::PersistentVolumeClaim>(o),
        "Deployment" => strict::<apps::v1::Deployment>(o),
        "StatefulSet" => strict::<apps::v1::StatefulSet>(o),
        "CronJob" => strict::<batch::v1::CronJob>(o),
        "Job" => strict::<batch::v1::Job>(o),
        "NetworkPolicy" => strict::<networking::v1::NetworkPolicy>(o),
        "PodDisruptionBudget" => strict::<policy::v1::PodDisruptionBudget>(o),
        "Role" => strict::<rbac::v1::Role>(o),
        "RoleBinding" => strict::<rbac::v1::RoleBinding>(o),
        "ClusterRole" => strict::<rbac::v1::ClusterRole>(o),
        "ClusterRoleBinding" => strict::<rbac::v1::ClusterRoleBinding>(o),
        _ => Err(TypeError::UnknownKind(describe(o))),
    }
}

fn strict<T: DeserializeOwned + Serialize>(o: &Value) -> Result<(), TypeError> {
    let typed: T = serde_json::from_value(o.clone())
        .map_err(|e| TypeError::Parse { object: describe(o), message: e.to_string() })?;
    let back =
        serde_json::to_value(&typed).map_err(|e| TypeError::Parse { object: describe(o), message: e.to_string() })?;
    match missing(o, &back, String::new()) {
        Some(path) => Err(TypeError::Dropped { object: describe(o), path }),
        None => Ok(()),
    }
}

/// The path of the first part of `input` that `output` does not hold, if any.
pub fn missing(input: &Value, output: &Value, path: String) -> Option<String> {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => a.iter().find_map(|(k, v)| match b.get(k) {
            Some(w) => missing(v, w, format!("{path}.{k}")),
            // An empty value the type leaves out is the same thing.
            None if v.is_null() || v.as_object().is_some_and(|m| m.is_empty()) => None,
            None => Some(format!("{path}.{k}")),
        }),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            a.iter().zip(b).enumerate().find_map(|(i, (v, w))| missing(v, w, format!("{path}[{i}]")))
        }
        // Numbers may come back as another representation of the same value.
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => None,
        (a, b) if a == b => None,
        _ => Some(path),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn misplaced_fields_are_named() {
        let good = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"selector": {"a": "b"}, "ports": [{"port": 80, "targetPort": "http"}]}});
        check(&good).unwrap();
        let mut bad = good.clone();
        bad["spec"]["ports"][0]["targetport"] = json!(8080);
        let err = check(&bad).unwrap_err().to_string();
        assert!(err.contains("Service/s") && err.contains(".spec.ports[0].targetport"), "{err}");
        let wrong = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": "80"}});
        assert!(matches!(check(&wrong), Err(TypeError::Parse { .. })));
        assert!(matches!(check(&json!({"kind": "Gadget"})), Err(TypeError::UnknownKind(_))));
    }
}
