//! `product`: a seeded catalogue: list with pagination, search, detail, stock; and the
//! internal, idempotent stock reservation the order service calls.

use axum::Router;
use axum::extract::{FromRef, Path, Query, State};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::common::auth::{InternalCaller, Keys};
use crate::common::db::Db;
use crate::common::error::{ApiError, Json, check_len};

/// The service's state.
#[derive(Debug, Clone, FromRef)]
pub struct ProductState {
    /// The catalogue and reservations.
    pub db: Db,
    /// Keys (the internal route checks the service credential).
    pub keys: Keys,
}

/// Products in a fresh catalogue.
pub const CATALOGUE_SIZE: i64 = 500;
/// Stock of each product in a fresh catalogue, except every 50th, which is scarce.
pub const INITIAL_STOCK: i64 = 1000;
/// Stock of the scarce products (ids divisible by 50).
pub const SCARCE_STOCK: i64 = 5;

const ADJECTIVES: [&str; 10] =
    ["Swift", "Classic", "Pro", "Ultra", "Eco", "Compact", "Deluxe", "Trail", "Urban", "Carbon"];
const NOUNS: [&str; 10] =
    ["Racket", "Shoe", "Ball", "Jersey", "Bottle", "Backpack", "Helmet", "Glove", "Towel", "Watch"];
const CATEGORIES: [&str; 5] = ["tennis", "running", "cycling", "football", "fitness"];

/// Seeds the catalogue (deterministic: the same products on every fresh start). Safe when
/// replicas start together: every row is inserted with `ON CONFLICT DO NOTHING`, in one
/// transaction, so a product's stock is never reset.
pub async fn seed(db: &Db) -> Result<(), sqlx::Error> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products").fetch_one(&db.pool).await?;
    if count >= CATALOGUE_SIZE {
        return Ok(());
    }
    let mut tx = db.pool.begin().await?;
    for id in 1..=CATALOGUE_SIZE {
        let (a, n, c) = (id as usize % 10, (id as usize / 10) % 10, id as usize % 5);
        let name = format!("{} {} {}", ADJECTIVES[a], NOUNS[n], id);
        let description = format!(
            "A {} {} for {}, model {id}.",
            ADJECTIVES[a].to_lowercase(),
            NOUNS[n].to_lowercase(),
            CATEGORIES[c]
        );
        let price = 500 + (id * 7919) % 20_000;
        sqlx::query(
            "INSERT INTO products (id, name, category, description, price_cents, stock) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(name)
        .bind(CATEGORIES[c])
        .bind(description)
        .bind(price)
        .bind(if id % 50 == 0 { SCARCE_STOCK } else { INITIAL_STOCK })
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// A product.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Product {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Category.
    pub category: String,
    /// Description.
    pub description: String,
    /// Price in cents.
    pub price_cents: i64,
    /// Units in stock.
    pub stock: i64,
}

impl sqlx::FromRow<'_, sqlx::any::AnyRow> for Product {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        Ok(Self {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            category: row.try_get("category")?,
            description: row.try_get("description")?,
            price_cents: row.try_get("price_cents")?,
            stock: row.try_get("stock")?,
        })
    }
}

/// A page of products.
#[derive(Debug, Serialize, Deserialize)]
pub struct Page {
    /// The products.
    pub items: Vec<Product>,
    /// 1-based page.
    pub page: i64,
    /// Page size.
    pub per_page: i64,
    /// Matching products in all.
    pub total: i64,
}

/// Paging and search parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1-based page (default 1).
    pub page: Option<i64>,
    /// Page size, 1 to 100 (default 20).
    pub per_page: Option<i64>,
    /// Search text (search only).
    pub q: Option<String>,
}

fn paging(q: &ListQuery) -> Result<(i64, i64, i64), ApiError> {
    let page = q.page.unwrap_or(1);
    let per_page = q.per_page.unwrap_or(20);
    if page < 1 {
        return Err(ApiError::bad_request(format!("`page` must be at least 1, not {page}")));
    }
    if !(1..=100).contains(&per_page) {
        return Err(ApiError::bad_request(format!("`per_page` must be 1 to 100, not {per_page}")));
    }
    let offset = (page - 1)
        .checked_mul(per_page)
        .ok_or_else(|| ApiError::bad_request(format!("`page` {page} is out of range")))?;
    Ok((page, per_page, offset))
}

