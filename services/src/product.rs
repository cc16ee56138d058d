//! `product`: a seeded catalogue: list with pagination, search, detail, stock; and the
//! internal, idempotent stock reservation the order service calls.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::common::db::Db;
use crate::common::error::{ApiError, Json, check_len};

/// The schema.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    description TEXT NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents > 0),
    stock INTEGER NOT NULL CHECK (stock >= 0)
);
CREATE TABLE IF NOT EXISTS reservations (
    key TEXT PRIMARY KEY,
    result TEXT NOT NULL
);";

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

/// Seeds the catalogue once (deterministic: the same products on every fresh start).
pub fn seed(db: &rusqlite::Connection) -> rusqlite::Result<()> {
    let count: i64 = db.query_row("SELECT COUNT(*) FROM products", [], |r| r.get(0))?;
    if count > 0 {
        return Ok(());
    }
    let tx = db.unchecked_transaction()?;
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
        tx.execute(
            "INSERT INTO products (id, name, category, description, price_cents, stock) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, name, CATEGORIES[c], description, price, if id % 50 == 0 { SCARCE_STOCK } else { INITIAL_STOCK }],
        )?;
    }
    tx.commit()
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

fn paging(q: &ListQuery) -> Result<(i64, i64), ApiError> {
    let page = q.page.unwrap_or(1);
    let per_page = q.per_page.unwrap_or(20);
    if page < 1 {
        return Err(ApiError::bad_request(format!("`page` must be at least 1, not {page}")));
    }
    if !(1..=100).contains(&per_page) {
        return Err(ApiError::bad_request(format!("`per_page` must be 1 to 100, not {per_page}")));
    }
    Ok((page, per_page))
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Product> {
    Ok(Product {
        id: r.get(0)?,
        name: r.get(1)?,
        category: r.get(2)?,
        description: r.get(3)?,
        price_cents: r.get(4)?,
        stock: r.get(5)?,
    })
}

const COLUMNS: &str = "id, name, category, description, price_cents, stock";

async fn page_of(db: &Db, pattern: Option<String>, page: i64, per_page: i64) -> Result<Page, ApiError> {
    db.call(move |conn| {
        let filter = if pattern.is_some() { "WHERE name LIKE ?1 OR description LIKE ?1" } else { "WHERE ?1 IS NULL" };
        let total: i64 =
            conn.query_row(&format!("SELECT COUNT(*) FROM products {filter}"), [&pattern], |r| r.get(0))?;
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM products {filter} ORDER BY id LIMIT ?2 OFFSET ?3"))?;
        let items = stmt
            .query_map(params![pattern, per_page, (page - 1) * per_page], row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Page { items, page, per_page, total })
    })
    .await
}

async fn list(State(db): State<Db>, Query(q): Query<ListQuery>) -> Result<axum::Json<Page>, ApiError> {
    let (page, per_page) = paging(&q)?;
    Ok(axum::Json(page_of(&db, None, page, per_page).await?))
}

async fn search(State(db): State<Db>, Query(q): Query<ListQuery>) -> Result<axum::Json<Page>, ApiError> {
    let (page, per_page) = paging(&q)?;
    let text = q.q.clone().ok_or_else(|| ApiError::bad_request("`q` is required"))?;
    check_len("q", &text, 2, 64)?;
    let escaped = text.trim().replace(['%', '_'], "");
    Ok(axum::Json(page_of(&db, Some(format!("%{escaped}%")), page, per_page).await?))
}

async fn get_product(db: &Db, id: i64) -> Result<Product, ApiError> {
    db.call(move |conn| {
        conn.query_row(&format!("SELECT {COLUMNS} FROM products WHERE id = ?1"), [id], row)
            .optional()?
            .ok_or_else(|| ApiError::not_found(format!("no product {id}")))
    })
    .await
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

async fn reserve(State(db): State<Db>, Json(r): Json<Reserve>) -> Result<axum::Json<Reservation>, ApiError> {
    check_lines(&r.items)?;
    check_len("key", &r.key, 1, 200)?;
    let out = db
        .call(move |conn| {
            // One transaction: the key's first answer is recorded with the stock it took.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if let Some(done) = tx
                .query_row("SELECT result FROM reservations WHERE key = ?1", [&r.key], |x| x.get::<_, String>(0))
                .optional()?
            {
                return serde_json::from_str(&done).map_err(ApiError::internal);
            }
            let mut lines = Vec::new();
            let mut outcome = None;
            for l in &r.items {
                let found: Option<(i64, i64)> = tx
                    .query_row("SELECT stock, price_cents FROM products WHERE id = ?1", [l.product_id], |x| {
                        Ok((x.get(0)?, x.get(1)?))
                    })
                    .optional()?;
                match found {
                    None => {
                        outcome = Some(Reservation::Unknown { product_id: l.product_id });
                        break;
                    }
                    Some((stock, _)) if stock < l.quantity => {
                        outcome = Some(Reservation::Insufficient { product_id: l.product_id, available: stock });
                        break;
                    }
                    Some((_, price)) => {
                        tx.execute(
                            "UPDATE products SET stock = stock - ?1 WHERE id = ?2",
                            params![l.quantity, l.product_id],
                        )?;
                        lines.push((l.product_id, l.quantity, price));
                    }
                }
            }
            if let Some(refusal) = outcome {
                // Dropping the transaction rolls back the stock this attempt took; the refusal
                // is recorded so that a retry with the key answers the same.
                drop(tx);
                let json = serde_json::to_string(&refusal).map_err(ApiError::internal)?;
                conn.execute("INSERT OR IGNORE INTO reservations (key, result) VALUES (?1, ?2)", params![r.key, json])?;
                return Ok(refusal);
            }
            let outcome = Reservation::Reserved { lines };
            tx.execute(
                "INSERT INTO reservations (key, result) VALUES (?1, ?2)",
                params![r.key, serde_json::to_string(&outcome).map_err(ApiError::internal)?],
            )?;
            tx.commit()?;
            Ok(outcome)
        })
        .await?;
    Ok(axum::Json(out))
}

/// The routes (`/internal/...` is for other services; the gateway never routes to it).
pub fn routes(db: Db) -> Router {
    Router::new()
        .route("/products", get(list))
        .route("/products/search", get(search))
        .route("/products/{id}", get(detail))
        .route("/products/{id}/stock", get(stock))
        .route("/internal/reserve", post(reserve))
        .with_state(db)
}
