//! Tuning the scaling policy on a validation part: replay a grid of settings on a
//! model's forecasts through the evaluation spec's cluster model
//! ([`prescale_policy::cluster`]) and keep each one's score.
//!
//! The trainer's `simulate` chooses from these candidates for its benchmark; the trainer
//! keeps their frontier in the model ([`Menu`]) so the predictor can choose for the
//! objective each service states. Both replay the policy as the predictor runs it
//! ([`predictive`], through `Policy::decide_at`).
//!
//! Without a configured capacity, a part is replayed at its own (the 99th percentile of
//! its demand over 20, a service peaking near 20 replicas: the spec's sizing), and demand
//! above what the largest cluster serves is capped: such steps are short under any
//! setting and would tie every candidate; capped, they still ask whether the cluster was
//! at its largest in time.

use std::time::Duration;

use ndarray::Array2;
use prescale_policy::cluster::{self, HPA_TARGET, MAX_REPLICAS, MIN_REPLICAS, Outcome};
use prescale_policy::objective::{Menu, Score, choose_by};
use prescale_policy::{Policy, PolicyError, PolicySettings, Present, Quantile};

use crate::burst::{self, BurstProfile};
use crate::forecaster::{ModelError, TransformerModel};
use crate::scores::Forecasts;
use crate::series::Series;
use crate::window::Windows;

/// Pod startup in the benchmark's cluster model.
pub const STARTUP: Duration = Duration::from_secs(120);
/// The HPA's default scale-down stabilisation window.
pub const HPA_WINDOW: Duration = Duration::from_secs(300);

/// Forecasts per step from `first` on; `None` where no forecast can be made.
#[derive(Debug)]
pub struct StepForecasts {
    /// First step covered.
    pub first: usize,
    /// `[steps, horizon]` medians (rows of steps without a forecast are unused).
    pub p50: Array2<f64>,
    /// `[steps, horizon]` 90th percentiles.
    pub p90: Array2<f64>,
    /// Whether a forecast exists for each step.
    pub present: Vec<bool>,
}

impl StepForecasts {
    /// Forecasts every step in `[first, series.len())` with the model.
    pub fn of(model: &TransformerModel, series: &Series, first: usize) -> Result<Self, ModelError> {
        Self::between(model, series, first, series.len())
    }

    /// Forecasts every step in `[first, end)` with the model.
    pub fn between(model: &TransformerModel, series: &Series, first: usize, end: usize) -> Result<Self, ModelError> {
        let p = &model.params;
        let windows = Windows::new(series, p.window, p.level_floor, &p.holidays);
        let origins = windows.usable_origins(first, end);
        let f = model.forecast(series, &origins)?;
        Ok(Self::placed(first, end, &f))
    }

    /// Forecasts made at some origins in `[first, end)`, placed by step.
    pub fn placed(first: usize, end: usize, f: &Forecasts) -> Self {
        let (n, h) = (end - first, f.p50.ncols());
        let (mut p50, mut p90, mut present) = (Array2::zeros((n, h)), Array2::zeros((n, h)), vec![false; n]);
        for (row, &o) in f.origins.iter().enumerate() {
            if (first..end).contains(&o) {
                p50.row_mut(o - first).assign(&f.p50.row(row));
                p90.row_mut(o - first).assign(&f.p90.row(row));
                present[o - first] = true;
            }
        }
        Self { first, p50, p90, present }
    }
}

/// Runs the predictive policy over steps `[from, to)`, with the burst profile's ratios
/// when the policy covers a burst quantile.
pub fn predictive(
    series: &Series,
    forecasts: &StepForecasts,
    burst: Option<&BurstProfile>,
    settings: &PolicySettings,
    from: usize,
    to: usize,
) -> Result<Vec<u32>, PolicyError> {
    let mut policy = Policy::new(settings.clone(), series.grid)?;
    let mut replicas = MIN_REPLICAS;
    let mut out = Vec::with_capacity(to - from);
    for t in from..to {
        let row = t - forecasts.first;
        let (p50, p90) = (forecasts.p50.row(row), forecasts.p90.row(row));
        let forecast = forecasts.present[row]
            .then(|| (p50.as_slice().expect("rows are contiguous"), p90.as_slice().expect("rows are contiguous")));
        let present =
            Present { time: series.time(t), forecast, demand_now: series.at(t as isize), replicas_now: replicas };
        let (n, _) = policy.decide_at(present, burst)?;
        replicas = n;
        out.push(n);
    }
    Ok(out)
}

