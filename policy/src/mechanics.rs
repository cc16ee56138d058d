//! What happens to a predicted replica count between the predictor and the Deployment:
//! KEDA hands it to the HPA as an `AverageValue` metric with target 1, and the HPA
//! applies its own rules before changing anything (`../shared/specs/keda.md`):
//!
//! - **polling**: the metric the HPA acts on is the one last polled (KEDA's
//!   `pollingInterval`, 30 s by default);
//! - **tolerance**: a metric within 10% of the current replicas changes nothing (at 10
//!   replicas, a predicted 11 is ignored);
//! - **scale-down stabilisation**: down only to the highest recommendation of the window
//!   (300 s by default);
//! - **rate limits**: per period, up by at most the larger of a number of pods and a
//!   share of the current replicas, down by at most a share.
//!
//! [`apply`] replays a policy's decisions through these rules, step by step, so the
//! benchmark can say how much of a gain reaches a real cluster.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use crate::cluster::{MAX_REPLICAS, MIN_REPLICAS};

/// The HPA's behaviour and KEDA's polling.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Mechanics {
    /// KEDA's `pollingInterval`.
    pub polling: Duration,
    /// The HPA's tolerance (0.1 by default).
    pub tolerance: f64,
    /// Scale-down stabilisation window.
    pub down_window: Duration,
    /// Rate limits' period.
    pub period: Duration,
    /// Pods added per period at most (with `up_percent`, the larger wins).
    pub up_pods: u32,
    /// Share of the current replicas added per period at most (1.0 = doubling).
    pub up_percent: f64,
    /// Share of the current replicas removed per period at most (1.0 = all).
    pub down_percent: f64,
    /// Report a tolerance-aware metric: a rise the tolerance would swallow is reported as
    /// just past it, so the HPA adds pods (at most one replica more than asked, rounded);
    /// a fall within it stays swallowed (the safe side).
    pub tolerance_aware: bool,
}

impl Mechanics {
    /// Kubernetes' and KEDA's defaults: 30 s polling, 10% tolerance, 300 s scale-down
    /// stabilisation, up by max(4 pods, 100%) and down by 100% per 15 s.
    pub const DEFAULTS: Mechanics = Mechanics {
        polling: Duration::from_secs(30),
        tolerance: 0.1,
        down_window: Duration::from_secs(300),
        period: Duration::from_secs(15),
        up_pods: 4,
        up_percent: 1.0,
        down_percent: 1.0,
        tolerance_aware: false,
    };

    /// The `behavior` the shipped ScaledObjects (`keda/`) set: the predictor stabilises
    /// and looks ahead itself, so the HPA scales down at once and as far as asked (100%
    /// per 15 s), up by max(4 pods, 100%) per 30 s; and the predictor's tolerance-aware
    /// metric (`hpa_tolerance`).
    pub const SHIPPED: Mechanics = Mechanics {
        polling: Duration::from_secs(30),
        tolerance: 0.1,
        down_window: Duration::ZERO,
        period: Duration::from_secs(30),
        up_pods: 4,
        up_percent: 1.0,
        down_percent: 1.0,
        tolerance_aware: true,
    };
}

/// Whether the HPA ignores a metric of `metric` replicas at `current` (its own test,
/// float for float: `|1 - ratio| <= tolerance`).
pub fn within(metric: f64, current: u32, tolerance: f64) -> bool {
    (1.0 - metric / f64::from(current.max(1))).abs() <= tolerance
}

/// The metric to report for `desired` replicas when the HPA has `current`: with
/// `tolerance_aware`, a rise within the tolerance is reported as the smallest whole
/// number of replicas past it.
pub fn reported(desired: f64, current: u32, tolerance: f64, tolerance_aware: bool) -> f64 {
    let mut d = desired;
    if tolerance_aware && desired > f64::from(current) {
        d = d.ceil();
        while within(d, current, tolerance) {
            d += 1.0;
        }
    }
    d
}

