//! The feature schema: one row per (service, step).
//!
//! The collector writes these rows, the trainer learns from them and the predictor reads
//! the same features live. Every feature is nullable: a value Prometheus could not give
//! is missing, never zero, because a zero would teach the model that load vanished.
//! Column names are the [`Feature::name`]s plus `timestamp`, `namespace` and `service`;
//! bump [`SCHEMA_VERSION`] whenever a column is added, removed or changes meaning.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ServiceId;

/// Version of the row layout below; stored with data and with models.
pub const SCHEMA_VERSION: u32 = 1;

/// Name of the step timestamp column (UTC, aligned to the step grid).
pub const TIMESTAMP_COLUMN: &str = "timestamp";
/// Name of the namespace column.
pub const NAMESPACE_COLUMN: &str = "namespace";
/// Name of the service column.
pub const SERVICE_COLUMN: &str = "service";

/// One measured feature of a service at a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// CPU used by all ready pods, in cores (CPU-seconds per second).
    CpuCores,
    /// Sum of the pods' CPU requests, in cores.
    CpuRequestCores,
    /// Sum of the pods' CPU limits, in cores.
    CpuLimitCores,
    /// Working-set memory of all pods, in bytes.
    MemoryBytes,
    /// Sum of the pods' memory requests, in bytes.
    MemoryRequestBytes,
    /// Sum of the pods' memory limits, in bytes.
    MemoryLimitBytes,
    /// Requests served per second over the step: the demand the model forecasts.
    RequestsPerSecond,
    /// 95th percentile of request latency over the step, in seconds.
    LatencyP95Seconds,
    /// Share of requests answered with a 5xx status, from 0 to 1.
    ErrorRatio,
    /// Requests being served at the step's instant.
    InFlight,
    /// Pods ready to serve at the step's instant.
    ReplicasReady,
}

impl Feature {
    /// Every feature, in column order.
    pub const ALL: [Feature; 11] = [
        Feature::CpuCores,
        Feature::CpuRequestCores,
        Feature::CpuLimitCores,
        Feature::MemoryBytes,
        Feature::MemoryRequestBytes,
        Feature::MemoryLimitBytes,
        Feature::RequestsPerSecond,
        Feature::LatencyP95Seconds,
        Feature::ErrorRatio,
        Feature::InFlight,
        Feature::ReplicasReady,
    ];

    /// Number of features.
    pub const COUNT: usize = Self::ALL.len();

    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Feature::CpuCores => "cpu_cores",
            Feature::CpuRequestCores => "cpu_request_cores",
            Feature::CpuLimitCores => "cpu_limit_cores",
            Feature::MemoryBytes => "memory_bytes",
            Feature::MemoryRequestBytes => "memory_request_bytes",
            Feature::MemoryLimitBytes => "memory_limit_bytes",
            Feature::RequestsPerSecond => "requests_per_second",
            Feature::LatencyP95Seconds => "latency_p95_seconds",
            Feature::ErrorRatio => "error_ratio",
            Feature::InFlight => "in_flight",
            Feature::ReplicasReady => "replicas_ready",
        }
    }

    /// The unit of the values.
    pub fn unit(self) -> &'static str {
        match self {
            Feature::CpuCores | Feature::CpuRequestCores | Feature::CpuLimitCores => "cores",
            Feature::MemoryBytes | Feature::MemoryRequestBytes | Feature::MemoryLimitBytes => "bytes",
            Feature::RequestsPerSecond => "requests/s",
            Feature::LatencyP95Seconds => "seconds",
            Feature::ErrorRatio => "ratio",
            Feature::InFlight => "requests",
            Feature::ReplicasReady => "pods",
        }
    }

    /// Position of the feature in [`Feature::ALL`] and in [`FeatureRow::values`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A feature name that is not in the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown feature {0:?}; known features: cpu_cores, cpu_request_cores, cpu_limit_cores, memory_bytes, memory_request_bytes, memory_limit_bytes, requests_per_second, latency_p95_seconds, error_ratio, in_flight, replicas_ready"
)]
pub struct UnknownFeature(pub String);

impl FromStr for Feature {
    type Err = UnknownFeature;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Feature::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| UnknownFeature(s.to_owned()))
    }
}

/// The features of one service at one step; `None` is missing, never zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureRow {
    /// The step, aligned to the grid, in UTC.
    pub timestamp: DateTime<Utc>,
    /// Which service.
    pub service: ServiceId,
    /// One value per feature, indexed by [`Feature::index`].
    pub values: [Option<f64>; Feature::COUNT],
}

impl FeatureRow {
    /// A row with every feature missing.
    pub fn empty(timestamp: DateTime<Utc>, service: ServiceId) -> Self {
        Self { timestamp, service, values: [None; Feature::COUNT] }
    }

    /// The value of one feature.
    pub fn get(&self, feature: Feature) -> Option<f64> {
        self.values[feature.index()]
    }

    /// Sets one feature. Non-finite values are stored as missing: NaN from a PromQL
    /// division by zero means "no data", not a number to learn from.
    pub fn set(&mut self, feature: Feature, value: Option<f64>) {
        self.values[feature.index()] = value.filter(|v| v.is_finite());
    }

    /// Whether every feature is missing.
    pub fn is_empty(&self) -> bool {
        self.values.iter().all(Option::is_none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_indices_match_order() {
        for (i, f) in Feature::ALL.into_iter().enumerate() {
            assert_eq!(f.index(), i);
            assert_eq!(f.name().parse::<Feature>().unwrap(), f);
            assert!(!f.unit().is_empty());
        }
        let err = "cpu".parse::<Feature>().unwrap_err().to_string();
        assert!(err.contains("\"cpu\""), "{err}");
    }

    #[test]
    fn non_finite_values_become_missing() {
        let mut row = FeatureRow::empty(Utc::now(), ServiceId::new("shop", "order").unwrap());
        assert!(row.is_empty());
        row.set(Feature::ErrorRatio, Some(f64::NAN));
        row.set(Feature::RequestsPerSecond, Some(0.0));
        assert_eq!(row.get(Feature::ErrorRatio), None);
        assert_eq!(row.get(Feature::RequestsPerSecond), Some(0.0));
        assert!(!row.is_empty());
    }
}
