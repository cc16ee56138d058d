//! `prescale-core`: the vocabulary every Prescale component shares.
//!
//! - [`service`]: who is scaled ([`ServiceId`]: namespace and name, validated once).
//! - [`step`]: the step grid. Prescale samples, forecasts and decides once per step
//!   (30 s by default, 1 s in tests and demos); the length is always a setting, and every
//!   timestamp that crosses a component boundary is aligned to this grid.
//! - [`schema`]: the feature schema, one row per (service, step), with units and a version.
//! - [`location`] and [`store`]: where data and models live (`s3://bucket/prefix`, a
//!   `file://` URL or a plain path) and one [`store::ObjectStore`] trait over a local
//!   folder and S3, with atomic writes.
//! - `table` (feature `parquet`): the feature table, the collector's rows as Parquet in a
//!   Hive layout on a store, written by the collector and read by range, service and
//!   feature by everyone else.
//! - [`clock`]: the step clock of the long-running loops (which step next, when due).
//! - `ops` (feature `ops`): `/metrics`, `/healthz` and `/readyz` for every server.
//! - `prometheus` (feature `prometheus`): the feature catalog's PromQL and the source that
//!   queries Prometheus with it, shared by the collector and the predictor.
//! - `inventory` (feature `inventory`; its ScaledObject reflector with `kube`): which
//!   services are collected and scaled, declared once, with their scaling settings.
//! - [`config`]: TOML files with environment overrides and unknown fields refused.
//! - [`telemetry`]: `tracing` setup and the shutdown signal every long-running binary awaits.

pub mod backoff;
pub mod clock;
pub mod config;
#[cfg(feature = "inventory")]
pub mod inventory;
pub mod location;
#[cfg(feature = "ops")]
pub mod ops;
#[cfg(feature = "prometheus")]
pub mod prometheus;
pub mod schema;
pub mod service;
pub mod step;
pub mod store;
#[cfg(feature = "parquet")]
pub mod table;
pub mod telemetry;

pub use location::Location;
pub use schema::{Feature, FeatureRow, SCHEMA_VERSION};
pub use service::ServiceId;
pub use step::StepGrid;
