//! The KEDA ScaledObjects of a cluster, watched (a `kube` reflector over
//! `scaledobjects.keda.sh`, read-only: `list` and `watch`), as inventory entries.
//!
//! The reflector keeps the cluster's ScaledObjects in memory and follows every change
//! (added, changed, deleted) without restarts; [`ScaledObjects::snapshot`] reads the
//! ones that point at the predictor into services and settings. A ScaledObject whose
//! metadata is wrong is refused with the key named, logged once per change and counted,
//! and the others go on.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{WatchStreamExt, reflector, watcher};

use super::Overrides;
use super::scaled_object::{self, PredictorAt, Refused};
use crate::ServiceId;

/// Makes rustls' `ring` provider the process default, as the Kubernetes client's TLS
/// needs one and the workspace builds rustls with two (`ring`, and `aws-lc-rs` for the
/// AWS SDK), so it cannot choose by itself. Idempotent; call before building a client.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// KEDA's ScaledObject resource.
pub fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"), "scaledobjects")
}

/// The watched ScaledObjects.
#[derive(Clone)]
pub struct ScaledObjects {
    reader: reflector::Store<DynamicObject>,
    at: PredictorAt,
    /// Refusals already logged, so a bad ScaledObject is logged once per change.
    logged: Arc<Mutex<BTreeSet<String>>>,
}

impl std::fmt::Debug for ScaledObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScaledObjects").field("at", &self.at).finish_non_exhaustive()
    }
}

/// What the ScaledObjects say now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Services and their settings, sorted by id.
    pub services: Vec<(ServiceId, Overrides)>,
    /// ScaledObjects pointing at the predictor that were refused, and why.
    pub refused: Vec<Refused>,
}

impl ScaledObjects {
    /// Starts watching the ScaledObjects of `namespace` (all namespaces when `None`)
    /// through `client`; the returned future drives the watch and runs until dropped
    /// (spawn it). Errors of the API server are retried with backoff.
    pub fn watch(
        client: kube::Client,
        namespace: Option<&str>,
        at: PredictorAt,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let ar = resource();
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client, ns, &ar),
            None => Api::all_with(client, &ar),
        };
        let writer = reflector::store::Writer::new(ar);
        let reader = writer.as_reader();
        let driver = async move {
            let stream = reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "watching ScaledObjects failed; retrying");
                }
            }
        };
        (Self { reader, at, logged: Arc::default() }, driver)
    }

    /// Waits until the first full list has arrived.
    pub async fn ready(&self) -> bool {
        self.reader.wait_until_ready().await.is_ok()
    }

    /// The services the ScaledObjects declare now, and the refused ones. Two
    /// ScaledObjects for one service: the first by namespace and name wins, the other is
    /// refused.
    pub fn snapshot(&self) -> Snapshot {
        let mut objects: Vec<serde_json::Value> =
            self.reader.state().iter().filter_map(|o| serde_json::to_value(o.as_ref()).ok()).collect();
        let key = |o: &serde_json::Value| {
            (
                o["metadata"]["namespace"].as_str().unwrap_or_default().to_owned(),
                o["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
            )
        };
        objects.sort_by_key(key);
        let mut snap = Snapshot::default();
        for o in &objects {
            match scaled_object::read(o, &self.at) {
                Ok(None) => {}
                Ok(Some((id, overrides))) => {
                    if let Some(first) = snap.services.iter().find(|(s, _)| *s == id) {
                        let (namespace, name) = key(o);
                        snap.refused.push(Refused {
                            namespace,
                            name,
                            reason: format!("{} is already scaled by another ScaledObject", first.0),
                        });
                    } else {
                        snap.services.push((id, overrides));
                    }
                }
                Err(refused) => snap.refused.push(refused),
            }
        }
        snap.services.sort_by(|a, b| a.0.cmp(&b.0));
        let mut logged = self.logged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now: BTreeSet<String> = snap.refused.iter().map(ToString::to_string).collect();
        for r in now.difference(&logged) {
            tracing::warn!("refused {r}");
        }
        *logged = now;
        snap
    }
}

/// Watches the ScaledObjects `[services.scaled_objects]` names through the cluster's
/// API (in-cluster service account, or the local kubeconfig), spawning the watch on the
/// current runtime, and returns what [`crate::prometheus::source::Source::with_declared`]
/// takes. Waits up to `wait` for the first list, so the first step sees the services;
/// past it, the services appear as soon as the list arrives.
#[cfg(feature = "prometheus")]
pub async fn declared(
    config: &crate::prometheus::source::ScaledObjectsConfig,
    wait: std::time::Duration,
) -> Result<crate::prometheus::source::Declared, kube::Error> {
    install_tls_provider();
    let client = kube::Client::try_default().await?;
    Ok(declared_with(client, config, wait).await)
}

/// [`declared`] through a given client.
#[cfg(feature = "prometheus")]
pub async fn declared_with(
    client: kube::Client,
    config: &crate::prometheus::source::ScaledObjectsConfig,
    wait: std::time::Duration,
) -> crate::prometheus::source::Declared {
    let at = PredictorAt { host: config.predictor.clone() };
    let (objects, driver) = ScaledObjects::watch(client, config.namespace.as_deref(), at);
    tokio::spawn(driver);
    if tokio::time::timeout(wait, objects.ready()).await.is_err() {
        tracing::warn!(?wait, "the ScaledObjects are not listed yet; their services appear once they are");
    }
    Arc::new(move || {
        let snap = objects.snapshot();
        crate::prometheus::source::DeclaredNow { services: snap.services, refused: snap.refused.len() }
    })
}
