//! `recommender`: products bought together with a product, from co-purchase counts over
//! the order service's placed orders. Deliberately CPU-bound: every request scores every
//! candidate with a cosine similarity and a re-ranking pass whose cost is a setting, so
//! that its CPU use, and its latency under load, follow demand as a model service's do.
//!
//! The counts are read under a lock that is never held across a call to the order
//! service: one request at a time refreshes them (others serve the counts there are), and
//! when the order service is slow or down recommendations are served from what was learnt
//! so far rather than failing.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRef, Path, Query, State};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::common::auth::{AuthUser, INTERNAL_HEADER, Keys};
use crate::common::error::ApiError;
use crate::order::Basket;

/// Co-purchase counts learnt so far.
#[derive(Debug, Default)]
pub struct Counts {
    /// Last order id read.
    pub last_order: i64,
    /// Orders holding each product.
    pub product: HashMap<i64, u64>,
    /// Orders holding both products (both orders of each pair).
    pub pair: HashMap<(i64, i64), u64>,
    /// When the order service was last read.
    pub refreshed: Option<Instant>,
}

/// How stale the counts may be: requests within it score without calling the order
/// service, so a burst of recommendations costs one read, not one per request.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// How long a refresh waits for the order service before serving the counts it has.
pub const ORDER_TIMEOUT: Duration = Duration::from_secs(2);

impl Counts {
    /// Adds a basket.
    pub fn add(&mut self, basket: &Basket) {
        let mut ids = basket.product_ids.clone();
        ids.sort_unstable();
        ids.dedup();
        for &a in &ids {
            *self.product.entry(a).or_default() += 1;
            for &b in &ids {
                if a != b {
                    *self.pair.entry((a, b)).or_default() += 1;
                }
            }
        }
        self.last_order = self.last_order.max(basket.order_id);
    }
}

/// The service's state.
#[derive(Debug, Clone, FromRef)]
pub struct RecommenderState {
    /// JWT keys.
    pub keys: Keys,
    /// The order service's base URL.
    pub order_url: String,
    /// HTTP client.
    pub http: reqwest::Client,
    /// What has been learnt.
    pub counts: Arc<RwLock<Counts>>,
    /// Held by the one request refreshing the counts.
    pub refreshing: Arc<tokio::sync::Mutex<()>>,
    /// Re-ranking rounds per candidate: the CPU cost of a request.
    pub work: u32,
}

/// `?limit=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// 1 to 50 (default 10).
    pub limit: Option<usize>,
}

/// A recommendation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Recommendation {
    /// The product.
    pub product_id: i64,
    /// Similarity (higher is closer).
    pub score: f64,
}

fn read(counts: &RwLock<Counts>) -> std::sync::RwLockReadGuard<'_, Counts> {
    // A panic while adding baskets leaves counts that are still counts: keep serving them.
    counts.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(counts: &RwLock<Counts>) -> std::sync::RwLockWriteGuard<'_, Counts> {
    counts.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads new baskets from the order service, at most once per [`REFRESH_EVERY`] and by one
/// request at a time; a failure is logged and the counts there are are served.
async fn refresh(s: &RecommenderState) {
    if read(&s.counts).refreshed.is_some_and(|t| t.elapsed() < REFRESH_EVERY) {
        return;
    }
    // Another request is refreshing: serve what there is rather than wait for it.
    let Ok(_refreshing) = s.refreshing.try_lock() else { return };
    let mut after = read(&s.counts).last_order;
    loop {
        let baskets = async {
            s.http
                .get(format!("{}/internal/baskets?after={after}", s.order_url))
                .header(INTERNAL_HEADER, s.keys.internal_token())
                .send()
                .await?
                .error_for_status()?
                .json::<Vec<Basket>>()
                .await
        }
        .await;
        let baskets = match baskets {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("the order service failed; serving the counts learnt so far: {e}");
                break;
            }
        };
        if baskets.is_empty() {
            break;
        }
        let mut counts = write(&s.counts);
        for b in &baskets {
            counts.add(b);
        }
        after = counts.last_order;
    }
    // Also after a failure: the next attempt waits its turn instead of every request
    // trying a service that is down.
    write(&s.counts).refreshed = Some(Instant::now());
}

/// Scores every product against `target`: cosine similarity of co-purchases, then a
/// deterministic re-ranking pass of `work` rounds per candidate.
pub fn score(counts: &Counts, target: i64, limit: usize, work: u32) -> Vec<Recommendation> {
    let n_target = *counts.product.get(&target).unwrap_or(&0) as f64;
    let mut out: Vec<Recommendation> = counts
        .product
        .iter()
        .filter(|(id, _)| **id != target)
        .filter_map(|(&id, &n)| {
            let both = *counts.pair.get(&(target, id)).unwrap_or(&0) as f64;
            if both == 0.0 {
                return None;
            }
            let mut x = (id as u64) ^ 0x9e37_79b9_7f4a_7c15;
            for _ in 0..work {
                // xorshift: the stand-in for a model's per-candidate inference.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            let tie_break = (x % 1000) as f64 * 1e-9;
            Some(Recommendation { product_id: id, score: both / (n_target * n as f64).sqrt() + tie_break })
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out.truncate(limit);
    out
}

async fn recommend(
    State(s): State<RecommenderState>,
    _user: AuthUser,
    Path(product): Path<i64>,
    Query(q): Query<Limit>,
) -> Result<axum::Json<Vec<Recommendation>>, ApiError> {
    let limit = q.limit.unwrap_or(10);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::bad_request(format!("`limit` must be 1 to 50, not {limit}")));
    }
    refresh(&s).await;
    let counts = s.counts.clone();
    let work = s.work;
    // Scoring is CPU work: off the async threads, reading the counts while it runs.
    let out = tokio::task::spawn_blocking(move || score(&read(&counts), product, limit, work))
        .await
        .map_err(ApiError::internal)?;
    Ok(axum::Json(out))
}

/// The routes.
pub fn routes(state: RecommenderState) -> Router {
    Router::new().route("/recommendations/{product_id}", get(recommend)).with_state(state)
}
