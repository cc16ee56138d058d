//! `authen`: register and log in with argon2id password hashes; issues and verifies JWTs.
//!
//! Passwords are never stored or logged in clear: only their argon2id PHC strings are
//! kept, and request bodies are never logged.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::common::auth::{AuthUser, Keys};
use crate::common::db::Db;
use crate::common::error::{ApiError, Json, check_len};

/// The schema.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created TEXT NOT NULL
);";

/// The service's state.
#[derive(Debug, Clone, FromRef)]
pub struct AuthenState {
    /// Users.
    pub db: Db,
    /// JWT keys.
    pub keys: Keys,
}

/// Register or log in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// 3 to 32 of `[a-z0-9_.-]`.
    pub username: String,
    /// 8 to 128 characters.
    pub password: String,
}

/// A user as answered.
#[derive(Debug, Serialize, Deserialize)]
pub struct User {
    /// Id.
    pub id: i64,
    /// Name.
    pub username: String,
}

/// A login's answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Token {
    /// The JWT.
    pub token: String,
    /// The user.
    pub user: User,
}

fn validate(c: &Credentials) -> Result<(), ApiError> {
    check_len("username", &c.username, 3, 32)?;
    if !c.username.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "_.-".contains(ch)) {
        return Err(ApiError::invalid("`username` may hold only a-z, 0-9, `_`, `.` and `-`"));
    }
    check_len("password", &c.password, 8, 128)
}

async fn register(
    State(s): State<AuthenState>,
    Json(c): Json<Credentials>,
) -> Result<(StatusCode, axum::Json<User>), ApiError> {
    validate(&c)?;
    // Hashing is deliberately slow: keep it off the async threads.
    let hash = tokio::task::spawn_blocking(move || {
        // A fresh random salt per hash; parameters are argon2id's defaults.
        Argon2::default().hash_password(c.password.as_bytes()).map(|h| h.to_string())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let username = c.username.clone();
    let id = s
        .db
        .call(move |conn| {
            let inserted = conn.execute(
                "INSERT INTO users (username, password_hash, created) VALUES (?1, ?2, ?3) ON CONFLICT(username) DO NOTHING",
                rusqlite::params![username, hash, chrono::Utc::now().to_rfc3339()],
            )?;
            if inserted == 0 {
                return Err(ApiError::conflict(format!("username `{username}` is taken")));
            }
            Ok(conn.last_insert_rowid())
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(User { id, username: c.username })))
}

async fn login(State(s): State<AuthenState>, Json(c): Json<Credentials>) -> Result<axum::Json<Token>, ApiError> {
    let username = c.username.clone();
    let found: Option<(i64, String)> =
        s.db.call(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT id, password_hash FROM users WHERE username = ?1")?;
            let mut rows = stmt.query([username])?;
            Ok(match rows.next()? {
                Some(r) => Some((r.get(0)?, r.get(1)?)),
                None => None,
            })
        })
        .await?;
    let refused = || ApiError::unauthorized("wrong username or password");
    let Some((id, hash)) = found else {
        return Err(refused());
    };
    let password = c.password;
    let ok = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    if !ok {
        return Err(refused());
    }
    Ok(axum::Json(Token { token: s.keys.issue(id, &c.username)?, user: User { id, username: c.username } }))
}

async fn verify(_: State<AuthenState>, user: AuthUser) -> axum::Json<User> {
    axum::Json(User { id: user.id, username: user.name })
}

/// The routes.
pub fn routes(state: AuthenState) -> Router {
    Router::new()
        .route("/register", post(register))
        .route("/login", post(login))
        .route("/verify", get(verify))
        .with_state(state)
}
