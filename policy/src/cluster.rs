//! The cluster model of the scaling benchmark (`../shared/specs/evaluation.md`), shared by
//! the trainer's `simulate` and the tuning of a model's policy on its validation part.
//!
//! Each pod serves `capacity` requests/s; a pod is ready at step `t` once it has been
//! desired without interruption for `startup`: `ready(t) = min(desired(s))` over
//! `s` in `[t - startup, t]`; scale-down is immediate. A step is under-provisioned when
//! `demand(t) > ready(t) * capacity`; cost is replica-hours, the sum of `desired(t)` times
//! the step. Steps with missing demand are never scored.
//!
//! Beside the spec's figures, an outcome counts *tight* steps: demand above
//! [`TIGHT_UTILISATION`] of ready capacity (short ones included), a margin a policy can be
//! compared on when neither is ever short.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::terms::replicas_for;

/// Bounds of the benchmark's cluster.
pub const MIN_REPLICAS: u32 = 1;
/// Bounds of the benchmark's cluster.
pub const MAX_REPLICAS: u32 = 50;

/// Share of ready capacity above which a step counts as tight (less than 10% spare).
pub const TIGHT_UTILISATION: f64 = 0.9;

/// Ready replicas per step: the minimum of `desired` over the last `startup_steps + 1`
/// steps (before the first step, the first decision counts as long-standing).
pub fn ready(desired: &[u32], startup_steps: usize) -> Vec<u32> {
    let mut window: VecDeque<(usize, u32)> = VecDeque::new(); // increasing minima
    let mut out = Vec::with_capacity(desired.len());
    for (t, &d) in desired.iter().enumerate() {
        while window.back().is_some_and(|&(_, v)| v >= d) {
            window.pop_back();
        }
        window.push_back((t, d));
        while window.front().is_some_and(|&(s, _)| s + startup_steps < t) {
            window.pop_front();
        }
        out.push(window.front().map_or(d, |&(_, v)| v));
    }
    out
}

/// How a policy did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Policy name.
    pub policy: String,
    /// Share of scored steps with demand above ready capacity.
    pub under_provisioned: f64,
    /// Under-provisioned steps.
    pub under_steps: usize,
    /// Steps scored (those with a demand).
    pub scored_steps: usize,
    /// Steps with demand above [`TIGHT_UTILISATION`] of ready capacity (short ones too).
    pub tight_steps: usize,
    /// Replica-hours.
    pub replica_hours: f64,
    /// Replica-hours over the oracle's (filled in by [`compare`]).
    pub relative_to_oracle: f64,
    /// Changes of `desired`.
    pub changes: usize,
}

/// Scores one policy's decisions against demand.
pub fn score(
    policy: &str,
    demand: &[Option<f64>],
    desired: &[u32],
    capacity: f64,
    startup_steps: usize,
    step_seconds: f64,
) -> Outcome {
    let ready = ready(desired, startup_steps);
    let (mut under, mut tight, mut scored) = (0, 0, 0);
    for (d, r) in demand.iter().zip(&ready) {
        if let Some(d) = d {
            scored += 1;
            let serves = f64::from(*r) * capacity;
            under += usize::from(*d > serves);
            tight += usize::from(*d > serves * TIGHT_UTILISATION);
        }
    }
    Outcome {
        policy: policy.to_owned(),
        under_provisioned: under as f64 / scored.max(1) as f64,
        under_steps: under,
        scored_steps: scored,
        tight_steps: tight,
        replica_hours: desired.iter().map(|&d| f64::from(d)).sum::<f64>() * step_seconds / 3600.0,
        relative_to_oracle: f64::NAN,
        changes: desired.windows(2).filter(|w| w[0] != w[1]).count(),
    }
}

/// Fills in replica-hours relative to the `oracle` outcome.
pub fn compare(outcomes: &mut [Outcome]) {
    let oracle = outcomes.iter().find(|o| o.policy == "oracle").map(|o| o.replica_hours);
    for o in outcomes {
        o.relative_to_oracle = oracle.map_or(f64::NAN, |r| o.replica_hours / r);
    }
}

fn bound(n: u32) -> u32 {
    n.clamp(MIN_REPLICAS, MAX_REPLICAS)
}

/// The spec's HPA: a 70% utilisation target.
pub const HPA_TARGET: f64 = 0.7;

/// The reactive HPA at a utilisation `target` (0.7 in the spec): `ceil(demand / (target
/// capacity))`, scaled down only to the highest recommendation of the last `window_steps`
/// steps. A missing demand repeats the last recommendation.
pub fn hpa(demand: &[Option<f64>], capacity: f64, target: f64, window_steps: usize) -> Vec<u32> {
    let mut recent: VecDeque<u32> = VecDeque::new();
    let mut last = MIN_REPLICAS;
    demand
        .iter()
        .map(|d| {
            let rec = d.map_or(last, |d| bound(replicas_for(d, target * capacity)));
            last = rec;
            recent.push_back(rec);
            while recent.len() > window_steps.max(1) {
                recent.pop_front();
            }
            recent.iter().copied().max().unwrap_or(rec)
        })
        .collect()
}

/// Perfect foresight: `max(ceil(demand(s) / capacity))` over `s` in `[t, t + startup]`.
pub fn oracle(demand: &[Option<f64>], capacity: f64, startup_steps: usize) -> Vec<u32> {
    (0..demand.len())
        .map(|t| {
            let end = (t + startup_steps + 1).min(demand.len());
            bound(demand[t..end].iter().flatten().map(|&d| replicas_for(d, capacity)).max().unwrap_or(MIN_REPLICAS))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_become_ready_after_startup_and_leave_at_once() {
        let desired = [2, 5, 5, 5, 5, 1, 4];
        assert_eq!(ready(&desired, 2), vec![2, 2, 2, 5, 5, 1, 1]);
        assert_eq!(ready(&desired, 0), desired.to_vec());
    }

    #[test]
    fn scoring_counts_under_provisioning_cost_and_changes() {
        let demand = [Some(10.0), Some(30.0), None, Some(45.0)];
        let desired = [1, 3, 3, 4];
        let o = score("x", &demand, &desired, 10.0, 1, 1800.0);
        // ready = [1, 1, 3, 3]: step 1 (30 > 10) and step 3 (45 > 30) are short; step 2 is not scored.
        assert_eq!(o.under_steps, 2);
        // Step 0 (10 > 0.9 * 10) is tight without being short.
        assert_eq!(o.tight_steps, 3);
        assert!((o.under_provisioned - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(o.replica_hours, 11.0 * 0.5);
        assert_eq!(o.changes, 2);
    }

    #[test]
    fn hpa_and_oracle_follow_the_spec() {
        let demand = [Some(7.0), Some(70.0), Some(7.0), Some(7.0), None, Some(7.0)];
        // ceil(70 / 7) = 10, held for a 3-step window.
        assert_eq!(hpa(&demand, 10.0, HPA_TARGET, 3), vec![1, 10, 10, 10, 1, 1]);
        // At a 35% target, twice as many; without a window, down at once.
        assert_eq!(hpa(&demand, 10.0, 0.35, 0), vec![2, 20, 2, 2, 2, 2]);
        assert_eq!(oracle(&demand, 10.0, 1), vec![7, 7, 1, 1, 1, 1]);
        assert_eq!(oracle(&[Some(1e9)], 10.0, 0), vec![MAX_REPLICAS]);
    }
}
