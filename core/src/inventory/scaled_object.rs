//! A KEDA ScaledObject read as an inventory entry: does it point at the predictor, which
//! service does it scale, with which settings.
//!
//! A trigger points at the predictor when it is an `external` or `external-push` trigger
//! whose `scalerAddress` is the predictor's host, a `metrics-api` trigger whose `url` is
//! on it, or a `prometheus` trigger whose query reads `ml_predicted_replicas`. Its
//! metadata names the service (`service`, `namespace` when not the ScaledObject's; else
//! the scale target's name) and may carry the settings of [`Overrides`] under camelCase
//! keys (`capacity`, `startup`, `burstQuantile`, ...). Keys KEDA itself documents for
//! these triggers (`scalerAddress`, `unsafeSsl`, `url`, `query`, every `*FromEnv` form,
//! ...) are accepted and left to KEDA; any other key, or a bad value, refuses the
//! ScaledObject with an error naming the key.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::Overrides;
use crate::ServiceId;

/// Keys of Prescale's own in trigger metadata (the gRPC scaler reads the first three).
pub const PRESCALE_KEYS: [&str; 14] = [
    "service",
    "namespace",
    "activationReplicas",
    "capacity",
    "startup",
    "lookahead",
    "quantile",
    "headroom",
    "floorUtilisation",
    "scaleDownWindow",
    "maxChange",
    "burstQuantile",
    "burstSpan",
    "objective",
];

/// Keys KEDA documents for the `external`, `external-push`, `metrics-api` and
/// `prometheus` triggers; KEDA reads them, Prescale leaves them alone.
pub const KEDA_KEYS: [&str; 22] = [
    "scalerAddress",
    "enableTLS",
    "unsafeSsl",
    "caCert",
    "tlsCertFile",
    "url",
    "valueLocation",
    "format",
    "method",
    "targetValue",
    "activationTargetValue",
    "authMode",
    "serverAddress",
    "query",
    "queryParameters",
    "threshold",
    "activationThreshold",
    "ignoreNullValues",
    "customHeaders",
    "cortexOrgID",
    "timeout",
    "metricName",
];

/// Whether a metadata key is one Prescale or KEDA knows (`*FromEnv` forms included).
pub fn known_key(key: &str) -> bool {
    PRESCALE_KEYS.contains(&key) || KEDA_KEYS.contains(&key) || key.ends_with("FromEnv")
}

/// Why a ScaledObject pointing at the predictor was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("ScaledObject {namespace}/{name}: {reason}")]
pub struct Refused {
    /// The ScaledObject's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// What is wrong, naming the key.
    pub reason: String,
}

/// What makes a trigger point at the predictor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictorAt {
    /// The predictor's host as triggers name it, such as
    /// `predictor.prescale.svc.cluster.local` (any port).
    pub host: String,
}

impl PredictorAt {
    fn points_at(&self, kind: &str, meta: &BTreeMap<String, String>) -> bool {
        let host_of = |addr: &str| {
            let rest = addr.split_once("://").map_or(addr, |(_, r)| r);
            rest.split(['/', ':']).next().unwrap_or_default().to_owned()
        };
        match kind {
            "external" | "external-push" => meta.get("scalerAddress").is_some_and(|a| host_of(a) == self.host),
            "metrics-api" => meta.get("url").is_some_and(|u| host_of(u) == self.host),
            "prometheus" => meta.get("query").is_some_and(|q| q.contains("ml_predicted_replicas")),
            _ => false,
        }
    }
}

/// The settings trigger metadata carries (bounds aside), each value checked; an error
/// names the key and what is wrong with its value. The gRPC scaler checks the metadata
/// KEDA sends with it too, so a bad value is refused there as well.
pub fn settings(meta: &BTreeMap<String, String>) -> Result<Overrides, (&'static str, String)> {
    settings_in(|k| meta.get(k).map(String::as_str))
}

