//! `prescale-scaler`: from forecasts to pods.
//!
//! The replica policy as pure functions, the `simulate` benchmark that replays a trace
//! against the reactive HPA and a perfect oracle, and a Kubernetes backend that applies
//! (or, in shadow mode, only reports) decisions through the scale subresource.
//!
//! - [`capacity`]: capacity per replica from collected history;
//! - [`decision`]: the serialisable decision the predictor serves;
//! - [`policy`]: forecast term, reactive floor, stabilisation, largest change, bounds;
//! - [`sim`]: the benchmark's cluster model, the HPA and the oracle;
//! - [`simulate`]: training, tuning on validation and replaying the test part;
//! - [`report`]: `decisions.csv`, `summary.json` and the plot;
//! - [`kube_backend`]: applying a decision to a Deployment's scale subresource;
//! - [`run`]: polling the predictor's decisions and applying them (shadow by default).

pub mod capacity;
pub mod decision;
pub mod kube_backend;
pub mod policy;
pub mod report;
pub mod run;
pub mod sim;
pub mod simulate;
