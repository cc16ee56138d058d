//! The forecast benchmark's files: `forecasts.csv` and `report.json`.

use std::io::Write;
use std::path::Path;

use prescale_models::backtest::{Backtest, SplitReport};
use prescale_models::preprocess::Preprocess;
use prescale_models::scores::ModelScores;
use prescale_models::series::Series;
use prescale_models::train::TrainSummary;

use crate::output::{self, OutputError};
use serde::Serialize;

/// `report.json`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The trace or data set.
    pub trace: String,
    /// Step length, seconds.
    pub step_seconds: f64,
    /// Horizon in steps (10 minutes).
    pub horizon_steps: usize,
    /// Season length in steps.
    pub season_steps: usize,
    /// The split.
    pub split: SplitReport,
    /// In-sample seasonal-naive MAE, the MASE denominator.
    pub mase_scale: f64,
    /// Per model: scores at the 10-minute horizon and over all horizons, and fit time.
    pub models: Vec<ModelReport>,
    /// The best baseline by 10-minute MAE.
    pub best_baseline: String,
    /// Transformer MAE over the best baseline's, at 10 minutes (below 1 is better).
    pub transformer_mae_ratio: f64,
    /// How training went.
    pub training: TrainSummary,
    /// Scaling and PCA of the covariates (collector data), with explained variance.
    pub preprocessing: Option<Preprocess>,
    /// Wall time of the whole backtest, seconds.
    pub total_seconds: f64,
}

/// One model in `report.json`.
#[derive(Debug, Serialize)]
pub struct ModelReport {
    /// Model name.
    pub model: String,
    /// Scores.
    #[serde(flatten)]
    pub scores: ModelScores,
    /// Fitting (and for the transformer, training) time, seconds.
    pub fit_seconds: f64,
}

impl Report {
    /// Summarises a backtest.
    pub fn new(trace: &str, series: &Series, bt: &Backtest, total_seconds: f64) -> Self {
        let models: Vec<ModelReport> = bt
            .models
            .iter()
            .map(|m| ModelReport { model: m.name.to_owned(), scores: m.scores, fit_seconds: m.fit_seconds })
            .collect();
        let transformer = models.iter().find(|m| m.model == "transformer").map(|m| m.scores.horizon.mae);
        let best = models
            .iter()
            .filter(|m| m.model != "transformer")
            .min_by(|a, b| a.scores.horizon.mae.total_cmp(&b.scores.horizon.mae))
            .expect("baselines are always run");
        Self {
            trace: trace.to_owned(),
            step_seconds: series.grid.seconds(),
            horizon_steps: bt.horizon,
            season_steps: bt.period,
            split: SplitReport {
                steps: series.len(),
                valid_start: bt.split.valid_start,
                test_start: bt.split.test_start,
                test_origins: bt.models[0].forecasts.origins.len(),
            },
            mase_scale: bt.mase_scale,
            best_baseline: best.model.clone(),
            transformer_mae_ratio: transformer.unwrap_or(f64::NAN) / best.scores.horizon.mae,
            models,
            training: bt.training.clone(),
            preprocessing: bt.transformer.params.preprocess.clone(),
            total_seconds,
        }
    }

    /// A plain table of the 10-minute scores, for the terminal and the README.
    pub fn table(&self) -> String {
        table(self.models.iter().map(|m| (m.model.as_str(), &m.scores)))
    }
}

/// A Markdown table of models' 10-minute scores (and MAE over all horizons).
pub fn table<'a>(rows: impl IntoIterator<Item = (&'a str, &'a ModelScores)>) -> String {
    let mut out = String::from(
        "| model | MAE | RMSE | MASE | pinball p90 | coverage p90 | MAE all horizons |\n|---|---|---|---|---|---|---|\n",
    );
    for (model, scores) in rows {
        let s = scores.horizon;
        out += &format!(
            "| {model} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
            s.mae, s.rmse, s.mase, s.pinball_p90, s.coverage_p90, scores.all_horizons.mae
        );
    }
    out
}

/// Writes `forecasts.csv`: `model,origin,target,p50,p90` at the 10-minute horizon.
pub fn write_forecasts(path: &Path, series: &Series, bt: &Backtest) -> Result<(), OutputError> {
    output::write_lines(path, |w| {
        writeln!(w, "model,origin,target,p50,p90")?;
        let h = bt.horizon;
        for m in &bt.models {
            for (row, &o) in m.forecasts.origins.iter().enumerate() {
                writeln!(
                    w,
                    "{},{},{},{:.6},{:.6}",
                    m.name,
                    series.time(o).to_rfc3339(),
                    series.time(o + h).to_rfc3339(),
                    m.forecasts.p50[[row, h - 1]],
                    m.forecasts.p90[[row, h - 1]]
                )?;
            }
        }
        Ok(())
    })
}

/// Writes `report.json`.
pub fn write_report(path: &Path, report: &Report) -> Result<(), OutputError> {
    output::write_json(path, report)
}
