//! External tools tests drive for real (k6), found the way `make` installs them.

use std::path::PathBuf;

/// The k6 binary: `$K6`, else `k6` in `$PRESCALE_VENV/bin` or the repository's `.venv/bin`,
/// else on `PATH`. Panics loudly when there is none: run `make setup` (or `make test`).
pub fn k6() -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("K6") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(v) = std::env::var_os("PRESCALE_VENV") {
        candidates.push(PathBuf::from(v).join("bin/k6"));
    }
    if let Some(member) = std::env::var_os("CARGO_MANIFEST_DIR") {
        candidates.push(PathBuf::from(member).join("../.venv/bin/k6"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("k6")));
    }
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("\n\n*** k6 not found ($K6, $PRESCALE_VENV/bin, .venv/bin, PATH); `make setup` installs it ***\n")
    })
}

/// A free loopback port (bound and released; good enough for tests that start servers).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}
