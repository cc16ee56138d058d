//! `order`: create an order under an `Idempotency-Key` (a retry returns the same order and
//! never takes stock twice), stock taken in one transaction by the product service, and a
//! user's own orders.
//!
//! Idempotency works as Stripe's and the IETF `Idempotency-Key` draft's: the key is claimed
//! first (a unique row per user and key, status `pending`) together with a fingerprint of
//! the request (SHA-256 of its lines); the same key with another body is refused with 422.
//! Whoever holds the claim reserves stock with the product service under a key derived from
//! it (itself idempotent), then records the outcome. Concurrent retries that find the key
//! pending wait for that outcome instead of placing a second order. A claim is never left
//! pending for good: if its handler is dropped (the client went away) the claim is
//! released, and a claim older than [`CLAIM_LEASE`] (its process died) is taken over by
//! the next retry; both are safe because the reservation under the key is taken once.

use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::common::auth::{AuthUser, INTERNAL_HEADER, InternalCaller, Keys};
use crate::common::db::Db;
use crate::common::error::{ApiError, Json, check_len};
use crate::product::{Line, Reservation, Reserve, check_lines};

/// How long the order service waits for the product service.
pub const PRODUCT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a pending claim is its holder's: past it (longer than any product call), the
/// holder is presumed dead and a retry takes the claim over.
pub const CLAIM_LEASE: Duration = Duration::from_secs(30);
/// How long a retry waits for a concurrent attempt with its key to settle.
pub const SETTLE_WAIT: Duration = Duration::from_secs(10);

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

async fn load(db: &Db, user: i64, id: i64) -> Result<Option<Order>, ApiError> {
    let head: Option<(i64, String, i64, Option<String>, String)> =
        sqlx::query_as("SELECT id, status, total_cents, detail, created FROM orders WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .fetch_optional(&db.pool)
            .await?;
    let Some((id, status, total_cents, detail, created)) = head else { return Ok(None) };
    let items = sqlx::query_as::<_, (i64, i64, i64)>(
        "SELECT product_id, quantity, price_cents FROM order_items WHERE order_id = $1 ORDER BY product_id",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await?
    .into_iter()
    .map(|(product_id, quantity, price_cents)| OrderLine { product_id, quantity, price_cents })
    .collect();
    Ok(Some(Order { id, status, total_cents, detail, items, created }))
}

/// The fingerprint of an order request: its lines, as the service reads them.
fn fingerprint(items: &[Line]) -> String {
    let canonical = serde_json::to_vec(items).expect("lines serialise");
    hex::encode(Sha256::digest(canonical))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A pending claim this handler holds: released if the handler is dropped before it
/// settles the order (the client went away), so a retry does not wait on a dead claim.
struct Claim {
    db: Db,
    id: i64,
    settled: bool,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (db, id) = (self.db.clone(), self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = release(&db, id).await {
                    tracing::warn!(order = id, "releasing an abandoned claim: {e}; it expires after its lease");
                }
            });
        }
    }
}

/// Deletes a claim that is still pending (the product service took nothing it did not
/// record under the key, so a retry with the same key resumes safely).
async fn release(db: &Db, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM orders WHERE id = $1 AND status = 'pending'").bind(id).execute(&db.pool).await?;
    Ok(())
}

enum Claimed {
    Mine(i64),
    Existing(i64, String),
}

