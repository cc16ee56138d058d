//! What every storefront service shares: JSON errors and bodies, metrics, the concurrency
//! limit, SQLite, and JWT authentication.

pub mod app;
pub mod auth;
pub mod db;
pub mod error;
pub mod metrics;
