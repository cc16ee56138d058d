//! External tools tests drive for real (k6, schemathesis), found the way `make` installs them.

use std::path::PathBuf;

/// The k6 binary: `$K6`, else `k6` in `$PRESCALE_VENV/bin` or the repository's `.venv/bin`,
/// else on `PATH`. Panics loudly when there is none: run `make setup` (or `make test`).
pub fn k6() -> PathBuf {
    venv_tool("K6", "k6")
}

/// The schemathesis command line (`st`'s long name), found as [`k6`] is (`$SCHEMATHESIS`).
pub fn schemathesis() -> PathBuf {
    venv_tool("SCHEMATHESIS", "schemathesis")
}

/// A tool the project's virtualenv holds: `$<var>`, else `<name>` in `$PRESCALE_VENV/bin`
/// or the repository's `.venv/bin`, else on `PATH`.
fn venv_tool(var: &str, name: &str) -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os(var) {
        candidates.push(PathBuf::from(p));
    }
    if let Some(v) = std::env::var_os("PRESCALE_VENV") {
        candidates.push(PathBuf::from(v).join("bin").join(name));
    }
    if let Some(member) = std::env::var_os("CARGO_MANIFEST_DIR") {
        candidates.push(PathBuf::from(member).join("../.venv/bin").join(name));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("\n\n*** {name} not found (${var}, $PRESCALE_VENV/bin, .venv/bin, PATH); `make setup` installs it ***\n")
    })
}

/// A free loopback port (bound and released; good enough for tests that start servers).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// `n` distinct free ports on loopback: all bound at once before any is released, so no
/// two are the same (ports taken one at a time can repeat, the system handing a port
/// just released out again).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("a bound address").port()).collect()
}
