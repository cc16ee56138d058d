//! What every storefront service shares: JSON errors and bodies, metrics, the limits of an
//! instance, the database, JWT and service authentication, logins' rate limits, and serving.

pub mod app;
pub mod auth;
pub mod db;
pub mod error;
pub mod metrics;
pub mod serve;
