//! The scaling decision as it crosses process boundaries: what the predictor serves over
//! HTTP (and KEDA's gRPC reads the replicas of), what the scaler applies and the demo shows.

use chrono::{DateTime, Utc};
use prescale_core::ServiceId;
use serde::{Deserialize, Serialize};

/// Which term of the policy set the number of replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Raised to a scheduled floor an operator set (`[[schedule]]`).
    Scheduled,
}

impl Reason {
    /// One of each kind (the steps ahead zeroed), in the order of [`Reason::label`]'s
    /// match: for metrics that export every label, the one in force at 1.
    pub const ALL: [Reason; 9] = [
        Reason::Forecast { at_seconds: 0 },
        Reason::Burst { at_seconds: 0 },
        Reason::ReactiveFloor,
        Reason::MinBound,
        Reason::MaxBound,
        Reason::Stabilised,
        Reason::RateLimited,
        Reason::Reactive,
        Reason::Scheduled,
    ];

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
            Reason::Scheduled => "scheduled",
        }
    }
}

/// The forecast a decision was made from, in requests per second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ForecastView {
    /// Step length, seconds; `p50[i]` is for `time + (i + 1) * step`.
    pub step_seconds: f64,
    /// Median per horizon step.
    pub p50: Vec<f64>,
    /// 90th percentile per horizon step.
    pub p90: Vec<f64>,
    /// The model version that made it.
    pub model_version: String,
    /// What in that version made it: `transformer`, `transformer_cold` (a fleet model's
    /// transformer for a service too new to have a calibration of its own, with the
    /// fleet's wider p90), or the baseline chosen for the service on its validation part
    /// (`holt_winters`, `ridge`, `adaptive_smoothing`, `seasonal_naive`, `persistence`).
    #[serde(default = "transformer")]
    pub forecaster: String,
}

fn transformer() -> String {
    "transformer".to_owned()
}

/// One scaling decision for one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    /// The service, written `namespace/name`.
    #[serde(with = "prescale_core::service::as_text")]
    #[schema(value_type = String, example = "storefront/order")]
    pub service: ServiceId,
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

/// One service's latest decision as the predictor serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Served {
    /// The policy's decision, with its forecast and reason.
    #[serde(flatten)]
    pub decision: Decision,
    /// What KEDA is told: the decision, or in shadow mode the replicas ready now.
    pub replicas: u32,
    /// Whether the decision is only exported (shadow mode).
    pub shadow: bool,
    /// Whether the decision is older than the predictor's staleness limit: still shown to
    /// people, but nothing may act on it (KEDA is refused it; the scaler skips it).
    /// Absent from older predictors' answers, hence `false` by default.
    #[serde(default)]
    pub stale: bool,
}

/// Why a served decision must not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotActionable {
    /// Marked stale by the predictor, or older than the reader's own limit (a clock
    /// ahead of the predictor's, or a predictor that does not mark staleness).
    Stale,
    /// The predictor, or this service, is in shadow mode.
    Shadow,
}

impl Served {
    /// The replicas to apply, or why not: stale first (nothing acts on an old decision),
    /// then shadow. `response_shadow` is the answer's own flag; `max_age` is how old a
    /// decision the reader accepts at `now`. A decision time in the future is not stale.
    pub fn actionable(
        &self,
        response_shadow: bool,
        now: DateTime<Utc>,
        max_age: std::time::Duration,
    ) -> Result<u32, NotActionable> {
        let too_old = (now - self.decision.time).to_std().is_ok_and(|age| age > max_age);
        if self.stale || too_old {
            return Err(NotActionable::Stale);
        }
        if response_shadow || self.shadow {
            return Err(NotActionable::Shadow);
        }
        Ok(self.decision.desired_replicas)
    }
}

