//! The policy's terms as functions of demand: how many replicas a demand needs, and the
//! most a stretch of future demand needs from the pods' startup on.

/// Replicas for a demand at a capacity.
pub fn replicas_for(demand: f64, capacity: f64) -> u32 {
    // A hair below an integer is that integer: float noise must not add a pod.
    let n = demand / capacity;
    (n - 1e-9).ceil().max(0.0).min(u32::MAX as f64) as u32
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
    fn replicas_for_tolerates_float_noise() {
        assert_eq!(replicas_for(30.000000000001, 10.0), 3);
        assert_eq!(replicas_for(30.1, 10.0), 4);
        assert_eq!(replicas_for(0.0, 10.0), 0);
    }
}
