//! The predictor wired together: model reloader, step loop, HTTP and gRPC servers.

use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use prescale_collector::Source;
use prescale_core::store::S3Options;
use tokio::sync::Notify;

use crate::config::PredictorConfig;
use crate::engine::Engine;
use crate::http::{self, Api};
use crate::metrics::{KindLabels, Metrics};
use crate::model::Models;
use crate::state::Shared;

/// Bound listeners, so tests can use port 0.
#[derive(Debug)]
pub struct Listeners {
    /// HTTP.
    pub http: tokio::net::TcpListener,
    /// gRPC.
    pub grpc: tokio::net::TcpListener,
}

impl Listeners {
    /// Binds the configured addresses.
    pub async fn bind(config: &PredictorConfig) -> anyhow::Result<Self> {
        let http =
            tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("listen {}", config.listen))?;
        let grpc = tokio::net::TcpListener::bind(config.grpc_listen)
            .await
            .with_context(|| format!("grpc_listen {}", config.grpc_listen))?;
        Ok(Self { http, grpc })
    }
}

/// Runs until `shutdown` resolves.
pub async fn run(
    config: PredictorConfig,
    s3: S3Options,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (catalog, plans) = config.validate().map_err(anyhow::Error::msg)?;
    let metrics = Metrics::new();
    let errors = metrics.fallbacks.get_or_create(&KindLabels { kind: "query_error" }).clone();
    let source = Source::new(config.prometheus.clone(), catalog, config.services_config(&plans), errors)
        .map_err(anyhow::Error::msg)?;
    let locations: Vec<_> = plans.iter().map(|p| (p.id.clone(), p.models.clone())).collect();
    let models = Arc::new(Models::open(config.step, &locations, &s3).await?);
    let shared =
        Arc::new(Shared::new(plans.iter().map(|p| p.id.clone()).collect(), config.shadow, config.staleness, metrics));
    let history_steps = config.step.steps_in(config.history);
    let mut engine = Engine::new(config.step, history_steps, source, models.clone(), shared.clone(), plans)
        .map_err(anyhow::Error::msg)?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let reload = Arc::new(Notify::new());
    let reloader = {
        let (models, shared, reload, interval, stopped) =
            (models.clone(), shared.clone(), reload.clone(), config.reload_interval, stopped.clone());
        tokio::spawn(async move {
            loop {
                models.reload(&shared.metrics).await;
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = reload.notified() => {}
                    () = stopped() => return,
                }
            }
        })
    };
    let api = Api { shared: shared.clone(), admin_token: config.admin_token.clone(), reload };
    let http_server = {
        let stopped = stopped.clone();
        let app = http::app(api);
        tokio::spawn(async move { axum::serve(listeners.http, app).with_graceful_shutdown(stopped()).await })
    };
    let grpc_server = {
        let (shared, tls, stopped) = (shared.clone(), config.tls.clone(), stopped.clone());
        tokio::spawn(async move { crate::grpc::serve(shared, listeners.grpc, tls.as_ref(), stopped()).await })
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let grid = config.step;
    let mut stop = std::pin::pin!(stopped());
    let mut last = None;
    loop {
        let latest = grid.floor(Utc::now() - config.query_delay);
        let next = match last {
            Some(l) if l + grid.delta() >= latest => l + grid.delta(),
            _ => latest,
        };
        let wait = (next + config.query_delay - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(wait) => {}
        }
        // A failed step has been logged and counted; the last decisions age meanwhile.
        let _ = engine.step(next).await;
        last = Some(next);
    }
    let _ = reloader.await;
    http_server.await?.context("HTTP server")?;
    grpc_server.await?.context("gRPC server")?;
    Ok(())
}