const COLUMNS: &str = "id, name, category, description, price_cents, stock";

async fn page_of(
    db: &Db,
    pattern: Option<String>,
    (page, per_page, offset): (i64, i64, i64),
) -> Result<Page, ApiError> {
    // Lower-cased on both sides: PostgreSQL's LIKE is case-sensitive, SQLite's is not.
    let (total, items) = match pattern {
        Some(p) => {
            let filter = "WHERE LOWER(name) LIKE $1 OR LOWER(description) LIKE $1";
            let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM products {filter}"))
                .bind(&p)
                .fetch_one(&db.pool)
                .await?;
            let items = sqlx::query_as::<_, Product>(&format!(
                "SELECT {COLUMNS} FROM products {filter} ORDER BY id LIMIT $2 OFFSET $3"
            ))
            .bind(&p)
            .bind(per_page)
            .bind(offset)
            .fetch_all(&db.pool)
            .await?;
            (total, items)
        }
        None => {
            let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products").fetch_one(&db.pool).await?;
            let items =
                sqlx::query_as::<_, Product>(&format!("SELECT {COLUMNS} FROM products ORDER BY id LIMIT $1 OFFSET $2"))
                    .bind(per_page)
                    .bind(offset)
                    .fetch_all(&db.pool)
                    .await?;
            (total, items)
        }
    };
    Ok(Page { items, page, per_page, total })
}

async fn list(State(db): State<Db>, Query(q): Query<ListQuery>) -> Result<axum::Json<Page>, ApiError> {
    Ok(axum::Json(page_of(&db, None, paging(&q)?).await?))
}

async fn search(State(db): State<Db>, Query(q): Query<ListQuery>) -> Result<axum::Json<Page>, ApiError> {
    let paging = paging(&q)?;
    let text = q.q.clone().ok_or_else(|| ApiError::bad_request("`q` is required"))?;
    check_len("q", &text, 2, 64)?;
    let escaped = text.trim().to_lowercase().replace(['%', '_', '\\'], "");
    Ok(axum::Json(page_of(&db, Some(format!("%{escaped}%")), paging).await?))
}

async fn get_product(db: &Db, id: i64) -> Result<Product, ApiError> {
    sqlx::query_as::<_, Product>(&format!("SELECT {COLUMNS} FROM products WHERE id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no product {id}")))
}

async fn detail(State(db): State<Db>, Path(id): Path<i64>) -> Result<axum::Json<Product>, ApiError> {
    Ok(axum::Json(get_product(&db, id).await?))
}

/// Stock of one product.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stock {
    /// Product id.
    pub id: i64,
    /// Units in stock.
    pub stock: i64,
}

async fn stock(State(db): State<Db>, Path(id): Path<i64>) -> Result<axum::Json<Stock>, ApiError> {
    let p = get_product(&db, id).await?;
    Ok(axum::Json(Stock { id: p.id, stock: p.stock }))
}

/// One line of a reservation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// Product id.
    pub product_id: i64,
    /// Units, 1 to 20.
    pub quantity: i64,
}

/// A reservation request: take stock for every line, or none.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reserve {
    /// Idempotency key: the same key always gets the first answer, and stock is taken once.
    pub key: String,
    /// The lines.
    pub items: Vec<Line>,
}

/// A reservation's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Reservation {
    /// Stock taken; unit prices at the time.
    Reserved {
        /// `(product_id, quantity, price_cents)` per line.
        lines: Vec<(i64, i64, i64)>,
    },
    /// Not enough stock (nothing taken).
    Insufficient {
        /// The first product short.
        product_id: i64,
        /// Its stock.
        available: i64,
    },
    /// A product that does not exist (nothing taken).
    Unknown {
        /// The product.
        product_id: i64,
    },
}

