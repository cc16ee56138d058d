//! The scaling decision: what the predictor serves (HTTP, gRPC) and this crate reads back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which term of the policy set the number of replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Reason {
    /// The forecast quantile over `[now + startup, now + horizon]`, peaking `at_seconds` ahead.
    Forecast {
        /// Seconds ahead of now of the forecast step that needs the most replicas.
        at_seconds: u32,
    },
    /// Current demand times the jump the burst profile expects within the pods' startup
    /// needs more than the forecast.
    Burst {
        /// Seconds ahead of now of the step whose jump needs the most replicas.
        at_seconds: u32,
    },
    /// Current demand needs more than the forecast (the reactive floor).
    ReactiveFloor,
    /// Raised to the configured minimum.
    MinBound,
    /// Capped at the configured maximum.
    MaxBound,
    /// Scale-down held at the highest recommendation of the stabilisation window.
    Stabilised,
    /// The change was limited to the largest change per decision.
    RateLimited,
    /// No forecast is available (no model, too little history): replicas follow current
    /// demand.
    Reactive,
}

impl Reason {
    /// A short label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Forecast { .. } => "forecast",
            Reason::Burst { .. } => "burst",
            Reason::ReactiveFloor => "reactive_floor",
            Reason::MinBound => "min_bound",
            Reason::MaxBound => "max_bound",
            Reason::Stabilised => "stabilised",
            Reason::RateLimited => "rate_limited",
            Reason::Reactive => "reactive",
        }
    }
}

/// The forecast a decision was made from, in requests per second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastView {
    /// Step length, seconds; `p50[i]` is for `time + (i + 1) * step`.
    pub step_seconds: f64,
    /// Median per horizon step.
    pub p50: Vec<f64>,
    /// 90th percentile per horizon step.
    pub p90: Vec<f64>,
    /// The model version that made it.
    pub model_version: String,
}

/// One scaling decision for one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// `namespace/name`.
    pub service: String,
    /// When it was made (a step of the grid).
    pub time: DateTime<Utc>,
    /// Replicas the service should have.
    pub desired_replicas: u32,
    /// Demand observed at `time`, requests/s.
    pub observed_demand: Option<f64>,
    /// The forecast it came from, if any.
    pub forecast: Option<ForecastView>,
    /// Which term set the number.
    pub reason: Reason,
    /// Replicas ready at `time`, as observed (Kubernetes, or the catalog's count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<u32>,
    /// Replicas the demand observed at `time` needs by itself: what a reactive
    /// autoscaler would ask for now, to compare the prediction with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reactive_replicas: Option<u32>,
}

/// The body of the predictor's `GET /api/v1/services`: the latest decision per service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServicesResponse {
    /// One decision per configured service.
    pub services: Vec<Decision>,
}
