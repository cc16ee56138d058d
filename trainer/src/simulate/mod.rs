//! `prescale-trainer simulate`: the scaling benchmark on a trace, beside the forecast
//! benchmark (`backtest`).
//!
//! The transformer is trained on the trace's training part (as `train` does), or loaded
//! as `train` stored it, forecasts every step from the start of validation on, and three
//! policies are replayed through the evaluation spec's cluster model
//! ([`prescale_policy::cluster`]): `hpa`, `predictive` (the product's policy on those
//! forecasts, its input assembled as the predictor assembles it) and `oracle`. [`files`]
//! writes what the spec asks for.
//!
//! The predictive policy's setting is chosen on the validation part (inside the training
//! part) for an **objective**, the largest share of under-provisioned steps accepted: the
//! cheapest setting of [`tuning::grid`] meeting it there, the safest when none does (and
//! said). By default the objective is the default HPA's own share on validation: as safe
//! as the HPA, for as little as possible. The test part (last 20%) is then scored once.
//!
//! Beside the spec's three policies, the **frontiers**: the HPA with its utilisation
//! target swept from 30% to 95% and three scale-down windows, and every predictive
//! setting of the grid, all scored on the test part; the headline is the chosen
//! setting's replica-hours over the HPA frontier's at the same number of
//! under-provisioned steps. And the **mechanics**: the HPA's 10% tolerance, KEDA's
//! polling and the HPA's rate limits and windows ([`prescale_policy::mechanics`])
//! applied to the decisions, to see how much of the gain reaches a cluster.
//!
//! Without a configured capacity the spec sizes the cluster to the part it scores (the
//! 99th percentile of test demand over 20, a service peaking near 20 replicas); the tuning
//! sizes the validation cluster the same way from validation demand. Traffic moves between
//! the two parts (WorldCup's validation holds the final, its test the quiet weeks after):
//! at the test part's capacity the validation cluster sat at its 50-replica bound.

pub mod files;

use prescale_models::artifact::Manifest;
use prescale_models::backtest::HORIZON;
use prescale_models::burst::BurstProfile;
use prescale_models::forecaster::{ModelError, TransformerModel};
use prescale_models::series::{Series, Split};
use prescale_models::train::{Observer, TrainConfig};
use prescale_models::tuning::{self, HPA_WINDOW, STARTUP, StepForecasts};
use prescale_policy::cluster::{self, HPA_TARGET, Outcome};
use prescale_policy::frontier::{self, Point, Position};
use prescale_policy::mechanics::{self, Mechanics};
use prescale_policy::objective::choose_by;
use prescale_policy::{PolicyError, PolicySettings};
use serde::Serialize;

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The capacity per replica is not a positive number.
    #[error("capacity {0} is not a positive number of requests/s")]
    Capacity(f64),
    /// The objective is not a share.
    #[error("objective {0} is not a share of under-provisioned steps in [0, 1)")]
    Objective(f64),
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

/// The tuning chosen on validation.
#[derive(Debug, Clone, Serialize)]
pub struct Tuning {
    /// The objective: the largest share of under-provisioned steps accepted.
    pub objective: f64,
    /// Whether the objective was the default HPA's share on validation.
    pub objective_is_hpas: bool,
    /// Whether the chosen setting meets it on validation (if not, it is the safest).
    pub met: bool,
    /// The share of ready capacity held back when counting short steps on validation,
    /// chosen there (see `tuning::tune`).
    pub margin: f64,
    /// Whether that margin's choice on validation's first half held on its second.
    pub margin_held: bool,
    /// The chosen settings (at the test part's capacity).
    pub policy: PolicySettings,
    /// The capacity the validation part was replayed at.
    pub validation_capacity: f64,
    /// The validation outcome of the chosen settings.
    pub validation: Outcome,
    /// The HPA's validation outcome.
    pub validation_hpa: Outcome,
    /// Settings tried.
    pub candidates: usize,
}

