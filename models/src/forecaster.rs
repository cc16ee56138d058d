//! The trained transformer and forecasting with it: the model's constants, its calibrated
//! p50/p90 forecasts, and the errors both this and [`crate::train`] report.

use chrono::NaiveDate;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use tch::nn;
use tch::{Device, Kind};

use crate::base::Base;
use crate::preprocess::{Preprocess, PreprocessError};
use crate::scores::Forecasts;
use crate::series::Series;
use crate::transformer::{Inputs, Net, NetConfig};
use crate::window::{WindowConfig, Windows};

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
    pub(crate) fn raw(&self, series: &Series, origins: &[usize]) -> Result<(Forecasts, Vec<f64>), ModelError> {
        let p = &self.params;
        let windows = Windows::new(series, p.window, p.level_floor, &p.holidays)
            .with_exog(exog(p.preprocess.as_ref(), series)?)
            .with_base(p.base.as_ref());
        let h = p.window.horizon;
        let mut p50 = Array2::zeros((origins.len(), h));
        let mut p90 = Array2::zeros((origins.len(), h));
        let mut units = Vec::with_capacity(origins.len());
        let device = self.vs.device();
        for (c, chunk) in origins.chunks(FORECAST_BATCH).enumerate() {
            let batch = windows.batch(chunk);
            let input = Inputs::from_batch(&batch, 1.0, device);
            let out = tch::no_grad(|| self.net.forward(&input, false));
            let a50 = to_array(&out.p50);
            let a90 = to_array(&out.p90);
            for row in 0..chunk.len() {
                let level = batch.level[row] as f64;
                units.push(match p.p90_unit {
                    P90Unit::Level => level,
                    P90Unit::Volatility => batch.volatility[row] as f64,
                });
                for k in 0..h {
                    p50[[c * FORECAST_BATCH + row, k]] = (a50[[row, k]] * level).max(0.0);
                    p90[[c * FORECAST_BATCH + row, k]] = a90[[row, k]] * level;
                }
            }
        }
        Ok((Forecasts { origins: origins.to_vec(), p50, p90 }, units))
    }

    /// Calibrated forecasts at each origin (origins must have some observed context; see
    /// [`Windows::usable_origins`]). Fails only when the model needs covariates the
    /// series lacks.
    pub fn forecast(&self, series: &Series, origins: &[usize]) -> Result<Forecasts, ModelError> {
        let (mut f, units) = self.raw(series, origins)?;
        for (row, unit) in units.iter().enumerate() {
            for (k, shift) in self.params.p90_shift.iter().enumerate() {
                let p90 = f.p90[[row, k]] + shift * unit;
                f.p90[[row, k]] = p90.max(f.p50[[row, k]]);
            }
        }
        Ok(f)
    }
}

/// The exogenous context features of a series under a fitted preprocessing.
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
