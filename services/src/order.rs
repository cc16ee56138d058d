//! `order`: create an order under an `Idempotency-Key` (a retry returns the same order and
//! never takes stock twice), stock taken in one transaction by the product service, and a
//! user's own orders.
//!
//! The key is claimed first (a unique row per user and key, status `pending`); whoever
//! claims it reserves stock with the product service under a key derived from it (which is
//! itself idempotent), then records the outcome. Concurrent retries that find the key
//! pending wait for that outcome instead of placing a second order.

use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::common::auth::{AuthUser, Keys};
use crate::common::db::Db;
use crate::common::error::{ApiError, Json, check_len};
use crate::product::{Line, Reservation, Reserve, check_lines};

/// The schema.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    status TEXT NOT NULL,
    total_cents INTEGER NOT NULL DEFAULT 0,
    detail TEXT,
    created TEXT NOT NULL,
    UNIQUE (user_id, idempotency_key)
);
CREATE TABLE IF NOT EXISTS order_items (
    order_id INTEGER NOT NULL REFERENCES orders(id),
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    price_cents INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS order_items_by_order ON order_items(order_id);";

/// The service's state.
#[derive(Debug, Clone, FromRef)]
pub struct OrderState {
    /// Orders.
    pub db: Db,
    /// JWT keys.
    pub keys: Keys,
    /// The product service's base URL.
    pub product_url: String,
    /// HTTP client for it.
    pub http: reqwest::Client,
}

/// An order request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// 1 to 20 lines.
    pub items: Vec<Line>,
}

/// An order line as answered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrderLine {
    /// Product.
    pub product_id: i64,
    /// Units.
    pub quantity: i64,
    /// Unit price, cents.
    pub price_cents: i64,
}

/// An order as answered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Order {
    /// Id.
    pub id: i64,
    /// `placed` or `rejected`.
    pub status: String,
    /// Total, cents.
    pub total_cents: i64,
    /// Why it was rejected.
    pub detail: Option<String>,
    /// Its lines.
    pub items: Vec<OrderLine>,
    /// When it was created.
    pub created: String,
}

fn load(conn: &rusqlite::Connection, user: i64, id: i64) -> Result<Option<Order>, ApiError> {
    let head = conn
        .query_row(
            "SELECT id, status, total_cents, detail, created FROM orders WHERE id = ?1 AND user_id = ?2",
            params![id, user],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let Some((id, status, total_cents, detail, created)) = head else { return Ok(None) };
    let mut stmt =
        conn.prepare_cached("SELECT product_id, quantity, price_cents FROM order_items WHERE order_id = ?1")?;
    let items = stmt
        .query_map([id], |r| Ok(OrderLine { product_id: r.get(0)?, quantity: r.get(1)?, price_cents: r.get(2)? }))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(Order { id, status, total_cents, detail, items, created }))
}

enum Claim {
    Mine(i64),
    Existing(i64, String),
}

async fn create(
    State(s): State<OrderState>,
    user: AuthUser,
    headers: HeaderMap,
    Json(new): Json<NewOrder>,
) -> Result<(StatusCode, axum::Json<Order>), ApiError> {
    let key = headers
        .get("idempotency-key")
        .ok_or_else(|| ApiError::bad_request("the `Idempotency-Key` header is required"))?
        .to_str()
        .map_err(|_| ApiError::bad_request("the `Idempotency-Key` header must be text"))?
        .to_owned();
    check_len("Idempotency-Key", &key, 1, 64)?;
    check_lines(&new.items)?;
    let uid = user.id;
    let k = key.clone();
    let claim =
        s.db.call(move |conn| {
            let inserted = conn.execute(
                "INSERT INTO orders (user_id, idempotency_key, status, created) VALUES (?1, ?2, 'pending', ?3) \
                 ON CONFLICT(user_id, idempotency_key) DO NOTHING",
                params![uid, k, chrono::Utc::now().to_rfc3339()],
            )?;
            if inserted == 1 {
                return Ok(Claim::Mine(conn.last_insert_rowid()));
            }
            let (id, status) = conn.query_row(
                "SELECT id, status FROM orders WHERE user_id = ?1 AND idempotency_key = ?2",
                params![uid, k],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(Claim::Existing(id, status))
        })
        .await?;
    let id = match claim {
        Claim::Existing(id, status) => {
            let order = wait_settled(&s.db, uid, id, status).await?;
            return Ok((StatusCode::OK, axum::Json(order)));
        }
        Claim::Mine(id) => id,
    };
    let reserve = Reserve { key: format!("order:{uid}:{key}"), items: new.items };
    let outcome = async {
        s.http
            .post(format!("{}/internal/reserve", s.product_url))
            .json(&reserve)
            .send()
            .await?
            .error_for_status()?
            .json::<Reservation>()
            .await
    }
    .await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            // Release the claim: the product service took nothing it did not record under
            // its key, so a retry with the same key resumes safely.
            s.db.call(move |conn| Ok(conn.execute("DELETE FROM orders WHERE id = ?1 AND status = 'pending'", [id])?))
                .await?;
            return Err(ApiError::upstream(e));
        }
    };
    let order = s
        .db
        .call(move |conn| {
            let tx = conn.transaction()?;
            match &outcome {
                Reservation::Reserved { lines } => {
                    let total: i64 = lines.iter().map(|(_, q, p)| q * p).sum();
                    for (product, quantity, price) in lines {
                        tx.execute(
                            "INSERT INTO order_items (order_id, product_id, quantity, price_cents) VALUES (?1, ?2, ?3, ?4)",
                            params![id, product, quantity, price],
                        )?;
                    }
                    tx.execute("UPDATE orders SET status = 'placed', total_cents = ?1 WHERE id = ?2", params![total, id])?;
                }
                Reservation::Insufficient { product_id, available } => {
                    tx.execute(
                        "UPDATE orders SET status = 'rejected', detail = ?1 WHERE id = ?2",
                        params![format!("product {product_id} has only {available} in stock"), id],
                    )?;
                }
                Reservation::Unknown { product_id } => {
                    tx.execute(
                        "UPDATE orders SET status = 'rejected', detail = ?1 WHERE id = ?2",
                        params![format!("no product {product_id}"), id],
                    )?;
                }
            }
            tx.commit()?;
            load(conn, uid, id)?.ok_or_else(|| ApiError::internal("order vanished"))
        })
        .await?;
    let status = if order.status == "placed" { StatusCode::CREATED } else { StatusCode::CONFLICT };
    Ok((status, axum::Json(order)))
}