/// The 99th percentile of the present values over 20 (the spec's capacity).
pub fn p99_over_20(values: &[Option<f64>]) -> f64 {
    let mut v: Vec<f64> = values.iter().flatten().copied().collect();
    v.sort_by(f64::total_cmp);
    let p99 = v.get(((v.len().max(1) - 1) as f64 * 0.99).round() as usize).copied().unwrap_or(1.0);
    (p99 / 20.0).max(1e-9)
}

/// The settings tried, at `capacity`, for a series on `grid` whose forecasts reach
/// `horizon` steps, with or without a burst profile: the quantile (p50, p90, or the
/// newsvendor rule's at 0.75, 0.95, 0.99), headroom, lookahead (the startup, half-way, the whole horizon), scale-down (the startup's or
/// the HPA's window, or by the forecast at once), the reactive floor's utilisation, and
/// the burst term (none, or each of the profile's quantiles spanning 0, half or all of
/// the startup after it).
pub fn grid(series: &Series, capacity: f64, horizon: usize, with_burst: bool) -> Vec<PolicySettings> {
    let startup = series.grid.steps_in(STARTUP);
    let hpa_window = series.grid.steps_in(HPA_WINDOW);
    let steps = |n: usize| series.grid.duration() * n as u32;
    let mut spans = vec![0, startup / 2, startup];
    spans.dedup();
    let mut bursts = vec![(None, 0)];
    if with_burst {
        bursts.extend(burst::LEVELS.iter().flat_map(|&q| spans.iter().map(move |&s| (Some(q), s))));
    }
    let mut lookaheads = vec![startup, startup + horizon.saturating_sub(startup) / 2, horizon.max(startup)];
    lookaheads.dedup();
    let mut releases = vec![(startup, false), (hpa_window, false), (0, true)];
    releases.dedup();
    // The forecast's level: its median or p90 with headroom from none to as much again,
    // or the newsvendor rule's quantile at 0.75, 0.95 or 0.99 with little headroom.
    let fixed = [0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0];
    let mut levels: Vec<(Quantile, Option<f64>, f64)> = Vec::new();
    for quantile in [Quantile::P50, Quantile::P90] {
        levels.extend(fixed.iter().map(|&h| (quantile, None, h)));
    }
    for penalty in [3.0, 19.0, 99.0] {
        levels.extend([0.0, 0.1, 0.2].iter().map(|&h| (Quantile::P90, Some(penalty), h)));
    }
    let mut out = Vec::new();
    for &(quantile, shortfall_penalty, headroom) in &levels {
        for &(burst_quantile, burst_span) in &bursts {
            for &lookahead in &lookaheads {
                for &(window, forecast_scale_down) in &releases {
                    for floor_utilisation in [1.0, 0.85, 0.7] {
                        out.push(PolicySettings {
                            capacity,
                            min_replicas: MIN_REPLICAS,
                            max_replicas: MAX_REPLICAS,
                            startup: steps(startup),
                            lookahead: steps(lookahead),
                            quantile,
                            headroom,
                            floor_utilisation,
                            scale_down_window: steps(window),
                            max_change: None,
                            burst_quantile,
                            burst_span: steps(burst_span),
                            forecast_scale_down,
                            shortfall_penalty,
                            objective: None,
                        });
                    }
                }
            }
        }
    }
    out
}

