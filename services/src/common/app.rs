//! Wrapping a service's routes into an app: health, readiness, metrics, a body limit, and a
//! concurrency limit per instance, so that an overloaded instance queues and its latency
//! climbs as a real pod's does.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower::limit::GlobalConcurrencyLimitLayer;

use crate::common::metrics::{self, Metrics};

/// Largest request body any service accepts.
pub const MAX_BODY: usize = 16 * 1024;

/// Per-instance settings shared by every service.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests served at once; more wait in line.
    pub concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { concurrency: 64 }
    }
}

/// The full app of a service: its `routes` behind the concurrency limit and metrics, plus
/// core's `/healthz`, `/readyz` and `/metrics` (outside the limit, so probes answer under
/// load).
pub fn wrap(routes: Router, metrics: Metrics, limits: Limits) -> Router {
    let limited = routes
        .layer(GlobalConcurrencyLimitLayer::new(limits.concurrency.max(1)))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .route_layer(axum::middleware::from_fn_with_state(metrics.clone(), metrics::track));
    prescale_core::ops::router(Arc::new(metrics)).merge(limited)
}
