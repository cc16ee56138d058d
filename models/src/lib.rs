//! `prescale-models`: everything that turns history into a forecast.
//!
//! - [`series`]: demand series (trace CSV or collector data) and the evaluation split;
//! - [`dataset`]: the collector's Parquet as series with covariates;
//! - [`preprocess`]: standard scaling and PCA of the covariates (`linfa`);
//! - [`window`]: windows per forecast origin, level-normalised, with calendar features
//!   and seasonal lags, missing values masked;
//! - [`transformer`] and [`forecaster`]: the decoder-only transformer (libtorch through
//!   `tch`), its training with early stopping, and calibrated p50/p90 forecasts;
//! - [`base`]: the simple forecast the transformer refines (ridge or adaptive smoothing);
//! - [`burst`]: how far demand jumps within minutes, by the minute of the hour;
//! - [`baselines`]: persistence, seasonal naive, Holt-Winters and ridge, with residual
//!   quantiles for their p90;
//! - [`metrics`]: MAE, RMSE, MASE, pinball loss and coverage;
//! - [`backtest`]: all models trained on the same split and scored on the test part.
//!
//! libtorch is linked dynamically; the crate's build script records its folder in the
//! run path of every test and binary, so nothing needs `LD_LIBRARY_PATH`.

pub mod artifact;
pub mod backtest;
pub mod base;
pub mod baselines;
pub mod burst;
pub mod dataset;
pub mod forecaster;
pub mod metrics;
pub mod preprocess;
pub mod series;
pub mod transformer;
pub mod window;
