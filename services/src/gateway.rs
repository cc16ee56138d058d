//! `gateway`: the ingress. `/api/<service>/<path>` is forwarded to `<service>`'s `/<path>`
//! when, and only when, the path is one of that service's public routes; each request is
//! counted per service by status, with a latency histogram, as an ingress controller does
//! (`gateway_requests_total{service,status}`, `gateway_request_duration_seconds{service}`).
//!
//! The path is taken apart once, from the raw request target: each segment is
//! percent-decoded, repeated slashes are dropped, and anything whose meaning depends on who
//! reads it (a `.` or `..` segment in any spelling, an encoded `/`, a backslash, a `%` left
//! after decoding, control characters) is refused with 400. What remains is matched against
//! an allow-list of public routes ([`PUBLIC`]); the upstream URL is then built from those
//! segments by a URL library, never by pasting strings, so the service sees exactly the
//! route the gateway checked. Internal routes are absent from the allow-list, and also
//! demand a service credential the gateway never forwards.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::Service;
use crate::common::app::MAX_BODY;
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
    /// Base URL per service.
    pub upstreams: BTreeMap<Service, String>,
    /// HTTP client.
    pub http: reqwest::Client,
    /// Ingress metrics.
    pub metrics: IngressMetrics,
}

/// One segment of a public route: a fixed word, or a parameter (an id or a slug).
#[derive(Debug, Clone, Copy)]
enum Part {
    Word(&'static str),
    Param,
}
use Part::{Param, Word};

/// The public routes of each service: `(service, method, path)`. Nothing else is routed.
pub const PUBLIC: &[(Service, &str, &[&str])] = &[
    (Service::Authen, "POST", &["register"]),
    (Service::Authen, "POST", &["login"]),
    (Service::Authen, "GET", &["verify"]),
    (Service::Booking, "GET", &["facilities"]),
    (Service::Booking, "GET", &["facilities", "{}", "availability"]),
    (Service::Booking, "GET", &["bookings"]),
    (Service::Booking, "POST", &["bookings"]),
    (Service::Booking, "DELETE", &["bookings", "{}"]),
    (Service::Order, "GET", &["orders"]),
    (Service::Order, "POST", &["orders"]),
    (Service::Order, "GET", &["orders", "{}"]),
    (Service::Product, "GET", &["products"]),
    (Service::Product, "GET", &["products", "search"]),
    (Service::Product, "GET", &["products", "{}"]),
    (Service::Product, "GET", &["products", "{}", "stock"]),
    (Service::Profile, "GET", &["profile"]),
    (Service::Profile, "PUT", &["profile"]),
    (Service::Recommender, "GET", &["recommendations", "{}"]),
];

fn part(s: &'static str) -> Part {
    if s == "{}" { Param } else { Word(s) }
}

/// A parameter: what ids and slugs are made of, and nothing a URL parser reads specially.
fn is_param(segment: &str) -> bool {
    (1..=64).contains(&segment.len()) && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its meaning depends on who reads it (400).
    Ambiguous(String),
    /// No public route there (404).
    NotFound,
    /// A public route, another method (405).
    Method,
}

/// The request target's path taken apart: `/api/<service>/<segments...>`, each segment
/// decoded once, with repeated slashes dropped; refuses any ambiguous spelling.
pub fn normalise(raw_path: &str) -> Result<Vec<String>, Refusal> {
    if raw_path.contains('\\') {
        return Err(Refusal::Ambiguous("backslashes are not allowed in paths".into()));
    }
    let mut out = Vec::new();
    for raw in raw_path.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| Refusal::Ambiguous("a path segment is not UTF-8 once decoded".into()))?;
        if decoded == "." || decoded == ".." {
            return Err(Refusal::Ambiguous("`.` and `..` segments are not allowed".into()));
        }
        if decoded.contains(['/', '\\', '%']) || decoded.chars().any(char::is_control) {
            return Err(Refusal::Ambiguous(format!("the path segment {raw:?} encodes a separator or an escape")));
        }
        out.push(decoded.into_owned());
    }
    Ok(out)
}

/// The service and path a public request goes to, or why it does not.
pub fn route_of(method: &Method, raw_path: &str) -> Result<(Service, Vec<String>), Refusal> {
    let segments = normalise(raw_path)?;
    let [api, service, rest @ ..] = segments.as_slice() else { return Err(Refusal::NotFound) };
    if api != "api" {
        return Err(Refusal::NotFound);
    }
    let service = Service::named(service).filter(|s| *s != Service::Gateway).ok_or(Refusal::NotFound)?;
    let mut path_matched = false;
    for (s, m, pattern) in PUBLIC {
        let matches = *s == service
            && pattern.len() == rest.len()
            && pattern.iter().zip(rest).all(|(p, seg)| match part(p) {
                Word(w) => w == seg,
                Param => is_param(seg),
            });
        if matches {
            if *m == method.as_str() {
                return Ok((service, rest.to_vec()));
            }
            path_matched = true;
        }
    }
    Err(if path_matched { Refusal::Method } else { Refusal::NotFound })
}

/// Headers passed through to services.
const FORWARDED: [header::HeaderName; 4] =
    [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT, header::HeaderName::from_static("idempotency-key")];

