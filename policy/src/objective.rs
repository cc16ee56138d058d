//! An objective the operator states instead of knobs: the largest share of
//! under-provisioned time a service accepts. The policy's knobs (quantile, headroom,
//! lookahead, scale-down, reactive floor, burst term) are tuned to it on a model's
//! validation part: the cheapest setting that meets it there, or, when none does, the
//! safest one (said loudly by whoever chooses).
//!
//! A model carries the tuning as a [`Menu`]: the settings on its validation frontier (no
//! other setting both safer and cheaper), each with its validation score. The objective
//! stays in the service's settings, so changing it needs no retraining; [`Menu::choose`]
//! and the trainer's `simulate` apply the same rule ([`choose_by`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::{PolicySettings, Quantile};

/// How one setting did on a validation part, free of the capacity it was replayed at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Share of scored steps under-provisioned.
    pub under_provisioned: f64,
    /// Share of scored steps above 90% of ready capacity (short ones too).
    pub tight: f64,
    /// Replica-hours relative to the HPA's (70% target) on the same steps.
    pub cost: f64,
}

/// Which setting an objective picks from scored candidates: the cheapest with at most
/// `objective` under-provisioned (ties: fewer short steps, then fewer tight ones); when
/// none meets it, the safest (fewest short steps, then tight ones, then the cheapest).
/// Returns its index and whether it meets the objective; `None` when there is no
/// candidate.
pub fn choose_by<T>(candidates: &[T], objective: f64, score: impl Fn(&T) -> Score) -> Option<(usize, bool)> {
    let scored: Vec<Score> = candidates.iter().map(score).collect();
    let cheapest = |&a: &usize, &b: &usize| {
        let (x, y) = (scored[a], scored[b]);
        x.cost
            .total_cmp(&y.cost)
            .then(x.under_provisioned.total_cmp(&y.under_provisioned))
            .then(x.tight.total_cmp(&y.tight))
    };
    let safest = |&a: &usize, &b: &usize| {
        let (x, y) = (scored[a], scored[b]);
        x.under_provisioned
            .total_cmp(&y.under_provisioned)
            .then(x.tight.total_cmp(&y.tight))
            .then(x.cost.total_cmp(&y.cost))
    };
    // A hair of float noise must not turn "as safe as the HPA" into "not quite".
    let meets = |i: &usize| scored[*i].under_provisioned <= objective + 1e-12;
    if let Some(i) = (0..candidates.len()).filter(meets).min_by(cheapest) {
        return Some((i, true));
    }
    (0..candidates.len()).min_by(safest).map(|i| (i, false))
}

/// The knobs tuning sets; capacity, bounds, startup and the largest change stay the
/// service's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knobs {
    /// The forecast quantile covered.
    pub quantile: Quantile,
    /// The newsvendor rule's shortfall penalty, when it replaces the quantile.
    #[serde(default)]
    pub shortfall_penalty: Option<f64>,
    /// Extra share of demand provisioned for.
    pub headroom: f64,
    /// How far ahead the forecast term looks.
    #[serde(with = "humantime_serde")]
    pub lookahead: Duration,
    /// The reactive floor's utilisation.
    pub floor_utilisation: f64,
    /// The scale-down stabilisation window.
    #[serde(with = "humantime_serde")]
    pub scale_down_window: Duration,
    /// Whether scale-down keeps what the forecast needs before new pods could be ready.
    pub forecast_scale_down: bool,
    /// The burst profile's quantile, if any.
    pub burst_quantile: Option<f64>,
    /// The burst term's span after the startup.
    #[serde(with = "humantime_serde")]
    pub burst_span: Duration,
}

impl Knobs {
    /// The knobs of a setting.
    pub fn of(s: &PolicySettings) -> Self {
        Self {
            quantile: s.quantile,
            shortfall_penalty: s.shortfall_penalty,
            headroom: s.headroom,
            lookahead: s.lookahead,
            floor_utilisation: s.floor_utilisation,
            scale_down_window: s.scale_down_window,
            forecast_scale_down: s.forecast_scale_down,
            burst_quantile: s.burst_quantile,
            burst_span: s.burst_span,
        }
    }

    /// `base` with these knobs.
    pub fn apply(&self, base: &PolicySettings) -> PolicySettings {
        PolicySettings {
            quantile: self.quantile,
            shortfall_penalty: self.shortfall_penalty,
            headroom: self.headroom,
            lookahead: self.lookahead,
            floor_utilisation: self.floor_utilisation,
            scale_down_window: self.scale_down_window,
            forecast_scale_down: self.forecast_scale_down,
            burst_quantile: self.burst_quantile,
            burst_span: self.burst_span,
            ..base.clone()
        }
    }
}

/// One setting on a validation frontier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The knobs.
    pub knobs: Knobs,
    /// Its validation score.
    pub score: Score,
}

