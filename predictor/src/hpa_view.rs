//! What the predictor can know of the HPA's current replicas, the count the HPA's
//! tolerance test compares KEDA's metric with.
//!
//! For an `AverageValue` external metric the HPA divides the metric by its target's
//! `status.replicas`: the pods it last asked for, ready or not (Kubernetes'
//! `GetExternalPerPodMetricReplicas`). The predictor sees only the ready count, which
//! lags that by a pod's startup on every rise. Judged against the ready count, a rise
//! asked for while the last rise's pods start can fall within the tolerance of what the
//! HPA already asked for, and the HPA ignores it: 12 asked and 10 ready, 13 is told as 13
//! (30% past 10) and the HPA, at 12, sees 8% and does nothing. So the view remembers the
//! last count the HPA acted on for as long as pods may take to be ready, then goes back
//! to the ready count, which also brings in what it cannot see (the HPA's bounds and rate
//! limits, someone else scaling).

use chrono::{DateTime, TimeDelta, Utc};
use prescale_policy::mechanics;

/// One service's view of its HPA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HpaView {
    /// The last count told that the HPA acted on (past its tolerance), and when.
    asked: Option<(u32, DateTime<Utc>)>,
}

impl HpaView {
    /// The HPA's current replicas at `t` as far as can be told: the count it last acted
    /// on while `settle` has not passed since, the `ready` count otherwise.
    pub fn current(&self, ready: u32, t: DateTime<Utc>, settle: TimeDelta) -> u32 {
        match self.asked {
            Some((asked, at)) if t - at < settle => asked,
            _ => ready,
        }
    }

    /// What to tell KEDA at `t` for `desired` replicas with `ready` pods ready: a rise the
    /// HPA's `tolerance` would swallow is told as the smallest count past it (a fall within
    /// it stays ignored, the safe side); a count the HPA will act on is remembered.
    pub fn tell(&mut self, desired: u32, ready: u32, t: DateTime<Utc>, settle: TimeDelta, tolerance: f64) -> u32 {
        let current = self.current(ready, t, settle);
        let told = mechanics::reported(f64::from(desired), current, tolerance, true).min(f64::from(u32::MAX)) as u32;
        if !mechanics::within(f64::from(told), current, tolerance) {
            self.asked = Some((told, t));
        }
        told
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: i64 = 30;
    const TOLERANCE: f64 = 0.1;

    /// An HPA as Kubernetes runs it for an `AverageValue` metric (its tolerance test
    /// against `status.replicas`, which follows what it asks at once), pods ready
    /// `startup_steps` after they are asked for, a metric polled every step. Returns the
    /// replicas the HPA asked for after each step's metric.
    fn hpa(desired: &[u32], startup_steps: usize, mut tell: impl FnMut(u32, u32, DateTime<Utc>) -> u32) -> Vec<u32> {
        let t0 = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let mut spec = desired[0];
        let mut asked_at: Vec<u32> = vec![spec; startup_steps + 1];
        let mut out = Vec::new();
        for (k, &d) in desired.iter().enumerate() {
            // Pods asked for `startup_steps` ago are ready now (a fall is ready at once).
            let ready = asked_at[asked_at.len() - 1 - startup_steps].min(spec);
            let metric = tell(d, ready, t0 + TimeDelta::seconds(STEP * k as i64));
            if !mechanics::within(f64::from(metric), spec, TOLERANCE) {
                spec = metric;
            }
            asked_at.push(spec);
            out.push(spec);
        }
        out
    }

    #[test]
    fn a_rise_while_pods_start_is_judged_against_what_the_hpa_asked_for() {
        // A steady ramp past ten replicas, one more every step, pods ready after 4 steps.
        let desired: Vec<u32> = (10..=30).collect();
        let settle = TimeDelta::seconds(2 * 4 * STEP);
        let mut view = HpaView::default();
        let asked = hpa(&desired, 4, |d, ready, t| view.tell(d, ready, t, settle, TOLERANCE));
        for (k, (a, d)) in asked.iter().zip(&desired).enumerate() {
            assert!(a >= d, "step {k}: the HPA asked for {a}, {d} were decided ({asked:?})");
        }
        // Judged against the ready count (what the predictor did before), the HPA falls
        // behind: 12 told at 11 asked and 10 ready is within its tolerance of 11.
        let by_ready = hpa(&desired, 4, |d, ready, _| mechanics::reported(f64::from(d), ready, TOLERANCE, true) as u32);
        assert!(by_ready.iter().zip(&desired).any(|(a, d)| a < d), "{by_ready:?}");
    }

    #[test]
    fn the_ready_count_stands_once_pods_had_time() {
        let t0 = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let settle = TimeDelta::seconds(240);
        let mut view = HpaView::default();
        assert_eq!(view.tell(21, 20, t0, settle, TOLERANCE), 22, "21 at 20 is within; 22 is past");
        assert_eq!(view.current(20, t0 + TimeDelta::seconds(30), settle), 22);
        // The HPA capped it at 21 (its maxReplicas, say): past the settling time the ready
        // count is what is known.
        assert_eq!(view.current(21, t0 + settle, settle), 21);
        // A count the HPA ignores is not remembered.
        let mut quiet = HpaView::default();
        assert_eq!(quiet.tell(10, 10, t0, settle, TOLERANCE), 10);
        assert_eq!(quiet, HpaView::default());
        // A fall past the tolerance is acted on at once, and remembered.
        assert_eq!(quiet.tell(5, 10, t0, settle, TOLERANCE), 5);
        assert_eq!(quiet.current(10, t0 + TimeDelta::seconds(30), settle), 5);
    }
}
