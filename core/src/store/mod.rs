//! One object-store interface over a local folder and S3.
//!
//! Everything Prescale persists (collected Parquet, spool flushes, model artifacts) goes
//! through [`ObjectStore`], addressed by `/`-separated keys below a [`Location`]. Both
//! implementations make a put atomic: a reader sees the old object or the whole new one,
//! never half of it, which is what lets `publish` move a `latest` pointer safely and a
//! collector retry a flush by simply writing the same key again.

mod local;
mod options;
#[cfg(feature = "s3")]
mod s3;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use local::LocalStore;
pub use options::S3Options;
#[cfg(feature = "s3")]
pub use s3::S3Store;

use crate::Location;
use crate::location::LocationError;

/// What went wrong with a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The location string does not name a store.
    #[error(transparent)]
    Location(#[from] LocationError),
    /// An `s3://` location in a build without the S3 client (core's `s3` feature).
    #[error("{0}: this build has no S3 client")]
    NoS3Client(String),
    /// No object under that key.
    #[error("no object {key:?} in {location}")]
    NotFound {
        /// The store searched.
        location: String,
        /// The missing key.
        key: String,
    },
    /// The bucket of an S3 location does not exist.
    #[error("bucket {bucket:?} does not exist")]
    BucketNotFound {
        /// The missing bucket.
        bucket: String,
    },
    /// The credentials were refused (unknown key, bad signature, or no permission).
    #[error(
        "access to bucket {bucket:?} denied ({code}): {message}; check the AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile or role)"
    )]
    AccessDenied {
        /// The bucket.
        bucket: String,
        /// The S3 error code, such as `InvalidAccessKeyId` or `SignatureDoesNotMatch`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// A key that no store can hold safely.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A local file-system operation failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The S3 endpoint could not be reached or timed out; the operation may be retried.
    #[error("S3 {operation} on {bucket}/{key}: endpoint unreachable: {message}")]
    Unreachable {
        /// The S3 operation.
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// The key (or prefix) involved.
        key: String,
        /// What the client reported.
        message: String,
    },
    /// Any other error answered by the S3 service.
    #[error("S3 {operation} on {bucket}/{key} failed ({code}): {message}")]
    Service {
        /// The S3 operation.
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// The key (or prefix) involved.
        key: String,
        /// The S3 error code.
        code: String,
        /// The server's message.
        message: String,
    },
}

impl StoreError {
    /// Whether retrying later may succeed (the store was unreachable), as opposed to a
    /// refusal that will repeat.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } => true,
            StoreError::Service { code, .. } => {
                matches!(code.as_str(), "InternalError" | "ServiceUnavailable" | "SlowDown" | "RequestTimeout")
            }
            StoreError::Io { source, .. } => source.kind() == std::io::ErrorKind::Interrupted,
            _ => false,
        }
    }
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Its key, relative to the store's location.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A place to put, get, list and delete whole objects.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Stores `data` under `key`, replacing any object there. Atomic: readers see the
    /// previous object or all of the new one.
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError>;
    /// Reads a whole object; [`StoreError::NotFound`] when there is none.
    async fn get(&self, key: &str) -> Result<Bytes, StoreError>;
    /// Every object whose key starts with `prefix` (a plain string prefix, `""` for all),
    /// sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;
    /// Removes an object; removing a missing object is not an error, as on S3.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Where this store keeps its objects.
    fn location(&self) -> &Location;
}

/// Opens the store a location names. S3 credentials come from the standard AWS chain
/// (environment, profile, web identity, container or instance role).
pub async fn open(location: &Location, s3: &S3Options) -> Result<Arc<dyn ObjectStore>, StoreError> {
    Ok(match location {
        Location::Local(path) => Arc::new(LocalStore::new(path.clone())),
        #[cfg(feature = "s3")]
        Location::S3 { bucket, prefix } => Arc::new(S3Store::connect(bucket, prefix, s3).await),
        #[cfg(not(feature = "s3"))]
        Location::S3 { .. } => {
            let _ = s3;
            return Err(StoreError::NoS3Client(location.to_string()));
        }
    })
}

/// Opens the store a location string (`s3://bucket/prefix`, `file:///path` or a path)
/// names: what every command line's `--data`, `--models` or `--out` flag goes through.
pub async fn open_str(location: &str, s3: &S3Options) -> Result<Arc<dyn ObjectStore>, StoreError> {
    open(&location.parse()?, s3).await
}

/// Checks that a key is relative, `/`-separated, and free of empty, `.`-leading or `..`
/// segments (dot-files are reserved for in-progress writes).
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let invalid = |reason| StoreError::InvalidKey { key: key.to_owned(), reason };
    if key.is_empty() {
        return Err(invalid("the key is empty"));
    }
    if key.starts_with('/') {
        return Err(invalid("keys are relative and must not start with '/'"));
    }
    if key.contains('\\') || key.contains('\0') {
        return Err(invalid("keys must not contain '\\' or NUL"));
    }
    if key.split('/').any(|s| s.is_empty() || s.starts_with('.')) {
        return Err(invalid("key segments must be non-empty and must not start with '.'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        assert!(validate_key("metrics/date=2024-01-01/hour=00/c-1.parquet").is_ok());
        for bad in ["", "/abs", "a//b", "a/../b", "a/.tmp", "a\\b", "a/"] {
            let err = validate_key(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
