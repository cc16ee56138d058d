//! KEDA's `ScaledObject` and `TriggerAuthentication` (keda.sh/v1alpha1) as serde types
//! that refuse unknown fields, after KEDA's CRD schema, with the trigger metadata each way
//! of `keda.md` requires. The HPA behaviour passed through is checked against the
//! `autoscaling/v2` type itself.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;

/// A `ScaledObject`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScaledObject {
    /// `keda.sh/v1alpha1`.
    pub api_version: String,
    /// `ScaledObject`.
    pub kind: String,
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// The spec.
    pub spec: ScaledObjectSpec,
}

/// `spec` of a `ScaledObject`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScaledObjectSpec {
    /// What is scaled.
    pub scale_target_ref: ScaleTargetRef,
    /// Seconds between polls.
    #[serde(default)]
    pub polling_interval: Option<i32>,
    /// Seconds before scaling to zero.
    #[serde(default)]
    pub cooldown_period: Option<i32>,
    /// Seconds before the first scale to zero.
    #[serde(default)]
    pub initial_cooldown_period: Option<i32>,
    /// Replicas while idle.
    #[serde(default)]
    pub idle_replica_count: Option<i32>,
    /// Lower bound.
    #[serde(default)]
    pub min_replica_count: Option<i32>,
    /// Upper bound.
    #[serde(default)]
    pub max_replica_count: Option<i32>,
    /// What KEDA does when polls fail.
    #[serde(default)]
    pub fallback: Option<Fallback>,
    /// HPA settings passed through.
    #[serde(default)]
    pub advanced: Option<Advanced>,
    /// The triggers.
    pub triggers: Vec<Trigger>,
}

/// `scaleTargetRef`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// The workload's name.
    pub name: String,
    /// Its API version (default `apps/v1`).
    #[serde(default)]
    pub api_version: Option<String>,
    /// Its kind (default `Deployment`).
    #[serde(default)]
    pub kind: Option<String>,
    /// The container whose environment triggers may read.
    #[serde(default)]
    pub env_source_container_name: Option<String>,
}

/// `fallback`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Fallback {
    /// Failed polls before the fallback holds.
    pub failure_threshold: i32,
    /// Replicas held.
    pub replicas: i32,
    /// How `replicas` is applied.
    #[serde(default)]
    pub behavior: Option<FallbackBehavior>,
}

/// `fallback.behavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FallbackBehavior {
    /// Exactly `replicas`.
    Static,
    /// Keep the current count.
    CurrentReplicas,
    /// The current count if higher than `replicas`.
    CurrentReplicasIfHigher,
    /// The current count if lower than `replicas`.
    CurrentReplicasIfLower,
}

/// `advanced`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Advanced {
    /// The HPA's settings.
    #[serde(default)]
    pub horizontal_pod_autoscaler_config: Option<HpaConfig>,
    /// Restore the replica count when the ScaledObject is deleted.
    #[serde(default)]
    pub restore_to_original_replica_count: Option<bool>,
    /// A formula over named triggers.
    #[serde(default)]
    pub scaling_modifiers: Option<ScalingModifiers>,
}

/// `advanced.horizontalPodAutoscalerConfig`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HpaConfig {
    /// The HPA's name.
    #[serde(default)]
    pub name: Option<String>,
    /// Scale-up and scale-down policies, as the HPA's own (checked strictly).
    #[serde(default)]
    pub behavior: Option<Value>,
}

/// `advanced.scalingModifiers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScalingModifiers {
    /// Expression over trigger names.
    pub formula: String,
    /// Target of the composite metric.
    pub target: String,
    /// Activation target.
    #[serde(default)]
    pub activation_target: Option<String>,
    /// Metric type.
    #[serde(default)]
    pub metric_type: Option<String>,
}

/// One trigger.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Trigger {
    /// `external`, `external-push`, `metrics-api`, `prometheus`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Name for `scalingModifiers`.
    #[serde(default)]
    pub name: Option<String>,
    /// `AverageValue` (default), `Value` or `Utilization`.
    #[serde(default)]
    pub metric_type: Option<String>,
    /// Use the cached value between polls.
    #[serde(default)]
    pub use_cached_metrics: Option<bool>,
    /// The scaler's settings: strings only.
    pub metadata: BTreeMap<String, String>,
    /// Credentials.
    #[serde(default)]
    pub authentication_ref: Option<AuthenticationRef>,
}

/// `authenticationRef`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthenticationRef {
    /// The TriggerAuthentication's name.
    pub name: String,
    /// `TriggerAuthentication` (default) or `ClusterTriggerAuthentication`.
    #[serde(default)]
    pub kind: Option<String>,
}

/// A `TriggerAuthentication`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TriggerAuthentication {
    /// `keda.sh/v1alpha1`.
    pub api_version: String,
    /// `TriggerAuthentication`.
    pub kind: String,
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// Where parameters come from.
    pub spec: TriggerAuthenticationSpec,
}

/// `spec` of a `TriggerAuthentication` (the sources Prescale uses).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TriggerAuthenticationSpec {
    /// Parameters from Secrets.
    #[serde(default)]
    pub secret_target_ref: Vec<SecretTargetRef>,
    /// Parameters from the target's environment.
    #[serde(default)]
    pub env: Vec<EnvRef>,
}

/// A parameter from a Secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretTargetRef {
    /// The trigger parameter.
    pub parameter: String,
    /// The Secret.
    pub name: String,
    /// Its key.
    pub key: String,
}

/// A parameter from an environment variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvRef {
    /// The trigger parameter.
    pub parameter: String,
    /// The variable.
    pub name: String,
    /// The container.
    #[serde(default)]
    pub container_name: Option<String>,
}

