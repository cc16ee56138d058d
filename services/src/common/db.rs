//! The services' databases, through one data-access layer over two engines (sqlx's `Any`
//! driver, so every query is written once, parameterised with `$1`, `$2`...):
//!
//! - **PostgreSQL** in a cluster: every replica of every service shares one database, each
//!   service in its own schema (`storefront_<service>`), so users, orders and bookings are
//!   the same whichever pod answers, and ids come from the database's sequences;
//! - **SQLite**, embedded, for `storefront all --dev`, `make demo` and unit tests: a file
//!   per service in a data folder, no server needed.
//!
//! Migrations (`services/migrations/<engine>/<service>/`) are embedded in the binary
//! (`include_str!`) and run at start by sqlx's migrator. On PostgreSQL they run under an advisory lock (sqlx's migrator takes one),
//! so replicas starting together migrate once; the schema itself is created under another.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

use crate::Service;

/// Why a database could not be reached or prepared.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The data folder of the embedded database could not be created.
    #[error("creating {0}: {1}")]
    Folder(PathBuf, #[source] std::io::Error),
    /// The URL is not a PostgreSQL or SQLite URL.
    #[error("unsupported database URL {0} (expected postgres://... or sqlite://...)")]
    Scheme(String),
    /// Connecting, or a statement, failed.
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migrating: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Where the services keep their data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// One SQLite file per service in this folder.
    Embedded(PathBuf),
    /// A PostgreSQL URL shared by every service (each in its own schema).
    Url(String),
}

impl Database {
    /// The location as shown in logs and errors: a URL's password is masked.
    pub fn display(&self, service: Service) -> String {
        match self {
            Database::Embedded(dir) => dir.join(sqlite_file(service)).display().to_string(),
            Database::Url(url) => redact(url),
        }
    }
}

/// Connection pool limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections one service instance opens (PostgreSQL; SQLite uses one).
    pub max_connections: u32,
    /// How long a request waits for a connection before it is answered 503.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self { max_connections: 8, acquire_timeout: Duration::from_secs(5) }
    }
}

/// Connections of an embedded SQLite pool.
const SQLITE_CONNECTIONS: u32 = 4;

/// Which engine a pool talks to (the few statements that differ check it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// A service's connection pool.
#[derive(Debug, Clone)]
pub struct Db {
    /// The pool.
    pub pool: AnyPool,
    /// Its engine.
    pub engine: Engine,
}

fn sqlite_file(service: Service) -> String {
    format!("{}.db", service.name())
}

/// The PostgreSQL schema of a service.
pub fn schema_of(service: Service) -> String {
    format!("storefront_{}", service.name())
}

/// `scheme://user:password@host/...` with the password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
    let masked = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let shown = match path {
        Some(p) => format!("{scheme}://{masked}/{p}"),
        None => format!("{scheme}://{masked}"),
    };
    // A password may also come as a query parameter.
    match shown.split_once('?') {
        Some((head, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{head}?{}", params.join("&"))
        }
        None => shown,
    }
}

/// A migration file: its name (`<version>_<description>.sql`, as sqlx reads it) and SQL.
type Embedded = (&'static str, &'static str);

macro_rules! embed {
    ($engine:literal, $service:literal, $file:literal) => {
        ($file, include_str!(concat!("../../migrations/", $engine, "/", $service, "/", $file)))
    };
}

/// The migrations of a service on an engine, embedded in the binary (none for the gateway
/// and the recommender, which keep no data).
fn migrations(service: Service, engine: Engine) -> &'static [Embedded] {
    const PG_AUTHEN: &[Embedded] = &[embed!("postgres", "authen", "0001_users.sql")];
    const PG_BOOKING: &[Embedded] = &[embed!("postgres", "booking", "0001_bookings.sql")];
    const PG_ORDER: &[Embedded] = &[embed!("postgres", "order", "0001_orders.sql")];
    const PG_PRODUCT: &[Embedded] = &[embed!("postgres", "product", "0001_products.sql")];
    const PG_PROFILE: &[Embedded] = &[embed!("postgres", "profile", "0001_profiles.sql")];
    const SQ_AUTHEN: &[Embedded] = &[embed!("sqlite", "authen", "0001_users.sql")];
    const SQ_BOOKING: &[Embedded] = &[embed!("sqlite", "booking", "0001_bookings.sql")];
    const SQ_ORDER: &[Embedded] = &[embed!("sqlite", "order", "0001_orders.sql")];
    const SQ_PRODUCT: &[Embedded] = &[embed!("sqlite", "product", "0001_products.sql")];
    const SQ_PROFILE: &[Embedded] = &[embed!("sqlite", "profile", "0001_profiles.sql")];
    match (engine, service) {
        (Engine::Postgres, Service::Authen) => PG_AUTHEN,
        (Engine::Postgres, Service::Booking) => PG_BOOKING,
        (Engine::Postgres, Service::Order) => PG_ORDER,
        (Engine::Postgres, Service::Product) => PG_PRODUCT,
        (Engine::Postgres, Service::Profile) => PG_PROFILE,
        (Engine::Sqlite, Service::Authen) => SQ_AUTHEN,
        (Engine::Sqlite, Service::Booking) => SQ_BOOKING,
        (Engine::Sqlite, Service::Order) => SQ_ORDER,
        (Engine::Sqlite, Service::Product) => SQ_PRODUCT,
        (Engine::Sqlite, Service::Profile) => SQ_PROFILE,
        (_, Service::Gateway | Service::Recommender) => &[],
    }
}

