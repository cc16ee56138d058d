//! Applying decisions to Deployments through the scale subresource.
//!
//! One [`Applier`] call per decision: check the number against the target's bounds (a
//! number outside them is refused before any request), read the Deployment's scale, and,
//! unless in shadow mode, replace it with the new replica count under the read
//! `resourceVersion`. When someone else changed the scale in between (HTTP 409), the
//! read and write are retried, so a decision never overwrites a change it did not see.
//! Shadow mode reads only: it reports what it would do and writes nothing.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use kube::core::subresource::Scale;
use serde::{Deserialize, Serialize};

/// A Deployment that Prescale scales, with the bounds it may be scaled within.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Namespace of the Deployment.
    pub namespace: String,
    /// Name of the Deployment.
    pub deployment: String,
    /// Fewest replicas the backend will set.
    pub min_replicas: u32,
    /// Most replicas the backend will set.
    pub max_replicas: u32,
}

/// What applying a decision did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Applied {
    /// Shadow mode: would have scaled `from` to `to` (equal when nothing would change).
    Shadow {
        /// Replicas the Deployment has.
        from: u32,
        /// Replicas the decision wants.
        to: u32,
    },
    /// Already at the desired replicas; nothing written.
    Unchanged {
        /// Replicas the Deployment has.
        replicas: u32,
    },
    /// Scaled.
    Scaled {
        /// Replicas before.
        from: u32,
        /// Replicas now.
        to: u32,
        /// Conflicts retried before the write succeeded.
        conflicts: u32,
    },
}

/// Why a decision was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The desired replicas are outside the target's bounds.
    #[error("{namespace}/{deployment}: {desired} replicas is outside the allowed [{min}, {max}]; refused")]
    OutOfBounds {
        /// Namespace.
        namespace: String,
        /// Deployment.
        deployment: String,
        /// What was asked.
        desired: u32,
        /// Lower bound.
        min: u32,
        /// Upper bound.
        max: u32,
    },
    /// Still conflicting after every retry.
    #[error("{namespace}/{deployment}: the scale kept changing under us ({attempts} conflicts); giving up this step")]
    Conflict {
        /// Namespace.
        namespace: String,
        /// Deployment.
        deployment: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The API server refused or failed.
    #[error("{namespace}/{deployment}: {source}")]
    Api {
        /// Namespace.
        namespace: String,
        /// Deployment.
        deployment: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

/// Applies decisions through a Kubernetes client.
#[derive(Clone)]
pub struct Applier {
    client: kube::Client,
    shadow: bool,
    max_conflicts: u32,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier").field("shadow", &self.shadow).field("max_conflicts", &self.max_conflicts).finish()
    }
}

fn replicas_of(scale: &Scale) -> u32 {
    scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0).max(0) as u32
}

impl Applier {
    /// An applier; `shadow` writes nothing.
    pub fn new(client: kube::Client, shadow: bool) -> Self {
        Self { client, shadow, max_conflicts: 5 }
    }

    /// Sets the Deployment's replicas to `desired`.
    pub async fn apply(&self, target: &Target, desired: u32) -> Result<Applied, ApplyError> {
        if desired < target.min_replicas || desired > target.max_replicas {
            return Err(ApplyError::OutOfBounds {
                namespace: target.namespace.clone(),
                deployment: target.deployment.clone(),
                desired,
                min: target.min_replicas,
                max: target.max_replicas,
            });
        }
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &target.namespace);
        let api_err = |source| ApplyError::Api {
            namespace: target.namespace.clone(),
            deployment: target.deployment.clone(),
            source,
        };
        let mut conflicts = 0;
        // Between conflicting writes, a growing, jittered wait: two writers that collided
        // (two scaler replicas, the HPA) do not collide again in lock step.
        let mut backoff = prescale_core::backoff::Backoff::new(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(2),
        );
        loop {
            let mut scale = api.get_scale(&target.deployment).await.map_err(api_err)?;
            let from = replicas_of(&scale);
            if self.shadow {
                return Ok(Applied::Shadow { from, to: desired });
            }
            if from == desired {
                return Ok(Applied::Unchanged { replicas: from });
            }
            // The read resourceVersion stays in the metadata: the write is conditional on it.
            let replicas = i32::try_from(desired).map_err(|_| ApplyError::OutOfBounds {
                namespace: target.namespace.clone(),
                deployment: target.deployment.clone(),
                desired,
                min: target.min_replicas,
                max: i32::MAX as u32,
            })?;
            scale.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
            scale.status = None;
            match api.replace_scale(&target.deployment, &PostParams::default(), &scale).await {
                Ok(_) => return Ok(Applied::Scaled { from, to: desired, conflicts }),
                Err(kube::Error::Api(status)) if status.is_conflict() => {
                    conflicts += 1;
                    tracing::info!(
                        namespace = %target.namespace,
                        deployment = %target.deployment,
                        conflicts,
                        "scale changed since it was read; reading again"
                    );
                    if conflicts >= self.max_conflicts {
                        return Err(ApplyError::Conflict {
                            namespace: target.namespace.clone(),
                            deployment: target.deployment.clone(),
                            attempts: conflicts,
                        });
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(api_err(e)),
            }
        }
    }
}