/// What is wrong with a KEDA resource.
#[derive(Debug, thiserror::Error)]
#[error("{object}: {message}")]
pub struct KedaError {
    /// `Kind/name`.
    pub object: String,
    /// What.
    pub message: String,
}

impl ScaledObject {
    /// Parses and checks a `ScaledObject`: its schema, the HPA behaviour, bounds, and
    /// each trigger's required metadata.
    pub fn from_value(v: &Value) -> Result<Self, KedaError> {
        let object = crate::typed::describe(v);
        let err = |message: String| KedaError { object: object.clone(), message };
        let so: ScaledObject = serde_json::from_value(v.clone()).map_err(|e| err(e.to_string()))?;
        if so.api_version != "keda.sh/v1alpha1" || so.kind != "ScaledObject" {
            return Err(err(format!("{} {} is not keda.sh/v1alpha1 ScaledObject", so.api_version, so.kind)));
        }
        let s = &so.spec;
        if let (Some(min), Some(max)) = (s.min_replica_count, s.max_replica_count)
            && min > max
        {
            return Err(err(format!("minReplicaCount {min} > maxReplicaCount {max}")));
        }
        if let Some(f) = &s.fallback
            && (f.failure_threshold < 1 || f.replicas < 0)
        {
            return Err(err("fallback needs failureThreshold >= 1 and replicas >= 0".into()));
        }
        if let Some(b) = s
            .advanced
            .as_ref()
            .and_then(|a| a.horizontal_pod_autoscaler_config.as_ref())
            .and_then(|h| h.behavior.as_ref())
        {
            let typed: HorizontalPodAutoscalerBehavior =
                serde_json::from_value(b.clone()).map_err(|e| err(format!("advanced...behavior: {e}")))?;
            let back = serde_json::to_value(typed).map_err(|e| err(e.to_string()))?;
            if let Some(path) =
                crate::typed::missing(b, &back, "advanced.horizontalPodAutoscalerConfig.behavior".into())
            {
                return Err(err(format!("{path} is not a field of the HPA behaviour")));
            }
        }
        if s.triggers.is_empty() {
            return Err(err("no triggers".into()));
        }
        for t in &s.triggers {
            let required: &[&str] = match t.kind.as_str() {
                "external" | "external-push" => &["scalerAddress"],
                "metrics-api" => &["url", "valueLocation"],
                "prometheus" => &["serverAddress", "query", "threshold"],
                other => return Err(err(format!("trigger type {other:?} is not one Prescale ships"))),
            };
            for key in required {
                if !t.metadata.contains_key(*key) {
                    return Err(err(format!("{} trigger: metadata.{key} is required", t.kind)));
                }
            }
            for key in
                ["threshold", "activationThreshold", "targetValue", "activationTargetValue", "activationReplicas"]
            {
                if let Some(v) = t.metadata.get(key)
                    && v.parse::<f64>().map_or(true, |x| !x.is_finite() || x < 0.0)
                {
                    return Err(err(format!(
                        "{} trigger: metadata.{key} = {v:?} is not a non-negative number",
                        t.kind
                    )));
                }
            }
            if let Some(f) = t.metadata.get("format")
                && f != "json"
                && f != "prometheus"
            {
                return Err(err(format!("metrics-api format {f:?} is neither json nor prometheus")));
            }
            if let Some(m) = &t.metric_type
                && !["AverageValue", "Value", "Utilization"].contains(&m.as_str())
            {
                return Err(err(format!("metricType {m:?}")));
            }
        }
        Ok(so)
    }
}

impl TriggerAuthentication {
    /// Parses and checks a `TriggerAuthentication`.
    pub fn from_value(v: &Value) -> Result<Self, KedaError> {
        let object = crate::typed::describe(v);
        let ta: TriggerAuthentication = serde_json::from_value(v.clone())
            .map_err(|e| KedaError { object: object.clone(), message: e.to_string() })?;
        if ta.api_version != "keda.sh/v1alpha1" || ta.kind != "TriggerAuthentication" {
            return Err(KedaError { object, message: "not keda.sh/v1alpha1 TriggerAuthentication".into() });
        }
        Ok(ta)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn so() -> Value {
        json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "a"},
            "spec": {"scaleTargetRef": {"name": "a"}, "minReplicaCount": 1, "maxReplicaCount": 3,
                "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}}}},
                "triggers": [{"type": "prometheus", "metadata": {"serverAddress": "http://p:9090", "query": "max(x)", "threshold": "1"}}]}})
    }

    #[test]
    fn schema_and_metadata_are_enforced() {
        ScaledObject::from_value(&so()).unwrap();
        let mut v = so();
        v["spec"]["pollingIntervall"] = json!(30);
        assert!(ScaledObject::from_value(&v).unwrap_err().to_string().contains("pollingIntervall"));
        let mut v = so();
        v["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]["stabilisationWindowSeconds"] =
            json!(5);
        assert!(ScaledObject::from_value(&v).unwrap_err().to_string().contains("stabilisationWindowSeconds"));
        let mut v = so();
        v["spec"]["triggers"][0]["metadata"].as_object_mut().unwrap().remove("query");
        assert!(ScaledObject::from_value(&v).unwrap_err().to_string().contains("metadata.query"));
        let mut v = so();
        v["spec"]["triggers"][0]["metadata"]["threshold"] = json!("-1");
        assert!(ScaledObject::from_value(&v).is_err());
        let mut v = so();
        v["spec"]["fallback"] = json!({"failureThreshold": 3, "replicas": 2, "behavior": "sometimes"});
        assert!(ScaledObject::from_value(&v).is_err());
    }
}
