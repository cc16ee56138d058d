//! `prescale-testkit`: real parts for tests, never mocks.
//!
//! - [`s3`]: an S3 protocol server (`s3s-fs`) served in-process on a loopback port, with
//!   credentials, that a test can stop and restart on the same port to play an outage.
//! - [`prometheus`]: a real Prometheus on loopback, with history loaded by `promtool`,
//!   that a test can stop and restart.
//! - [`tools`]: k6, found where `make setup` installs it, and free ports.
//! - [`traces`]: where the shared real traces are, and a loud message when they are not.

pub mod prometheus;
pub mod s3;
pub mod tools;
pub mod traces;

/// The repository's root, from the run-time `CARGO_MANIFEST_DIR` cargo gives every test
/// (each member crate sits one level below the root): a shared target folder may hold a
/// test compiled from another clone, whose compile-time path would point there.
pub fn repo_root() -> std::path::PathBuf {
    let member = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::path::PathBuf::from);
    member.join("..")
}

/// Training settings (TOML) for a tiny transformer that trains in seconds on CPU: what
/// command-line tests pass as `--train-config`.
pub const SMALL_TRAIN_CONFIG: &str =
    "context = 16\nd_model = 16\nheads = 2\nlayers = 1\nff = 32\nbatch = 64\nsamples_per_epoch = 512\nmax_epochs = 3\n";

/// Writes [`SMALL_TRAIN_CONFIG`] into `dir` and returns its path.
pub fn small_train_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("small-train.toml");
    std::fs::write(&path, SMALL_TRAIN_CONFIG).expect("writing the small training config");
    path
}
