//! Embedded SQLite: a file per service, created and migrated at start.
//!
//! One connection per service behind a mutex, used from blocking threads: SQLite
//! serialises writers anyway, and a single connection makes "one transaction" mean one.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::common::error::ApiError;

/// Why a database could not be opened or prepared.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Its folder could not be created.
    #[error("creating its folder: {0}")]
    Folder(#[from] std::io::Error),
    /// SQLite refused (opening, the schema, seeding).
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A thread panicked holding the connection.
    #[error("database lock poisoned")]
    Poisoned,
}

/// A service's database.
#[derive(Debug, Clone)]
pub struct Db(Arc<Mutex<Connection>>);

impl Db {
    /// Opens (creating) `path` and applies `schema` (idempotent `CREATE ... IF NOT EXISTS`).
    pub fn open(path: &Path, schema: &str) -> Result<Self, DbError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(schema)?;
        Ok(Self(Arc::new(Mutex::new(conn))))
    }

    /// Runs `f` with the connection on this thread (start-up work: seeding).
    pub fn with_blocking<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, DbError> {
        let guard = self.0.lock().map_err(|_| DbError::Poisoned)?;
        Ok(f(&guard)?)
    }

    /// Runs `f` with the connection on a blocking thread.
    pub async fn call<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let conn = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| ApiError::internal("database lock poisoned"))?;
            f(&mut guard)
        })
        .await
        .map_err(ApiError::internal)?
    }
}
