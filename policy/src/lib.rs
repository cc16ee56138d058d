//! `prescale-policy`: from a forecast to replicas, and the decision that says why.
//!
//! Pure functions and plain data, shared by every component that decides, serves or
//! replays a scaling decision: the predictor (live), the trainer's `simulate` benchmark
//! (replayed on a trace), the scaler (applies what the predictor served) and the demo
//! (shows it). It depends on `prescale-core` alone, without S3, Parquet or a server.
//!
//! - [`settings`]: the policy's settings in durations ([`PolicySettings`], the one form
//!   configs and reports use), checked and turned into steps on a [`StepGrid`];
//! - [`terms`]: the forecast, burst and reactive terms as functions of demand;
//! - [`policy`]: [`Policy`], one decision per step with stabilisation, rate limit and
//!   bounds, and [`Present`], the input assembled from a forecast, a burst profile and
//!   current demand;
//! - [`decision`]: the [`Decision`] and its [`Reason`], as the predictor serves them.
//!
//! [`StepGrid`]: prescale_core::StepGrid

pub mod decision;
pub mod policy;
pub mod settings;
pub mod terms;

pub use decision::{Decision, ForecastView, NotActionable, Reason, Served, ServicesResponse};
pub use policy::{BurstRatios, Input, Policy, Present};
pub use settings::{PolicyError, PolicySettings, Quantile, StepSettings};
pub use terms::replicas_for;
