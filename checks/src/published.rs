//! Custom resources against their projects' published schemas: KEDA's (ScaledObject,
//! ScaledJob, TriggerAuthentication, ClusterTriggerAuthentication) and the Prometheus
//! Operator's (ServiceMonitor, PodMonitor, PrometheusRule), as the npm packages of
//! kubernetes-models carry them (generated from the projects' Go API types, which their
//! CRDs are generated from too). `crd-schemas/validate.mjs` runs them under Node.js;
//! `scripts/setup.sh` installs the packages (`npm ci`). Those schemas accept unknown
//! fields, so [`crate::keda`] and [`crate::monitoring`] keep their strict serde types.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Why the schemas could not be applied at all.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The npm packages are not installed.
    #[error("{0} is missing: run scripts/setup.sh (or `npm ci` in checks/crd-schemas)")]
    NotInstalled(PathBuf),
    /// Node.js could not be run or failed.
    #[error("node {script}: {message}")]
    Node {
        /// The validator.
        script: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The folder holding the validator and its packages.
pub fn folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crd-schemas")
}

/// Whether `o` is a resource of a group these schemas cover.
pub fn covers(o: &Value) -> bool {
    let api = o["apiVersion"].as_str().unwrap_or_default();
    api.starts_with("keda.sh/") || api.starts_with("monitoring.coreos.com/")
}

/// Validates each object: `None` when its published schema accepts it, else the message
/// naming what is wrong (an object of an unknown group or kind is refused, naming it).
pub fn validate(objects: &[Value]) -> Result<Vec<Option<String>>, SchemaError> {
    let dir = folder();
    let script = dir.join("validate.mjs");
    if !dir.join("node_modules/@kubernetes-models/keda").is_dir() {
        return Err(SchemaError::NotInstalled(dir.join("node_modules")));
    }
    let node = |message: String| SchemaError::Node { script: script.clone(), message };
    let mut child = Command::new("node")
        .arg(&script)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| node(e.to_string()))?;
    let input = serde_json::to_vec(objects).map_err(|e| node(e.to_string()))?;
    child.stdin.take().expect("piped").write_all(&input).map_err(|e| node(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| node(e.to_string()))?;
    if !out.status.success() {
        return Err(node(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    let results: Vec<Option<String>> = serde_json::from_slice(&out.stdout).map_err(|e| node(e.to_string()))?;
    if results.len() != objects.len() {
        return Err(node(format!("{} answers for {} objects", results.len(), objects.len())));
    }
    Ok(results)
}
