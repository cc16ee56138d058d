//! Shadow mode as configuration every replica reads, not one pod's memory: a file holding
//! `true` or `false` (in a cluster, the `predictor-shadow` ConfigMap mounted as a folder,
//! so the kubelet's updates reach every replica), read at start and again every interval.
//! While it is configured the admin endpoint refuses to flip one replica on its own.
//! A file that cannot be read or says something else keeps the last setting and is
//! logged; at start it is refused, naming the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::state::Shared;

/// Why the shadow file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ShadowFileError {
    /// It could not be read.
    #[error("shadow_file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// It holds something other than `true` or `false`.
    #[error("shadow_file {path}: {found:?} is neither true nor false")]
    Content {
        /// The file.
        path: PathBuf,
        /// What it holds (trimmed, at most 40 characters).
        found: String,
    },
}

/// The setting the file holds.
pub fn read(path: &Path) -> Result<bool, ShadowFileError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ShadowFileError::Read { path: path.to_owned(), source })?;
    match text.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(ShadowFileError::Content { path: path.to_owned(), found: other.chars().take(40).collect() }),
    }
}

/// Reads the file every `interval` until `stopped` resolves, applying changes to `shared`.
pub async fn follow(path: PathBuf, interval: Duration, shared: Arc<Shared>, stopped: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut stopped = std::pin::pin!(stopped);
    let mut warned = false;
    loop {
        tokio::select! {
            () = &mut stopped => return,
            _ = tick.tick() => {}
        }
        match read(&path) {
            Ok(on) => {
                warned = false;
                if on != shared.shadow() {
                    shared.set_shadow(on);
                    tracing::info!(shadow = on, file = %path.display(), "shadow mode changed by its file");
                }
            }
            Err(e) if !warned => {
                warned = true;
                tracing::warn!("{e}; keeping shadow = {}", shared.shadow());
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_false_and_anything_else() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("shadow");
        std::fs::write(&f, "true\n").unwrap();
        assert!(read(&f).unwrap());
        std::fs::write(&f, " false ").unwrap();
        assert!(!read(&f).unwrap());
        std::fs::write(&f, "yes").unwrap();
        let err = read(&f).unwrap_err().to_string();
        assert!(err.contains("shadow_file") && err.contains("\"yes\""), "{err}");
        assert!(read(&dir.path().join("none")).unwrap_err().to_string().contains("none"));
    }
}