/// sqlx's migrator over a service's embedded migrations. sqlx reads migrations from a
/// folder (its `migrate!` macro would embed them too, at the price of compiling both
/// database drivers a second time for the macro), so they are written to a temporary one
/// and read back, through its public API only.
async fn migrator(service: Service, engine: Engine) -> Result<Option<Migrator>, DbError> {
    let files = migrations(service, engine);
    if files.is_empty() {
        return Ok(None);
    }
    let dir = tempfile::tempdir().map_err(|e| DbError::Folder(std::env::temp_dir(), e))?;
    for (name, sql) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, sql).map_err(|e| DbError::Folder(path, e))?;
    }
    Ok(Some(Migrator::new(dir.path()).await?))
}

/// Whether a service keeps data (the gateway and the recommender do not).
pub fn has_data(service: Service) -> bool {
    !migrations(service, Engine::Sqlite).is_empty()
}

impl Db {
    /// Connects `service` to `database`, creates its schema and runs its migrations.
    pub async fn open(service: Service, database: &Database, pool: PoolSettings) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let (url, engine) = match database {
            Database::Embedded(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| DbError::Folder(dir.clone(), e))?;
                (sqlite_url(&dir.join(sqlite_file(service))), Engine::Sqlite)
            }
            Database::Url(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                (url.clone(), Engine::Postgres)
            }
            Database::Url(url) if url.starts_with("sqlite:") => (url.clone(), Engine::Sqlite),
            Database::Url(url) => return Err(DbError::Scheme(redact(url))),
        };
        let options: AnyConnectOptions = url.parse()?;
        let schema = schema_of(service);
        let pool = match engine {
            Engine::Postgres => {
                if has_data(service) {
                    create_schema(&options, &schema).await?;
                }
                let set_path = format!("SET search_path TO {schema}");
                AnyPoolOptions::new()
                    .max_connections(pool.max_connections.max(1))
                    .acquire_timeout(pool.acquire_timeout)
                    .idle_timeout(Duration::from_secs(300))
                    .after_connect(move |conn, _| {
                        let set_path = set_path.clone();
                        Box::pin(async move {
                            conn.execute(set_path.as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            // Readers run side by side (WAL); writers wait for one another through the busy
            // timeout. Every write transaction here starts with its write, so a writer
            // never has to upgrade a read snapshot (which SQLite refuses without waiting).
            Engine::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(SQLITE_CONNECTIONS)
                    .acquire_timeout(pool.acquire_timeout)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;").await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
        };
        if let Some(m) = migrator(service, engine).await? {
            m.run(&pool).await?;
        }
        Ok(Self { pool, engine })
    }
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Creates a service's schema once, whichever replica gets there first: concurrent
/// `CREATE SCHEMA IF NOT EXISTS` can still collide in PostgreSQL's catalogue, so it runs
/// under a transaction-scoped advisory lock.
async fn create_schema(options: &AnyConnectOptions, schema: &str) -> Result<(), DbError> {
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect_with(options).await?;
    let mut tx = conn.begin().await?;
    tx.execute("SELECT pg_advisory_xact_lock(7406520781)").await?;
    tx.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str()).await?;
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_appear_in_shown_urls() {
        assert_eq!(redact("postgres://app:s3cret@db:5432/shop"), "postgres://app:***@db:5432/shop");
        assert_eq!(redact("postgres://app@db/shop"), "postgres://app@db/shop");
        assert_eq!(redact("postgres://db"), "postgres://db");
        assert_eq!(redact("postgres://c/d?user=a&password=x"), "postgres://c/d?user=a&password=***");
        assert_eq!(redact("not a url"), "not a url");
    }
}
