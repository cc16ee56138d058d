//! The last hour of every service, kept by the server so the live page (and anyone else)
//! sees the past the moment it opens: per step, the observed demand, the forecast that was
//! made one horizon earlier for that step (p50 and p90), the replicas decided, served and
//! needed by the observed demand alone. Bounded: one point per step for `span`, and a
//! service's points go when it leaves the inventory.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::RwLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prescale_core::ServiceId;
use serde::{Deserialize, Serialize};

use crate::state::Served;

/// One step of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Point {
    /// The step.
    pub time: DateTime<Utc>,
    /// Requests/s observed at the step.
    pub observed_demand: Option<f64>,
    /// The p50 forecast made one horizon before the step, for the step.
    pub forecast_p50: Option<f64>,
    /// The p90 forecast made one horizon before the step, for the step.
    pub forecast_p90: Option<f64>,
    /// Replicas the policy decided.
    pub decided_replicas: u32,
    /// Replicas served to KEDA (the replicas ready in shadow mode).
    pub served_replicas: u32,
    /// Replicas the observed demand alone needed.
    pub needed_replicas: Option<u32>,
}

/// One service's points, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceHistory {
    /// `namespace/name`.
    #[serde(with = "prescale_core::service::as_text")]
    #[schema(value_type = String, example = "storefront/order")]
    pub service: ServiceId,
    /// The points.
    pub points: Vec<Point>,
}

/// `GET /api/v1/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryResponse {
    /// Seconds of history kept.
    pub span_seconds: u64,
    /// Every service served now.
    pub services: Vec<ServiceHistory>,
}

#[derive(Debug, Default)]
struct Track {
    points: VecDeque<Point>,
    /// Forecasts waiting for their step: (due, p50, p90).
    pending: VecDeque<(DateTime<Utc>, f64, f64)>,
}

/// The history of every service.
#[derive(Debug)]
pub struct History {
    span: Duration,
    tracks: RwLock<BTreeMap<ServiceId, Track>>,
}

impl History {
    /// Keeps `span` of points per service.
    pub fn new(span: Duration) -> Self {
        Self { span, tracks: RwLock::new(BTreeMap::new()) }
    }

    /// Records a published step.
    pub fn record(&self, served: &[(ServiceId, Served)]) {
        let Ok(mut tracks) = self.tracks.write() else { return };
        for (id, s) in served {
            let d = &s.decision;
            let track = tracks.entry(id.clone()).or_default();
            while track.pending.front().is_some_and(|(due, _, _)| *due < d.time) {
                track.pending.pop_front();
            }
            let (forecast_p50, forecast_p90) = match track.pending.front() {
                Some((due, p50, p90)) if *due == d.time => (Some(*p50), Some(*p90)),
                _ => (None, None),
            };
            if let Some(f) = &d.forecast
                && let (Some(p50), Some(p90)) = (f.p50.last(), f.p90.last())
            {
                let ahead = chrono::Duration::milliseconds((f.step_seconds * 1000.0 * f.p50.len() as f64) as i64);
                // One per due step: a later forecast for the same step replaces nothing.
                if track.pending.back().is_none_or(|(due, _, _)| *due < d.time + ahead) {
                    track.pending.push_back((d.time + ahead, *p50, *p90));
                }
            }
            if track.points.back().is_some_and(|p| p.time >= d.time) {
                continue;
            }
            track.points.push_back(Point {
                time: d.time,
                observed_demand: d.observed_demand,
                forecast_p50,
                forecast_p90,
                decided_replicas: d.desired_replicas,
                served_replicas: s.replicas,
                needed_replicas: d.reactive_replicas,
            });
            let oldest = d.time - chrono::Duration::from_std(self.span).unwrap_or(chrono::Duration::hours(1));
            while track.points.front().is_some_and(|p| p.time < oldest) {
                track.points.pop_front();
            }
        }
    }

    /// Drops the services not in `keep`.
    pub fn retain(&self, keep: &BTreeSet<ServiceId>) {
        if let Ok(mut tracks) = self.tracks.write() {
            tracks.retain(|id, _| keep.contains(id));
        }
    }

    /// Every service's points.
    pub fn snapshot(&self) -> HistoryResponse {
        let services = self
            .tracks
            .read()
            .map(|t| {
                t.iter()
                    .map(|(id, track)| ServiceHistory {
                        service: id.clone(),
                        points: track.points.iter().cloned().collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        HistoryResponse { span_seconds: self.span.as_secs(), services }
    }
}

#[cfg(test)]
mod tests {
    use prescale_policy::{Decision, ForecastView, Reason};

    use super::*;

    fn served(id: &ServiceId, secs: i64, demand: f64, forecast: Option<(f64, f64)>) -> (ServiceId, Served) {
        let time = DateTime::from_timestamp(secs, 0).unwrap();
        let forecast = forecast.map(|(p50, p90)| ForecastView {
            step_seconds: 10.0,
            p50: vec![p50 / 2.0, p50],
            p90: vec![p90 / 2.0, p90],
            model_version: "v".into(),
            forecaster: "transformer".into(),
        });
        let decision = Decision {
            service: id.clone(),
            time,
            desired_replicas: 3,
            observed_demand: Some(demand),
            forecast,
            reason: Reason::Forecast { at_seconds: 20 },
            ready_replicas: Some(2),
            reactive_replicas: Some(2),
        };
        (id.clone(), Served { decision, replicas: 3, shadow: false, stale: false })
    }

    #[test]
    fn points_carry_the_forecast_made_one_horizon_earlier_and_stay_within_the_span() {
        let id: ServiceId = "shop/order".parse().unwrap();
        let h = History::new(Duration::from_secs(60));
        for k in 0..10 {
            let t = 1_000_000 + 10 * k;
            h.record(&[served(&id, t, 10.0 + k as f64, Some((100.0 + k as f64, 200.0 + k as f64)))]);
        }
        let snap = h.snapshot();
        let points = &snap.services[0].points;
        // 60 s of 10 s steps: seven points (both ends kept).
        assert_eq!(points.len(), 7, "{points:?}");
        let last = points.last().unwrap();
        assert_eq!(last.observed_demand, Some(19.0));
        // The forecast for step 9 was made at step 7 (two 10 s steps ahead).
        assert_eq!(last.forecast_p50, Some(107.0));
        assert_eq!(last.forecast_p90, Some(207.0));
        assert_eq!((last.decided_replicas, last.served_replicas, last.needed_replicas), (3, 3, Some(2)));
        // A repeated step is recorded once; a service that leaves is dropped.
        h.record(&[served(&id, 1_000_090, 1.0, None)]);
        assert_eq!(h.snapshot().services[0].points.len(), 7);
        h.retain(&BTreeSet::new());
        assert!(h.snapshot().services.is_empty());
    }
}