/// The replicas the HPA sets per step for the replicas a metric asks for (`desired`: a
/// policy's decisions, or demand over a utilisation target's capacity for the HPA on its
/// own; `None`: no value, the last one holds), steps of `step` long.
pub fn apply(desired: &[Option<f64>], step: Duration, m: &Mechanics) -> Vec<u32> {
    let steps_of = |d: Duration| (d.as_secs_f64() / step.as_secs_f64()).ceil() as usize;
    let poll = steps_of(m.polling).max(1);
    let window = steps_of(m.down_window);
    // Periods of the rate limits within one step (at least one).
    let periods = (step.as_secs_f64() / m.period.as_secs_f64()).floor().max(1.0) as i32;
    let mut recent: VecDeque<u32> = VecDeque::new();
    let first = desired.iter().flatten().next().copied().unwrap_or(1.0);
    let mut current = ((first - 1e-9).ceil().max(0.0) as u32).clamp(MIN_REPLICAS, MAX_REPLICAS);
    let mut metric = f64::from(current);
    let mut out = Vec::with_capacity(desired.len());
    for (t, d) in desired.iter().enumerate() {
        if let Some(d) = d
            && t % poll == 0
        {
            metric = reported(*d, current, m.tolerance, m.tolerance_aware);
        }
        let recommendation =
            if within(metric, current, m.tolerance) { current } else { (metric - 1e-9).ceil().max(0.0) as u32 };
        recent.push_back(recommendation);
        while recent.len() > window.max(1) {
            recent.pop_front();
        }
        let mut next = if recommendation < current {
            recent.iter().copied().max().unwrap_or(recommendation).min(current)
        } else {
            recommendation
        };
        let c = f64::from(current);
        let up = (c * (1.0 + m.up_percent).powi(periods)).max(c + f64::from(m.up_pods) * f64::from(periods));
        let down = c * (1.0 - m.down_percent).max(0.0).powi(periods);
        next = next.min(up.floor() as u32).max(down.ceil() as u32);
        current = next.clamp(MIN_REPLICAS, MAX_REPLICAS);
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_secs(30);

    fn free() -> Mechanics {
        Mechanics { tolerance: 0.0, down_window: Duration::ZERO, ..Mechanics::DEFAULTS }
    }

    fn apply(desired: &[u32], step: Duration, m: &Mechanics) -> Vec<u32> {
        let d: Vec<Option<f64>> = desired.iter().map(|&d| Some(f64::from(d))).collect();
        super::apply(&d, step, m)
    }

    #[test]
    fn without_tolerance_or_window_the_hpa_follows_the_metric() {
        let desired = [3, 5, 11, 10, 2];
        assert_eq!(apply(&desired, STEP, &free()), desired.to_vec());
    }

    #[test]
    fn the_tolerance_swallows_a_change_of_one_at_twenty_replicas_unless_the_metric_is_aware() {
        let desired = [20, 21, 21, 19, 30];
        let tolerant = Mechanics { down_window: Duration::ZERO, ..Mechanics::DEFAULTS };
        assert_eq!(apply(&desired, STEP, &tolerant), vec![20, 20, 20, 20, 30]);
        let aware = Mechanics { tolerance_aware: true, ..tolerant };
        // 21 is reported as 22 (|1 - 22/20| is a hair past 0.1 in floats, as in the
        // HPA's own test); 21 at 22 is swallowed, 19 at 22 is not.
        assert_eq!(apply(&desired, STEP, &aware), vec![20, 22, 22, 19, 30]);
        assert_eq!(reported(21.0, 20, 0.1, true), 22.0);
        assert_eq!(reported(41.0, 40, 0.1, true), 44.0, "42 and 43 are within");
        assert_eq!(reported(3.0, 2, 0.1, true), 3.0, "past the band already");
    }

    #[test]
    fn rate_limits_and_the_scale_down_window() {
        // Up by max(4 pods, 100%) per 15 s: from 1, two periods allow 1 -> 2 -> 4... but 4
        // pods a period: 1 + 8 = 9 in one 30 s step.
        assert_eq!(apply(&[1, 40], STEP, &free()), vec![1, 9]);
        let slow_down = Mechanics { down_percent: 0.2, period: Duration::from_secs(60), ..free() };
        assert_eq!(apply(&[10, 1, 1], Duration::from_secs(60), &slow_down), vec![10, 8, 7]);
        // A 300 s window holds a fall for 10 steps of 30 s.
        let held = Mechanics { tolerance: 0.0, ..Mechanics::DEFAULTS };
        let out = apply(&[8, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2], STEP, &held);
        assert_eq!(out, vec![8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 2, 2]);
    }

    #[test]
    fn an_hpa_on_utilisation_ignores_small_changes_and_missing_values() {
        // 10.5 replicas' worth of demand at 10: within 10%, nothing changes; 12.5 asks 13.
        let metric = [Some(10.0), Some(10.5), None, Some(12.5)];
        let tolerant = Mechanics { down_window: Duration::ZERO, ..Mechanics::DEFAULTS };
        assert_eq!(super::apply(&metric, STEP, &tolerant), vec![10, 10, 10, 13]);
    }

    #[test]
    fn polling_holds_the_metric_between_polls() {
        let slow = Mechanics { polling: Duration::from_secs(60), ..free() };
        assert_eq!(apply(&[2, 6, 6, 3, 3], STEP, &slow), vec![2, 2, 6, 6, 3]);
    }
}
