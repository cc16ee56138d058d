//! Wrapping a service's routes into an app: health, readiness, metrics, and the limits that
//! keep one instance fair under load:
//!
//! - a request's body is read in full, within [`Limits::body_timeout`] and [`MAX_BODY`],
//!   *before* it may take a place among the requests being served, so clients that send
//!   their bodies slowly hold a connection each and nothing more;
//! - at most [`Limits::concurrency`] requests are served at once; the rest wait in line up
//!   to [`Limits::queue_timeout`] and are then answered 503 with `Retry-After`, so an
//!   overloaded instance queues and its latency climbs as a real pod's does, without end.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::common::error::ApiError;
use crate::common::metrics::{self, Metrics};

/// Largest request body any service accepts.
pub const MAX_BODY: usize = 16 * 1024;

/// Per-instance settings shared by every service.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests served at once; more wait in line.
    pub concurrency: usize,
    /// How long a request may wait in line before it is answered 503.
    pub queue_timeout: Duration,
    /// How long a client may take to send a request's body.
    pub body_timeout: Duration,
    /// How long a client may take to send a request's headers; also how long an idle
    /// keep-alive connection stays open (hyper's header timer runs while it waits for the
    /// next request), so it is longer than the body's and than callers' pool idle time.
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            concurrency: 64,
            queue_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// The defaults with another concurrency.
    pub fn with_concurrency(concurrency: usize) -> Self {
        Self { concurrency, ..Self::default() }
    }
}

/// The full app of a service: its `routes` behind the body reader, the concurrency limit
/// and metrics, plus core's `/healthz`, `/readyz` and `/metrics` (outside the limit, so
/// probes answer under load).
pub fn wrap(routes: Router, metrics: Metrics, limits: Limits) -> Router {
    let admission = Admission { permits: Arc::new(Semaphore::new(limits.concurrency.max(1))), limits };
    // Layers run outside in: metrics (the time in line counts), then the body is read, then
    // a place is taken, then the handler.
    let limited = routes
        .layer(axum::middleware::from_fn_with_state(admission.clone(), admit))
        .layer(axum::middleware::from_fn_with_state(admission, read_body))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .route_layer(axum::middleware::from_fn_with_state(metrics.clone(), metrics::track));
    prescale_core::ops::router(Arc::new(metrics)).merge(limited)
}

#[derive(Debug, Clone)]
struct Admission {
    permits: Arc<Semaphore>,
    limits: Limits,
}

/// Reads the whole body (bounded in size and time) before the request goes further.
async fn read_body(State(a): State<Admission>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(a.limits.body_timeout, axum::body::to_bytes(body, MAX_BODY)).await {
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {:?}", a.limits.body_timeout),
        )
        .into_response(),
        Ok(Err(e)) if is_too_large(&e) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is larger than {MAX_BODY} bytes"))
                .into_response()
        }
        Ok(Err(e)) => ApiError::bad_request(format!("reading the request body: {e}")).into_response(),
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
    }
}

fn is_too_large(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Takes a place among the requests served at once, waiting at most the queue timeout.
async fn admit(State(a): State<Admission>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(a.limits.queue_timeout, a.permits.clone().acquire_owned()).await {
        Ok(Ok(permit)) => {
            let response = next.run(request).await;
            drop(permit);
            response
        }
        _ => ApiError::busy("this instance is at capacity; retry shortly", a.limits.queue_timeout.as_secs().max(1))
            .into_response(),
    }
}
