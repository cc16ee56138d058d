//! `prescale-trainer`: the data scientists' command line.
//!
//! It trains the forecaster on collected data or a trace, backtests it against the
//! baselines, writes the evaluation files, and publishes versioned models behind a
//! quality gate.
