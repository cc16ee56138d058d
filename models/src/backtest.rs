//! The forecast benchmark: every model trained on the same chronological split and
//! scored on the same test origins (`../shared/specs/evaluation.md`); and a stored model
//! scored the same way on other data (`evaluate`).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::artifact::Manifest;
use crate::baselines::{HoltWinters, Persistence, PointForecaster, Ridge, SeasonalNaive, with_quantiles};
use crate::forecaster::{ModelError, TransformerModel};
use crate::scores::{Forecasts, ModelScores, score, seasonal_naive_scale};
use crate::series::{Series, Split};
use crate::train::{Observer, TrainConfig, TrainSummary};
use crate::window::Windows;

/// The forecast horizon every model is judged at: ten minutes.
pub const HORIZON: Duration = Duration::from_secs(600);

/// One model's results.
#[derive(Debug)]
pub struct ModelResult {
    /// `transformer`, `persistence`, `seasonal_naive`, `holt_winters` or `ridge`.
    pub name: &'static str,
    /// Test forecasts.
    pub forecasts: Forecasts,
    /// Test scores.
    pub scores: ModelScores,
    /// Fitting time, seconds.
    pub fit_seconds: f64,
}

/// Everything a backtest produced.
#[derive(Debug)]
pub struct Backtest {
    /// The split used.
    pub split: Split,
    /// Horizon in steps.
    pub horizon: usize,
    /// Season length in steps.
    pub period: usize,
    /// The MASE denominator (in-sample seasonal-naive MAE).
    pub mase_scale: f64,
    /// Results, transformer first.
    pub models: Vec<ModelResult>,
    /// How training went.
    pub training: TrainSummary,
    /// The trained transformer.
    pub transformer: TransformerModel,
}

/// Timings and sizes for the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitReport {
    /// Steps in the series.
    pub steps: usize,
    /// First validation step.
    pub valid_start: usize,
    /// First test step.
    pub test_start: usize,
    /// Test origins scored.
    pub test_origins: usize,
}

/// Runs the backtest: trains the transformer and fits the baselines on the training
/// part, and forecasts every usable test origin with each.
pub fn run(series: &Series, config: &TrainConfig, observer: &mut dyn Observer) -> Result<Backtest, ModelError> {
    let split = Split::of(series.len());
    let horizon = series.grid.steps_in(HORIZON);
    let period = config.season_steps.unwrap_or_else(|| series.grid.per_day());

    let started = Instant::now();
    let (transformer, training) = TransformerModel::train(series, split, horizon, config, observer)?;
    let transformer_seconds = started.elapsed().as_secs_f64();

    let (mase_scale, mut models) = score_on_test(series, split, horizon, period, &transformer, Baselines::All)?;
    models[0].fit_seconds += transformer_seconds;
    Ok(Backtest { split, horizon, period, mase_scale, models, training, transformer })
}

/// Which baselines are scored beside the transformer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Baselines {
    /// Persistence and seasonal naive, which need no fitting.
    Simple,
    /// Also Holt-Winters and ridge, fitted on the training part.
    All,
}

/// The transformer's and the baselines' forecasts and scores on every usable test origin,
/// with the MASE scale; the baselines' p90 from their validation residuals.
fn score_on_test(
    series: &Series,
    split: Split,
    horizon: usize,
    period: usize,
    transformer: &TransformerModel,
    baselines: Baselines,
) -> Result<(f64, Vec<ModelResult>), ModelError> {
    let p = &transformer.params;
    let windows = Windows::new(series, p.window, p.level_floor, &p.holidays);
    let test = windows.usable_origins(split.test_start, series.len().saturating_sub(horizon));
    let valid = windows.usable_origins(split.valid_start, split.test_start.saturating_sub(horizon));
    let mase_scale = seasonal_naive_scale(series, split.test_start, period);

    let mut models = Vec::new();
    let started = Instant::now();
    let forecasts = transformer.forecast(series, &test)?;
    models.push(ModelResult {
        name: "transformer",
        scores: score(series, &forecasts, mase_scale),
        forecasts,
        fit_seconds: started.elapsed().as_secs_f64(),
    });

    let fit_baseline = |build: &dyn Fn() -> Box<dyn PointForecaster>| {
        let started = Instant::now();
        let model = build();
        let (forecasts, _) = with_quantiles(model.as_ref(), series, &valid, &test, horizon);
        ModelResult {
            name: model.name(),
            scores: score(series, &forecasts, mase_scale),
            forecasts,
            fit_seconds: started.elapsed().as_secs_f64(),
        }
    };
    models.push(fit_baseline(&|| Box::new(Persistence)));
    models.push(fit_baseline(&|| Box::new(SeasonalNaive { period })));
    if baselines == Baselines::All {
        models.push(fit_baseline(&|| Box::new(HoltWinters::fit(series, period, split.valid_start, &valid, horizon))));
        models.push(fit_baseline(&|| Box::new(Ridge::fit(series, period, split.valid_start, &valid, horizon))));
    }
    Ok((mase_scale, models))
}

/// Why a stored model could not be scored on some data.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// The data's step is not the model's.
    #[error("{data} has {data_step} s steps; model {version} was trained on {model_step} s steps")]
    Step {
        /// The data's name.
        data: String,
        /// Its step, seconds.
        data_step: f64,
        /// The model's version.
        version: String,
        /// The model's step, seconds.
        model_step: f64,
    },
    /// No usable validation or test origin.
    #[error("{data}: too short to evaluate ({steps} steps)")]
    TooShort {
        /// The data's name.
        data: String,
        /// Its steps.
        steps: usize,
    },
    /// Forecasting failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// A stored model scored on the test part (last 20%) of a series, beside persistence and
/// seasonal naive, exactly as the backtest scores them.
#[derive(Debug)]
pub struct Evaluation {
    /// Test origins scored.
    pub test_origins: usize,
    /// Results, transformer first.
    pub models: Vec<ModelResult>,
}

/// Scores a stored model on the test part of `series`.
pub fn evaluate(model: &TransformerModel, manifest: &Manifest, series: &Series) -> Result<Evaluation, EvaluateError> {
    if series.grid.seconds() != manifest.training.step_seconds {
        return Err(EvaluateError::Step {
            data: series.name.clone(),
            data_step: series.grid.seconds(),
            version: manifest.version.clone(),
            model_step: manifest.training.step_seconds,
        });
    }
    let p = &model.params;
    let (split, horizon) = (Split::of(series.len()), p.window.horizon);
    let windows = Windows::new(series, p.window, p.level_floor, &p.holidays);
    let test = windows.usable_origins(split.test_start, series.len().saturating_sub(horizon));
    let valid = windows.usable_origins(split.valid_start, split.test_start.saturating_sub(horizon));
    if test.is_empty() || valid.is_empty() {
        return Err(EvaluateError::TooShort { data: series.name.clone(), steps: series.len() });
    }
    let (_, models) = score_on_test(series, split, horizon, p.window.day, model, Baselines::Simple)?;
    Ok(Evaluation { test_origins: test.len(), models })
}
