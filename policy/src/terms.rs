//! The policy's terms as functions of demand: how many replicas a demand needs, and the
//! most a stretch of future demand needs from the pods' startup on.

/// Replicas for a demand at a capacity.
pub fn replicas_for(demand: f64, capacity: f64) -> u32 {
    // A hair below an integer is that integer: float noise must not add a pod.
    let n = demand / capacity;
    (n - 1e-9).ceil().max(0.0).min(u32::MAX as f64) as u32
}

/// The newsvendor rule: the demand to provision for when a replica-step short costs
/// `penalty` times a provisioned one is the forecast's quantile at the critical ratio
/// `penalty / (penalty + 1)` (9: the 90th percentile; 1: the median). Each step's
/// distribution is read off its median and 90th percentile as a normal one's: the
/// quantile at level `k` is `p50 + z(k) / z(0.9) * (p90 - p50)`, never below 0. Writes
/// one value per step into `out`.
pub fn newsvendor(p50: &[f64], p90: &[f64], penalty: f64, out: &mut Vec<f64>) {
    use statrs::distribution::{ContinuousCDF, Normal};
    let normal = Normal::standard();
    let level = penalty / (penalty + 1.0);
    let spread = normal.inverse_cdf(level) / normal.inverse_cdf(0.9);
    out.clear();
    out.extend(p50.iter().zip(p90).map(|(m, q)| (m + spread * (q - m)).max(0.0)));
}

/// The forecast term: most replicas needed over `[startup, lookahead]` steps ahead, with
/// the step (1-based, ahead of now) that needs them.
pub fn forecast_need(
    trajectory: &[f64],
    startup_steps: usize,
    lookahead_steps: usize,
    capacity: f64,
    headroom: f64,
) -> Option<(u32, usize)> {
    peak_need(trajectory.len(), startup_steps, lookahead_steps, capacity, |ahead| {
        trajectory[ahead - 1] * (1.0 + headroom)
    })
}

/// The burst term: replicas for `demand` times the largest ratio over steps
/// `[startup_steps, startup_steps + span_steps]` ahead, with the step (1-based) of that
/// ratio.
///
/// From the pods' startup on, as the forecast term: a jump sooner cannot be met by pods
/// asked for now. The span covers a jump whose minute wanders by a step or two between
/// hours (a single slot's quantile is noisy).
pub fn burst_need(
    demand: f64,
    ratios: &[f64],
    startup_steps: usize,
    span_steps: usize,
    capacity: f64,
) -> Option<(u32, usize)> {
    peak_need(ratios.len(), startup_steps, startup_steps + span_steps, capacity, |ahead| demand * ratios[ahead - 1])
}

/// Most replicas `demand(ahead)` needs over `ahead` in `[startup, last]` (1-based, `last`
/// clamped to `len` steps, `startup` to `last`), with the earliest step that needs them.
fn peak_need(
    len: usize,
    startup_steps: usize,
    last: usize,
    capacity: f64,
    demand: impl Fn(usize) -> f64,
) -> Option<(u32, usize)> {
    let to = last.min(len);
    let from = startup_steps.max(1).min(to);
    (from.max(1)..=to)
        .map(|ahead| (replicas_for(demand(ahead), capacity), ahead))
        .max_by_key(|&(n, ahead)| (n, std::cmp::Reverse(ahead)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newsvendor_covers_the_critical_ratio() {
        let (p50, p90) = ([100.0, 10.0], [150.0, 10.0]);
        let mut out = Vec::new();
        // Penalty 9: ratio 0.9, the p90 itself; penalty 1: 0.5, the median.
        newsvendor(&p50, &p90, 9.0, &mut out);
        assert!((out[0] - 150.0).abs() < 1e-9 && (out[1] - 10.0).abs() < 1e-9, "{out:?}");
        newsvendor(&p50, &p90, 1.0, &mut out);
        assert!((out[0] - 100.0).abs() < 1e-9, "{out:?}");
        // Penalty 19: ratio 0.95, z = 1.644854 against z(0.9) = 1.281552: 100 + 50 * 1.283487.
        newsvendor(&p50, &p90, 19.0, &mut out);
        assert!((out[0] - 164.17435).abs() < 1e-3, "{out:?}");
        // Penalty 1/3: ratio 0.25, z = -0.674490: 100 - 50 * 0.526303; a spread that would
        // go below zero stops there.
        newsvendor(&p50, &p90, 1.0 / 3.0, &mut out);
        assert!((out[0] - 73.68486).abs() < 1e-3, "{out:?}");
        newsvendor(&[1.0], &[100.0], 0.01, &mut out);
        assert_eq!(out, vec![0.0]);
    }

    #[test]
    fn replicas_for_tolerates_float_noise() {
        assert_eq!(replicas_for(30.000000000001, 10.0), 3);
        assert_eq!(replicas_for(30.1, 10.0), 4);
        assert_eq!(replicas_for(0.0, 10.0), 0);
    }
}
