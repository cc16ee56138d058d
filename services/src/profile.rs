//! `profile`: read and update one's own profile (created on first read).

use axum::Router;
use axum::extract::{FromRef, State};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::common::auth::{AuthUser, Keys};
use crate::common::db::Db;
use crate::common::error::{ApiError, Json, check_len};

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

impl sqlx::FromRow<'_, sqlx::any::AnyRow> for Profile {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        Ok(Self {
            user_id: row.try_get("user_id")?,
            display_name: row.try_get("display_name")?,
            email: row.try_get("email")?,
            favourite_sport: row.try_get("favourite_sport")?,
        })
    }
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

async fn read(db: &Db, user: i64) -> Result<Profile, ApiError> {
    sqlx::query_as::<_, Profile>(
        "SELECT user_id, display_name, email, favourite_sport FROM profiles WHERE user_id = $1",
    )
    .bind(user)
    .fetch_optional(&db.pool)
    .await?
    .ok_or_else(|| ApiError::internal("profile vanished"))
}

async fn me(State(s): State<ProfileState>, user: AuthUser) -> Result<axum::Json<Profile>, ApiError> {
    sqlx::query(
        "INSERT INTO profiles (user_id, display_name, updated) VALUES ($1, $2, $3) ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user.id)
    .bind(&user.name)
    .bind(chrono::Utc::now().to_rfc3339())
    .execute(&s.db.pool)
    .await?;
    Ok(axum::Json(read(&s.db, user.id).await?))
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
    sqlx::query(
        "INSERT INTO profiles (user_id, display_name, email, favourite_sport, updated) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (user_id) DO UPDATE SET display_name = $2, email = $3, favourite_sport = $4, updated = $5",
    )
    .bind(user.id)
    .bind(u.display_name.trim())
    .bind(u.email)
    .bind(u.favourite_sport)
    .bind(chrono::Utc::now().to_rfc3339())
    .execute(&s.db.pool)
    .await?;
    Ok(axum::Json(read(&s.db, user.id).await?))
}

/// The routes: only `/profile`, always the caller's own (there is no way to name another).
pub fn routes(state: ProfileState) -> Router {
    Router::new().route("/profile", get(me).put(update)).with_state(state)
}
