//! The trained transformer and forecasting with it: the model's constants, its calibrated
//! p50/p90 forecasts, and the errors both this and [`crate::train`] report.

use chrono::NaiveDate;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use tch::nn;
use tch::{Device, Kind};

use crate::base::Base;
use crate::preprocess::{Covariates, Preprocess, PreprocessError};
use crate::scores::Forecasts;
use crate::series::Series;
use crate::transformer::{Inputs, Net, NetConfig};
use crate::window::{Batch, WindowConfig, Windows};

/// Why a model could not be trained or used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Too little history to train on; callers fall back to a baseline.
    #[error(
        "too little history to train: {usable} usable windows in the fitting part, at least {needed} needed ({reason})"
    )]
    TooShort {
        /// Usable windows found.
        usable: usize,
        /// Windows needed.
        needed: usize,
        /// What limits them.
        reason: String,
    },
    /// libtorch failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The covariates could not be preprocessed.
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    /// The training settings are out of bounds.
    #[error(transparent)]
    Config(#[from] crate::train::InvalidTrainConfig),
}

/// The fitted constants a model needs besides its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelParams {
    /// Network sizes.
    pub net: NetConfig,
    /// Window shape.
    pub window: WindowConfig,
    /// Lowest level a window is normalised by, requests/s.
    pub level_floor: f64,
    /// Holiday dates of the calendar features.
    pub holidays: Vec<NaiveDate>,
    /// Per-horizon shift of p90 (in units of [`Self::p90_unit`]) calibrated on validation
    /// so that 90% of validation actuals fall at or below it.
    pub p90_shift: Vec<f64>,
    /// What the p90 shift is measured in for each window.
    #[serde(default)]
    pub p90_unit: P90Unit,
    /// Scaling and PCA of the covariates, fitted on training rows (collector data).
    #[serde(default)]
    pub preprocess: Option<Preprocess>,
    /// The base forecast the network refines.
    #[serde(default)]
    pub base: Option<Base>,
}

/// Limits a stored model's parameters must keep to: a manifest is read from a store, and a
/// well-checksummed one may still have been written by a bug or by hand. Generous for any
/// model this trainer makes, and small enough that building it cannot exhaust memory.
pub mod limits {
    /// Most context steps (a week at 30 s steps is 20,160).
    pub const CONTEXT: usize = 50_000;
    /// Most horizon steps.
    pub const HORIZON: usize = 2_000;
    /// Most steps per day (1 s steps).
    pub const DAY: usize = 86_400;
    /// Most features per token.
    pub const FEATURES: usize = 1_024;
    /// Widest residual stream and feed-forward layer.
    pub const WIDTH: i64 = 4_096;
    /// Most attention heads.
    pub const HEADS: i64 = 64;
    /// Most transformer blocks.
    pub const LAYERS: usize = 32;
    /// Most holidays, PCA columns or smoothing factors.
    pub const LIST: usize = 10_000;
}

/// Why a model's parameters are refused: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("params.{field}: {reason}")]
pub struct InvalidParams {
    /// The field, as in the manifest (`net.heads`).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn invalid(field: &str, reason: impl Into<String>) -> InvalidParams {
    InvalidParams { field: field.to_owned(), reason: reason.into() }
}

fn within<T: PartialOrd + std::fmt::Display + Copy>(field: &str, value: T, lo: T, hi: T) -> Result<(), InvalidParams> {
    if value < lo || value > hi {
        return Err(invalid(field, format!("{value} is outside {lo}..={hi}")));
    }
    Ok(())
}

fn finite(field: &str, values: &[f64]) -> Result<(), InvalidParams> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(invalid(field, format!("element {i} is {}", values[i]))),
        None => Ok(()),
    }
}