/// The upstream URL of a checked route: the base URL with the segments appended (each
/// encoded by the URL library) and the query re-encoded.
fn upstream_url(base: &str, segments: &[String], query: Option<&str>) -> Result<reqwest::Url, ApiError> {
    let mut url = reqwest::Url::parse(base).map_err(ApiError::internal)?;
    url.path_segments_mut()
        .map_err(|()| ApiError::internal(format!("base URL {base} cannot hold a path")))?
        .extend(segments);
    url.set_query(query);
    Ok(url)
}

async fn forward(state: &GatewayState, request: Request) -> Result<(Service, Response), (Option<Service>, ApiError)> {
    let (service, segments) = route_of(request.method(), request.uri().path()).map_err(|r| {
        // Refusals are still counted under the service named, when it is one of ours.
        let named = normalise(request.uri().path())
            .ok()
            .and_then(|s| s.get(1).and_then(|n| Service::named(n)))
            .filter(|s| *s != Service::Gateway);
        let e = match r {
            Refusal::Ambiguous(why) => ApiError::bad_request(why),
            Refusal::NotFound => {
                ApiError::not_found("no such route; routes are /api/<service>/<path> for the public paths")
            }
            Refusal::Method => ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route"),
        };
        (named, e)
    })?;
    let fail = |e| (Some(service), e);
    let base = state.upstreams.get(&service).ok_or_else(|| fail(ApiError::not_found("no such service")))?;
    let url = upstream_url(base, &segments, request.uri().query()).map_err(fail)?;
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let method = request.method().clone();
    let headers: HeaderMap = request.headers().clone();
    let body: Bytes = axum::body::to_bytes(request.into_body(), MAX_BODY)
        .await
        .map_err(|e| fail(ApiError::bad_request(format!("reading the request body: {e}"))))?;
    let mut req = state.http.request(method, url).body(body);
    for name in &FORWARDED {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v);
        }
    }
    // The client's address as the gateway saw it, replacing whatever the client claimed:
    // services rate-limit by it.
    if let Some(ip) = peer
        && let Ok(v) = HeaderValue::from_str(&ip.to_string())
    {
        req = req.header("x-forwarded-for", v);
    }
    let upstream = req.send().await.map_err(|e| fail(ApiError::upstream(service.name(), e)))?;
    let status = upstream.status();
    let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
    let retry_after = upstream.headers().get(header::RETRY_AFTER).cloned();
    let bytes = upstream.bytes().await.map_err(|e| fail(ApiError::upstream(service.name(), e)))?;
    let mut response = Response::builder().status(status);
    if let Some(ct) = content_type {
        response = response.header(header::CONTENT_TYPE, ct);
    }
    if let Some(ra) = retry_after {
        response = response.header(header::RETRY_AFTER, ra);
    }
    Ok((service, response.body(Body::from(bytes)).map_err(|e| fail(ApiError::internal(e)))?))
}

async fn route(State(state): State<GatewayState>, request: Request) -> Response {
    let started = Instant::now();
    let (service, response) = match forward(&state, request).await {
        Ok((s, r)) => (Some(s), r),
        Err((s, e)) => (s, e.into_response()),
    };
    // Only known services are labelled by name: a client must not mint new series.
    let label = service.map_or("unknown", Service::name).to_owned();
    state
        .metrics
        .requests
        .get_or_create(&IngressLabels { service: label.clone(), status: response.status().as_u16().to_string() })
        .inc();
    state.metrics.duration.get_or_create(&IngressService { service: label }).observe(started.elapsed().as_secs_f64());
    response
}

/// The routes: every path reaches [`route`], which checks it against [`PUBLIC`].
pub fn routes(state: GatewayState) -> Router {
    Router::new().route("/api/{*path}", axum::routing::any(route)).fallback(route).with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_routes_match_and_everything_else_is_refused() {
        let get = Method::GET;
        assert_eq!(route_of(&get, "/api/product/products").unwrap(), (Service::Product, vec!["products".to_owned()]));
        assert_eq!(route_of(&get, "/api//product///products/7/").unwrap().1, ["products", "7"]);
        assert_eq!(route_of(&get, "/api/product/internal/reserve"), Err(Refusal::NotFound));
        assert_eq!(route_of(&Method::POST, "/api/product/products"), Err(Refusal::Method));
        assert_eq!(route_of(&get, "/api/gateway/products"), Err(Refusal::NotFound));
        for ambiguous in [
            "/api/product/x/%2e%2e/internal/reserve",
            "/api/order/./internal/baskets",
            "/api/order/x/%2E%2E/internal/baskets",
            "/api/order/.%2finternal/baskets",
            "/api/order/x/..%2finternal/baskets",
            "/api/order/x\\..\\internal/baskets",
            "/api/order/%252e%252e/internal",
            "/api/order/orders%00",
        ] {
            assert!(matches!(route_of(&get, ambiguous), Err(Refusal::Ambiguous(_))), "{ambiguous}");
        }
    }

    #[test]
    fn upstream_urls_are_built_from_segments() {
        let url = upstream_url("http://product:8080", &["products".into(), "7".into()], Some("a=1&b=%2F")).unwrap();
        assert_eq!(url.as_str(), "http://product:8080/products/7?a=1&b=%2F");
    }
}
