//! `prescale-collector`: Prescale's memory.
//!
//! Every step it asks Prometheus for one row of the core feature schema per service
//! (the PromQL for each feature comes from a catalog in config), appends the rows to a
//! durable local spool, and flushes the spool as Parquet to an object store under a
//! Hive-style layout, so the trainer can learn from weeks of history and nothing is lost
//! while Prometheus or the store is down.
//!
//! - [`catalog`]: PromQL templates per feature; the `kubernetes` and `storefront`
//!   catalogs; every template parsed at start.
//! - [`source`]: the catalog's queries against Prometheus (`prometheus-http-query`), at
//!   one step or over a range, with timeouts, retries and service discovery. The
//!   predictor reads its live window through this too.
//! - [`spool`]: the local, `fsync`ed spool, its gaps and crash recovery.
//! - [`layout`]: object names and Parquet writing.
//! - [`live`]: the step loop, gap filling and the flusher.
//! - [`backfill`]: a past range from Prometheus' retention.
//! - [`inspect`]: what a store holds.
//! - [`metrics`]: the collector's own `/metrics`.
//! - [`config`]: the settings file.

pub mod backfill;
pub mod catalog;
pub mod config;
pub mod inspect;
pub mod layout;
pub mod live;
pub mod metrics;
pub mod source;
pub mod spool;

pub use catalog::Catalog;
pub use config::CollectorConfig;
pub use source::Source;
