//! `prescale-models`: everything that turns history into a forecast.
//!
//! - [`series`]: demand series (trace CSV or collector data) and the evaluation split;
//! - [`dataset`]: the collector's Parquet as series with covariates;
//! - [`preprocess`]: standard scaling and PCA of the covariates (`linfa`);
//! - [`window`]: windows per forecast origin, level-normalised, with calendar features
//!   and seasonal lags, missing values masked;
//! - [`transformer`]: the decoder-only transformer network (libtorch through `tch`), one
//!   graph for training and inference;
//! - [`train`]: its training with early stopping and the p90 calibration;
//! - [`forecaster`]: the trained model and its calibrated p50/p90 forecasts;
//! - [`base`]: the simple forecast the transformer refines (ridge or adaptive smoothing);
//! - [`burst`]: how far demand jumps within minutes, by the minute of the hour;
//! - [`baselines`]: persistence, seasonal naive, Holt-Winters and ridge, with residual
//!   quantiles for their p90;
//! - [`scores`]: forecast accuracy: MAE, RMSE, MASE, pinball loss and coverage;
//! - [`backtest`]: all models trained on the same split and scored on the test part, and
//!   a stored model scored on new data;
//! - [`fleet`]: one transformer trained across a fleet's services, the per-service work
//!   around it (calibration, baselines, the choice of forecaster), split into shards;
//! - [`served`]: what a fleet model keeps per service, and servable baselines;
//! - [`tuning`]: the scaling policy replayed on a validation part over a grid of
//!   settings, and the frontier a model carries for its services' objectives;
//! - [`artifact`]: versioned models in a store, the quality gate and `latest`.
//!
//! libtorch is linked dynamically; the crate's build script records its folder in the
//! run path of every test and binary, so nothing needs `LD_LIBRARY_PATH`.

pub mod artifact;
pub mod backtest;
pub mod base;
pub mod baselines;
pub mod burst;
pub mod dataset;
pub mod fleet;
pub mod forecaster;
pub mod preprocess;
pub mod scores;
pub mod series;
pub mod served;
pub mod train;
pub mod transformer;
pub mod tuning;
pub mod window;
