//! The predictor built from its checked settings, and run: model reloader, step loop,
//! HTTP and gRPC servers.
//!
//! `PredictorConfig::build` checks once and returns a [`Predictor`]; the binary parses,
//! builds, binds and runs it; tests run the same [`Predictor::run`] on listeners bound to
//! port 0 (mini-redis' `server::run(listener, shutdown)`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use prescale_core::clock::StepClock;
use prescale_core::config::FieldError;
use prescale_core::prometheus::Source;
use prescale_core::prometheus::catalog::Catalog;
use prescale_core::store::StoreError;
use prescale_policy::PolicyError;
use tokio::sync::Notify;

use crate::config::{PredictorConfig, ServicePlan};
use crate::engine::Engine;
use crate::http::{self, Api};
use crate::metrics::{FallbackLabels, Metrics};
use crate::model::Models;
use crate::state::Shared;

/// Why the predictor could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An address could not be bound.
    #[error("{what} {addr}: {source}")]
    Listen {
        /// `listen` or `grpc_listen`.
        what: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A setting the Prometheus source refused.
    #[error(transparent)]
    Source(#[from] FieldError),
    /// A model folder could not be opened.
    #[error("models: {0}")]
    Models(#[from] StoreError),
    /// A service's policy was refused.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Http(#[source] std::io::Error),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Grpc(#[source] crate::grpc::ServeError),
    /// The shadow file could not be read at start.
    #[error(transparent)]
    ShadowFile(#[from] crate::shadow_file::ShadowFileError),
    /// The Kubernetes API could not be reached to watch the ScaledObjects.
    #[error("scaled_objects: connecting to Kubernetes: {0}")]
    Kube(#[source] kube::Error),
    /// A server task panicked or was cancelled.
    #[error("a server task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Checks the models' `latest` pointers every `interval` (or when asked) until `stopped`.
async fn reload_loop<F: Future<Output = ()>>(
    models: Arc<Models>,
    shared: Arc<Shared>,
    reload: Arc<Notify>,
    interval: Duration,
    stopped: impl Fn() -> F,
) {
    loop {
        models.reload(&shared.metrics).await;
        // A full pass: the reloader works (again).
        shared.set_reloader_down(false);
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = reload.notified() => {}
            () = stopped() => return,
        }
    }
}

/// The reloader, supervised (see [`supervise`]).
async fn supervise_reloads<F: Future<Output = ()> + Send + 'static>(
    models: Arc<Models>,
    shared: Arc<Shared>,
    reload: Arc<Notify>,
    interval: Duration,
    stopped: impl Fn() -> F + Clone + Send + Sync + 'static,
) {
    let start = {
        let (shared, stopped) = (shared.clone(), stopped.clone());
        move || reload_loop(models.clone(), shared.clone(), reload.clone(), interval, stopped.clone())
    };
    supervise(shared, stopped, start).await;
}

/// Runs the task `start` makes and restarts it if it ever ends before `stopped` (the
/// model reloader, which a panic while loading a model would otherwise end silently):
/// meanwhile `/readyz` fails (the task clears it with [`Shared::set_reloader_down`] once
/// it works again), and each failure is logged and counted
/// (`prescale_predictor_reloader_failures_total`). Restarts back off up to a minute.
pub async fn supervise<F, T>(shared: Arc<Shared>, stopped: impl Fn() -> F, start: impl Fn() -> T)
where
    F: Future<Output = ()>,
    T: Future<Output = ()> + Send + 'static,
{
    let mut backoff = prescale_core::backoff::Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        let mut task = tokio::spawn(start());
        let outcome = tokio::select! {
            outcome = &mut task => outcome,
            () = stopped() => {
                // Shutting down: a reload under way is abandoned (the next start redoes it).
                task.abort();
                return;
            }
        };
        if tokio::time::timeout(Duration::ZERO, stopped()).await.is_ok() {
            return;
        }
        let why = match outcome {
            Ok(()) => "it returned".to_owned(),
            Err(e) => e.to_string(),
        };
        let wait = backoff.next_delay();
        tracing::error!("the model reloader ended unexpectedly ({why}); restarting in {wait:?}");
        shared.metrics.reloader_failures.inc();
        shared.set_reloader_down(true);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopped() => return,
        }
    }
}

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
    pub async fn bind(config: &PredictorConfig) -> Result<Self, RunError> {
        let bind = |what, addr| async move {
            tokio::net::TcpListener::bind(addr).await.map_err(|source| RunError::Listen { what, addr, source })
        };
        Ok(Self { http: bind("listen", config.listen).await?, grpc: bind("grpc_listen", config.grpc_listen).await? })
    }
}

/// A predictor with checked settings, every service resolved.
#[derive(Debug, Clone)]
pub struct Predictor {
    /// The settings, with the models' S3 options resolved.
    pub config: PredictorConfig,
    /// The feature catalog the window is read with.
    pub catalog: Catalog,
    /// Every listed service resolved.
    pub plans: Vec<ServicePlan>,
    /// Plans the inventory's services (ScaledObjects come and go).
    pub planner: crate::config::Planner,
}

impl Predictor {
    /// Runs until `shutdown` resolves.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        let Predictor { config, catalog, plans, planner } = self;
        let metrics = Metrics::new();
        let errors = metrics.fallbacks.get_or_create(&FallbackLabels::every("query_error")).clone();
        let mut source = Source::new(config.prometheus.clone(), catalog, config.services_config(), errors)?;
        if let Some(so) = &config.scaled_objects {
            let wait = Duration::from_secs(30);
            source = source
                .with_declared(prescale_core::inventory::watch::declared(so, wait).await.map_err(RunError::Kube)?);
        }
        let locations: Vec<_> = plans.iter().map(|p| (p.id.clone(), p.models.clone())).collect();
        let models = Arc::new(Models::open(config.step, &locations, &config.models.s3).await?);
        let shadow = match &config.shadow_file {
            Some(path) => crate::shadow_file::read(path)?,
            None => config.shadow,
        };
        let shared =
            Arc::new(Shared::new(plans.iter().map(|p| p.id.clone()).collect(), shadow, config.staleness, metrics));
        if let Some(path) = &config.shadow_file {
            shared.follow_shadow_file(path.clone());
        }
        let history_steps = config.step.steps_in(config.history);
        let mut engine = Engine::new(config.step, history_steps, source, models.clone(), shared.clone(), plans)?
            .following(planner)
            .with_hpa_tolerance(config.hpa_tolerance);

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
            tokio::spawn(supervise_reloads(models, shared, reload, interval, stopped))
        };
        if let Some(path) = config.shadow_file.clone() {
            let (shared, interval, stopped) = (shared.clone(), config.shadow_file_interval, stopped.clone());
            tokio::spawn(crate::shadow_file::follow(path, interval, shared, stopped()));
        }
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

        let clock = StepClock::new(config.step, config.query_delay);
        let mut stop = std::pin::pin!(stopped());
        let mut last = None;
        loop {
            // Behind (a slow step, a sleeping machine): the newest due step; the engine
            // reads what it missed back from Prometheus as history.
            let next = clock.next(last, Utc::now()).step;
            tokio::select! {
                () = &mut stop => break,
                () = clock.wait_for(next) => {}
            }
            // A failed step has been logged and counted; the last decisions age meanwhile.
            let _ = engine.step(next).await;
            last = Some(next);
        }
        let _ = reloader.await;
        http_server.await?.map_err(RunError::Http)?;
        grpc_server.await?.map_err(RunError::Grpc)?;
        Ok(())
    }
}