/// The body of the predictor's `GET /api/v1/services`: the latest decision per service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServicesResponse {
    /// The latest decision of every service that has one.
    pub services: Vec<Served>,
    /// Whether decisions are only exported.
    pub shadow: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever text the scaler reads as the predictor's answer, parsing answers and
        /// never panics; and every decision it can be sent reads back as sent.
        #[test]
        fn decision_json_parses_or_is_refused(text in "\\PC{0,200}") {
            let _ = serde_json::from_str::<ServicesResponse>(&text);
            let _ = serde_json::from_str::<Served>(&text);
        }

        #[test]
        fn decisions_round_trip(
            replicas in 0u32..10_000, desired in 0u32..10_000, secs in 0i64..4_000_000_000,
            demand in proptest::option::of(0.0f64..1e9), shadow: bool, stale: bool,
            ns in "[a-z]([a-z0-9-]{0,18}[a-z0-9])?", name in "[a-z]([a-z0-9-]{0,18}[a-z0-9])?",
        ) {
            let served = Served {
                decision: Decision {
                    service: format!("{ns}/{name}").parse().unwrap(),
                    time: DateTime::from_timestamp(secs, 0).unwrap(),
                    desired_replicas: desired,
                    observed_demand: demand,
                    forecast: None,
                    reason: Reason::Reactive,
                    ready_replicas: None,
                    reactive_replicas: Some(replicas),
                },
                replicas,
                shadow,
                stale,
            };
            let back: Served = serde_json::from_str(&serde_json::to_string(&served).unwrap()).unwrap();
            proptest::prop_assert_eq!(back, served);
        }
    }

    #[test]
    fn stale_comes_before_shadow_and_a_future_time_is_not_stale() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let served = |shadow, stale| Served {
            decision: Decision {
                service: "shop/order".parse().unwrap(),
                time: at,
                desired_replicas: 7,
                observed_demand: None,
                forecast: None,
                reason: Reason::Reactive,
                ready_replicas: None,
                reactive_replicas: None,
            },
            replicas: 7,
            shadow,
            stale,
        };
        let max = std::time::Duration::from_secs(300);
        let now = at + chrono::Duration::seconds(60);
        assert_eq!(served(false, false).actionable(false, now, max), Ok(7));
        assert_eq!(served(false, true).actionable(false, now, max), Err(NotActionable::Stale));
        assert_eq!(served(true, true).actionable(true, now, max), Err(NotActionable::Stale));
        assert_eq!(served(true, false).actionable(false, now, max), Err(NotActionable::Shadow));
        assert_eq!(served(false, false).actionable(true, now, max), Err(NotActionable::Shadow));
        let late = at + chrono::Duration::seconds(301);
        assert_eq!(served(false, false).actionable(false, late, max), Err(NotActionable::Stale));
        let early = at - chrono::Duration::days(365);
        assert_eq!(served(false, false).actionable(false, early, max), Ok(7));
    }

    #[test]
    fn every_reason_has_its_own_label() {
        let mut labels: Vec<&str> = Reason::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Reason::ALL.len());
    }

    #[test]
    fn the_wire_format_names_the_service_as_text() {
        let served = Served {
            decision: Decision {
                service: "shop/order".parse().unwrap(),
                time: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                desired_replicas: 3,
                observed_demand: Some(12.5),
                forecast: None,
                reason: Reason::Forecast { at_seconds: 120 },
                ready_replicas: None,
                reactive_replicas: Some(2),
            },
            replicas: 3,
            shadow: false,
            stale: false,
        };
        let json = serde_json::to_value(&served).unwrap();
        assert_eq!(json["service"], "shop/order");
        assert_eq!(json["reason"], serde_json::json!({"kind": "forecast", "at_seconds": 120}));
        assert_eq!(json["replicas"], 3);
        assert_eq!(serde_json::from_value::<Served>(json).unwrap(), served);
        let bad = serde_json::json!({"service": "order", "time": "2024-01-01T00:00:00Z", "desired_replicas": 1,
            "observed_demand": null, "forecast": null, "reason": {"kind": "reactive"}, "replicas": 1, "shadow": false});
        assert!(serde_json::from_value::<Served>(bad).unwrap_err().to_string().contains("namespace/name"));
    }
}
