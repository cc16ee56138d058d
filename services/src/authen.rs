//! `authen`: register and log in with argon2id password hashes; issues and verifies JWTs.
//!
//! Passwords are never stored or logged in clear: only their argon2id PHC strings are
//! kept, and request bodies are never logged. Hashing is what costs here (19 MiB and tens
//! of milliseconds per hash), so it is fitted to the pod:
//!
//! - hashes run behind their own semaphore ([`LoginSettings::hash_permits`], sized from the
//!   container's memory limit), so a login burst queues instead of exhausting memory; a
//!   request whose client has gone is dropped while it waits and never hashes;
//! - an unknown user is checked against a dummy hash, so the answer takes as long as for a
//!   known one and its timing does not tell which names exist;
//! - attempts are rate-limited per user name and per client address (the address the
//!   gateway saw, which it passes in `X-Forwarded-For`, replacing any the client sent), and
//!   refused with 429 and `Retry-After` beyond their quotas. The limits are per replica.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use axum::Extension;
use axum::Router;
use axum::extract::{ConnectInfo, FromRef, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::common::auth::{AuthUser, Keys};
use crate::common::db::Db;
use crate::common::error::{ApiError, Json, check_len};

/// Memory one argon2id hash takes with the default parameters (19 MiB).
pub const HASH_MEMORY_BYTES: u64 = 19 * 1024 * 1024;

/// Login hashing and rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginSettings {
    /// Hashes computed at once.
    pub hash_permits: usize,
    /// Login attempts per user name per minute (also the burst).
    pub per_user_per_minute: u32,
    /// Login and register attempts per client address per minute (also the burst).
    pub per_address_per_minute: u32,
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self { hash_permits: hash_permits_for(memory_limit()), per_user_per_minute: 60, per_address_per_minute: 1200 }
    }
}

/// The container's memory limit (cgroup v2, then v1), if it has one.
pub fn memory_limit() -> Option<u64> {
    ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .find_map(|s| s.trim().parse::<u64>().ok())
        // v1 reports "no limit" as a huge number.
        .filter(|l| *l < 1 << 50)
}

/// Hashes at once for a memory limit: half the limit in hashes (the rest is the process,
/// its pools and its requests), at least one; with no limit, two per CPU.
pub fn hash_permits_for(limit: Option<u64>) -> usize {
    let cpus = std::thread::available_parallelism().map_or(2, usize::from);
    match limit {
        Some(bytes) => ((bytes / 2 / HASH_MEMORY_BYTES) as usize).clamp(1, 4 * cpus),
        None => 2 * cpus,
    }
}

/// The service's state.
#[derive(Debug, Clone, FromRef)]
pub struct AuthenState {
    /// Users.
    pub db: Db,
    /// JWT keys.
    pub keys: Keys,
    /// Hashing and its limits.
    pub guard: Guard,
}

/// What bounds logins: the hashing semaphore and the rate limiters.
#[derive(Clone)]
pub struct Guard {
    hashing: Arc<Semaphore>,
    per_user: Arc<DefaultKeyedRateLimiter<String>>,
    per_address: Arc<DefaultKeyedRateLimiter<IpAddr>>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("hash_permits", &self.hashing.available_permits()).finish_non_exhaustive()
    }
}

fn per_minute(n: u32) -> Quota {
    let n = NonZeroU32::new(n.max(1)).expect("at least one");
    Quota::per_minute(n).allow_burst(n)
}

impl AuthenState {
    /// The state over a database.
    pub fn new(db: Db, keys: Keys, login: &LoginSettings) -> Self {
        let guard = Guard {
            hashing: Arc::new(Semaphore::new(login.hash_permits.max(1))),
            per_user: Arc::new(RateLimiter::keyed(per_minute(login.per_user_per_minute))),
            per_address: Arc::new(RateLimiter::keyed(per_minute(login.per_address_per_minute))),
        };
        Self { db, keys, guard }
    }
}

impl Guard {
    /// Runs `f` (a hash) on a blocking thread once a hashing permit is free.
    async fn hash<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        // Waiting here is cancelled with the request; once started, a hash takes tens of
        // milliseconds and finishes.
        let _permit = self.hashing.acquire().await.map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)
    }

    fn limit<K: Clone + std::hash::Hash + Eq>(
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
        what: &str,
    ) -> Result<(), ApiError> {
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, format!("too many attempts {what}; retry later"));
            e.retry_after = Some(wait.as_secs().max(1));
            e
        })?;
        // Keep the keyed maps from growing with every name ever tried.
        if limiter.len() > 100_000 {
            limiter.retain_recent();
        }
        Ok(())
    }
}

