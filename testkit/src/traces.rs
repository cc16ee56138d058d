//! The real request-rate traces in `../shared/traces`, beside the repository.
//!
//! They are not copied into the repository. Tests that need them call [`require`],
//! which fails loudly, with the path it looked at, when the folder is absent, rather
//! than letting the test pass without having run.

use std::path::PathBuf;

/// The traces folder: `$PRESCALE_TRACES` if set, else `../shared/traces` from the
/// workspace root ([`crate::repo_root`]).
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PRESCALE_TRACES") {
        return PathBuf::from(dir);
    }
    crate::repo_root().join("../shared/traces")
}

/// The path of one trace file; panics with a clear message when it is missing.
pub fn require(file: &str) -> PathBuf {
    let path = dir().join(file);
    assert!(
        path.is_file(),
        "\n\n*** trace {} is missing ***\nThe shared traces are expected at ../shared/traces beside the repository \
         (or set PRESCALE_TRACES to their folder). They are not part of the repository.\n",
        path.display()
    );
    path
}