/// Validates reservation lines (shared with the order service's request checks).
pub fn check_lines(items: &[Line]) -> Result<(), ApiError> {
    if items.is_empty() || items.len() > 20 {
        return Err(ApiError::invalid(format!("`items` must hold 1 to 20 lines, not {}", items.len())));
    }
    for l in items {
        if !(1..=20).contains(&l.quantity) {
            return Err(ApiError::invalid(format!("`quantity` must be 1 to 20, not {}", l.quantity)));
        }
    }
    Ok(())
}

async fn reserve(
    State(db): State<Db>,
    _caller: InternalCaller,
    Json(r): Json<Reserve>,
) -> Result<axum::Json<Reservation>, ApiError> {
    check_lines(&r.items)?;
    check_len("key", &r.key, 1, 200)?;
    Ok(axum::Json(reserve_once(&db, &r).await?))
}

/// Takes stock for every line of `r` or none, once per key: the key is claimed first in
/// the transaction (a concurrent attempt with the same key waits on that row, then finds
/// it taken and answers the recorded outcome); stock is taken with conditional updates
/// (`stock >= quantity`), in product order so that two orders never wait on each other.
async fn reserve_once(db: &Db, r: &Reserve) -> Result<Reservation, ApiError> {
    let mut tx = db.pool.begin().await?;
    let claimed = sqlx::query("INSERT INTO reservations (key, result) VALUES ($1, '') ON CONFLICT (key) DO NOTHING")
        .bind(&r.key)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    if !claimed {
        drop(tx);
        return recorded(db, &r.key).await;
    }
    let mut items = r.items.clone();
    items.sort_by_key(|l| l.product_id);
    let mut taken = std::collections::BTreeMap::new();
    let mut refusal = None;
    for l in &items {
        let price: Option<i64> = sqlx::query_scalar(
            "UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1 RETURNING price_cents",
        )
        .bind(l.quantity)
        .bind(l.product_id)
        .fetch_optional(&mut *tx)
        .await?;
        match price {
            Some(p) => {
                taken.insert(l.product_id, p);
            }
            None => {
                let stock: Option<i64> = sqlx::query_scalar("SELECT stock FROM products WHERE id = $1")
                    .bind(l.product_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                refusal = Some(match stock {
                    None => Reservation::Unknown { product_id: l.product_id },
                    Some(available) => Reservation::Insufficient { product_id: l.product_id, available },
                });
                break;
            }
        }
    }
    if let Some(refusal) = refusal {
        // Rolling back returns the stock this attempt took; the refusal is then recorded
        // so that a retry with the key answers the same.
        tx.rollback().await?;
        let json = serde_json::to_string(&refusal).map_err(ApiError::internal)?;
        sqlx::query("INSERT INTO reservations (key, result) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(&r.key)
            .bind(json)
            .execute(&db.pool)
            .await?;
        return recorded(db, &r.key).await;
    }
    // Lines in the order asked, each with the price it was taken at.
    let outcome = Reservation::Reserved {
        lines: r.items.iter().map(|l| (l.product_id, l.quantity, taken[&l.product_id])).collect(),
    };
    sqlx::query("UPDATE reservations SET result = $2 WHERE key = $1")
        .bind(&r.key)
        .bind(serde_json::to_string(&outcome).map_err(ApiError::internal)?)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(outcome)
}

/// The outcome recorded under a key.
async fn recorded(db: &Db, key: &str) -> Result<Reservation, ApiError> {
    let done: String = sqlx::query_scalar("SELECT result FROM reservations WHERE key = $1")
        .bind(key)
        .fetch_optional(&db.pool)
        .await?
        .ok_or_else(|| ApiError::internal(format!("reservation {key} vanished")))?;
    serde_json::from_str(&done).map_err(ApiError::internal)
}

/// The routes (`/internal/...` is for other services: the gateway never routes to it, and
/// it demands the service credential).
pub fn routes(state: ProductState) -> Router {
    Router::new()
        .route("/products", get(list))
        .route("/products/search", get(search))
        .route("/products/{id}", get(detail))
        .route("/products/{id}/stock", get(stock))
        .route("/internal/reserve", post(reserve))
        .with_state(state)
}
