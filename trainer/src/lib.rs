//! `prescale-trainer`: the data scientists' command line.
//!
//! It trains the forecaster on collected data or a trace, runs both benchmarks of
//! `../shared/specs/evaluation.md` (`backtest` for forecasts, `simulate` for scaling),
//! writes their files, and publishes versioned models behind a quality gate.
//!
//! - [`fleet`]: one model for every service a selector names, its per-service work split
//!   into shards, and the table of what serves each service;
//! - [`indexed_job`]: a fleet's shards as a Kubernetes Indexed Job, created and waited for;
//! - [`import`]: traces written as the collector's rows;
//! - [`input`]: the data (trace CSV or one service of the collector's feature table);
//! - [`progress`]: progress bars with ETA and loss, fed by the models' training observer;
//! - [`report`]: the files of the forecast benchmark (`forecasts.csv`, `report.json`);
//! - [`plot`]: actual demand against the p50 and p90 forecasts, as SVG;
//! - [`simulate`]: the scaling benchmark: the cluster model, the HPA and the oracle, the
//!   predictive policy tuned on validation, and its files;
//! - [`output`]: writing those files, with errors that name them.

pub mod fleet;
pub mod import;
pub mod indexed_job;
pub mod input;
pub mod output;
pub mod plot;
pub mod progress;
pub mod report;
pub mod simulate;
