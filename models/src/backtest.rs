//! The forecast benchmark: every model trained on the same chronological split and
//! scored on the same test origins (`../shared/specs/evaluation.md`).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::baselines::{HoltWinters, Persistence, PointForecaster, Ridge, SeasonalNaive, with_quantiles};
use crate::forecaster::{ModelError, Observer, TrainConfig, TrainSummary, TransformerModel};
use crate::metrics::{Forecasts, ModelScores, score, seasonal_naive_scale};
use crate::series::{Series, Split};
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

    let p = &transformer.params;
    let windows = Windows::new(series, p.window, p.level_floor, &p.holidays);
    let test = windows.usable_origins(split.test_start, series.len() - horizon);
    let valid = windows.usable_origins(split.valid_start, split.test_start - horizon);
    let mase_scale = seasonal_naive_scale(series, split.test_start, period);

    let mut models = Vec::new();
    let started = Instant::now();
    let forecasts = transformer.forecast(series, &test)?;
    models.push(ModelResult {
        name: "transformer",
        scores: score(series, &forecasts, mase_scale),
        forecasts,
        fit_seconds: transformer_seconds + started.elapsed().as_secs_f64(),
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
    models.push(fit_baseline(&|| Box::new(HoltWinters::fit(series, period, split.valid_start, &valid, horizon))));
    models.push(fit_baseline(&|| Box::new(Ridge::fit(series, period, split.valid_start, &valid, horizon))));

    Ok(Backtest { split, horizon, period, mase_scale, models, training, transformer })
}