/// Waits for a concurrent attempt with the same key to settle, then answers its order.
async fn wait_settled(db: &Db, user: i64, id: i64, mut status: String) -> Result<Order, ApiError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status == "pending" {
        if tokio::time::Instant::now() > deadline {
            return Err(ApiError::conflict("an order with this Idempotency-Key is still being placed; retry later"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = match db
            .call(move |conn| {
                Ok(conn.query_row("SELECT status FROM orders WHERE id = ?1", [id], |r| r.get(0)).optional()?)
            })
            .await?
        {
            Some(s) => s,
            // The first attempt failed upstream and released the key.
            None => return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the first attempt failed; retry")),
        };
    }
    db.call(move |conn| load(conn, user, id)?.ok_or_else(|| ApiError::not_found(format!("no order {id}")))).await
}

async fn list(State(s): State<OrderState>, user: AuthUser) -> Result<axum::Json<Vec<Order>>, ApiError> {
    let uid = user.id;
    let orders =
        s.db.call(move |conn| {
            let ids: Vec<i64> = conn
                .prepare_cached(
                    "SELECT id FROM orders WHERE user_id = ?1 AND status != 'pending' ORDER BY id DESC LIMIT 100",
                )?
                .query_map([uid], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::new();
            for id in ids {
                out.extend(load(conn, uid, id)?);
            }
            Ok(out)
        })
        .await?;
    Ok(axum::Json(orders))
}

async fn one(State(s): State<OrderState>, user: AuthUser, Path(id): Path<i64>) -> Result<axum::Json<Order>, ApiError> {
    let uid = user.id;
    // Another user's order is answered exactly like a missing one.
    let order =
        s.db.call(move |conn| load(conn, uid, id)?.ok_or_else(|| ApiError::not_found(format!("no order {id}"))))
            .await?;
    Ok(axum::Json(order))
}

/// Placed orders after an id, as product lists: what the recommender learns from.
#[derive(Debug, Serialize, Deserialize)]
pub struct Basket {
    /// Order id.
    pub order_id: i64,
    /// Products in it.
    pub product_ids: Vec<i64>,
}

/// `?after=` for the basket feed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct After {
    /// Last order id already seen.
    pub after: Option<i64>,
}

async fn baskets(State(s): State<OrderState>, Query(q): Query<After>) -> Result<axum::Json<Vec<Basket>>, ApiError> {
    let after = q.after.unwrap_or(0);
    let out =
        s.db.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT o.id, i.product_id FROM orders o JOIN order_items i ON i.order_id = o.id \
                 WHERE o.id > ?1 AND o.status = 'placed' AND o.id IN \
                 (SELECT id FROM orders WHERE id > ?1 AND status = 'placed' ORDER BY id LIMIT 1000) ORDER BY o.id",
            )?;
            let mut out: Vec<Basket> = Vec::new();
            for r in stmt.query_map([after], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))? {
                let (order_id, product) = r?;
                match out.last_mut() {
                    Some(b) if b.order_id == order_id => b.product_ids.push(product),
                    _ => out.push(Basket { order_id, product_ids: vec![product] }),
                }
            }
            Ok(out)
        })
        .await?;
    Ok(axum::Json(out))
}

/// The routes.
pub fn routes(state: OrderState) -> Router {
    Router::new()
        .route("/orders", get(list).post(create))
        .route("/orders/{id}", get(one))
        .route("/internal/baskets", get(baskets))
        .with_state(state)
}