/// The chosen setting against the HPA's frontier on the test part.
#[derive(Debug, Clone, Serialize)]
pub struct Headline {
    /// The predictive policy's under-provisioned steps.
    pub under_provisioned_steps: usize,
    /// Its replica-hours.
    pub replica_hours: f64,
    /// The HPA frontier's replica-hours at as many under-provisioned steps, interpolated.
    pub hpa_frontier_replica_hours: f64,
    /// The headline: `replica_hours / hpa_frontier_replica_hours`.
    pub ratio_to_hpa_frontier: f64,
    /// Where its steps fall on the HPA frontier: `within`, `safer_than_all` (the
    /// frontier's safest setting is the comparison) or `less_safe_than_all`.
    pub position: &'static str,
    /// The spec's figure: over the cheapest HPA setting with at most as many steps (the
    /// safest when none is that safe).
    pub ratio_to_cheapest_as_safe_hpa: f64,
    /// That HPA setting.
    pub cheapest_as_safe_hpa: String,
    /// Replica-hours over the oracle's.
    pub ratio_to_oracle: f64,
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
    /// Every HPA and predictive setting (and the oracle) scored on the test part.
    pub points: Vec<Point>,
    /// The chosen setting against the HPA frontier.
    pub headline: Headline,
    /// The decisions through KEDA's and the HPA's mechanics, scored on the test part.
    pub mechanics: Vec<Outcome>,
    /// Each of those against the HPA frontier (of the spec's model, without them).
    pub mechanics_headlines: Vec<Headline>,
    /// Training time, seconds.
    pub training_seconds: f64,
}