/// The client's address: the one the gateway passed on, else the peer's.
fn client_address(headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse().ok())
        .or(peer.map(|p| p.ip()))
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

/// A hash no password matches, checked for unknown users so that their logins cost what
/// a known user's does.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        // The salt is random, so this is no hash anyone can have prepared for; and a match
        // would still be refused, as no user comes with it.
        Argon2::default().hash_password(b"no user has this password").map(|h| h.to_string()).expect("hashing")
    })
}

async fn register(
    State(s): State<AuthenState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Json(c): Json<Credentials>,
) -> Result<(StatusCode, axum::Json<User>), ApiError> {
    validate(&c)?;
    if let Some(ip) = client_address(&headers, peer.map(|p| p.0.0)) {
        Guard::limit(&s.guard.per_address, &ip, "from this address")?;
    }
    let password = c.password;
    // A fresh random salt per hash; parameters are argon2id's defaults.
    let hash = s
        .guard
        .hash(move || Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()))
        .await?
        .map_err(ApiError::internal)?;
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO users (username, password_hash, created) VALUES ($1, $2, $3) \
         ON CONFLICT (username) DO NOTHING RETURNING id",
    )
    .bind(&c.username)
    .bind(hash)
    .bind(chrono::Utc::now().to_rfc3339())
    .fetch_optional(&s.db.pool)
    .await?;
    let id = id.ok_or_else(|| ApiError::conflict(format!("username `{}` is taken", c.username)))?;
    Ok((StatusCode::CREATED, axum::Json(User { id, username: c.username })))
}

async fn login(
    State(s): State<AuthenState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Json(c): Json<Credentials>,
) -> Result<axum::Json<Token>, ApiError> {
    if let Some(ip) = client_address(&headers, peer.map(|p| p.0.0)) {
        Guard::limit(&s.guard.per_address, &ip, "from this address")?;
    }
    Guard::limit(&s.guard.per_user, &c.username, "for this user")?;
    let found: Option<(i64, String)> = sqlx::query_as("SELECT id, password_hash FROM users WHERE username = $1")
        .bind(&c.username)
        .fetch_optional(&s.db.pool)
        .await?;
    let (id, hash) = match found {
        Some((id, hash)) => (Some(id), hash),
        None => (None, dummy_hash().to_owned()),
    };
    let password = c.password;
    let ok = s
        .guard
        .hash(move || {
            PasswordHash::new(&hash).map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        })
        .await?
        .map_err(ApiError::internal)?;
    let Some(id) = id.filter(|_| ok) else {
        return Err(ApiError::unauthorized("wrong username or password"));
    };
    Ok(axum::Json(Token { token: s.keys.issue(id, &c.username)?, user: User { id, username: c.username } }))
}

async fn verify(_: State<AuthenState>, user: AuthUser) -> axum::Json<User> {
    axum::Json(User { id: user.id, username: user.name })
}

/// The routes.
pub fn routes(state: AuthenState) -> Router {
    // The dummy hash is made now, not on the first unknown login (whose timing it would
    // otherwise reveal).
    let _ = dummy_hash();
    Router::new()
        .route("/register", post(register))
        .route("/login", post(login))
        .route("/verify", get(verify))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_fits_the_pods_memory() {
        // The authen pod's limit: 256 MiB, half of it in 19 MiB hashes.
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        assert_eq!(hash_permits_for(Some(256 * 1024 * 1024)), 6.min(4 * cpus));
        assert_eq!(hash_permits_for(Some(16 * 1024 * 1024)), 1, "at least one");
    }

    #[test]
    fn the_client_address_is_the_last_forwarded_one() {
        let mut h = HeaderMap::new();
        let peer: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        assert_eq!(client_address(&h, Some(peer)), Some("10.0.0.9".parse().unwrap()));
        h.insert("x-forwarded-for", "1.2.3.4, 5.6.7.8".parse().unwrap());
        assert_eq!(client_address(&h, Some(peer)), Some("5.6.7.8".parse().unwrap()));
    }
}
