//! The local-folder store: objects are files below a root folder.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectMeta, ObjectStore, StoreError, validate_key};
use crate::Location;

/// Objects as files below `root`; keys map to relative paths.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    location: Location,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl LocalStore {
    /// A store rooted at `root`; the folder is created on the first write.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self { location: Location::Local(root.clone()), root }
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io { operation, path, source }
}

/// Writes `data` to a hidden temporary file beside `path`, syncs it, renames it over
/// `path` and syncs the folder: a crash leaves either the old file or the new one (plus
/// at worst a stray temporary file that `list` ignores).
fn write_atomically(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().expect("object paths are below the root");
    fs::create_dir_all(dir).map_err(io("create folder", dir))?;
    let name = path.file_name().expect("keys have a file name").to_string_lossy();
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}-{n}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(data).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io("rename into", path))?;
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io("sync folder", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<ObjectMeta>) -> Result<(), StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("list", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io("list", dir))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue; // in-progress writes and anything else hidden
        }
        let path = entry.path();
        let meta = entry.metadata().map_err(io("stat", &path))?;
        if meta.is_dir() {
            walk(root, &path, prefix, out)?;
        } else if meta.is_file() {
            let rel = path.strip_prefix(root).expect("walk stays below the root");
            let key = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            if key.starts_with(prefix) {
                out.push(ObjectMeta { key, size: meta.len() });
            }
        }
    }
    Ok(())
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        tokio::task::spawn_blocking(move || write_atomically(&path, &data)).await.expect("store write task panicked")
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path_of(key)?;
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NotFound { location: self.location.to_string(), key: key.to_owned() })
            }
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        // Start at the deepest folder the prefix names fully, then filter by string.
        let start = match prefix.rfind('/') {
            Some(i) => self.root.join(&prefix[..i]),
            None => self.root.clone(),
        };
        let (root, prefix) = (self.root.clone(), prefix.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&root, &start, &prefix, &mut out)?;
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
        .expect("store list task panicked")
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("delete", &path)(e)),
        }
    }

    fn location(&self) -> &Location {
        &self.location
    }
}
