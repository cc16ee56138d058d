//! A real PostgreSQL on loopback (Debian's `postgresql` package, as `make setup` installs
//! it): a fresh cluster in a temporary folder, made with `initdb` and started with `pg_ctl`
//! on a free port, with password authentication over TCP. Run as root (CI), the server runs
//! as the `postgres` user, which PostgreSQL requires.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools::free_port;

/// The user and password of the test cluster's superuser.
pub const USER: &str = "prescale";
/// Its password.
pub const PASSWORD: &str = "test-password";

/// The folder of `initdb` and `pg_ctl`: `$PG_BIN`, else `PATH`, else the newest
/// `/usr/lib/postgresql/<version>/bin`. Panics loudly when missing.
pub fn bin_dir() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PG_BIN").map(PathBuf::from).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    candidates.extend(versions.into_iter().rev());
    candidates.into_iter().find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file()).unwrap_or_else(|| {
        panic!("\n\n*** PostgreSQL's initdb and pg_ctl not found ($PG_BIN, PATH or /usr/lib/postgresql/*/bin); `make setup` installs Debian's postgresql package ***\n")
    })
}

/// A PostgreSQL server; dropping it stops it and removes its folder.
#[derive(Debug)]
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    /// Creates a cluster in a new temporary folder and starts it; returns once it accepts
    /// connections.
    pub fn start() -> Self {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!("prescale-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("creating the PostgreSQL folder");
        let as_postgres = is_root();
        let pg = Self { dir, bin, port: free_port(), as_postgres };
        std::fs::write(pg.dir.join("pwfile"), PASSWORD).expect("writing the password file");
        if as_postgres {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&pg.dir).status();
            assert!(status.is_ok_and(|s| s.success()), "chown of {} to postgres failed", pg.dir.display());
        }
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.path("data"),
                "-U",
                USER,
                "--pwfile",
                &pg.path("pwfile"),
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200",
            pg.port,
            pg.dir.display()
        );
        pg.run("pg_ctl", &["-D", &pg.path("data"), "-l", &pg.path("log"), "-o", &options, "-w", "-t", "60", "start"]);
        pg
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).current_dir(&self.dir).output().unwrap_or_else(|e| panic!("running {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed:\n{}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL of database `postgres` with the superuser's password.
    pub fn url(&self) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.path("data");
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let _ = cmd.args(["-D", &data, "-m", "immediate", "-w", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
