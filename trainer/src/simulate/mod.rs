//! `prescale-trainer simulate`: the scaling benchmark on a trace, beside the forecast
//! benchmark (`backtest`).
//!
//! The transformer is trained on the trace's training part (as `train` does), or loaded
//! as `train` stored it, forecasts every step from the start of validation on, and three
//! policies are replayed through the cluster model of [`cluster`]: `hpa`, `predictive`
//! (the product's [`Policy`] on those forecasts, its input assembled as the predictor
//! assembles it) and `oracle`. [`files`] writes what the spec asks for. The predictive policy's quantile,
//! headroom, lookahead, scale-down window, reactive floor and burst term (none, or a
//! quantile and span of the burst profile learned on the training part) are chosen on the
//! validation part (inside the training part): among the settings costing no more than
//! the HPA there, the fewest under-provisioned steps, then the fewest tight ones (less
//! than 10% spare capacity), then the lowest cost. The test part (last 20%) is then scored once.
//!
//! Without a configured capacity the spec sizes the cluster to the part it scores (the
//! 99th percentile of test demand over 20, a service peaking near 20 replicas); the tuning
//! sizes the validation cluster the same way from validation demand. Traffic moves between
//! the two parts (WorldCup's validation holds the final, its test the quiet weeks after):
//! at the test part's capacity the validation cluster sat at its 50-replica bound.

pub mod cluster;
pub mod files;

use ndarray::Array2;
use prescale_models::artifact::Manifest;
use prescale_models::backtest::HORIZON;
use prescale_models::burst::{self, BurstProfile};
use prescale_models::forecaster::{ModelError, TransformerModel};
use prescale_models::series::{Series, Split};
use prescale_models::train::{Observer, TrainConfig};
use prescale_models::window::Windows;
use prescale_policy::{Policy, PolicyError, PolicySettings, Present, Quantile};
use serde::Serialize;

use self::cluster::{MAX_REPLICAS, MIN_REPLICAS, Outcome};

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The capacity per replica is not a positive number.
    #[error("capacity {0} is not a positive number of requests/s")]
    Capacity(f64),
    /// A stored model that is not fit to be benchmarked on this trace.
    #[error("model {version} {reason}")]
    WrongModel {
        /// Its version.
        version: String,
        /// What is wrong: another trace, or steps of the test part seen in training.
        reason: String,
    },
    /// Training or forecasting failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The policy refused a setting or an input.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Pod startup in the benchmark's cluster model.
pub const STARTUP: std::time::Duration = std::time::Duration::from_secs(120);
/// The HPA's default scale-down stabilisation window.
pub const HPA_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

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
        let p = &model.params;
        let h = p.window.horizon;
        let windows = Windows::new(series, p.window, p.level_floor, &p.holidays);
        let origins = windows.usable_origins(first, series.len());
        let f = model.forecast(series, &origins)?;
        let n = series.len() - first;
        let (mut p50, mut p90, mut present) = (Array2::zeros((n, h)), Array2::zeros((n, h)), vec![false; n]);
        for (row, &o) in origins.iter().enumerate() {
            p50.row_mut(o - first).assign(&f.p50.row(row));
            p90.row_mut(o - first).assign(&f.p90.row(row));
            present[o - first] = true;
        }
        Ok(Self { first, p50, p90, present })
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

/// The tuning chosen on validation.
#[derive(Debug, Clone, Serialize)]
pub struct Tuning {
    /// The chosen settings (at the test part's capacity).
    pub policy: PolicySettings,
    /// The capacity the validation part was replayed at.
    pub validation_capacity: f64,
    /// The validation outcome of the chosen settings.
    pub validation: Outcome,
    /// The HPA's validation outcome.
    pub validation_hpa: Outcome,
}

/// Everything `simulate` produces.
#[derive(Debug)]
pub struct Simulation {
    /// Requests/s one replica serves.
    pub capacity: f64,
    /// First test step.
    pub test_start: usize,
    /// Desired replicas per test step, per policy (`hpa`, `predictive`, `oracle`).
    pub decisions: Vec<(&'static str, Vec<u32>)>,
    /// Outcomes per policy on the test part.
    pub outcomes: Vec<Outcome>,
    /// How the predictive policy was tuned.
    pub tuning: Tuning,
    /// Training time, seconds.
    pub training_seconds: f64,
}

/// The default capacity of the spec: the 99th percentile of test demand over 20.
pub fn default_capacity(series: &Series, test_start: usize) -> f64 {
    p99_over_20(&series.values[test_start..])
}

/// The 99th percentile of the present values over 20.
fn p99_over_20(values: &[Option<f64>]) -> f64 {
    let mut v: Vec<f64> = values.iter().flatten().copied().collect();
    v.sort_by(f64::total_cmp);
    let p99 = v.get(((v.len().max(1) - 1) as f64 * 0.99).round() as usize).copied().unwrap_or(1.0);
    (p99 / 20.0).max(1e-9)
}

/// Where the predictive policy's model comes from.
#[allow(missing_debug_implementations)] // holds a `dyn Observer`
pub enum ModelSource<'a> {
    /// Train one on the training part now.
    Train(&'a TrainConfig, &'a mut dyn Observer),
    /// One the trainer already trained on this trace's training part.
    Trained(Box<TransformerModel>, Box<Manifest>),
}

