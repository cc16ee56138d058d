//! KEDA's external scaler over gRPC (`externalscaler.ExternalScaler`, see
//! `proto/externalscaler.proto` and `../shared/specs/keda.md`).
//!
//! One metric, the predicted replica count, with target 1: KEDA's HPA then asks for
//! exactly that many replicas. Trigger metadata names the service (`service`, and
//! `namespace` when it differs from the ScaledObject's); unknown keys and bad values get
//! `InvalidArgument` naming them. With no fresh decision the call fails `Unavailable`,
//! so KEDA's own `fallback` takes over.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::config::TlsConfig;
use crate::proto::external_scaler_server::{ExternalScaler, ExternalScalerServer};
use crate::proto::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec, MetricValue,
    ScaledObjectRef,
};
use crate::state::{Shared, Unavailable};
use prescale_core::inventory::scaled_object::{known_key, settings_in};

/// The metric name KEDA sees (no `/`, `%` or `.`).
pub const METRIC_NAME: &str = "ml_predicted_replicas";

/// The gRPC service over the shared state.
#[derive(Debug, Clone)]
pub struct Scaler {
    shared: Arc<Shared>,
}

/// What a ScaledObjectRef asks about.
#[derive(Debug, Clone)]
struct Target {
    id: prescale_core::ServiceId,
    activation: u32,
}

impl Scaler {
    /// A scaler serving `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The tonic service.
    pub fn service(self) -> ExternalScalerServer<Self> {
        ExternalScalerServer::new(self)
    }

    fn target(&self, r: &ScaledObjectRef) -> Result<Target, Status> {
        let meta: &HashMap<String, String> = &r.scaler_metadata;
        // The trigger's whole metadata arrives: Prescale's keys (the settings the
        // inventory reads from the ScaledObject among them) and KEDA's own.
        let mut unknown: Vec<&str> = meta.keys().map(String::as_str).filter(|k| !known_key(k)).collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            return Err(Status::invalid_argument(format!(
                "unknown scalerMetadata key(s) {}; this scaler reads service, namespace and activationReplicas (and the inventory's settings: capacity, startup, ...)",
                unknown.join(", ")
            )));
        }
        if let Err((key, why)) = settings_in(|k| meta.get(k).map(String::as_str)) {
            return Err(Status::invalid_argument(format!("scalerMetadata key `{key}`: {why}")));
        }
        let service = meta.get("service").filter(|s| !s.is_empty()).ok_or_else(|| {
            Status::invalid_argument("scalerMetadata key `service` is missing: name the service to scale")
        })?;
        let (namespace, name) = match service.split_once('/') {
            Some((ns, name)) => (Some(ns.to_owned()), name.to_owned()),
            None => (
                meta.get("namespace").cloned().or_else(|| Some(r.namespace.clone()).filter(|n| !n.is_empty())),
                service.clone(),
            ),
        };
        let id = self
            .shared
            .resolve(namespace.as_deref(), &name)
            .map_err(|e| Status::invalid_argument(format!("scalerMetadata key `service`: {e}")))?;
        let activation = match meta.get("activationReplicas") {
            None => 1,
            Some(v) => v.parse::<u32>().map_err(|_| {
                Status::invalid_argument(format!(
                    "scalerMetadata key `activationReplicas`: {v:?} is not a whole number"
                ))
            })?,
        };
        Ok(Target { id, activation })
    }

    /// The replicas to serve the target now (without copying its decision).
    fn replicas(&self, target: &Target) -> Result<u32, Status> {
        self.shared.replicas(&target.id).map_err(|e| match e {
            Unavailable::UnknownService(_) => Status::invalid_argument(e.to_string()),
            _ => Status::unavailable(e.to_string()),
        })
    }
}

type IsActiveStream = Pin<Box<dyn Stream<Item = Result<IsActiveResponse, Status>> + Send>>;
type SpecStream = Pin<Box<dyn Stream<Item = Result<GetMetricSpecResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for Scaler {
    async fn is_active(&self, request: Request<ScaledObjectRef>) -> Result<Response<IsActiveResponse>, Status> {
        let target = self.target(request.get_ref())?;
        Ok(Response::new(IsActiveResponse { result: self.replicas(&target)? >= target.activation }))
    }

    type StreamIsActiveStream = IsActiveStream;

    async fn stream_is_active(&self, request: Request<ScaledObjectRef>) -> Result<Response<IsActiveStream>, Status> {
        let target = self.target(request.get_ref())?;
        let first = self.replicas(&target)? >= target.activation;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut steps = self.shared.subscribe();
        let me = self.clone();
        tokio::spawn(async move {
            // The current state at once, then every change; until KEDA closes the stream,
            // whether or not activity changes meanwhile (a send fails only when it does).
            let mut last = first;
            if tx.send(Ok(IsActiveResponse { result: first })).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    changed = steps.changed() => if changed.is_err() { return },
                }
                match me.replicas(&target) {
                    Ok(replicas) => {
                        let active = replicas >= target.activation;
                        if active != last {
                            last = active;
                            if tx.send(Ok(IsActiveResponse { result: active })).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        // Cheap and stable, as KEDA calls it on every poll: the target never changes.
        self.target(request.get_ref())?;
        // Both fields, so KEDA versions before `targetSizeFloat` read it too.
        #[allow(deprecated)]
        let spec = MetricSpec { metric_name: METRIC_NAME.into(), target_size: 1, target_size_float: 1.0 };
        Ok(Response::new(GetMetricSpecResponse { metric_specs: vec![spec] }))
    }

    async fn get_metrics(&self, request: Request<GetMetricsRequest>) -> Result<Response<GetMetricsResponse>, Status> {
        let r = request
            .get_ref()
            .scaled_object_ref
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("scaledObjectRef is missing"))?;
        let target = self.target(r)?;
        let replicas = self.replicas(&target)?;
        #[allow(deprecated)]
        let value = MetricValue {
            metric_name: METRIC_NAME.into(),
            metric_value: i64::from(replicas),
            metric_value_float: f64::from(replicas),
        };
        Ok(Response::new(GetMetricsResponse { metric_values: vec![value] }))
    }

    type StreamMetricSpecStream = SpecStream;

    async fn stream_metric_spec(&self, _request: Request<ScaledObjectRef>) -> Result<Response<SpecStream>, Status> {
        Err(Status::unimplemented("StreamMetricSpec: the metric spec never changes; KEDA polls GetMetricSpec"))
    }
}

/// Selects ring as the process's TLS provider (once; later calls do nothing). Both ring
/// and aws-lc-rs are compiled in (the AWS SDK brings the latter), so rustls cannot choose.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why the gRPC server could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A TLS file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS settings or the transport failed.
    #[error("{0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the scaler on `listener` until `shutdown`, with TLS (and client certificates
/// when `client_ca` is set) if configured.
pub async fn serve(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    tls: Option<&TlsConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        install_tls_provider();
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let read =
            |p: &std::path::Path| std::fs::read(p).map_err(|source| ServeError::Read { path: p.to_owned(), source });
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
        if let Some(ca) = &tls.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        builder = builder.tls_config(config)?;
    }
    // Small answers on a long-lived connection: without TCP_NODELAY each could wait on
    // Nagle's algorithm for the client's delayed acknowledgement (tonic sets it only on
    // listeners it binds itself).
    let incoming = tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |s| {
        s.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    builder.add_service(Scaler::new(shared).service()).serve_with_incoming_shutdown(incoming, shutdown).await?;
    Ok(())
}
