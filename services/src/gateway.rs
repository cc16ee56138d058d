//! `gateway`: the ingress: `/api/<service>/<path>` is forwarded to `<service>`'s `/<path>`,
//! and each request is counted per service by status, with a latency histogram, as an
//! ingress controller does (`gateway_requests_total{service,status}`,
//! `gateway_request_duration_seconds{service}`). `/internal/...` paths are never routed.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::common::error::ApiError;
use crate::common::metrics::BUCKETS;

/// Ingress labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct IngressLabels {
    /// Upstream service.
    pub service: String,
    /// Status code.
    pub status: String,
}

/// Ingress latency labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct IngressService {
    /// Upstream service.
    pub service: String,
}

/// The ingress metrics.
#[derive(Debug, Clone)]
pub struct IngressMetrics {
    requests: Family<IngressLabels, Counter>,
    duration: Family<IngressService, Histogram>,
}

impl IngressMetrics {
    /// New metrics, registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let requests = Family::<IngressLabels, Counter>::default();
        let duration =
            Family::<IngressService, Histogram>::new_with_constructor(|| Histogram::new(BUCKETS.iter().copied()));
        registry.register("gateway_requests", "Requests through the gateway per service and status", requests.clone());
        registry.register(
            "gateway_request_duration_seconds",
            "Latency through the gateway per service",
            duration.clone(),
        );
        Self { requests, duration }
    }
}

/// The gateway's state.
#[derive(Debug, Clone)]
pub struct GatewayState {
    /// Base URL per service name.
    pub upstreams: BTreeMap<String, String>,
    /// HTTP client.
    pub http: reqwest::Client,
    /// Ingress metrics.
    pub metrics: IngressMetrics,
}

/// Headers passed through to services.
const FORWARDED: [header::HeaderName; 4] =
    [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT, header::HeaderName::from_static("idempotency-key")];

async fn forward(
    state: &GatewayState,
    service: &str,
    path: &str,
    query: Option<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let base = state.upstreams.get(service).ok_or_else(|| ApiError::not_found(format!("no service `{service}`")))?;
    if path.split('/').next() == Some("internal") {
        return Err(ApiError::not_found(format!("no route /{path} on `{service}`")));
    }
    let url = match query {
        Some(q) => format!("{base}/{path}?{q}"),
        None => format!("{base}/{path}"),
    };
    let mut req = state.http.request(method, url).body(body);
    for name in &FORWARDED {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v);
        }
    }
    let upstream = req.send().await.map_err(ApiError::upstream)?;
    let status = upstream.status();
    let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = upstream.bytes().await.map_err(ApiError::upstream)?;
    let mut response = Response::builder().status(status);
    if let Some(ct) = content_type {
        response = response.header(header::CONTENT_TYPE, ct);
    }
    response.body(Body::from(bytes)).map_err(ApiError::internal)
}

async fn route(
    State(state): State<GatewayState>,
    Path((service, path)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let response = forward(&state, &service, &path, query, method, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    // Unknown services are not labelled by name: a client must not mint new series.
    let label = if state.upstreams.contains_key(&service) { service } else { "unknown".to_owned() };
    state
        .metrics
        .requests
        .get_or_create(&IngressLabels { service: label.clone(), status: response.status().as_u16().to_string() })
        .inc();
    state.metrics.duration.get_or_create(&IngressService { service: label }).observe(started.elapsed().as_secs_f64());
    response
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "routes are /api/<service>/<path>")
}

/// The routes.
pub fn routes(state: GatewayState) -> Router {
    Router::new().route("/api/{service}/{*path}", any(route)).fallback(not_found).with_state(state)
}