/// The smaller grid a model's menu is tuned over (312 settings: every service of a fleet
/// is tuned, so its cost counts): p50 or p90 with headroom 0 to 50%, or the newsvendor
/// rule's quantiles without; lookahead the startup or
/// the whole horizon; scale-down by the startup's or the HPA's window, or by the forecast;
/// the reactive floor at 100% or 85%; no burst term, or the profile's 90th percentile
/// over half the startup after it.
pub fn compact_grid(series: &Series, capacity: f64, horizon: usize, with_burst: bool) -> Vec<PolicySettings> {
    let startup = series.grid.steps_in(STARTUP);
    let half = series.grid.duration() * (startup / 2) as u32;
    grid(series, capacity, horizon, with_burst)
        .into_iter()
        .filter(|s| {
            let st = s.in_steps(series.grid);
            (if s.shortfall_penalty.is_some() {
                s.headroom == 0.0
            } else {
                [0.0, 0.1, 0.2, 0.3, 0.5].contains(&s.headroom)
            }) && (st.lookahead == startup || st.lookahead == horizon.max(startup))
                && s.floor_utilisation != 0.7
                && (s.burst_quantile.is_none() || s.burst_quantile == Some(0.9) && s.burst_span == half)
        })
        .collect()
}

/// Most validation steps a model's menu is tuned on (the last ones): a day at 30 s,
/// a bound on the per-service work whatever the history's length.
pub const MAX_TUNING_STEPS: usize = 2880;

/// The menu a model carries for a service: [`compact_grid`] replayed on the service's
/// forecasts over the last [`MAX_TUNING_STEPS`] steps of its validation part `[from, to)`
/// (as far as `forecasts` cover them), at the part's own capacity (the spec's sizing).
pub fn menu(
    series: &Series,
    forecasts: &StepForecasts,
    profile: Option<&BurstProfile>,
    horizon: usize,
    from: usize,
    to: usize,
) -> Result<Menu, PolicyError> {
    let from = from.max(to.saturating_sub(MAX_TUNING_STEPS)).max(forecasts.first);
    let capacity = p99_over_20(&series.values[from..to]);
    let settings = compact_grid(series, capacity, horizon, profile.is_some());
    let tuned = tune(series, forecasts, profile, settings, capacity, (from, to), None)?;
    let mut menu = tuned.replay.menu();
    menu.margin = tuned.margin;
    Ok(menu)
}

/// Every grid setting and the default HPA replayed on steps `[from, to)`, scored.
#[derive(Debug)]
pub struct Replay {
    /// The capacity per replica they were replayed at.
    pub capacity: f64,
    /// The default HPA's outcome (70% target, 300 s window).
    pub hpa: Outcome,
    /// Each setting and its outcome.
    pub candidates: Vec<(PolicySettings, Outcome)>,
}

impl Replay {
    /// A candidate's capacity-free score: its shares of short and tight steps, and its
    /// cost relative to the HPA's.
    pub fn score(&self, o: &Outcome) -> Score {
        Score {
            under_provisioned: o.under_provisioned,
            tight: o.tight_steps as f64 / o.scored_steps.max(1) as f64,
            cost: o.replica_hours / self.hpa.replica_hours,
        }
    }

    /// The menu of the frontier settings, for a model to carry.
    pub fn menu(&self) -> Menu {
        let scored: Vec<(PolicySettings, Score)> =
            self.candidates.iter().map(|(s, o)| (s.clone(), self.score(o))).collect();
        let startup = scored.first().map_or(STARTUP, |(s, _)| s.startup);
        Menu::of(startup, self.score(&self.hpa), &scored)
    }
}

/// The margins tuning tries, smallest first (see [`tune`]).
pub const MARGINS: [f64; 4] = [0.0, 0.025, 0.05, 0.1];

