//! `prescale-trainer`: the data scientists' command line.
//!
//! It trains the forecaster on collected data or a trace, backtests it against the
//! baselines, writes the evaluation files, and publishes versioned models behind a
//! quality gate.
//!
//! - [`input`]: the data (trace CSV or collector Parquet) and model locations;
//! - [`progress`]: progress bars with ETA and loss, fed by the models' training observer;
//! - [`report`]: the files of the forecast benchmark (`forecasts.csv`, `report.json`);
//! - [`plot`]: actual demand against the p50 and p90 forecasts, as SVG.

pub mod input;
pub mod plot;
pub mod progress;
pub mod report;
