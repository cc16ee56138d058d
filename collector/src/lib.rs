//! `prescale-collector`: Prescale's memory.
//!
//! Every step it asks Prometheus for one row of the core feature schema per service
//! (the PromQL for each feature comes from a catalog in config), appends the rows to a
//! durable local spool, and flushes the spool as Parquet to an object store under a
//! Hive-style layout, so the trainer can learn from weeks of history and nothing is lost
//! while Prometheus or the store is down.
//!
//! The PromQL catalog and the Prometheus source it queries through are core's
//! (`prescale_core::prometheus`): the predictor reads its live window with the same ones.
//!
//! - [`spool`]: the local, `fsync`ed spool, its gaps and crash recovery.
//! - [`live`]: the step loop, gap filling and the flusher.
//! - [`backfill`]: a past range from Prometheus' retention.
//! - [`inspect`]: what a store holds.
//! - [`metrics`]: the collector's own metrics and readiness.
//! - [`config`]: the settings file, checked once by `CollectorConfig::build`;
//! - [`app`]: what it builds and runs (live collection behind the ops endpoints, backfill).
//!
//! The rows go to core's feature table (`prescale_core::table`), which every reader of the
//! data shares.

pub mod app;
pub mod backfill;
pub mod config;
pub mod inspect;
pub mod live;
pub mod metrics;
pub mod spool;

pub use config::CollectorConfig;
