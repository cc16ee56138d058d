//! `booking`: sports-facility time slots: availability, book, cancel. A slot holds one
//! booking (a unique constraint, so two concurrent bookings cannot both win): the second
//! gets 409. Dates are parsed and stored in one canonical spelling, `YYYY-MM-DD`, so every
//! spelling of a day (`2030-5-1`, ` 2030-05-01`, `+2030-05-01`) is the same slot.

use axum::Router;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::common::auth::{AuthUser, Keys};
use crate::common::db::Db;
use crate::common::error::{ApiError, Json};

/// First bookable hour.
pub const OPENS: i64 = 8;
/// Hour after the last bookable one.
pub const CLOSES: i64 = 22;

const FACILITIES: [(&str, &str); 6] = [
    ("Court 1", "tennis"),
    ("Court 2", "tennis"),
    ("Court 3", "padel"),
    ("Pitch A", "football"),
    ("Hall", "badminton"),
    ("Pool lane 1", "swimming"),
];

/// Seeds the facilities (safe when replicas start together: `ON CONFLICT DO NOTHING`).
pub async fn seed(db: &Db) -> Result<(), sqlx::Error> {
    for (i, (name, sport)) in FACILITIES.iter().enumerate() {
        sqlx::query("INSERT INTO facilities (id, name, sport) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
            .bind(i as i64 + 1)
            .bind(*name)
            .bind(*sport)
            .execute(&db.pool)
            .await?;
    }
    Ok(())
}

/// The service's state.
#[derive(Debug, Clone, FromRef)]
pub struct BookingState {
    /// Facilities and bookings.
    pub db: Db,
    /// JWT keys.
    pub keys: Keys,
}

/// A facility.
#[derive(Debug, Serialize, Deserialize)]
pub struct Facility {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Sport.
    pub sport: String,
}

impl sqlx::FromRow<'_, sqlx::any::AnyRow> for Facility {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        Ok(Self { id: row.try_get("id")?, name: row.try_get("name")?, sport: row.try_get("sport")? })
    }
}

/// A booking.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Booking {
    /// Id.
    pub id: i64,
    /// Facility.
    pub facility_id: i64,
    /// Day, `YYYY-MM-DD`.
    pub date: String,
    /// Starting hour (one-hour slots).
    pub hour: i64,
}

impl sqlx::FromRow<'_, sqlx::any::AnyRow> for Booking {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        Ok(Self {
            id: row.try_get("id")?,
            facility_id: row.try_get("facility_id")?,
            date: row.try_get("date")?,
            hour: row.try_get("hour")?,
        })
    }
}

/// A booking request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBooking {
    /// Facility.
    pub facility_id: i64,
    /// Day, `YYYY-MM-DD`.
    pub date: String,
    /// Starting hour, 8 to 21.
    pub hour: i64,
}

/// `?date=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DateQuery {
    /// Day, `YYYY-MM-DD`.
    pub date: String,
}

/// Free and taken hours of a facility on a day.
#[derive(Debug, Serialize, Deserialize)]
pub struct Availability {
    /// Facility.
    pub facility_id: i64,
    /// Day.
    pub date: String,
    /// Hours still free.
    pub free: Vec<i64>,
}

/// A day as stored and answered: `YYYY-MM-DD`, whatever spelling chrono accepts for it
/// (surrounding spaces, a leading `+`, unpadded month and day); years 1 to 9999 only, so
/// the canonical form has exactly four digits.
pub fn canonical_date(date: &str) -> Result<String, ApiError> {
    let refused = || ApiError::invalid(format!("`date` must be a day as YYYY-MM-DD, not {date:?}"));
    let day = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d").map_err(|_| refused())?;
    if !(1..=9999).contains(&day.year()) {
        return Err(refused());
    }
    Ok(day.format("%Y-%m-%d").to_string())
}

