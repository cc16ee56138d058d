//! Estimating a service's capacity from collected history: the requests per second one
//! ready replica served while the service met its latency objective.
//!
//! Steps where p95 latency was within the objective and at least one replica was ready
//! give `requests_per_second / replicas_ready`; the estimate is a high quantile of those
//! (by default the 95th percentile: the load replicas were seen to carry comfortably,
//! without trusting a single lucky step). Steps over the objective are left out: their
//! load is more than a replica serves well. Too few usable steps is an error that says so.

use prescale_core::schema::{Feature, FeatureRow};
use serde::Serialize;

/// Fewest usable steps for an estimate.
pub const MIN_STEPS: usize = 30;

/// The features an estimate reads: what a scan of the feature table needs to decode.
pub const FEATURES: [Feature; 3] = [Feature::RequestsPerSecond, Feature::ReplicasReady, Feature::LatencyP95Seconds];

/// Why there is no estimate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CapacityError {
    /// The latency objective is not a positive number of seconds.
    #[error("latency objective {0} s is not a positive number of seconds")]
    Objective(f64),
    /// The quantile is outside `[0, 1]`.
    #[error("quantile {0} is not between 0 and 1")]
    Quantile(f64),
    /// Too few steps with demand, ready replicas and latency within the objective.
    #[error(
        "only {used} steps with demand, ready replicas and p95 latency within {objective} s ({over} over it, {total} \
         steps in all); at least {MIN_STEPS} are needed"
    )]
    TooFewSteps {
        /// Usable steps.
        used: usize,
        /// Steps over the objective.
        over: usize,
        /// Steps in all.
        total: usize,
        /// The objective, seconds.
        objective: f64,
    },
}

/// The estimate and what it rests on.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityEstimate {
    /// Requests/s per replica.
    pub capacity: f64,
    /// Steps used.
    pub steps_used: usize,
    /// Steps of the service in the data.
    pub steps_total: usize,
    /// Steps left out for exceeding the latency objective.
    pub steps_over_objective: usize,
}

/// Estimates capacity from one service's rows.
pub fn estimate(
    rows: &[&FeatureRow],
    latency_objective: f64,
    quantile: f64,
) -> Result<CapacityEstimate, CapacityError> {
    if !(latency_objective.is_finite() && latency_objective > 0.0) {
        return Err(CapacityError::Objective(latency_objective));
    }
    if !(0.0..=1.0).contains(&quantile) {
        return Err(CapacityError::Quantile(quantile));
    }
    let mut per_replica = Vec::new();
    let mut over = 0;
    for r in rows {
        let (Some(rps), Some(replicas), Some(p95)) =
            (r.get(Feature::RequestsPerSecond), r.get(Feature::ReplicasReady), r.get(Feature::LatencyP95Seconds))
        else {
            continue;
        };
        if replicas < 1.0 || rps <= 0.0 {
            continue;
        }
        if p95 > latency_objective {
            over += 1;
            continue;
        }
        per_replica.push(rps / replicas);
    }
    if per_replica.len() < MIN_STEPS {
        return Err(CapacityError::TooFewSteps {
            used: per_replica.len(),
            over,
            total: rows.len(),
            objective: latency_objective,
        });
    }
    per_replica.sort_by(f64::total_cmp);
    let capacity = per_replica[((per_replica.len() - 1) as f64 * quantile).round() as usize];
    Ok(CapacityEstimate {
        capacity,
        steps_used: per_replica.len(),
        steps_total: rows.len(),
        steps_over_objective: over,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use prescale_core::ServiceId;

    fn row(i: i64, rps: f64, replicas: f64, p95: f64) -> FeatureRow {
        let mut r = FeatureRow::empty(
            DateTime::<Utc>::from_timestamp(i * 30, 0).unwrap(),
            ServiceId::new("shop", "order").unwrap(),
        );
        r.set(Feature::RequestsPerSecond, Some(rps));
        r.set(Feature::ReplicasReady, Some(replicas));
        r.set(Feature::LatencyP95Seconds, Some(p95));
        r
    }

    #[test]
    fn uses_only_steps_within_the_objective() {
        // 40 healthy steps at 10..=49 rps on 2 replicas, and overloaded steps at 200 rps.
        let mut rows: Vec<FeatureRow> = (0..40).map(|i| row(i, 10.0 + i as f64, 2.0, 0.1)).collect();
        rows.extend((40..50).map(|i| row(i, 200.0, 2.0, 2.0)));
        let refs: Vec<&FeatureRow> = rows.iter().collect();
        let e = estimate(&refs, 0.25, 1.0).unwrap();
        assert_eq!(e.capacity, 49.0 / 2.0, "the busiest healthy step per replica");
        assert_eq!((e.steps_used, e.steps_over_objective, e.steps_total), (40, 10, 50));
        assert!(estimate(&refs, 0.25, 0.5).unwrap().capacity < e.capacity);
    }

    #[test]
    fn too_little_or_bad_input_says_why() {
        let rows: Vec<FeatureRow> = (0..10).map(|i| row(i, 10.0, 1.0, 0.1)).collect();
        let refs: Vec<&FeatureRow> = rows.iter().collect();
        let err = |objective, quantile| estimate(&refs, objective, quantile).unwrap_err().to_string();
        assert!(err(0.25, 0.95).contains("only 10 steps"));
        assert!(err(0.0, 0.95).contains("latency objective"));
        assert!(err(0.25, 1.5).contains("quantile"));
    }
}