impl ModelParams {
    /// Checks every field against [`limits`] and against one another, before anything is
    /// built from them: a zero head count would divide by zero, a `p90_shift` longer than
    /// the horizon would index past it, a huge context would abort on allocation.
    pub fn validate(&self) -> Result<(), InvalidParams> {
        let (n, w) = (&self.net, &self.window);
        within("net.context", n.context, 1, limits::CONTEXT)?;
        within("net.horizon", n.horizon, 1, limits::HORIZON)?;
        within("net.context_features", n.context_features, 1, limits::FEATURES)?;
        within("net.horizon_features", n.horizon_features, 1, limits::FEATURES)?;
        within("net.d_model", n.d_model, 1, limits::WIDTH)?;
        within("net.heads", n.heads, 1, limits::HEADS)?;
        if n.d_model % n.heads != 0 {
            return Err(invalid("net.heads", format!("{} does not divide d_model {}", n.heads, n.d_model)));
        }
        within("net.layers", n.layers, 1, limits::LAYERS)?;
        within("net.ff", n.ff, 1, limits::WIDTH)?;
        if !(0.0..1.0).contains(&n.dropout) {
            return Err(invalid("net.dropout", format!("{} is outside 0 to 1", n.dropout)));
        }
        within("window.context", w.context, 1, limits::CONTEXT)?;
        within("window.horizon", w.horizon, 1, limits::HORIZON)?;
        within("window.day", w.day, 1, limits::DAY)?;
        if (w.context, w.horizon) != (n.context, n.horizon) {
            return Err(invalid(
                "window",
                format!(
                    "context {} and horizon {} differ from the network's {} and {}",
                    w.context, w.horizon, n.context, n.horizon
                ),
            ));
        }
        if !(self.level_floor.is_finite() && self.level_floor > 0.0) {
            return Err(invalid("level_floor", format!("{} is not a positive number", self.level_floor)));
        }
        within("holidays", self.holidays.len(), 0, limits::LIST)?;
        if self.p90_shift.len() != w.horizon {
            return Err(invalid(
                "p90_shift",
                format!("{} values for a horizon of {} steps", self.p90_shift.len(), w.horizon),
            ));
        }
        finite("p90_shift", &self.p90_shift)?;
        if let Some(b) = &self.base {
            b.check(limits::DAY).map_err(|reason| invalid("base", reason))?;
        }
        if let Some(p) = &self.preprocess {
            let cols = p.columns.len();
            within("preprocess.columns", cols, 1, limits::LIST)?;
            for (field, v) in [
                ("preprocess.offsets", &p.offsets),
                ("preprocess.scales", &p.scales),
                ("preprocess.pca_mean", &p.pca_mean),
            ] {
                if v.len() != cols {
                    return Err(invalid(field, format!("{} values for {cols} columns", v.len())));
                }
                finite(field, v)?;
            }
            within("preprocess.components", p.components.len(), 0, cols)?;
            for c in &p.components {
                if c.len() != cols {
                    return Err(invalid(
                        "preprocess.components",
                        format!("a row of {} weights for {cols} columns", c.len()),
                    ));
                }
                finite("preprocess.components", c)?;
            }
        }
        Ok(())
    }
}

/// The per-window unit of the p90 shift.
///
/// In level units, a band calibrated on a busy validation period is too narrow on a quiet,
/// noisy one (relative noise grows as demand falls). In units of the window's own
/// step-to-step volatility it widens with noise wherever it is (locally weighted
/// conformal calibration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum P90Unit {
    /// The window's level (models stored before the volatility unit).
    #[default]
    Level,
    /// The window's mean absolute step-to-step change.
    Volatility,
}

/// What one service of a fleet model needs of its own: the level floor its windows are
/// normalised with (a hundredth of its typical demand, so a quiet service's noise is not
/// blown up while a busy one's detail is kept) and its p90 shift calibrated on its own
/// validation part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Lowest level a window is normalised by, requests/s.
    pub level_floor: f64,
    /// Per-horizon shift of p90, in units of the model's [`P90Unit`].
    pub p90_shift: Vec<f64>,
}

impl Calibration {
    /// Checks a calibration read from a store against its model's horizon.
    pub fn validate(&self, horizon: usize) -> Result<(), InvalidParams> {
        if !(self.level_floor.is_finite() && self.level_floor > 0.0) {
            return Err(invalid("level_floor", format!("{} is not a positive number", self.level_floor)));
        }
        if self.p90_shift.len() != horizon {
            return Err(invalid("p90_shift", format!("{} values for a {horizon}-step horizon", self.p90_shift.len())));
        }
        finite("p90_shift", &self.p90_shift)
    }
}

/// A trained transformer with its constants.
#[derive(Debug)]
pub struct TransformerModel {
    /// Weights.
    pub vs: nn::VarStore,
    pub(crate) net: Net,
    /// Constants.
    pub params: ModelParams,
}

/// Windows per forward pass, in forecasting and in validation.
pub(crate) const FORECAST_BATCH: usize = 1024;

impl TransformerModel {
    /// An untrained model with the given constants (weights to be loaded).
    pub fn empty(params: ModelParams, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let net = Net::new(&vs.root(), params.net);
        Self { vs, net, params }
    }

