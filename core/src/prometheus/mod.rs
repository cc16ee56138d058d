//! Reading features from Prometheus: the catalog of PromQL per feature and the source
//! that runs it, grouped by service, at one step or over a range. The collector records
//! with it and the predictor reads its live window with it, so both see the same
//! features the models were trained on.
//!
//! - [`catalog`]: PromQL templates per feature; the `kubernetes` and `storefront`
//!   catalogs; every template parsed at start.
//! - [`access`]: bearer token or basic auth from files re-read on change, TLS with a CA
//!   and client certificates, and extra headers such as `X-Scope-OrgID`.
//! - [`source`]: the catalog's queries against Prometheus (`prometheus-http-query`), with
//!   timeouts, retries and service discovery, and the services to sample.

pub mod access;
pub mod catalog;
pub mod source;

pub use catalog::Catalog;
pub use source::Source;