/// Refuses a stored model that saw any of the test part, or another trace.
pub fn check_trained_on_training_part(manifest: &Manifest, series: &Series, split: Split) -> Result<(), SimulateError> {
    let t = &manifest.training;
    let wrong = |reason| Err(SimulateError::WrongModel { version: manifest.version.clone(), reason });
    if t.source != series.name {
        return wrong(format!("was trained on {:?}, not on {:?}", t.source, series.name));
    }
    if t.step_seconds != series.grid.seconds() || t.from != series.start || t.to >= series.time(split.test_start) {
        return wrong(format!(
            "was trained on {} to {} at {} s steps; the test part starts at {}: it must be trained on the training \
             part only",
            t.from.to_rfc3339(),
            t.to.to_rfc3339(),
            t.step_seconds,
            series.time(split.test_start).to_rfc3339()
        ));
    }
    Ok(())
}

/// The tuning rule: spend the HPA's cost on safety. Among the settings that cost no more
/// than `hpa_cost`, the fewest under-provisioned steps, then the fewest tight steps, then
/// the cheapest; if none is that cheap, the same order over all of them.
///
/// Tight steps break the ties because a quiet validation part leaves many settings with
/// no shortfall at all (WorldCup's does), and the cheapest of those is the one with the
/// least margin for the test part.
///
/// # Panics
/// When `candidates` is empty.
pub fn choose(candidates: &[(PolicySettings, Outcome)], hpa_cost: f64) -> &(PolicySettings, Outcome) {
    let safest = |a: &&(PolicySettings, Outcome), b: &&(PolicySettings, Outcome)| {
        (a.1.under_steps, a.1.tight_steps)
            .cmp(&(b.1.under_steps, b.1.tight_steps))
            .then(a.1.replica_hours.total_cmp(&b.1.replica_hours))
    };
    candidates
        .iter()
        .filter(|(_, o)| o.replica_hours <= hpa_cost)
        .min_by(safest)
        .or_else(|| candidates.iter().min_by(safest))
        .expect("candidates are never empty")
}