    /// Uncalibrated forecasts and each window's p90 unit.
    pub(crate) fn raw(
        &self,
        series: &Series,
        origins: &[usize],
        level_floor: f64,
    ) -> Result<(Forecasts, Vec<f64>), ModelError> {
        let p = &self.params;
        let windows = Windows::new(series, p.window, level_floor, &p.holidays)
            .with_exog(exog(p.preprocess.as_ref(), series)?)
            .with_base(p.base.as_ref());
        let h = p.window.horizon;
        let mut p50 = Array2::zeros((origins.len(), h));
        let mut p90 = Array2::zeros((origins.len(), h));
        let mut units = Vec::with_capacity(origins.len());
        for (c, chunk) in origins.chunks(FORECAST_BATCH).enumerate() {
            let batch = windows.batch(chunk);
            let (a50, a90) = self.forward(&batch);
            for row in 0..chunk.len() {
                let level = batch.level[row] as f64;
                units.push(self.unit(&batch, row));
                for k in 0..h {
                    p50[[c * FORECAST_BATCH + row, k]] = (a50[[row, k]] * level).max(0.0);
                    p90[[c * FORECAST_BATCH + row, k]] = a90[[row, k]] * level;
                }
            }
        }
        Ok((Forecasts { origins: origins.to_vec(), p50, p90 }, units))
    }

    /// One forward pass: the normalised p50 and p90 of each window of the batch.
    fn forward(&self, batch: &Batch) -> (Array2<f64>, Array2<f64>) {
        let input = Inputs::from_batch(batch, 1.0, self.vs.device());
        let out = tch::no_grad(|| self.net.forward(&input, false));
        (to_array(&out.p50), to_array(&out.p90))
    }

    /// The p90 unit of row `row` of a batch.
    fn unit(&self, batch: &Batch, row: usize) -> f64 {
        match self.params.p90_unit {
            P90Unit::Level => batch.level[row] as f64,
            P90Unit::Volatility => batch.volatility[row] as f64,
        }
    }

    /// Calibrated forecasts at the last step of each input, as [`Self::forecast`] makes
    /// them, but with the windows of many series side by side: one forward pass per
    /// [`FORECAST_BATCH`] series instead of one per series, the batch arrays reused from
    /// `scratch` between calls. One result per input, in order; an input fails alone (a
    /// model fitted on covariates the input lacks).
    pub fn forecast_last(&self, inputs: &[Live<'_>], scratch: &mut Scratch) -> Vec<Result<Forecasts, ModelError>> {
        let p = &self.params;
        let (context, h) = (p.window.context, p.window.horizon);
        let mut results: Vec<Option<Result<Forecasts, ModelError>>> = inputs.iter().map(|_| None).collect();
        let mut ready = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let exog = match (p.preprocess.as_ref(), input.covariates) {
                (None, _) => None,
                (Some(pre), Some(cov)) => match pre.transform(cov) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        results[i] = Some(Err(e.into()));
                        continue;
                    }
                },
                (Some(pre), None) => {
                    results[i] = Some(Err(PreprocessError::new(format!(
                        "{}: the model was trained on covariates ({}) and this data has none",
                        input.series.name,
                        pre.columns.join(", ")
                    ))
                    .into()));
                    continue;
                }
            };
            let floor = input.calibration.map_or(p.level_floor, |c| c.level_floor);
            let windows =
                Windows::new(input.series, p.window, floor, &p.holidays).with_exog(exog).with_base(p.base.as_ref());
            ready.push((i, windows));
        }
        for (c, chunk) in ready.chunks(FORECAST_BATCH).enumerate() {
            let Some((_, first)) = chunk.first() else { continue };
            let shapes = ((context, first.context_features()), (h, first.horizon_features()));
            let batch = scratch.batch(c, chunk.len(), shapes);
            for (row, (_, windows)) in chunk.iter().enumerate() {
                windows.fill(&[windows.series().len() - 1], batch, row);
            }
            let (a50, a90) = self.forward(batch);
            for (row, (i, windows)) in chunk.iter().enumerate() {
                let (level, unit) = (batch.level[row] as f64, self.unit(batch, row));
                let mut f = Forecasts {
                    origins: vec![windows.series().len() - 1],
                    p50: Array2::zeros((1, h)),
                    p90: Array2::zeros((1, h)),
                };
                let shifts = inputs[*i].calibration.map_or(p.p90_shift.as_slice(), |c| c.p90_shift.as_slice());
                for (k, shift) in shifts.iter().enumerate().take(h) {
                    let p50 = (a50[[row, k]] * level).max(0.0);
                    f.p50[[0, k]] = p50;
                    f.p90[[0, k]] = (a90[[row, k]] * level + shift * unit).max(p50);
                }
                results[*i] = Some(Ok(f));
            }
        }
        results.into_iter().map(|r| r.expect("every input answered")).collect()
    }

    /// Calibrated forecasts at each origin (origins must have some observed context; see
    /// [`Windows::usable_origins`]). Fails only when the model needs covariates the
    /// series lacks.
    pub fn forecast(&self, series: &Series, origins: &[usize]) -> Result<Forecasts, ModelError> {
        self.forecast_calibrated(series, origins, None)
    }

    /// [`Self::forecast`] with a service's own calibration (a fleet model's) instead of
    /// the model's.
    pub fn forecast_calibrated(
        &self,
        series: &Series,
        origins: &[usize],
        calibration: Option<&Calibration>,
    ) -> Result<Forecasts, ModelError> {
        let p = &self.params;
        let (floor, shifts) =
            calibration.map_or((p.level_floor, p.p90_shift.as_slice()), |c| (c.level_floor, c.p90_shift.as_slice()));
        let (mut f, units) = self.raw(series, origins, floor)?;
        shift_p90(&mut f, &units, shifts);
        Ok(f)
    }
}