/// A model's tuned settings for one service: its validation frontier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Menu {
    /// The pod startup the settings were tuned for: they hold for that startup only.
    #[serde(with = "humantime_serde")]
    pub startup: Duration,
    /// The default HPA's (70% target) validation score on the same steps.
    pub hpa: Score,
    /// The frontier, safest first.
    pub entries: Vec<Entry>,
    /// The share of ready capacity held back when the entries' short steps were counted.
    #[serde(default)]
    pub margin: f64,
}

/// What an objective chose from a menu.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The settings to run: the service's own with the chosen knobs.
    pub settings: PolicySettings,
    /// The chosen entry's validation score.
    pub score: Score,
    /// Whether it meets the objective on validation (if not, it is the safest there).
    pub met: bool,
}

impl Menu {
    /// A menu of the settings on the frontier of `candidates` (others are never chosen
    /// by any objective: a frontier setting is as safe and cheaper).
    pub fn of(startup: Duration, hpa: Score, candidates: &[(PolicySettings, Score)]) -> Self {
        let mut sorted: Vec<&(PolicySettings, Score)> = candidates.iter().collect();
        sorted.sort_by(|a, b| {
            a.1.under_provisioned
                .total_cmp(&b.1.under_provisioned)
                .then(a.1.tight.total_cmp(&b.1.tight))
                .then(a.1.cost.total_cmp(&b.1.cost))
        });
        let mut entries: Vec<Entry> = Vec::new();
        for (settings, score) in sorted {
            // The safest comes first; after it, only what is cheaper than every safer one.
            if entries.iter().all(|e| score.cost < e.score.cost) {
                entries.push(Entry { knobs: Knobs::of(settings), score: *score });
            }
        }
        Self { startup, hpa, entries, margin: 0.0 }
    }

    /// The entry `objective` picks, applied to the service's `settings`; `None` when the
    /// menu is empty or was tuned for another pod startup.
    pub fn choose(&self, objective: f64, settings: &PolicySettings) -> Option<Choice> {
        if settings.startup != self.startup {
            return None;
        }
        let (i, met) = choose_by(&self.entries, objective, |e| e.score)?;
        let entry = &self.entries[i];
        Some(Choice { settings: entry.knobs.apply(settings), score: entry.score, met })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(under: f64, tight: f64, cost: f64) -> Score {
        Score { under_provisioned: under, tight, cost }
    }

    #[test]
    fn the_cheapest_setting_meeting_the_objective_is_chosen() {
        let c = [score(0.0, 0.05, 1.3), score(0.001, 0.02, 1.0), score(0.001, 0.04, 0.9), score(0.01, 0.1, 0.7)];
        assert_eq!(choose_by(&c, 0.001, |s| *s), Some((2, true)));
        assert_eq!(choose_by(&c, 0.05, |s| *s), Some((3, true)));
        assert_eq!(choose_by(&c, 0.0, |s| *s), Some((0, true)));
        // None meets it: the safest, said as not met.
        let short = [score(0.02, 0.1, 0.8), score(0.01, 0.2, 1.1), score(0.01, 0.1, 1.2)];
        assert_eq!(choose_by(&short, 0.001, |s| *s), Some((2, false)));
        assert_eq!(choose_by(&[] as &[Score], 0.1, |s| *s), None);
    }

    #[test]
    fn a_menu_keeps_the_frontier_and_applies_its_knobs_to_the_services_settings() {
        let base = PolicySettings { capacity: 7.0, max_replicas: 9, ..PolicySettings::default() };
        let with = |headroom: f64| PolicySettings { headroom, ..base.clone() };
        let candidates = [
            (with(0.5), score(0.0, 0.01, 1.4)),
            (with(0.6), score(0.0, 0.01, 1.5)), // as safe, dearer: never chosen
            (with(0.2), score(0.002, 0.03, 1.0)),
            (with(0.3), score(0.003, 0.02, 1.1)), // less safe and dearer than 0.2
            (with(0.0), score(0.01, 0.1, 0.8)),
        ];
        let menu = Menu::of(base.startup, score(0.005, 0.05, 1.0), &candidates);
        let kept: Vec<f64> = menu.entries.iter().map(|e| e.knobs.headroom).collect();
        assert_eq!(kept, vec![0.5, 0.2, 0.0]);
        let c = menu.choose(0.005, &PolicySettings { capacity: 3.0, ..base.clone() }).unwrap();
        assert!(c.met);
        assert_eq!((c.settings.headroom, c.settings.capacity, c.settings.max_replicas), (0.2, 3.0, 9));
        let strict = menu.choose(0.0, &base).unwrap();
        assert_eq!((strict.settings.headroom, strict.met), (0.5, true));
        // Tuned for a 2-minute startup, it says nothing for a service starting in 5.
        let slow = PolicySettings { startup: Duration::from_secs(300), ..base };
        assert_eq!(menu.choose(0.005, &slow), None);
        let json = serde_json::to_string(&menu).unwrap();
        assert_eq!(serde_json::from_str::<Menu>(&json).unwrap(), menu);
    }
}
