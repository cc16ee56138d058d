//! The HTTP side: the JSON API (also what KEDA's `metrics-api` trigger reads), `/metrics`,
//! health, the OpenAPI description, and the admin endpoints behind a bearer token.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use prescale_policy::ServicesResponse;

use crate::state::{Served, Shared, Unavailable};

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The live page: predictions against observed demand and replicas, for people.
const LIVE_PAGE: &str = include_str!("live.html");

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

/// `PUT /api/v1/admin/shadow`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowBody {
    /// On or off.
    pub shadow: bool,
}

/// An error as JSON: `{"error": "..."}` with a status.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
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
        .route("/", get(|| async { Html(LIVE_PAGE) }))
        .route("/api/v1/services", get(list))
        .route("/api/v1/services/{name}", get(one_by_name))
        .route("/api/v1/services/{namespace}/{name}", get(one))
        .route("/api/v1/admin/reload", post(reload))
        .route("/api/v1/admin/shadow", put(shadow))
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .with_state(api)
        .merge(ops)
}

async fn list(State(api): State<Api>) -> Json<ServicesResponse> {
    Json(ServicesResponse { services: api.shared.all(), shadow: api.shared.shadow() })
}

async fn one_by_name(State(api): State<Api>, Path(name): Path<String>) -> Result<Json<Served>, ApiError> {
    let id = api.shared.resolve(None, &name)?;
    Ok(Json(api.shared.served(&id)?))
}

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

async fn reload(State(api): State<Api>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    authorise(&api, &headers)?;
    api.reload.notify_one();
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "reload": "requested" }))))
}

async fn shadow(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Json<ShadowBody>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    authorise(&api, &headers)?;
    let Json(body) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    api.shared.set_shadow(body.shadow);
    tracing::info!(shadow = body.shadow, "shadow mode changed by an admin");
    Ok(Json(serde_json::json!({ "shadow": body.shadow })))
}