/// One series to forecast at its last step, for [`TransformerModel::forecast_last`].
#[derive(Debug, Clone, Copy)]
pub struct Live<'a> {
    /// The service's own calibration (a fleet model serves services of every size), or
    /// `None` for the model's.
    pub calibration: Option<&'a Calibration>,
    /// The values up to the origin (its covariates, if any, are not read).
    pub series: &'a Series,
    /// The other features of the series' last steps (at least the model's context), for a
    /// model fitted on covariates: a live window keeps no more of them.
    pub covariates: Option<&'a Covariates>,
}

/// Batch arrays kept between [`TransformerModel::forecast_last`] calls: the same fleet
/// forecast every step fills the same shapes, so nothing is allocated for them again.
#[derive(Debug, Default)]
pub struct Scratch {
    batches: Vec<Batch>,
}

impl Scratch {
    /// The `chunk`th batch with `rows` windows of these shapes, reused when it fits.
    fn batch(&mut self, chunk: usize, rows: usize, shapes: ((usize, usize), (usize, usize))) -> &mut Batch {
        if self.batches.len() <= chunk {
            self.batches.resize_with(chunk + 1, || Batch::zeros(0, (0, 0), (0, 0)));
        }
        let batch = &mut self.batches[chunk];
        if !batch.fits(rows, shapes.0, shapes.1) {
            *batch = Batch::zeros(rows, shapes.0, shapes.1);
        }
        batch
    }

    /// Bytes its arrays hold.
    pub fn bytes(&self) -> usize {
        self.batches
            .iter()
            .map(|b| {
                4 * (b.context.len()
                    + b.horizon.len()
                    + b.anchor.len()
                    + b.target.len()
                    + b.target_mask.len()
                    + b.level.len()
                    + b.volatility.len())
            })
            .sum()
    }
}

/// The exogenous context features of a series under a fitted preprocessing.
/// Calibrates raw forecasts: each row's p90 moved by the per-horizon `shifts` in the
/// row's unit (its level or volatility), never below its p50.
pub(crate) fn shift_p90(f: &mut Forecasts, units: &[f64], shifts: &[f64]) {
    for (row, unit) in units.iter().enumerate() {
        for (k, shift) in shifts.iter().enumerate().take(f.horizon()) {
            let p90 = f.p90[[row, k]] + shift * unit;
            f.p90[[row, k]] = p90.max(f.p50[[row, k]]);
        }
    }
}

pub(crate) fn exog(preprocess: Option<&Preprocess>, series: &Series) -> Result<Option<Array2<f32>>, ModelError> {
    match (preprocess, &series.covariates) {
        (None, _) => Ok(None),
        (Some(p), Some(cov)) => Ok(Some(p.transform(cov)?)),
        (Some(p), None) => Err(PreprocessError::new(format!(
            "{}: the model was trained on covariates ({}) and this data has none",
            series.name,
            p.columns.join(", ")
        ))
        .into()),
    }
}

