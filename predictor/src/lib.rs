//! `prescale-predictor`: what KEDA talks to in production.
//!
//! Each step it reads the recent window of every service from Prometheus, forecasts the
//! next ten minutes with the latest model, applies the scaler's policy, and serves the
//! resulting replica count over KEDA's external-scaler gRPC API, an HTTP JSON API and
//! Prometheus metrics, with fallbacks when the model or the data is missing.
//!
//! - [`config`]: the settings file; services, their model folders and policies.
//! - [`engine`]: the step: window (through core's [`prescale_core::prometheus::Source`],
//!   the same catalog the training data came from), forecast, policy, publish.
//! - [`window`]: each service's recent history, kept small (demand for the history,
//!   other features for the model's context).
//! - [`model`]: the models in use (one per model folder, shared by the services that
//!   name it) and their validated hot reload.
//! - [`hpa_view`]: the HPA's current replicas as far as the predictor can tell, for a
//!   rise past its tolerance.
//! - [`state`]: the latest decisions, shared by the loop and the servers, with staleness.
//! - [`grpc`]: KEDA's external scaler (`tonic`, optional mutual TLS).
//! - [`http`]: the JSON API, `/metrics`, health, OpenAPI and admin endpoints (`axum`).
//! - [`metrics`]: `ml_predicted_replicas` and the `prescale_predictor_*` families.
//! - [`run`]: everything wired together, as the binary runs it.

pub mod config;
pub mod engine;
pub mod grpc;
pub mod history;
pub mod hpa_view;
pub mod http;
pub mod metrics;
pub mod model;
pub mod run;
pub mod shadow_file;
pub mod state;
pub mod window;

/// KEDA's external-scaler messages and services, generated from
/// `proto/externalscaler.proto`.
#[allow(missing_docs, clippy::all, unused_qualifications, missing_debug_implementations)]
pub mod proto {
    tonic::include_proto!("externalscaler");
}
