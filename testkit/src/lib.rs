//! `prescale-testkit`: real parts for tests, never mocks.
//!
//! - [`s3`]: an S3 protocol server (`s3s-fs`) served in-process on a loopback port, with
//!   credentials, that a test can stop and restart on the same port to play an outage.
//! - [`prometheus`]: a real Prometheus on loopback, with history loaded by `promtool`,
//!   that a test can stop and restart.
//! - [`certs`]: a throwaway CA with server and client certificates, for TLS tests.
//! - [`postgres`]: a real PostgreSQL on loopback, a fresh cluster per test.
//! - [`curve`]: the fleet-scale figures `make bench` records and plots.
//! - [`tools`]: k6, found where `make setup` installs it, and free ports.
//! - [`traces`]: where the shared real traces are, and a loud message when they are not.

pub mod certs;
pub mod curve;
pub mod postgres;
pub mod prometheus;
pub mod props;
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