/// Claims `key` for `user`, or finds who has it: refuses another body under the key, and
/// takes over a pending claim whose lease has run out.
async fn claim(db: &Db, user: i64, key: &str, hash: &str) -> Result<Claimed, ApiError> {
    let now = now_ms();
    let mine: Option<i64> = sqlx::query_scalar(
        "INSERT INTO orders (user_id, idempotency_key, request_hash, status, claimed_ms, created) \
         VALUES ($1, $2, $3, 'pending', $4, $5) ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(user)
    .bind(key)
    .bind(hash)
    .bind(now)
    .bind(chrono::Utc::now().to_rfc3339())
    .fetch_optional(&db.pool)
    .await?;
    if let Some(id) = mine {
        return Ok(Claimed::Mine(id));
    }
    let existing: Option<(i64, String, String, i64)> = sqlx::query_as(
        "SELECT id, status, request_hash, claimed_ms FROM orders WHERE user_id = $1 AND idempotency_key = $2",
    )
    .bind(user)
    .bind(key)
    .fetch_optional(&db.pool)
    .await?;
    let Some((id, status, stored_hash, claimed_ms)) = existing else {
        // Released between our insert and this read: the retry may claim it.
        return Err(ApiError::busy("the first attempt with this Idempotency-Key failed; retry", 1));
    };
    if stored_hash != hash {
        return Err(ApiError::invalid(format!(
            "the Idempotency-Key `{key}` was already used with another request body; use a new key for a new order"
        )));
    }
    if status == "pending" && now - claimed_ms > CLAIM_LEASE.as_millis() as i64 {
        // Compare-and-set on the stamp we read: of several retries, one takes it over.
        let taken =
            sqlx::query("UPDATE orders SET claimed_ms = $1 WHERE id = $2 AND status = 'pending' AND claimed_ms = $3")
                .bind(now)
                .bind(id)
                .bind(claimed_ms)
                .execute(&db.pool)
                .await?
                .rows_affected()
                == 1;
        if taken {
            tracing::info!(order = id, "taking over a claim whose lease ran out");
            return Ok(Claimed::Mine(id));
        }
    }
    Ok(Claimed::Existing(id, status))
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
    let id = match claim(&s.db, uid, &key, &fingerprint(&new.items)).await? {
        Claimed::Existing(id, status) => {
            let order = wait_settled(&s.db, uid, id, status).await?;
            return Ok((StatusCode::OK, axum::Json(order)));
        }
        Claimed::Mine(id) => id,
    };
    let mut claim = Claim { db: s.db.clone(), id, settled: false };
    let reserve = Reserve { key: format!("order:{uid}:{key}"), items: new.items };
    let outcome = async {
        s.http
            .post(format!("{}/internal/reserve", s.product_url))
            .header(INTERNAL_HEADER, s.keys.internal_token())
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
            claim.settled = true;
            release(&s.db, id).await?;
            return Err(ApiError::upstream("product", e));
        }
    };
    let mut tx = s.db.pool.begin().await?;
    match &outcome {
        Reservation::Reserved { lines } => {
            let total: i64 = lines.iter().map(|(_, q, p)| q * p).sum();
            // Only while still pending: a claim taken over meanwhile is settled once.
            let updated = sqlx::query(
                "UPDATE orders SET status = 'placed', total_cents = $1 WHERE id = $2 AND status = 'pending'",
            )
            .bind(total)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 1 {
                for (product, quantity, price) in lines {
                    sqlx::query(
                        "INSERT INTO order_items (order_id, product_id, quantity, price_cents) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(id)
                    .bind(product)
                    .bind(quantity)
                    .bind(price)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        Reservation::Insufficient { product_id, available } => {
            reject(&mut tx, id, format!("product {product_id} has only {available} in stock")).await?;
        }
        Reservation::Unknown { product_id } => {
            reject(&mut tx, id, format!("no product {product_id}")).await?;
        }
    }
    tx.commit().await?;
    claim.settled = true;
    let order = load(&s.db, uid, id).await?.ok_or_else(|| ApiError::internal("order vanished"))?;
    let status = if order.status == "placed" { StatusCode::CREATED } else { StatusCode::CONFLICT };
    Ok((status, axum::Json(order)))
}

async fn reject(tx: &mut sqlx::Transaction<'_, sqlx::Any>, id: i64, detail: String) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE orders SET status = 'rejected', detail = $1 WHERE id = $2 AND status = 'pending'")
        .bind(detail)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Waits for a concurrent attempt with the same key to settle, then answers its order.
async fn wait_settled(db: &Db, user: i64, id: i64, mut status: String) -> Result<Order, ApiError> {
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
    while status == "pending" {
        if tokio::time::Instant::now() > deadline {
            return Err(ApiError::conflict("an order with this Idempotency-Key is still being placed; retry later"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = match sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
            .bind(id)
            .fetch_optional(&db.pool)
            .await?
        {
            Some(s) => s,
            // The first attempt failed upstream or was abandoned, and released the key.
            None => return Err(ApiError::busy("the first attempt with this Idempotency-Key failed; retry", 1)),
        };
    }
    load(db, user, id).await?.ok_or_else(|| ApiError::not_found(format!("no order {id}")))
}

async fn list(State(s): State<OrderState>, user: AuthUser) -> Result<axum::Json<Vec<Order>>, ApiError> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM orders WHERE user_id = $1 AND status <> 'pending' ORDER BY id DESC LIMIT 100",
    )
    .bind(user.id)
    .fetch_all(&s.db.pool)
    .await?;
    let mut out = Vec::new();
    for id in ids {
        out.extend(load(&s.db, user.id, id).await?);
    }
    Ok(axum::Json(out))
}

async fn one(State(s): State<OrderState>, user: AuthUser, Path(id): Path<i64>) -> Result<axum::Json<Order>, ApiError> {
    // Another user's order is answered exactly like a missing one.
    let order = load(&s.db, user.id, id).await?.ok_or_else(|| ApiError::not_found(format!("no order {id}")))?;
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

async fn baskets(
    State(s): State<OrderState>,
    _caller: InternalCaller,
    Query(q): Query<After>,
) -> Result<axum::Json<Vec<Basket>>, ApiError> {
    let after = q.after.unwrap_or(0);
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT o.id, i.product_id FROM orders o JOIN order_items i ON i.order_id = o.id \
         WHERE o.id IN (SELECT id FROM orders WHERE id > $1 AND status = 'placed' ORDER BY id LIMIT 1000) \
         ORDER BY o.id, i.product_id",
    )
    .bind(after)
    .fetch_all(&s.db.pool)
    .await?;
    let mut out: Vec<Basket> = Vec::new();
    for (order_id, product) in rows {
        match out.last_mut() {
            Some(b) if b.order_id == order_id => b.product_ids.push(product),
            _ => out.push(Basket { order_id, product_ids: vec![product] }),
        }
    }
    Ok(axum::Json(out))
}

/// The routes (`/internal/baskets` demands the service credential).
pub fn routes(state: OrderState) -> Router {
    Router::new()
        .route("/orders", get(list).post(create))
        .route("/orders/{id}", get(one))
        .route("/internal/baskets", get(baskets))
        .with_state(state)
}
