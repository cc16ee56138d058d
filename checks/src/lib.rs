//! `prescale-checks`: checks of the files operators apply, run by `make test`.
//!
//! [`kustomize`] builds the overlays of `deploy/` and the `keda/` folder with `kubectl
//! kustomize` (a fallback subset without kubectl); [`netpol`] evaluates NetworkPolicies;
//! [`monitoring`] types the Prometheus Operator's resources; [`published`] validates
//! KEDA's and the Operator's resources against the projects' published schemas; [`typed`] parses each object strictly into its
//! `k8s-openapi` type; [`keda`] does the same for KEDA's resources after its CRD schema;
//! [`dashboards`] lists the PromQL of the Grafana dashboards. The tests in `tests/` apply
//! them to the real files, check the configs inside the ConfigMaps with the components' own
//! config types, the Prometheus files with `promtool`, the KEDA trigger metadata against the
//! predictor's real gRPC server, and the container build files.

pub mod dashboards;
pub mod keda;
pub mod kustomize;
pub mod monitoring;
pub mod netpol;
pub mod published;
pub mod typed;

/// The project's root (the tests' repository files are found from it).
pub use prescale_testkit::repo_root as repo;