fn to_array(t: &tch::Tensor) -> Array2<f64> {
    let (b, h) = t.size2().expect("[batch, horizon]");
    let v: Vec<f64> = Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).expect("a numeric tensor");
    Array2::from_shape_vec((b as usize, h as usize), v).expect("shape matches")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::transformer::NetConfig;
    use crate::window::WindowConfig;

    fn params(net: NetConfig, window: WindowConfig, p90_shift: Vec<f64>, level_floor: f64) -> ModelParams {
        ModelParams {
            net,
            window,
            level_floor,
            holidays: Vec::new(),
            p90_shift,
            p90_unit: P90Unit::Volatility,
            preprocess: None,
            base: None,
        }
    }

    /// A series of `len` 1-minute steps with two varying covariates, and an untrained
    /// (randomly initialised) model fitted to its shapes with a preprocessing of them.
    fn series_and_model(len: usize, seed: f64) -> (Series, TransformerModel) {
        use prescale_core::StepGrid;
        let start = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().to_utc();
        let values = (0..len).map(|i| (i % 17 != 5).then(|| 50.0 + seed * (i as f64 / 7.0).sin() * 8.0)).collect();
        let cov =
            Array2::from_shape_fn((len, 2), |(i, j)| if i % 23 == 3 { f64::NAN } else { (i * (j + 2)) as f64 % 11.0 });
        let covariates = Covariates { names: vec!["a".into(), "b".into()], values: cov };
        let series = Series::new(format!("s{seed}"), StepGrid::from_secs(60).unwrap(), start, values)
            .unwrap()
            .with_covariates(covariates.clone())
            .unwrap();
        let preprocess = Preprocess::fit(&covariates, 0, len, 0.99).unwrap().expect("two varying covariates");
        let window = WindowConfig { context: 24, horizon: 5, day: 60, hour_phase: false };
        let net = NetConfig {
            context: 24,
            horizon: 5,
            context_features: crate::window::CONTEXT_FEATURES + preprocess.width(),
            horizon_features: crate::window::HORIZON_FEATURES,
            d_model: 8,
            heads: 2,
            layers: 1,
            ff: 16,
            dropout: 0.0,
        };
        let mut p = params(net, window, vec![0.5; 5], 1.0);
        p.preprocess = Some(preprocess);
        tch::manual_seed(7);
        (series, TransformerModel::empty(p, Device::Cpu))
    }

    #[test]
    fn batched_forecasts_of_many_series_equal_one_at_a_time() {
        let (_, model) = series_and_model(200, 1.0);
        let all: Vec<Series> = (0..5).map(|k| series_and_model(150 + 10 * k, k as f64 + 1.0).0).collect();
        // Each live input keeps only the covariates of its last 30 steps (the context is 24).
        let tails: Vec<Covariates> = all
            .iter()
            .map(|s| {
                let c = s.covariates.as_ref().unwrap();
                Covariates {
                    names: c.names.clone(),
                    values: c.values.slice(ndarray::s![s.len() - 30.., ..]).to_owned(),
                }
            })
            .collect();
        let bare: Vec<Series> = all.iter().map(|s| Series { covariates: None, ..s.clone() }).collect();
        let mut inputs: Vec<Live> = bare
            .iter()
            .zip(&tails)
            .map(|(series, c)| Live { series, covariates: Some(c), calibration: None })
            .collect();
        inputs.push(Live { series: &bare[0], covariates: None, calibration: None });
        let mut scratch = Scratch::default();
        for _ in 0..2 {
            // Twice: the second pass reuses the arrays the first one left.
            let batched = model.forecast_last(&inputs, &mut scratch);
            for (series, got) in all.iter().zip(&batched) {
                let want = model.forecast(series, &[series.len() - 1]).unwrap();
                let got = got.as_ref().unwrap();
                assert_eq!(got.origins, want.origins);
                for (a, b) in got.p50.iter().chain(got.p90.iter()).zip(want.p50.iter().chain(want.p90.iter())) {
                    assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b} for {}", series.name);
                }
            }
            let err = batched[5].as_ref().unwrap_err().to_string();
            assert!(err.contains("trained on covariates"), "{err}");
        }
        assert!(scratch.bytes() > 0);
    }

    proptest! {
        /// Any numbers a manifest may hold: validation answers, never panics, and what it
        /// accepts keeps the invariants the model relies on.
        #[test]
        fn validation_never_panics_and_accepts_only_buildable_params(
            context in 0usize..100_000, horizon in 0usize..3_000, cf in 0usize..2_000, hf in 0usize..2_000,
            d_model in -10i64..5_000, heads in -2i64..70, layers in 0usize..40, ff in -10i64..5_000,
            dropout in -1.0f64..2.0, day in 0usize..100_000, shift_len in 0usize..3_000, floor in -1.0f64..10.0,
        ) {
            let net = NetConfig { context, horizon, context_features: cf, horizon_features: hf, d_model, heads, layers, ff, dropout };
            let window = WindowConfig { context, horizon, day, hour_phase: false };
            let p = params(net, window, vec![0.0; shift_len], floor);
            if p.validate().is_ok() {
                prop_assert!(heads >= 1 && d_model % heads == 0 && shift_len == horizon && floor > 0.0);
                prop_assert!(context <= limits::CONTEXT && horizon <= limits::HORIZON);
            }
        }
    }
}
