//! Logging setup and the shutdown signal.
//!
//! Every binary calls [`init`] once with its [`TelemetryConfig`](crate::config::TelemetryConfig)
//! and awaits [`shutdown_signal`] to stop cleanly on Ctrl-C or SIGTERM (what Kubernetes
//! sends before killing a pod).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::TelemetryConfig;

/// The log filter could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid log filter {filter:?}: {source}")]
pub struct TelemetryError {
    /// The filter as given.
    pub filter: String,
    /// The parser's complaint.
    #[source]
    pub source: tracing_subscriber::filter::ParseError,
}

/// Installs the global `tracing` subscriber: `RUST_LOG` if set, else `config.log`;
/// JSON lines when `config.json`. Logs go to stderr, so that a command's stdout holds
/// only its result. Calling it twice keeps the first subscriber.
pub fn init(config: &TelemetryConfig) -> Result<(), TelemetryError> {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| config.log.clone());
    let env_filter = EnvFilter::try_new(&filter).map_err(|source| TelemetryError { filter, source })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_span_events(FmtSpan::NONE)
        .with_writer(std::io::stderr);
    // try_init fails only when a subscriber is already set, which is fine (tests).
    let _ = if config.json { builder.json().try_init() } else { builder.try_init() };
    Ok(())
}

/// Resolves when the process receives Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received Ctrl-C, shutting down"),
        () = term => tracing::info!("received SIGTERM, shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_filter_is_named() {
        let cfg = TelemetryConfig { log: "info,foo=notalevel".into(), json: false };
        if std::env::var("RUST_LOG").is_err() {
            let err = init(&cfg).unwrap_err().to_string();
            assert!(err.contains("notalevel"), "{err}");
        }
    }
}