/// [`settings`] of metadata in any map, read through `lookup` (the gRPC scaler checks the
/// map KEDA sends on every call without copying it).
pub fn settings_in<'a>(lookup: impl Fn(&str) -> Option<&'a str>) -> Result<Overrides, (&'static str, String)> {
    let get = |k: &'static str| -> Option<(&'static str, &'a str)> { lookup(k).map(|v| (k, v.trim())) };
    let number = |k: &'static str| -> Result<Option<f64>, (&'static str, String)> {
        get(k)
            .map(|(k, v)| v.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or((k, format!("{v:?} is not a number"))))
            .transpose()
    };
    let whole = |k: &'static str| -> Result<Option<u32>, (&'static str, String)> {
        get(k).map(|(k, v)| v.parse::<u32>().map_err(|_| (k, format!("{v:?} is not a whole number")))).transpose()
    };
    let duration = |k: &'static str| -> Result<Option<Duration>, (&'static str, String)> {
        get(k)
            .map(|(k, v)| humantime::parse_duration(v).map_err(|e| (k, format!("{v:?} is not a duration ({e})"))))
            .transpose()
    };
    let quantile = match get("quantile").map(|(_, q)| q.to_ascii_lowercase()) {
        None => None,
        Some(q) if q == "p50" || q == "p90" => Some(q),
        Some(q) => return Err(("quantile", format!("{q:?} is not p50 or p90"))),
    };
    whole("activationReplicas")?;
    let overrides = Overrides {
        capacity: number("capacity")?,
        min_replicas: None,
        max_replicas: None,
        startup: duration("startup")?,
        lookahead: duration("lookahead")?,
        quantile,
        headroom: number("headroom")?,
        floor_utilisation: number("floorUtilisation")?,
        scale_down_window: duration("scaleDownWindow")?,
        max_change: whole("maxChange")?,
        burst_quantile: number("burstQuantile")?,
        burst_span: duration("burstSpan")?,
        objective: number("objective")?,
    };
    if overrides.capacity.is_some_and(|c| c <= 0.0) {
        return Err(("capacity", "must be a positive number of requests/s".into()));
    }
    if overrides.objective.is_some_and(|o| !(0.0..1.0).contains(&o)) {
        return Err(("objective", "must be a share of under-provisioned time in [0, 1) (\"0.001\" is 0.1%)".into()));
    }
    Ok(overrides)
}

