//! The HTTP side: the JSON API (also what KEDA's `metrics-api` trigger reads), `/metrics`,
//! health, the OpenAPI description, and the admin endpoints behind a bearer token.
//!
//! The OpenAPI document is generated from the handlers and their types ([`ApiDoc`], with
//! utoipa), so it cannot drift from what the handlers answer; core's ops endpoints, which
//! live in another crate, are added to it by [`OpsAndSecurity`].

use std::sync::{Arc, LazyLock};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, ResponseBuilder, Type};
use utoipa::{OpenApi, ToSchema};

use prescale_policy::{Decision, ForecastView, Reason, ServicesResponse};

use crate::state::{Served, Shared, Unavailable};

/// The OpenAPI description of this API, generated once.
pub static OPENAPI: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serialises"));

/// The live page: predictions against observed demand and replicas, for people.
const LIVE_PAGE: &str = include_str!("live.html");

/// The OpenAPI document of the predictor's HTTP API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Prescale predictor",
        version = "1",
        description = "Ten-minute forecasts and the replicas decided from them, per service. KEDA's metrics-api trigger reads /api/v1/services/{namespace}/{name} with valueLocation `replicas`."
    ),
    paths(live_page, list, history, one_by_name, one, reload, shadow, openapi_json),
    components(schemas(ServicesResponse, Served, Decision, ForecastView, Reason, ShadowBody, ErrorBody, ReloadRequested,
        crate::history::HistoryResponse, crate::history::ServiceHistory, crate::history::Point)),
    modifiers(&OpsAndSecurity),
    tags(
        (name = "decisions", description = "The latest scaling decision per service"),
        (name = "admin", description = "Operator actions, behind the admin bearer token"),
        (name = "ops", description = "Metrics, liveness and readiness")
    )
)]
pub struct ApiDoc;

/// Adds the bearer scheme of the admin endpoints and core's ops endpoints (`/metrics`,
/// `/healthz`, `/readyz`), whose handlers live in `prescale_core::ops`.
#[derive(Debug)]
pub struct OpsAndSecurity;

impl utoipa::Modify for OpsAndSecurity {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = doc.components.as_mut() {
            components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        }
        let text = |content_type: &str, description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    content_type,
                    ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::String))).build(),
                )
                .build()
        };
        let plain = "text/plain; charset=utf-8";
        let ops = [
            (
                "/metrics",
                "Prometheus metrics (OpenMetrics text)",
                vec![("200", text(prescale_core::ops::METRICS_CONTENT_TYPE, "The metrics"))],
            ),
            ("/healthz", "Liveness: the process answers", vec![("200", text(plain, "Alive"))]),
            (
                "/readyz",
                "Readiness: a first decision is made and the model reloader runs",
                vec![("200", text(plain, "Ready")), ("503", text(plain, "Not ready, and why"))],
            ),
        ];
        for (path, summary, responses) in ops {
            let mut operation = OperationBuilder::new().summary(Some(summary)).tag("ops");
            for (status, response) in responses {
                operation = operation.response(status, response);
            }
            doc.paths.add_path_operation(path, vec![HttpMethod::Get], operation.build());
        }
    }
}

/// What the HTTP handlers share.
#[derive(Debug, Clone)]
pub struct Api {
    /// Decisions and metrics.
    pub shared: Arc<Shared>,
    /// Bearer token of the admin endpoints; `None` disables them.
    pub admin_token: Option<String>,
    /// Wakes the model reloader.
    pub reload: Arc<Notify>,
}

/// `PUT /api/v1/admin/shadow`, and its answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowBody {
    /// On or off.
    pub shadow: bool,
}

/// The answer of `POST /api/v1/admin/reload`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReloadRequested {
    /// Always `requested`: the reloader checks the models' pointers now.
    pub reload: String,
}

/// An error's body: what was wrong.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What was wrong, for people.
    pub error: String,
}

/// An error as JSON ([`ErrorBody`]) with a status.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<Unavailable> for ApiError {
    fn from(e: Unavailable) -> Self {
        let status = match e {
            Unavailable::UnknownService(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.to_string())
    }
}

/// The router: the API, the live page and core's ops endpoints (`/readyz` once a first
/// decision is made).
pub fn app(api: Api) -> Router {
    let ops = prescale_core::ops::router(api.shared.clone());
    Router::new()
        .route("/", get(live_page))
        .route("/api/v1/services", get(list))
        .route("/api/v1/history", get(history))
        .route("/api/v1/services/{name}", get(one_by_name))
        .route("/api/v1/services/{namespace}/{name}", get(one))
        .route("/api/v1/admin/reload", post(reload))
        .route("/api/v1/admin/shadow", put(shadow))
        .route("/openapi.json", get(openapi_json))
        .with_state(api)
        .merge(ops)
}

