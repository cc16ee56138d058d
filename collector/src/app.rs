//! The collector built from its checked settings, and what it runs: the live loop behind
//! the ops endpoints, or a backfill of a past range.
//!
//! `CollectorConfig::build` checks once and returns an [`App`]; the binary only parses,
//! builds, runs and maps errors to exit codes, and tests drive the same [`App::run`] on a
//! listener bound to port 0.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use prescale_core::store::{self, StoreError};
use prescale_core::telemetry;
use tokio::net::TcpListener;

use crate::backfill::{BackfillError, BackfillReport, backfill};
use crate::config::CollectorConfig;
use crate::live::Collector;
use crate::metrics::Metrics;
use crate::spool::SpoolError;
use prescale_core::prometheus::source::Source;

/// Why the collector stopped.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The spool failed (a full or broken disk): stopping, so that no step is counted
    /// without being durable.
    #[error("the spool failed; stopping so that no step is counted without being durable: {0}")]
    Spool(#[from] SpoolError),
    /// The backfill stopped; what it wrote stays and is skipped on a rerun.
    #[error(transparent)]
    Backfill(#[from] BackfillError),
    /// The ops endpoint failed.
    #[error("serving /metrics: {0}")]
    Serve(#[source] std::io::Error),
}

/// A collector with checked settings, its Prometheus source and its metrics.
#[derive(Debug)]
pub struct App {
    /// The settings, with the S3 options resolved.
    pub config: CollectorConfig,
    /// The catalog's queries against Prometheus.
    pub source: Source,
    /// Its metrics.
    pub metrics: Metrics,
}

impl App {
    /// Collects every step until `shutdown` resolves, serving `/metrics`, `/healthz` and
    /// `/readyz` on `listener`.
    pub async fn run(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
        let App { config, source, metrics } = self;
        let store = store::open(&config.store.location, &config.store.s3).await?;
        let app = prescale_core::ops::router(Arc::new(metrics.clone()));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        tracing::info!(
            step = ?config.step.duration(),
            prometheus = %config.prometheus.url,
            store = %config.store.location,
            spool = %config.spool_dir.display(),
            "collecting"
        );
        let result = Collector::new(config, source, store, metrics).run(shutdown).await;
        server.abort();
        Ok(result?)
    }

    /// [`App::run`] until Ctrl-C or SIGTERM, on the configured address.
    pub async fn serve(self) -> Result<(), AppError> {
        let listener = TcpListener::bind(self.config.listen).await.map_err(AppError::Serve)?;
        tracing::info!(addr = %self.config.listen, "serving /metrics");
        self.run(listener, telemetry::shutdown_signal()).await
    }

    /// Fills `[from, to]` from Prometheus' retention; rows already stored are kept.
    pub async fn backfill(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<BackfillReport, AppError> {
        let c = &self.config;
        let store = store::open(&c.store.location, &c.store.s3).await?;
        let report = backfill(&self.source, store.as_ref(), &c.layout(), c.step, (from, to), c.chunk_steps, |through, r| {
            tracing::info!(through = %through.to_rfc3339(), rows = r.rows_written, skipped = r.rows_skipped, "chunk done");
        })
        .await?;
        Ok(report)
    }
}
