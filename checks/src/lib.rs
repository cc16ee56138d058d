//! `prescale-checks`: checks of the files operators apply, run by `make test`.
//!
//! [`kustomize`] builds the overlays of `deploy/` and the `keda/` folder the way kustomize
//! does (for the subset they use); [`typed`] parses each object strictly into its
//! `k8s-openapi` type; [`keda`] does the same for KEDA's resources after its CRD schema;
//! [`dashboards`] lists the PromQL of the Grafana dashboards. The tests in `tests/` apply
//! them to the real files, check the configs inside the ConfigMaps with the components' own
//! config types, the Prometheus files with `promtool`, the KEDA trigger metadata against the
//! predictor's real gRPC server, and the container build files.

pub mod dashboards;
pub mod keda;
pub mod kustomize;
pub mod typed;

use std::path::PathBuf;

/// The project's root, from the run-time `CARGO_MANIFEST_DIR` cargo gives every test when
/// there is one: a shared target folder may hold this crate compiled from another clone.
pub fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("..")
}