/// The live page.
#[utoipa::path(get, path = "/", tag = "ops",
    responses((status = 200, description = "Predictions against observed demand and replicas, for people", content_type = "text/html", body = String)))]
async fn live_page() -> Html<&'static str> {
    Html(LIVE_PAGE)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "The OpenAPI description of this API", content_type = "application/json", body = Object)))]
async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI.as_str())
}

/// The latest decision of every service.
#[utoipa::path(get, path = "/api/v1/services", tag = "decisions",
    responses((status = 200, description = "The latest decision of every service that has one; stale ones are marked", body = ServicesResponse)))]
async fn list(State(api): State<Api>) -> Json<ServicesResponse> {
    Json(ServicesResponse { services: api.shared.all(), shadow: api.shared.shadow() })
}

/// The last hour of every service, step by step: observed demand, the forecast made one
/// horizon earlier for the step, replicas decided, served and needed by demand alone.
#[utoipa::path(get, path = "/api/v1/history", tag = "decisions",
    responses((status = 200, description = "Every served service's last hour, oldest point first", body = crate::history::HistoryResponse)))]
async fn history(State(api): State<Api>) -> Json<crate::history::HistoryResponse> {
    Json(api.shared.history.snapshot())
}

/// One service by name, when the name is unique across namespaces.
#[utoipa::path(get, path = "/api/v1/services/{name}", tag = "decisions",
    params(("name" = String, Path, description = "The service's name", example = "order")),
    responses(
        (status = 200, description = "Its latest decision", body = Served),
        (status = 404, description = "Not configured in this predictor, or the name is in several namespaces", body = ErrorBody),
        (status = 503, description = "No fresh decision: starting, or Prometheus unreachable past the staleness limit", body = ErrorBody)))]
async fn one_by_name(State(api): State<Api>, Path(name): Path<String>) -> Result<Json<Served>, ApiError> {
    let id = api.shared.resolve(None, &name)?;
    Ok(Json(api.shared.served(&id)?))
}

/// One service.
#[utoipa::path(get, path = "/api/v1/services/{namespace}/{name}", tag = "decisions",
    params(
        ("namespace" = String, Path, description = "The service's namespace", example = "storefront"),
        ("name" = String, Path, description = "The service's name", example = "order")
    ),
    responses(
        (status = 200, description = "Its latest decision", body = Served),
        (status = 404, description = "Not configured in this predictor", body = ErrorBody),
        (status = 503, description = "No fresh decision: starting, or Prometheus unreachable past the staleness limit", body = ErrorBody)))]
async fn one(
    State(api): State<Api>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Served>, ApiError> {
    let id = api.shared.resolve(Some(&namespace), &name)?;
    Ok(Json(api.shared.served(&id)?))
}

fn authorise(api: &Api, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &api.admin_token else {
        return Err(ApiError(StatusCode::FORBIDDEN, "admin endpoints are disabled: set admin_token".into()));
    };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // Compare in constant time so the token cannot be guessed byte by byte.
    match given {
        Some(g) if !token.is_empty() && bool::from(subtle::ConstantTimeEq::ct_eq(g.as_bytes(), token.as_bytes())) => {
            Ok(())
        }
        Some(_) => Err(ApiError(StatusCode::UNAUTHORIZED, "wrong bearer token".into())),
        None => Err(ApiError(StatusCode::UNAUTHORIZED, "an `Authorization: Bearer <token>` header is required".into())),
    }
}

/// Checks the models' `latest` pointers now instead of at the next poll.
#[utoipa::path(post, path = "/api/v1/admin/reload", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 202, description = "Requested", body = ReloadRequested),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "Admin endpoints disabled (no admin_token)", body = ErrorBody)))]
async fn reload(State(api): State<Api>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    authorise(&api, &headers)?;
    api.reload.notify_one();
    Ok((StatusCode::ACCEPTED, Json(ReloadRequested { reload: "requested".into() })))
}

/// Turns shadow mode on or off: decisions are still made and served, but KEDA and the
/// scaler are told the replicas ready now.
#[utoipa::path(put, path = "/api/v1/admin/shadow", tag = "admin", security(("bearer" = [])),
    request_body = ShadowBody,
    responses(
        (status = 200, description = "Shadow mode as now set", body = ShadowBody),
        (status = 400, description = "The body is not `{\"shadow\": true|false}` as JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "Admin endpoints disabled (no admin_token)", body = ErrorBody),
        (status = 409, description = "Shadow mode is set by `shadow_file` (the ConfigMap every replica reads); change it there", body = ErrorBody)))]
