//! `prescale-models`: everything that turns history into a forecast.
//!
//! Datasets (collector Parquet or trace CSV, cut into windows), the fitted transforms,
//! the transformer forecaster built on libtorch through `tch`, the baselines it must
//! beat, forecast metrics, and the versioned artifact format the trainer publishes and
//! the predictor loads.
//!
//! libtorch is linked dynamically; the crate's build script records its folder in the
//! run path of every test and binary, so nothing needs `LD_LIBRARY_PATH`.