/// Runs the whole benchmark on a series.
pub fn run(series: &Series, model: ModelSource<'_>, capacity: Option<f64>) -> Result<Simulation, SimulateError> {
    let split = Split::of(series.len());
    let horizon = series.grid.steps_in(HORIZON);
    let startup = series.grid.steps_in(STARTUP);
    let step = series.grid.seconds();
    let (vs, ve) = (split.valid_start, split.test_start);
    // A configured capacity is the service's own and holds for both parts.
    let valid_capacity = capacity.unwrap_or_else(|| p99_over_20(&series.values[vs..ve]));
    let capacity = capacity.unwrap_or_else(|| default_capacity(series, split.test_start));
    if !(capacity.is_finite() && capacity > 0.0) {
        return Err(SimulateError::Capacity(capacity));
    }
    let (model, training_seconds) = match model {
        ModelSource::Train(config, observer) => {
            let started = std::time::Instant::now();
            let (model, _) = TransformerModel::train(series, split, horizon, config, observer)?;
            (model, started.elapsed().as_secs_f64())
        }
        ModelSource::Trained(model, manifest) => {
            check_trained_on_training_part(&manifest, series, split)?;
            (*model, manifest.train_summary.seconds)
        }
    };
    let forecasts = StepForecasts::of(&model, series, split.valid_start)?;
    // Learned from the same steps as the trainer learns a model's profile (those before
    // validation), so a stored model without one (trained before profiles existed) is
    // benchmarked the same way, and the tuning on validation is fair.
    let profile = match BurstProfile::learn(series, split.valid_start, horizon) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "no burst profile; the burst term is not tuned");
            None
        }
    };
    // No burst term, or one at each of the profile's quantiles spanning 0, half and all
    // of the startup after it.
    let mut spans = vec![0, startup / 2, startup];
    spans.dedup();
    // The settings are durations; the candidates are whole steps of the trace's grid.
    let steps = |n: usize| series.grid.duration() * n as u32;
    let mut bursts = vec![(None, 0)];
    if profile.is_some() {
        bursts.extend(burst::LEVELS.iter().flat_map(|&q| spans.iter().map(move |&s| (Some(q), s))));
    }
    let demand = &series.values;
    let hpa_window = series.grid.steps_in(HPA_WINDOW);
    // Scores decisions made from step `from` on against a demand series at a capacity.
    let outcome = |name: &str, demand: &[Option<f64>], from: usize, desired: &[u32], capacity: f64| {
        cluster::score(name, &demand[from..from + desired.len()], desired, capacity, startup, step)
    };

    // Tune on validation only. There, demand above what the largest cluster serves is
    // capped at it: such steps are short under any policy and would otherwise tie every
    // candidate; capped, they still ask whether the cluster was at its largest in time.
    let most = f64::from(MAX_REPLICAS) * valid_capacity;
    let capped: Vec<Option<f64>> = demand.iter().map(|d| d.map(|v| v.min(most))).collect();
    let valid_hpa =
        outcome("hpa", &capped, vs, &cluster::hpa(&demand[vs..ve], valid_capacity, hpa_window), valid_capacity);
    let mut candidates = Vec::new();
    let mut lookaheads = vec![startup, startup + (horizon - startup) / 2, horizon];
    lookaheads.dedup();
    let mut windows = vec![startup, hpa_window];
    windows.dedup();
    for (quantile, &(burst_quantile, burst_span_steps)) in
        [Quantile::P50, Quantile::P90].into_iter().flat_map(|q| bursts.iter().map(move |b| (q, b)))
    {
        for headroom in [0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0] {
            for &lookahead_steps in &lookaheads {
                for (&scale_down_window, floor_utilisation) in
                    windows.iter().flat_map(|w| [(w, 1.0), (w, 0.85), (w, 0.7)])
                {
                    let config = PolicySettings {
                        capacity: valid_capacity,
                        min_replicas: MIN_REPLICAS,
                        max_replicas: MAX_REPLICAS,
                        startup: steps(startup),
                        lookahead: steps(lookahead_steps),
                        quantile,
                        headroom,
                        floor_utilisation,
                        scale_down_window: steps(scale_down_window),
                        max_change: None,
                        burst_quantile,
                        burst_span: steps(burst_span_steps),
                    };
                    let desired = predictive(series, &forecasts, profile.as_ref(), &config, vs, ve)?;
                    let o = outcome("predictive", &capped, vs, &desired, valid_capacity);
                    candidates.push((config, o));
                }
            }
        }
    }
    let chosen = choose(&candidates, valid_hpa.replica_hours).clone();
    let tuning = Tuning {
        policy: PolicySettings { capacity, ..chosen.0 },
        validation_capacity: valid_capacity,
        validation: chosen.1,
        validation_hpa: valid_hpa,
    };

    let test = &demand[split.test_start..];
    let decisions = vec![
        ("hpa", cluster::hpa(test, capacity, hpa_window)),
        (
            "predictive",
            predictive(series, &forecasts, profile.as_ref(), &tuning.policy, split.test_start, series.len())?,
        ),
        ("oracle", cluster::oracle(test, capacity, startup)),
    ];
    let mut outcomes: Vec<Outcome> =
        decisions.iter().map(|(name, d)| outcome(name, demand, split.test_start, d, capacity)).collect();
    cluster::compare(&mut outcomes);
    Ok(Simulation { capacity, test_start: split.test_start, decisions, outcomes, tuning, training_seconds })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn candidate(
        headroom: f64,
        under_steps: usize,
        tight_steps: usize,
        replica_hours: f64,
    ) -> (PolicySettings, Outcome) {
        let config = PolicySettings {
            capacity: 10.0,
            min_replicas: MIN_REPLICAS,
            max_replicas: MAX_REPLICAS,
            startup: Duration::from_secs(60),
            lookahead: Duration::from_secs(300),
            quantile: Quantile::P90,
            headroom,
            floor_utilisation: 1.0,
            scale_down_window: Duration::from_secs(60),
            max_change: None,
            burst_quantile: None,
            burst_span: Duration::ZERO,
        };
        let outcome = Outcome {
            policy: "predictive".into(),
            under_provisioned: 0.0,
            under_steps,
            tight_steps,
            replica_hours,
            relative_to_oracle: f64::NAN,
            changes: 0,
        };
        (config, outcome)
    }

    fn chosen_headroom(candidates: &[(PolicySettings, Outcome)], hpa_cost: f64) -> f64 {
        choose(candidates, hpa_cost).0.headroom
    }

    #[test]
    fn tuning_takes_the_fewest_shortfalls_then_the_most_margin_then_the_cheapest_within_the_hpas_cost() {
        let candidates = [
            candidate(0.0, 0, 5, 10.0), // cheapest without shortfalls, but tight
            candidate(0.1, 0, 1, 12.0),
            candidate(0.2, 0, 1, 11.0), // as tight as the one above, cheaper
            candidate(0.3, 0, 0, 30.0), // the most margin, dearer than the HPA
            candidate(0.4, 3, 0, 5.0),  // short
        ];
        assert_eq!(chosen_headroom(&candidates, 20.0), 0.2);
        // Only the short one within the HPA's cost.
        assert_eq!(chosen_headroom(&candidates, 6.0), 0.4);
        // None within it: the same order at any cost.
        assert_eq!(chosen_headroom(&candidates, 1.0), 0.3);
    }
}
