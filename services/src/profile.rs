//! `profile`: read and update one's own profile (created on first read).

use axum::Router;
use axum::extract::{FromRef, State};
use axum::routing::get;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::common::auth::{AuthUser, Keys};
use crate::common::db::Db;
use crate::common::error::{ApiError, Json, check_len};

/// The schema.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS profiles (
    user_id INTEGER PRIMARY KEY,
    display_name TEXT NOT NULL,
    email TEXT,
    favourite_sport TEXT,
    updated TEXT NOT NULL
);";

/// The service's state.
#[derive(Debug, Clone, FromRef)]
pub struct ProfileState {
    /// Profiles.
    pub db: Db,
    /// JWT keys.
    pub keys: Keys,
}

/// A profile.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    /// Whose.
    pub user_id: i64,
    /// Shown name.
    pub display_name: String,
    /// Contact address.
    pub email: Option<String>,
    /// Favourite sport.
    pub favourite_sport: Option<String>,
}

/// An update.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    /// 1 to 64 characters.
    pub display_name: String,
    /// An address with an `@`.
    pub email: Option<String>,
    /// Up to 32 characters.
    pub favourite_sport: Option<String>,
}

fn read(conn: &rusqlite::Connection, user: i64) -> rusqlite::Result<Option<Profile>> {
    conn.query_row(
        "SELECT user_id, display_name, email, favourite_sport FROM profiles WHERE user_id = ?1",
        [user],
        |r| Ok(Profile { user_id: r.get(0)?, display_name: r.get(1)?, email: r.get(2)?, favourite_sport: r.get(3)? }),
    )
    .optional()
}

async fn me(State(s): State<ProfileState>, user: AuthUser) -> Result<axum::Json<Profile>, ApiError> {
    let profile = s
        .db
        .call(move |conn| {
            conn.execute(
                "INSERT INTO profiles (user_id, display_name, updated) VALUES (?1, ?2, ?3) ON CONFLICT(user_id) DO NOTHING",
                params![user.id, user.name, chrono::Utc::now().to_rfc3339()],
            )?;
            read(conn, user.id)?.ok_or_else(|| ApiError::internal("profile vanished"))
        })
        .await?;
    Ok(axum::Json(profile))
}

async fn update(
    State(s): State<ProfileState>,
    user: AuthUser,
    Json(u): Json<Update>,
) -> Result<axum::Json<Profile>, ApiError> {
    check_len("display_name", &u.display_name, 1, 64)?;
    if let Some(email) = &u.email {
        check_len("email", email, 3, 254)?;
        if !email.contains('@') {
            return Err(ApiError::invalid("`email` must contain `@`"));
        }
    }
    if let Some(sport) = &u.favourite_sport {
        check_len("favourite_sport", sport, 1, 32)?;
    }
    let profile = s
        .db
        .call(move |conn| {
            conn.execute(
                "INSERT INTO profiles (user_id, display_name, email, favourite_sport, updated) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT(user_id) DO UPDATE SET display_name = ?2, email = ?3, favourite_sport = ?4, updated = ?5",
                params![user.id, u.display_name.trim(), u.email, u.favourite_sport, chrono::Utc::now().to_rfc3339()],
            )?;
            read(conn, user.id)?.ok_or_else(|| ApiError::internal("profile vanished"))
        })
        .await?;
    Ok(axum::Json(profile))
}

/// The routes: only `/profile`, always the caller's own (there is no way to name another).
pub fn routes(state: ProfileState) -> Router {
    Router::new().route("/profile", get(me).put(update)).with_state(state)
}