/// Replays every setting of `settings` and the default HPA on steps `[from, to)` at
/// `capacity`, scored as the evaluation spec scores the test part.
pub fn replay(
    series: &Series,
    forecasts: &StepForecasts,
    profile: Option<&BurstProfile>,
    settings: Vec<PolicySettings>,
    capacity: f64,
    (from, to): (usize, usize),
) -> Result<Replay, PolicyError> {
    let all = View { steps: 0..to - from, margin: 0.0 };
    let mut out = replay_views(series, forecasts, profile, settings, capacity, (from, to), false, &[all])?;
    Ok(out.remove(0))
}

/// Which steps of a replay (relative to its first) are scored, and the margin a
/// candidate's short steps are counted with.
#[derive(Debug, Clone)]
struct View {
    steps: std::ops::Range<usize>,
    margin: f64,
}

/// Replays the policy once per setting on steps `[from, to)` and scores it in each of
/// `views`, one [`Replay`] per view. For tuning (`cap`), demand is capped at what the
/// largest cluster serves and a candidate's step counts as short when demand exceeds
/// `1 - margin` of ready capacity; the HPA is scored without the margin (its share of
/// short steps is what "as safe as the HPA" means). The policy and the HPA decide from
/// the past only, so a view starting at the first step scores what a replay of just its
/// steps would.
#[allow(clippy::too_many_arguments)] // one replay's whole context; a struct would only rename it
fn replay_views(
    series: &Series,
    forecasts: &StepForecasts,
    profile: Option<&BurstProfile>,
    settings: Vec<PolicySettings>,
    capacity: f64,
    (from, to): (usize, usize),
    cap: bool,
    views: &[View],
) -> Result<Vec<Replay>, PolicyError> {
    let startup = series.grid.steps_in(STARTUP);
    let step = series.grid.seconds();
    let most = if cap { f64::from(MAX_REPLICAS) * capacity } else { f64::INFINITY };
    let capped: Vec<Option<f64>> = series.values[from..to].iter().map(|d| d.map(|v| v.min(most))).collect();
    let hpa_window = series.grid.steps_in(HPA_WINDOW);
    let hpa_desired = cluster::hpa(&series.values[from..to], capacity, HPA_TARGET, hpa_window);
    let score = |name: &str, view: &View, desired: &[u32], serves: f64| {
        let r = view.steps.clone();
        cluster::score(name, &capped[r.clone()], &desired[r], serves, startup, step)
    };
    let mut out: Vec<Replay> = views
        .iter()
        .map(|v| Replay {
            capacity,
            hpa: score("hpa", v, &hpa_desired, capacity),
            candidates: Vec::with_capacity(settings.len()),
        })
        .collect();
    for s in settings {
        let desired = predictive(series, forecasts, profile, &s, from, to)?;
        for (r, v) in out.iter_mut().zip(views) {
            r.candidates.push((s.clone(), score("predictive", v, &desired, capacity * (1.0 - v.margin))));
        }
    }
    Ok(out)
}

/// A tuning on a validation part: the margin it settled on and every setting scored at it.
#[derive(Debug)]
pub struct Tuned {
    /// The share of ready capacity held back when counting a candidate's short steps.
    pub margin: f64,
    /// Whether a choice at that margin on the part's first half held on its second; if
    /// no margin's did, the largest is used.
    pub held: bool,
    /// Every setting scored on the whole part at that margin.
    pub replay: Replay,
}

