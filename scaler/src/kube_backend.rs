//! Applying decisions to workloads through the scale subresource.
//!
//! A [`Target`] is any namespaced resource with a scale subresource, named by kind (and
//! API version where the kind is not one of the well-known ones): Deployments,
//! StatefulSets, ReplicaSets, Argo Rollouts, or a custom resource. One [`Applier`] call per
//! decision: check the number against the target's bounds (a number outside them is
//! refused before any request), read the workload's scale, and, unless in shadow mode,
//! replace it with the new replica count under the read `resourceVersion`. When someone
//! else changed the scale in between (HTTP 409), the read and write are retried, so a
//! decision never overwrites a change it did not see. Shadow mode reads only: it reports
//! what it would do and writes nothing.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::core::subresource::Scale;
use serde::{Deserialize, Serialize};

/// A workload that Prescale scales, with the bounds it may be scaled within.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Namespace of the workload.
    pub namespace: String,
    /// Its kind: `Deployment` (the default), `StatefulSet`, `ReplicaSet`, `Rollout` (Argo
    /// Rollouts), or any kind with a scale subresource given with its `api_version`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// `group/version` of the kind; needed only for kinds other than the well-known ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Name of the workload (`deployment` is accepted, as before kinds were added).
    #[serde(alias = "deployment")]
    pub name: String,
    /// Fewest replicas the backend will set.
    pub min_replicas: u32,
    /// Most replicas the backend will set.
    pub max_replicas: u32,
}

fn default_kind() -> String {
    "Deployment".to_owned()
}

/// The API version of the kinds known without one.
pub fn known_api_version(kind: &str) -> Option<&'static str> {
    match kind {
        "Deployment" | "StatefulSet" | "ReplicaSet" => Some("apps/v1"),
        "Rollout" => Some("argoproj.io/v1alpha1"),
        _ => None,
    }
}

impl Target {
    /// A Deployment target (the common case).
    pub fn deployment(namespace: &str, name: &str, min_replicas: u32, max_replicas: u32) -> Self {
        Self {
            namespace: namespace.into(),
            kind: default_kind(),
            api_version: None,
            name: name.into(),
            min_replicas,
            max_replicas,
        }
    }

    /// The API resource of the target's kind; `None` for an unknown kind without an
    /// `api_version`, or an `api_version` that is not `group/version` or `version`.
    pub fn api_resource(&self) -> Option<ApiResource> {
        let api_version = self.api_version.as_deref().or(known_api_version(&self.kind))?;
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) if !g.is_empty() && !v.is_empty() && !v.contains('/') => (g, v),
            None if !api_version.is_empty() => ("", api_version),
            _ => return None,
        };
        if self.kind.is_empty() || !self.kind.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        Some(ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &self.kind)))
    }

    /// `namespace/Kind/name`, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.kind, self.name)
    }
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
    #[error("{target}: {desired} replicas is outside the allowed [{min}, {max}]; refused")]
    OutOfBounds {
        /// `namespace/Kind/name`.
        target: String,
        /// What was asked.
        desired: u32,
        /// Lower bound.
        min: u32,
        /// Upper bound.
        max: u32,
    },
    /// Still conflicting after every retry.
    #[error("{target}: the scale kept changing under us ({attempts} conflicts); giving up this step")]
    Conflict {
        /// `namespace/Kind/name`.
        target: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The kind is not one the scaler knows and no `api_version` was given.
    #[error("{target}: unknown kind without an api_version (known: Deployment, StatefulSet, ReplicaSet, Rollout)")]
    UnknownKind {
        /// `namespace/Kind/name`.
        target: String,
    },
    /// The API server refused or failed.
    #[error("{target}: {source}")]
    Api {
        /// `namespace/Kind/name`.
        target: String,
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

    /// Sets the workload's replicas to `desired`.
    pub async fn apply(&self, target: &Target, desired: u32) -> Result<Applied, ApplyError> {
        if desired < target.min_replicas || desired > target.max_replicas {
            return Err(ApplyError::OutOfBounds {
                target: target.describe(),
                desired,
                min: target.min_replicas,
                max: target.max_replicas,
            });
        }
        let resource = target.api_resource().ok_or_else(|| ApplyError::UnknownKind { target: target.describe() })?;
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &target.namespace, &resource);
        let api_err = |source| ApplyError::Api { target: target.describe(), source };
        let mut conflicts = 0;
        // Between conflicting writes, a growing, jittered wait: two writers that collided
        // (two scaler replicas, the HPA) do not collide again in lock step.
        let mut backoff = prescale_core::backoff::Backoff::new(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(2),
        );
        loop {
            let mut scale = api.get_scale(&target.name).await.map_err(api_err)?;
            let from = replicas_of(&scale);
            if self.shadow {
                return Ok(Applied::Shadow { from, to: desired });
            }
            if from == desired {
                return Ok(Applied::Unchanged { replicas: from });
            }
            // The read resourceVersion stays in the metadata: the write is conditional on it.
            let replicas = i32::try_from(desired).map_err(|_| ApplyError::OutOfBounds {
                target: target.describe(),
                desired,
                min: target.min_replicas,
                max: i32::MAX as u32,
            })?;
            scale.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
            scale.status = None;
            match api.replace_scale(&target.name, &PostParams::default(), &scale).await {
                Ok(_) => return Ok(Applied::Scaled { from, to: desired, conflicts }),
                Err(kube::Error::Api(status)) if status.is_conflict() => {
                    conflicts += 1;
                    tracing::info!(
                        target = %target.describe(),
                        conflicts,
                        "scale changed since it was read; reading again"
                    );
                    if conflicts >= self.max_conflicts {
                        return Err(ApplyError::Conflict { target: target.describe(), attempts: conflicts });
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(api_err(e)),
            }
        }
    }
}
