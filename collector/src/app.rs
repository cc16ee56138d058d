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
    /// The Kubernetes API could not be reached to watch the ScaledObjects.
    #[error("services.scaled_objects: connecting to Kubernetes: {0}")]
    Kube(#[source] kube::Error),
}

/// How long a start waits for the first list of ScaledObjects.
const FIRST_LIST: std::time::Duration = std::time::Duration::from_secs(30);

/// The source, with the ScaledObjects' services when `[services.scaled_objects]` is set.
async fn with_scaled_objects(source: Source, config: &CollectorConfig) -> Result<Source, AppError> {
    match &config.services.scaled_objects {
        Some(so) => {
            let declared = prescale_core::inventory::watch::declared(so, FIRST_LIST).await.map_err(AppError::Kube)?;
            Ok(source.with_declared(declared))
        }
        None => Ok(source),
    }
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
        let source = with_scaled_objects(source, &config).await?;
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
        // What a live collector with this spool answers for is left to it.
        let live = crate::spool::Owned::read(&c.spool_dir)?;
        let plan = crate::backfill::Plan { grid: c.step, range: (from, to), chunk_steps: c.chunk_steps, live: &live };
        let source = with_scaled_objects(self.source.clone(), c).await?;
        let report = backfill(&source, store.as_ref(), &c.layout(), &plan, |through, r| {
            tracing::info!(
                through = %through.to_rfc3339(),
                rows = r.rows_written,
                skipped = r.rows_skipped,
                left_to_live = r.rows_left_to_live,
                "chunk done"
            );
        })
        .await?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The built collector through a real socket on port 0: ready once its spool is
    /// recovered, steps counted while Prometheus is down, and a clean stop on shutdown.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_behind_the_ops_endpoints_and_stops_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            "step = \"1s\"\nflush_interval = \"2s\"\nspool_dir = {spool:?}\nlisten = \"127.0.0.1:0\"\n\
             [prometheus]\nurl = \"http://127.0.0.1:9\"\ntimeout = \"200ms\"\nretries = 0\n\
             [store]\nlocation = {store:?}\n[catalog]\nbase = \"storefront\"\nwindow = \"5s\"\n\
             [services]\nlist = [\"storefront/order\"]\n",
            spool = dir.path().join("spool").display().to_string(),
            store = dir.path().join("store").display().to_string(),
        );
        let config: CollectorConfig = prescale_core::config::from_toml_str(&toml).unwrap();
        let app = config.build(&Default::default()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(app.run(listener, async move {
            let _ = stopped.await;
        }));
        let get = |path: &'static str| {
            let url = format!("{base}{path}");
            async move {
                let r = reqwest::get(url).await.ok()?;
                Some((r.status().as_u16(), r.text().await.ok()?))
            }
        };
        let mut ready = None;
        for _ in 0..50 {
            ready = get("/readyz").await;
            if ready.as_ref().is_some_and(|(status, _)| *status == 200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(ready, Some((200, "ready".to_owned())));
        assert_eq!(get("/healthz").await, Some((200, "ok".to_owned())));
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (status, metrics) = get("/metrics").await.unwrap();
        assert_eq!(status, 200);
        assert!(metrics.contains("prescale_collector_steps_total{outcome=\"missed\"}"), "{metrics}");
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(40), running).await.unwrap().unwrap().unwrap();
    }
}
