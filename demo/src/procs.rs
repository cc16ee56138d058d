//! The demo's child processes: each one logs to its own file, is watched for an early
//! exit (reported with the end of its log), and is stopped in reverse order of start with
//! SIGTERM, then SIGKILL if it does not exit in time. Children are also killed if the
//! demo itself is dropped, so nothing outlives it.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

/// What went wrong with a child process.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The program could not be started.
    #[error("cannot start {name} ({program}): {source}")]
    Spawn {
        /// The child's name in the demo.
        name: String,
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A child that should run exited.
    #[error("{name} exited ({status}); the end of {log}:\n{tail}")]
    Exited {
        /// The child's name in the demo.
        name: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its log file.
        log: String,
        /// The last lines of the log.
        tail: String,
    },
    /// A log file could not be created.
    #[error("cannot create the log {path}: {source}")]
    Log {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The running children, in order of start.
#[derive(Debug)]
pub struct Procs {
    logs: PathBuf,
    children: Vec<(String, Child)>,
}

impl Procs {
    /// No children yet; logs go to `logs/<name>.log`.
    pub fn new(logs: &Path) -> Self {
        Self { logs: logs.to_owned(), children: Vec::new() }
    }

    /// The log file of child `name`.
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    /// Starts `cmd` as `name`, with its output in its log.
    pub fn spawn(&mut self, name: &str, cmd: &mut Command) -> Result<(), ProcError> {
        let path = self.log(name);
        let log = std::fs::File::create(&path)
            .map_err(|source| ProcError::Log { path: path.display().to_string(), source })?;
        let err = log.try_clone().map_err(|source| ProcError::Log { path: path.display().to_string(), source })?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            // Its own process group: Ctrl-C in the terminal reaches the demo alone, which
            // then stops the parts in order instead of all at once.
            .process_group(0)
            .spawn()
            .map_err(|source| ProcError::Spawn {
                name: name.to_owned(),
                program: cmd.as_std().get_program().to_string_lossy().into_owned(),
                source,
            })?;
        self.children.push((name.to_owned(), child));
        Ok(())
    }

    /// An error for the first child that has exited, if any.
    pub fn check(&mut self) -> Result<(), ProcError> {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let log = self.logs.join(format!("{name}.log"));
                return Err(ProcError::Exited {
                    name: name.clone(),
                    status,
                    tail: tail(&log, 15),
                    log: log.display().to_string(),
                });
            }
        }
        Ok(())
    }

    /// Stops every child, last started first: SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        while let Some((name, mut child)) = self.children.pop() {
            if let Ok(Some(_)) = child.try_wait() {
                continue;
            }
            if let Some(pid) = child.id() {
                // tokio only sends SIGKILL; a clean stop needs SIGTERM (the collector
                // seals its spool, Prometheus closes its head block).
                let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
            }
            match tokio::time::timeout(grace, child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    eprintln!("demo: {name} did not stop within {grace:?}; killing it");
                    let _ = child.kill().await;
                }
            }
        }
    }
}

/// The last `n` lines of a file (empty if unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