async fn facilities(State(s): State<BookingState>) -> Result<axum::Json<Vec<Facility>>, ApiError> {
    let out = sqlx::query_as::<_, Facility>("SELECT id, name, sport FROM facilities ORDER BY id")
        .fetch_all(&s.db.pool)
        .await?;
    Ok(axum::Json(out))
}

async fn facility_exists(db: &Db, id: i64) -> Result<(), ApiError> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT id FROM facilities WHERE id = $1").bind(id).fetch_optional(&db.pool).await?;
    found.map(|_| ()).ok_or_else(|| ApiError::not_found(format!("no facility {id}")))
}

async fn availability(
    State(s): State<BookingState>,
    Path(id): Path<i64>,
    Query(q): Query<DateQuery>,
) -> Result<axum::Json<Availability>, ApiError> {
    let date = canonical_date(&q.date)?;
    facility_exists(&s.db, id).await?;
    let taken: Vec<i64> = sqlx::query_scalar("SELECT hour FROM bookings WHERE facility_id = $1 AND date = $2")
        .bind(id)
        .bind(&date)
        .fetch_all(&s.db.pool)
        .await?;
    let free = (OPENS..CLOSES).filter(|h| !taken.contains(h)).collect();
    Ok(axum::Json(Availability { facility_id: id, date, free }))
}

async fn book(
    State(s): State<BookingState>,
    user: AuthUser,
    Json(b): Json<NewBooking>,
) -> Result<(StatusCode, axum::Json<Booking>), ApiError> {
    let date = canonical_date(&b.date)?;
    if !(OPENS..CLOSES).contains(&b.hour) {
        return Err(ApiError::invalid(format!("`hour` must be {OPENS} to {}, not {}", CLOSES - 1, b.hour)));
    }
    facility_exists(&s.db, b.facility_id).await?;
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO bookings (user_id, facility_id, date, hour, created) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (facility_id, date, hour) DO NOTHING RETURNING id",
    )
    .bind(user.id)
    .bind(b.facility_id)
    .bind(&date)
    .bind(b.hour)
    .bind(chrono::Utc::now().to_rfc3339())
    .fetch_optional(&s.db.pool)
    .await?;
    let Some(id) = id else {
        return Err(ApiError::conflict(format!(
            "facility {} is already booked on {date} at {}:00",
            b.facility_id, b.hour
        )));
    };
    Ok((StatusCode::CREATED, axum::Json(Booking { id, facility_id: b.facility_id, date, hour: b.hour })))
}

async fn mine(State(s): State<BookingState>, user: AuthUser) -> Result<axum::Json<Vec<Booking>>, ApiError> {
    let out = sqlx::query_as::<_, Booking>(
        "SELECT id, facility_id, date, hour FROM bookings WHERE user_id = $1 ORDER BY date, hour",
    )
    .bind(user.id)
    .fetch_all(&s.db.pool)
    .await?;
    Ok(axum::Json(out))
}

async fn cancel(State(s): State<BookingState>, user: AuthUser, Path(id): Path<i64>) -> Result<StatusCode, ApiError> {
    // Only one's own booking: another user's is answered as missing.
    let deleted = sqlx::query("DELETE FROM bookings WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user.id)
        .execute(&s.db.pool)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(ApiError::not_found(format!("no booking {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The routes.
pub fn routes(state: BookingState) -> Router {
    Router::new()
        .route("/facilities", get(facilities))
        .route("/facilities/{id}/availability", get(availability))
        .route("/bookings", get(mine).post(book))
        .route("/bookings/{id}", delete(cancel))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_day_is_one_day() {
        for spelling in ["2030-05-01", "2030-5-1", " 2030-05-01", "2030-05-1", "+2030-05-01", "2030-05-01 "] {
            assert_eq!(canonical_date(spelling).unwrap(), "2030-05-01", "{spelling:?}");
        }
        for bad in ["2030-13-01", "2030-02-30", "01-05-2030", "", "20300501", "-0001-01-01", "12345-01-01"] {
            assert!(canonical_date(bad).is_err(), "{bad:?}");
        }
    }
}
