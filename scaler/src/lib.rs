//! `prescale-scaler`: from the predictor's decisions to pods.
//!
//! It applies (or, in shadow mode, only reports) what the predictor decided, through
//! each Deployment's scale subresource, and estimates a service's capacity per replica
//! from collected history. The policy itself lives in `prescale-policy`; the scaling
//! benchmark in the trainer (`prescale-trainer simulate`).
//!
//! - [`kube_backend`]: applying a decision to a Deployment's scale subresource;
//! - [`run`]: polling the predictor's decisions and applying them (shadow by default);
//! - [`capacity`]: capacity per replica from the feature table;
//! - [`rbac`]: the Roles the configured targets need, scoped to their names.

pub mod capacity;
pub mod kube_backend;
pub mod rbac;
pub mod run;