/// The default capacity of the spec: the 99th percentile of test demand over 20.
pub fn default_capacity(series: &Series, test_start: usize) -> f64 {
    tuning::p99_over_20(&series.values[test_start..])
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

/// The HPA's utilisation targets of the frontier: 30% to 95% in steps of 2.5%.
pub fn hpa_targets() -> impl Iterator<Item = f64> {
    (0..=26).map(|i| 0.30 + 0.025 * f64::from(i))
}

/// The HPA frontier's scale-down windows: none, the pod startup, the default 300 s.
pub const HPA_WINDOWS: [std::time::Duration; 3] = [std::time::Duration::ZERO, STARTUP, HPA_WINDOW];

/// Scores every HPA setting of the frontier on `demand` (the test part).
pub fn hpa_points(series: &Series, demand: &[Option<f64>], capacity: f64) -> Vec<Point> {
    let (startup, step) = (series.grid.steps_in(STARTUP), series.grid.seconds());
    let mut out = Vec::new();
    for window in HPA_WINDOWS {
        for target in hpa_targets() {
            let desired = cluster::hpa(demand, capacity, target, series.grid.steps_in(window));
            let o = cluster::score("hpa", demand, &desired, capacity, startup, step);
            out.push(Point {
                policy: "hpa".into(),
                setting: format!("target={target:.3} window={}s", window.as_secs()),
                under_provisioned_steps: o.under_steps,
                replica_hours: o.replica_hours,
            });
        }
    }
    out
}

/// Runs the whole benchmark on a series; `objective` is the largest share of
/// under-provisioned steps accepted on validation (default: the default HPA's there).
pub fn run(
    series: &Series,
    model: ModelSource<'_>,
    capacity: Option<f64>,
    objective: Option<f64>,
) -> Result<Simulation, SimulateError> {
    if let Some(o) = objective
        && !(0.0..1.0).contains(&o)
    {
        return Err(SimulateError::Objective(o));
    }
    let split = Split::of(series.len());
    let horizon = series.grid.steps_in(HORIZON);
    let startup = series.grid.steps_in(STARTUP);
    let step = series.grid.seconds();
    let (vs, ve) = (split.valid_start, split.test_start);
    // A configured capacity is the service's own and holds for both parts.
    let valid_capacity = capacity.unwrap_or_else(|| tuning::p99_over_20(&series.values[vs..ve]));
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

    // Tune on validation only.
    let settings = tuning::grid(series, valid_capacity, horizon, profile.is_some());
    let tuned = tuning::tune(series, &forecasts, profile.as_ref(), settings, valid_capacity, (vs, ve), objective)?;
    let (margin, margin_held, valid) = (tuned.margin, tuned.held, tuned.replay);
    if !margin_held {
        tracing::warn!(margin, "no margin's choice on validation's first half held on its second; the largest is used");
    }
    let objective_is_hpas = objective.is_none();
    let objective = objective.unwrap_or(valid.hpa.under_provisioned);
    let (chosen, met) =
        choose_by(&valid.candidates, objective, |(_, o)| valid.score(o)).expect("the grid is never empty");
    let (chosen_settings, chosen_outcome) = valid.candidates[chosen].clone();
    if !met {
        tracing::warn!(
            objective,
            safest = chosen_outcome.under_provisioned,
            "no setting meets the objective on validation: the safest is used"
        );
    }
    let tuning = Tuning {
        objective,
        objective_is_hpas,
        met,
        margin,
        margin_held,
        policy: PolicySettings { capacity, ..chosen_settings },
        validation_capacity: valid_capacity,
        validation: chosen_outcome,
        validation_hpa: valid.hpa.clone(),
        candidates: valid.candidates.len(),
    };

    let demand = &series.values;
    let test = &demand[split.test_start..];
    let hpa_window = series.grid.steps_in(HPA_WINDOW);
    let decisions = vec![
        ("hpa", cluster::hpa(test, capacity, HPA_TARGET, hpa_window)),
        (
            "predictive",
            tuning::predictive(series, &forecasts, profile.as_ref(), &tuning.policy, split.test_start, series.len())?,
        ),
        ("oracle", cluster::oracle(test, capacity, startup)),
    ];
    let score = |name: &str, desired: &[u32]| cluster::score(name, test, desired, capacity, startup, step);
    let mut outcomes: Vec<Outcome> = decisions.iter().map(|(name, d)| score(name, d)).collect();
    cluster::compare(&mut outcomes);

    // The frontiers, on the test part.
    let mut points = hpa_points(series, test, capacity);
    let test_settings = tuning::grid(series, capacity, horizon, profile.is_some());
    let on_test = tuning::replay(
        series,
        &forecasts,
        profile.as_ref(),
        test_settings,
        capacity,
        (split.test_start, series.len()),
    )?;
    points.extend(on_test.candidates.iter().map(|(s, o)| Point {
        policy: "predictive".into(),
        setting: s.describe(series.grid),
        under_provisioned_steps: o.under_steps,
        replica_hours: o.replica_hours,
    }));
    let oracle = &outcomes[2];
    points.push(Point {
        policy: "oracle".into(),
        setting: "perfect foresight".into(),
        under_provisioned_steps: oracle.under_steps,
        replica_hours: oracle.replica_hours,
    });
    let chosen = headline(&points, &outcomes[1], oracle.replica_hours);

    let mut mechanics = through_mechanics(series, test, capacity, &decisions[1].1);
    for o in &mut mechanics {
        o.relative_to_oracle = o.replica_hours / oracle.replica_hours;
    }
    let mechanics_headlines = mechanics.iter().map(|o| headline(&points, o, oracle.replica_hours)).collect();
    Ok(Simulation {
        capacity,
        test_start: split.test_start,
        decisions,
        outcomes,
        tuning,
        points,
        headline: chosen,
        mechanics,
        mechanics_headlines,
        training_seconds,
    })
}

/// The chosen setting's outcome against the HPA's points.
pub fn headline(points: &[Point], predictive: &Outcome, oracle_replica_hours: f64) -> Headline {
    let hpa: Vec<Point> = points.iter().filter(|p| p.policy == "hpa").cloned().collect();
    let front = frontier::pareto(&hpa);
    let (cost, position) = frontier::cost_at(&front, predictive.under_steps).unwrap_or((f64::NAN, Position::Within));
    let spec = frontier::cheapest_at_most(&hpa, predictive.under_steps);
    Headline {
        under_provisioned_steps: predictive.under_steps,
        replica_hours: predictive.replica_hours,
        hpa_frontier_replica_hours: cost,
        ratio_to_hpa_frontier: predictive.replica_hours / cost,
        position: match position {
            Position::Within => "within",
            Position::SaferThanAll => "safer_than_all",
            Position::LessSafeThanAll => "less_safe_than_all",
        },
        ratio_to_cheapest_as_safe_hpa: spec.map_or(f64::NAN, |p| predictive.replica_hours / p.replica_hours),
        cheapest_as_safe_hpa: spec.map_or_else(String::new, |p| p.setting.clone()),
        ratio_to_oracle: predictive.replica_hours / oracle_replica_hours,
    }
}

/// The default HPA and the predictive decisions through KEDA's and the HPA's mechanics:
/// `hpa+tolerance` (the HPA on utilisation with its 10% tolerance and defaults),
/// `predictive+keda_defaults` (through KEDA with the HPA's defaults) and
/// `predictive+shipped` (through the `behavior` `keda/` ships, with the predictor's
/// tolerance-aware metric).
pub fn through_mechanics(series: &Series, test: &[Option<f64>], capacity: f64, predictive: &[u32]) -> Vec<Outcome> {
    let (startup, step) = (series.grid.steps_in(STARTUP), series.grid.seconds());
    let score = |name: &str, desired: &[u32]| cluster::score(name, test, desired, capacity, startup, step);
    let grid = series.grid.duration();
    let utilisation: Vec<Option<f64>> = test.iter().map(|d| d.map(|d| d / (HPA_TARGET * capacity))).collect();
    let asked: Vec<Option<f64>> = predictive.iter().map(|&n| Some(f64::from(n))).collect();
    vec![
        score("hpa+tolerance", &mechanics::apply(&utilisation, grid, &Mechanics::DEFAULTS)),
        score("predictive+keda_defaults", &mechanics::apply(&asked, grid, &Mechanics::DEFAULTS)),
        score("predictive+shipped", &mechanics::apply(&asked, grid, &Mechanics::SHIPPED)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(policy: &str, under: usize, cost: f64) -> Point {
        Point { policy: policy.into(), setting: String::new(), under_provisioned_steps: under, replica_hours: cost }
    }

    fn outcome(under_steps: usize, replica_hours: f64) -> Outcome {
        Outcome {
            policy: "predictive".into(),
            under_provisioned: 0.0,
            under_steps,
            scored_steps: 100,
            tight_steps: 0,
            replica_hours,
            relative_to_oracle: f64::NAN,
            changes: 0,
        }
    }

    #[test]
    fn the_headline_compares_with_the_hpa_frontier_at_the_same_steps() {
        let points =
            [point("hpa", 2, 200.0), point("hpa", 10, 100.0), point("hpa", 12, 150.0), point("predictive", 0, 1.0)];
        let h = headline(&points, &outcome(6, 120.0), 60.0);
        assert_eq!(h.hpa_frontier_replica_hours, 150.0, "half-way from (2, 200) to (10, 100)");
        assert!((h.ratio_to_hpa_frontier - 0.8).abs() < 1e-12);
        assert_eq!(h.position, "within");
        assert!((h.ratio_to_cheapest_as_safe_hpa - 0.6).abs() < 1e-12, "the spec's: the (2, 200) setting");
        assert_eq!(h.ratio_to_oracle, 2.0);
        let safest = headline(&points, &outcome(1, 120.0), 60.0);
        assert_eq!((safest.hpa_frontier_replica_hours, safest.position), (200.0, "safer_than_all"));
    }

    #[test]
    fn the_hpa_sweep_covers_30_to_95_percent() {
        let t: Vec<f64> = hpa_targets().collect();
        assert_eq!(t.len(), 27);
        assert!((t[0] - 0.30).abs() < 1e-12 && (t[26] - 0.95).abs() < 1e-12);
        assert!(t.iter().any(|x| (x - 0.7).abs() < 1e-12), "the default's target is on it");
    }
}