async fn shadow(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Json<ShadowBody>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    authorise(&api, &headers)?;
    let Json(body) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    if let Some(file) = api.shared.shadow_file() {
        // Flipping one replica would leave the others (and the next restart) disagreeing.
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "shadow mode is set by {} (the predictor-shadow ConfigMap every replica reads); change it there",
                file.display()
            ),
        ));
    }
    api.shared.set_shadow(body.shadow);
    tracing::info!(shadow = body.shadow, "shadow mode changed by an admin");
    Ok(Json(ShadowBody { shadow: body.shadow }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "property-admin-token-0123456789";

    fn segment() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy as _;
        proptest::prop_oneof![
            proptest::sample::select(vec![
                "api",
                "v1",
                "services",
                "admin",
                "shadow",
                "reload",
                "storefront",
                "order",
                "openapi.json",
                "metrics",
                "readyz",
                "healthz",
                "..",
                "%2e%2e",
                "%2F",
                "",
                "%00",
                "%ff",
            ])
            .prop_map(str::to_owned),
            "[!-~]{0,8}",
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, failure_persistence: None, ..Default::default() })]

        /// Any method, path, credentials and body: an answer below 500 (or 503 while no
        /// fresh decision exists), never a panic, and no admin action without the token.
        #[test]
        fn any_request_is_answered_and_nothing_is_done_without_the_token(
            method in proptest::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
            segments in proptest::collection::vec(segment(), 0..6),
            auth in proptest::option::of(proptest::prop_oneof![
                proptest::strategy::Just(format!("Bearer {TOKEN}")),
                "\\PC{0,24}",
            ]),
            body in proptest::prop_oneof![
                proptest::strategy::Just(r#"{"shadow": true}"#.to_owned()),
                "\\PC{0,30}",
            ],
            json in proptest::bool::ANY,
            decided in proptest::bool::ANY,
        ) {
            let id: prescale_core::ServiceId = "storefront/order".parse().unwrap();
            let shared = Arc::new(Shared::new(vec![id.clone()], false, std::time::Duration::from_secs(60), crate::metrics::Metrics::new()));
            if decided {
                let decision = Decision {
                    service: id.clone(),
                    time: chrono::Utc::now(),
                    desired_replicas: 2,
                    observed_demand: None,
                    forecast: None,
                    reason: Reason::Reactive,
                    ready_replicas: None,
                    reactive_replicas: None,
                };
                shared.publish(vec![(id, Served { decision, replicas: 2, shadow: false, stale: false })]);
            }
            let reload = Arc::new(Notify::new());
            let api = Api { shared: shared.clone(), admin_token: Some(TOKEN.into()), reload: reload.clone() };
            let path = format!("/{}", segments.join("/"));
            let mut request = axum::http::Request::builder().method(method).uri(&path);
            if let Some(a) = &auth {
                request = request.header(header::AUTHORIZATION, a.as_str());
            }
            if json {
                request = request.header(header::CONTENT_TYPE, "application/json");
            }
            let Ok(request) = request.body(axum::body::Body::from(body)) else { return Ok(()) };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (status, reloaded) = runtime.block_on(async {
                use tower::ServiceExt as _;
                let status = app(api).oneshot(request).await.unwrap().status();
                let reloaded = tokio::time::timeout(std::time::Duration::ZERO, reload.notified()).await.is_ok();
                (status, reloaded)
            });
            proptest::prop_assert!(status.as_u16() < 500 || status.as_u16() == 503, "{method} {path}: {status}");
            let authorised = auth.as_deref() == Some(format!("Bearer {TOKEN}").as_str());
            if !authorised {
                proptest::prop_assert!(!shared.shadow(), "{method} {path} set shadow mode without the token");
                proptest::prop_assert!(!reloaded, "{method} {path} asked for a reload without the token");
            }
        }
    }

    /// The generated document names every route the router serves, the admin bearer
    /// scheme, and the decision's fields (flattened into `Served`).
    #[test]
    fn the_document_covers_every_route_and_type() {
        let doc: serde_json::Value = serde_json::from_str(&OPENAPI).unwrap();
        for (path, method) in [
            ("/", "get"),
            ("/api/v1/services", "get"),
            ("/api/v1/services/{name}", "get"),
            ("/api/v1/services/{namespace}/{name}", "get"),
            ("/api/v1/admin/reload", "post"),
            ("/api/v1/admin/shadow", "put"),
            ("/openapi.json", "get"),
            ("/metrics", "get"),
            ("/healthz", "get"),
            ("/readyz", "get"),
        ] {
            assert!(doc["paths"][path][method].is_object(), "{method} {path} is not documented");
        }
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        let served = doc["components"]["schemas"]["Served"].to_string();
        assert!(served.contains("Decision") && served.contains("replicas") && served.contains("stale"), "{served}");
        let decision = &doc["components"]["schemas"]["Decision"]["properties"];
        for field in ["service", "time", "desired_replicas", "observed_demand", "forecast", "reason"] {
            assert!(decision[field].is_object(), "Decision.{field} is not documented");
        }
        assert_eq!(
            doc["paths"]["/api/v1/services/{name}"]["get"]["responses"]["503"]["description"]
                .as_str()
                .map(|d| d.contains("staleness")),
            Some(true)
        );
    }
}
