//! Cost against safety: the frontier of a family of settings, and what one setting costs
//! relative to another family's frontier at the same safety.
//!
//! Every setting scored on the same steps is a point (under-provisioned steps,
//! replica-hours). A family's frontier is its points no other point beats on both: sorted
//! by under-provisioned steps, each strictly cheaper than every safer one. Comparing a
//! policy with the HPA at one setting says little (an operator who finds the HPA unsafe
//! lowers its target); comparing it with the HPA's frontier at the same number of
//! under-provisioned steps says what the same safety costs reactively.

use serde::Serialize;

/// One setting's score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// The family: `hpa`, `predictive`, `oracle`.
    pub policy: String,
    /// The setting, in words (`target=0.70 window=300s`).
    pub setting: String,
    /// Under-provisioned steps.
    pub under_provisioned_steps: usize,
    /// Replica-hours.
    pub replica_hours: f64,
}

/// The frontier of `points`: sorted by under-provisioned steps (safest first), each
/// cheaper than every safer one; ties on steps keep the cheapest.
pub fn pareto(points: &[Point]) -> Vec<Point> {
    let mut sorted: Vec<&Point> = points.iter().filter(|p| p.replica_hours.is_finite()).collect();
    sorted.sort_by(|a, b| {
        a.under_provisioned_steps.cmp(&b.under_provisioned_steps).then(a.replica_hours.total_cmp(&b.replica_hours))
    });
    let mut out: Vec<Point> = Vec::new();
    for p in sorted {
        if out.last().is_none_or(|last| p.replica_hours < last.replica_hours) {
            out.push(p.clone());
        }
    }
    out
}

/// Where a step count falls on a frontier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Position {
    /// Between two of its settings (or on one): the cost interpolated linearly.
    Within,
    /// Safer than its safest setting: that setting's cost (the evaluation spec's rule).
    SaferThanAll,
    /// Less safe than its cheapest setting: that setting's cost.
    LessSafeThanAll,
}

/// The frontier's replica-hours at `under_steps` under-provisioned steps, interpolated
/// linearly between its settings, and where that is; `None` for an empty frontier.
pub fn cost_at(frontier: &[Point], under_steps: usize) -> Option<(f64, Position)> {
    let (first, last) = (frontier.first()?, frontier.last()?);
    if under_steps < first.under_provisioned_steps {
        return Some((first.replica_hours, Position::SaferThanAll));
    }
    if under_steps > last.under_provisioned_steps {
        return Some((last.replica_hours, Position::LessSafeThanAll));
    }
    let i = frontier.partition_point(|p| p.under_provisioned_steps <= under_steps) - 1;
    let a = &frontier[i];
    let Some(b) = frontier.get(i + 1) else { return Some((a.replica_hours, Position::Within)) };
    let span = (b.under_provisioned_steps - a.under_provisioned_steps) as f64;
    let along = (under_steps - a.under_provisioned_steps) as f64 / span;
    Some((a.replica_hours + along * (b.replica_hours - a.replica_hours), Position::Within))
}

/// The evaluation spec's figure: the cheapest point with at most `under_steps`
/// under-provisioned steps, or the safest when none is that safe.
pub fn cheapest_at_most(points: &[Point], under_steps: usize) -> Option<&Point> {
    let by_cost = |a: &&Point, b: &&Point| a.replica_hours.total_cmp(&b.replica_hours);
    points.iter().filter(|p| p.under_provisioned_steps <= under_steps).min_by(by_cost).or_else(|| {
        points.iter().min_by(|a, b| {
            a.under_provisioned_steps.cmp(&b.under_provisioned_steps).then(a.replica_hours.total_cmp(&b.replica_hours))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(under: usize, cost: f64) -> Point {
        Point {
            policy: "hpa".into(),
            setting: format!("{under}/{cost}"),
            under_provisioned_steps: under,
            replica_hours: cost,
        }
    }

    #[test]
    fn the_frontier_keeps_only_settings_no_other_beats() {
        let points =
            [point(10, 100.0), point(0, 200.0), point(5, 150.0), point(5, 140.0), point(7, 160.0), point(20, 100.0)];
        let f: Vec<(usize, f64)> =
            pareto(&points).iter().map(|p| (p.under_provisioned_steps, p.replica_hours)).collect();
        // (7, 160) is beaten by (5, 140); (20, 100) by (10, 100); (5, 150) by (5, 140).
        assert_eq!(f, vec![(0, 200.0), (5, 140.0), (10, 100.0)]);
    }

    #[test]
    fn cost_is_interpolated_between_settings_and_held_beyond_them() {
        let f = pareto(&[point(2, 200.0), point(6, 140.0), point(10, 100.0)]);
        assert_eq!(cost_at(&f, 6), Some((140.0, Position::Within)));
        assert_eq!(cost_at(&f, 4), Some((170.0, Position::Within)));
        assert_eq!(cost_at(&f, 9), Some((110.0, Position::Within)));
        assert_eq!(cost_at(&f, 10), Some((100.0, Position::Within)));
        assert_eq!(cost_at(&f, 0), Some((200.0, Position::SaferThanAll)));
        assert_eq!(cost_at(&f, 50), Some((100.0, Position::LessSafeThanAll)));
        assert_eq!(cost_at(&[], 3), None);
    }

    #[test]
    fn the_specs_figure_is_the_cheapest_at_most_as_short() {
        let points = [point(2, 200.0), point(6, 140.0), point(10, 100.0)];
        assert_eq!(cheapest_at_most(&points, 7).unwrap().replica_hours, 140.0);
        assert_eq!(cheapest_at_most(&points, 1).unwrap().replica_hours, 200.0, "none that safe: the safest");
    }
}
