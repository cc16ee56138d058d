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
//! - [`decision`]: the [`Decision`] and its [`Reason`], as the predictor serves them;
//! - [`cluster`]: the evaluation spec's cluster model (pods ready after startup, the HPA,
//!   the oracle) that replays decisions and scores them;
//! - [`frontier`]: cost against safety over a family of settings (the HPA's frontier);
//! - [`objective`]: the operator's objective (the largest share of under-provisioned
//!   time) and the validation [`Menu`] of tuned settings it chooses from;
//! - [`mechanics`]: what KEDA and the HPA do to a decision on its way to the cluster;
//! - [`schedule`]: scheduled floors (a cron or a date range, a timezone, a minimum).
//!
//! [`StepGrid`]: prescale_core::StepGrid

pub mod cluster;
pub mod decision;
pub mod frontier;
pub mod mechanics;
pub mod objective;
pub mod policy;
pub mod schedule;
pub mod settings;
pub mod terms;

pub use decision::{Decision, ForecastView, NotActionable, Reason, Served, ServicesResponse};
pub use objective::{Choice, Menu};
pub use policy::{BurstRatios, Input, Policy, Present};
pub use schedule::{Schedule, ScheduleSettings};
pub use settings::{PolicyError, PolicySettings, Quantile, StepSettings};
pub use terms::replicas_for;