/// Tunes `settings` on steps `[from, to)` for `objective` (default: the default HPA's
/// share of short steps on the same steps), choosing the **margin** on the part itself:
/// the smallest of [`MARGINS`] whose choice on the part's first half meets the objective
/// on its second half. Validation ends weeks before the service runs the setting; what
/// is barely safe there is often short later (WorldCup 98's validation has no short step
/// under hundreds of settings, and the cheapest of them is short on its test part), so
/// the choice is checked on steps it did not see, at no cost to the test part.
///
/// One replay of the whole part gives both the first half's scores and the whole's; the
/// second half is replayed on its own, as a service starting there would run.
#[allow(clippy::too_many_arguments)] // one replay's whole context; a struct would only rename it
pub fn tune(
    series: &Series,
    forecasts: &StepForecasts,
    profile: Option<&BurstProfile>,
    settings: Vec<PolicySettings>,
    capacity: f64,
    (from, to): (usize, usize),
    objective: Option<f64>,
) -> Result<Tuned, PolicyError> {
    let mid = from + (to - from) / 2;
    let views: Vec<View> = [0..mid - from, 0..to - from]
        .into_iter()
        .flat_map(|steps| MARGINS.map(|margin| View { steps: steps.clone(), margin }))
        .collect();
    let mut whole = replay_views(series, forecasts, profile, settings.clone(), capacity, (from, to), true, &views)?;
    let second_view = View { steps: 0..to - mid, margin: 0.0 };
    let second = replay_views(series, forecasts, profile, settings, capacity, (mid, to), true, &[second_view])?;
    let second = &second[0];
    let (mut chosen, mut held) = (MARGINS.len() - 1, false);
    for (k, r) in whole[..MARGINS.len()].iter().enumerate() {
        let Some((i, _)) = choose_by(&r.candidates, objective.unwrap_or(r.hpa.under_provisioned), |(_, o)| r.score(o))
        else {
            break;
        };
        let allowed = objective.unwrap_or(second.hpa.under_provisioned);
        if second.candidates[i].1.under_provisioned <= allowed + 1e-12 {
            (chosen, held) = (k, true);
            break;
        }
    }
    Ok(Tuned { margin: MARGINS[chosen], held, replay: whole.swap_remove(MARGINS.len() + chosen) })
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use prescale_core::StepGrid;

    use super::*;

    /// A daily sine at 30 s steps with a sharp ramp each morning.
    fn series(days: usize) -> Series {
        let grid = StepGrid::from_secs(30).unwrap();
        let per_day = grid.per_day();
        let values = (0..days * per_day)
            .map(|i| {
                let phase = (i % per_day) as f64 / per_day as f64;
                Some(100.0 + 80.0 * (std::f64::consts::TAU * phase).sin())
            })
            .collect();
        Series { name: "s".into(), grid, start: DateTime::UNIX_EPOCH, values, covariates: None }
    }

    /// Perfect forecasts of the series from `first` on (the future as it was).
    fn perfect(s: &Series, first: usize, horizon: usize) -> StepForecasts {
        let origins: Vec<usize> = (first..s.len() - horizon).collect();
        let p50 = Array2::from_shape_fn((origins.len(), horizon), |(r, k)| s.values[origins[r] + k + 1].unwrap());
        let f = Forecasts { origins, p90: p50.clone(), p50 };
        StepForecasts::placed(first, s.len(), &f)
    }

    #[test]
    fn a_menu_from_perfect_forecasts_is_safe_and_cheaper_than_the_hpa() {
        let s = series(3);
        let day = s.grid.per_day();
        let f = perfect(&s, day, 20);
        let menu = menu(&s, &f, None, 20, day, 2 * day).unwrap();
        assert!(!menu.entries.is_empty());
        let safest = &menu.entries[0];
        assert_eq!(safest.score.under_provisioned, 0.0, "perfect forecasts can always be met");
        let choice = menu.choose(0.0, &PolicySettings::default()).unwrap();
        assert!(choice.met);
        assert!(choice.score.cost < 1.0, "as safe as asked, for less than the HPA: {:?}", choice.score);
        // The frontier is sorted safest first, each cheaper than the one before.
        for w in menu.entries.windows(2) {
            assert!(w[0].score.under_provisioned <= w[1].score.under_provisioned);
            assert!(w[1].score.cost < w[0].score.cost);
        }
    }

    #[test]
    fn the_compact_grid_is_a_subset_of_the_full_one() {
        let s = series(1);
        let full = grid(&s, 5.0, 20, true);
        let compact = compact_grid(&s, 5.0, 20, true);
        assert_eq!(compact.len(), 312);
        assert!(compact.iter().all(|c| full.contains(c)));
        assert_eq!(full.len(), 6210);
    }
}
