//! `booking`: sports-facility time slots: availability, book, cancel. A slot holds one
//! booking (a unique constraint, so two concurrent bookings cannot both win): the second
//! gets 409.

use axum::Router;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use chrono::NaiveDate;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::common::auth::{AuthUser, Keys};
use crate::common::db::Db;
use crate::common::error::{ApiError, Json};

/// The schema.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS facilities (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    sport TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bookings (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    facility_id INTEGER NOT NULL REFERENCES facilities(id),
    date TEXT NOT NULL,
    hour INTEGER NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (facility_id, date, hour)
);
CREATE INDEX IF NOT EXISTS bookings_by_user ON bookings(user_id);";

/// First bookable hour.
pub const OPENS: i64 = 8;
/// Hour after the last bookable one.
pub const CLOSES: i64 = 22;

/// Seeds the facilities once.
pub fn seed(db: &rusqlite::Connection) -> rusqlite::Result<()> {
    let count: i64 = db.query_row("SELECT COUNT(*) FROM facilities", [], |r| r.get(0))?;
    if count == 0 {
        for (i, (name, sport)) in [
            ("Court 1", "tennis"),
            ("Court 2", "tennis"),
            ("Court 3", "padel"),
            ("Pitch A", "football"),
            ("Hall", "badminton"),
            ("Pool lane 1", "swimming"),
        ]
        .iter()
        .enumerate()
        {
            db.execute(
                "INSERT INTO facilities (id, name, sport) VALUES (?1, ?2, ?3)",
                params![i as i64 + 1, name, sport],
            )?;
        }
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

fn check_date(date: &str) -> Result<(), ApiError> {
    NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map(|_| ())
        .map_err(|_| ApiError::invalid(format!("`date` must be YYYY-MM-DD, not {date:?}")))
}

async fn facilities(State(s): State<BookingState>) -> Result<axum::Json<Vec<Facility>>, ApiError> {
    let out =
        s.db.call(|conn| {
            Ok(conn
                .prepare_cached("SELECT id, name, sport FROM facilities ORDER BY id")?
                .query_map([], |r| Ok(Facility { id: r.get(0)?, name: r.get(1)?, sport: r.get(2)? }))?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await?;
    Ok(axum::Json(out))
}

async fn facility_exists(db: &Db, id: i64) -> Result<(), ApiError> {
    db.call(move |conn| {
        conn.query_row("SELECT 1 FROM facilities WHERE id = ?1", [id], |_| Ok(()))
            .optional()?
            .ok_or_else(|| ApiError::not_found(format!("no facility {id}")))
    })
    .await
}

async fn availability(
    State(s): State<BookingState>,
    Path(id): Path<i64>,
    Query(q): Query<DateQuery>,
) -> Result<axum::Json<Availability>, ApiError> {
    check_date(&q.date)?;
    facility_exists(&s.db, id).await?;
    let date = q.date.clone();
    let taken: Vec<i64> =
        s.db.call(move |conn| {
            Ok(conn
                .prepare_cached("SELECT hour FROM bookings WHERE facility_id = ?1 AND date = ?2")?
                .query_map(params![id, date], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await?;
    let free = (OPENS..CLOSES).filter(|h| !taken.contains(h)).collect();
    Ok(axum::Json(Availability { facility_id: id, date: q.date, free }))
}

async fn book(
    State(s): State<BookingState>,
    user: AuthUser,
    Json(b): Json<NewBooking>,
) -> Result<(StatusCode, axum::Json<Booking>), ApiError> {
    check_date(&b.date)?;
    if !(OPENS..CLOSES).contains(&b.hour) {
        return Err(ApiError::invalid(format!("`hour` must be {OPENS} to {}, not {}", CLOSES - 1, b.hour)));
    }
    facility_exists(&s.db, b.facility_id).await?;
    let uid = user.id;
    let booking =
        s.db.call(move |conn| {
            let inserted = conn.execute(
                "INSERT INTO bookings (user_id, facility_id, date, hour, created) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT(facility_id, date, hour) DO NOTHING",
                params![uid, b.facility_id, b.date, b.hour, chrono::Utc::now().to_rfc3339()],
            )?;
            if inserted == 0 {
                return Err(ApiError::conflict(format!(
                    "facility {} is already booked on {} at {}:00",
                    b.facility_id, b.date, b.hour
                )));
            }
            Ok(Booking { id: conn.last_insert_rowid(), facility_id: b.facility_id, date: b.date, hour: b.hour })
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(booking)))
}

async fn mine(State(s): State<BookingState>, user: AuthUser) -> Result<axum::Json<Vec<Booking>>, ApiError> {
    let uid = user.id;
    let out =
        s.db.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, facility_id, date, hour FROM bookings WHERE user_id = ?1 ORDER BY date, hour",
                )?
                .query_map([uid], |r| {
                    Ok(Booking { id: r.get(0)?, facility_id: r.get(1)?, date: r.get(2)?, hour: r.get(3)? })
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await?;
    Ok(axum::Json(out))
}

async fn cancel(State(s): State<BookingState>, user: AuthUser, Path(id): Path<i64>) -> Result<StatusCode, ApiError> {
    let uid = user.id;
    // Only one's own booking: another user's is answered as missing.
    let deleted = s
        .db
        .call(move |conn| Ok(conn.execute("DELETE FROM bookings WHERE id = ?1 AND user_id = ?2", params![id, uid])?))
        .await?;
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