/// The service and settings of a ScaledObject (its JSON as the API server sends it), or
/// `None` when none of its triggers points at the predictor.
pub fn read(object: &Value, at: &PredictorAt) -> Result<Option<(ServiceId, Overrides)>, Refused> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let namespace = text(&object["metadata"]["namespace"]);
    let name = text(&object["metadata"]["name"]);
    let refuse = |reason: String| Refused { namespace: namespace.clone(), name: name.clone(), reason };
    let spec = &object["spec"];
    let triggers = spec["triggers"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut ours = None;
    for (i, trigger) in triggers.iter().enumerate() {
        let kind = text(&trigger["type"]);
        let mut meta = BTreeMap::new();
        if let Some(m) = trigger["metadata"].as_object() {
            for (k, v) in m {
                let Some(v) = v.as_str() else {
                    return Err(refuse(format!("triggers[{i}].metadata.{k} must be a string")));
                };
                meta.insert(k.clone(), v.to_owned());
            }
        }
        if at.points_at(&kind, &meta) {
            if ours.is_some() {
                return Err(refuse(format!("triggers[{i}]: a second trigger on the predictor; keep one")));
            }
            ours = Some((i, meta));
        }
    }
    let Some((i, meta)) = ours else { return Ok(None) };
    let key = |k: &str| format!("triggers[{i}].metadata.{k}");
    if let Some(unknown) = meta.keys().find(|k| !known_key(k)) {
        return Err(refuse(format!(
            "{} is not a key Prescale or KEDA reads (Prescale's: {})",
            key(unknown),
            PRESCALE_KEYS.join(", ")
        )));
    }
    let service = meta.get("service").cloned().or_else(|| spec["scaleTargetRef"]["name"].as_str().map(str::to_owned));
    let Some(service) = service.filter(|s| !s.is_empty()) else {
        return Err(refuse(format!("{} is missing and so is spec.scaleTargetRef.name", key("service"))));
    };
    let id = match service.split_once('/') {
        Some((ns, n)) => ServiceId::new(ns, n),
        None => ServiceId::new(meta.get("namespace").cloned().unwrap_or_else(|| namespace.clone()), service),
    }
    .map_err(|e| refuse(format!("{}: {e}", key("service"))))?;
    let bound = |field: &str| -> Result<Option<u32>, Refused> {
        match &spec[field] {
            Value::Null => Ok(None),
            v => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| refuse(format!("spec.{field}: {v} is not a replica count"))),
        }
    };
    let settings = settings(&meta).map_err(|(k, why)| refuse(format!("{}: {why}", key(k))))?;
    let overrides =
        Overrides { min_replicas: bound("minReplicaCount")?, max_replicas: bound("maxReplicaCount")?, ..settings };
    if let (Some(lo), Some(hi)) = (overrides.min_replicas, overrides.max_replicas)
        && lo > hi
    {
        return Err(refuse(format!("spec.minReplicaCount {lo} is above spec.maxReplicaCount {hi}")));
    }
    Ok(Some((id, overrides)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at() -> PredictorAt {
        PredictorAt { host: "predictor.prescale.svc.cluster.local".into() }
    }

    fn object(kind: &str, meta: Value) -> Value {
        json!({
            "metadata": {"namespace": "shop", "name": "order"},
            "spec": {
                "scaleTargetRef": {"name": "order"},
                "minReplicaCount": 2,
                "maxReplicaCount": 30,
                "triggers": [
                    {"type": "cpu", "metadata": {"value": "70"}},
                    {"type": kind, "metadata": meta}
                ]
            }
        })
    }

    #[test]
    fn settings_come_from_the_trigger_and_bounds_from_the_spec() {
        let meta = json!({
            "scalerAddress": "predictor.prescale.svc.cluster.local:9500",
            "enableTLS": "true",
            "unsafeSsl": "false",
            "caCertFromEnv": "CA",
            "capacity": "12.5",
            "startup": "90s",
            "quantile": "P50",
            "burstQuantile": "0.9",
            "burstSpan": "2m",
            "maxChange": "4"
        });
        let (id, o) = read(&object("external", meta), &at()).unwrap().unwrap();
        assert_eq!(id.to_string(), "shop/order");
        assert_eq!((o.capacity, o.min_replicas, o.max_replicas), (Some(12.5), Some(2), Some(30)));
        assert_eq!(o.startup, Some(Duration::from_secs(90)));
        assert_eq!(o.quantile.as_deref(), Some("p50"));
        assert_eq!(
            (o.burst_quantile, o.burst_span, o.max_change),
            (Some(0.9), Some(Duration::from_secs(120)), Some(4))
        );
    }

    #[test]
    fn other_triggers_and_other_scalers_are_not_ours() {
        let elsewhere = json!({"scalerAddress": "other.svc:9500", "capacity": "nonsense"});
        assert_eq!(read(&object("external", elsewhere), &at()).unwrap(), None);
        let api = json!({"url": "http://predictor.prescale.svc.cluster.local:8080/api/v1/services/shop/cart", "valueLocation": "replicas", "service": "cart"});
        assert_eq!(read(&object("metrics-api", api), &at()).unwrap().unwrap().0.to_string(), "shop/cart");
        let prom = json!({"serverAddress": "http://prometheus:9090", "query": "max(ml_predicted_replicas{service=\"order\"})", "threshold": "1"});
        assert_eq!(read(&object("prometheus", prom), &at()).unwrap().unwrap().0.to_string(), "shop/order");
    }

    #[test]
    fn bad_metadata_is_refused_naming_the_key() {
        let base = || json!({"scalerAddress": "predictor.prescale.svc.cluster.local:9500"});
        let with = |k: &str, v: &str| {
            let mut m = base();
            m[k] = json!(v);
            m
        };
        for (meta, needle) in [
            (with("capcity", "3"), "triggers[1].metadata.capcity"),
            (with("capacity", "-3"), "triggers[1].metadata.capacity"),
            (with("capacity", "lots"), "triggers[1].metadata.capacity"),
            (with("startup", "soon"), "triggers[1].metadata.startup"),
            (with("quantile", "p99"), "triggers[1].metadata.quantile"),
            (with("maxChange", "1.5"), "triggers[1].metadata.maxChange"),
            (with("service", "Bad_Name"), "triggers[1].metadata.service"),
        ] {
            let err = read(&object("external-push", meta), &at()).unwrap_err().to_string();
            assert!(err.starts_with("ScaledObject shop/order: ") && err.contains(needle), "{needle}: {err}");
        }
        let mut inverted = object("external", base());
        inverted["spec"]["minReplicaCount"] = json!(40);
        assert!(read(&inverted, &at()).unwrap_err().to_string().contains("minReplicaCount 40"));
    }
}
