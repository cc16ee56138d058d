//! Builds a kustomization. With `kubectl` on the PATH (or `KUBECTL` naming it), the real
//! kustomize builds it (`kubectl kustomize`), and the content hash it appends to generated
//! ConfigMap and Secret names is taken off again (names and every reference to them), so
//! checks name them as the files do. Without `kubectl`, a fallback builds the subset of
//! kustomize that `deploy/` and `keda/` use: `resources` (files and folders), `components`,
//! `namespace`, `images`, `configMapGenerator` and `secretGenerator`, and JSON 6902
//! `patches` with a kind and name target. Any other field is refused, so a kustomization
//! can never use a feature the fallback would silently skip. [`builder`] says which ran.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

/// Why a kustomization could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not the YAML it should be.
    #[error("{path}: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A patch does not apply.
    #[error("{path}: patch for {kind}/{name}: {message}")]
    Patch {
        /// The kustomization.
        path: PathBuf,
        /// Target kind.
        kind: String,
        /// Target name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// `kubectl kustomize` failed.
    #[error("kubectl kustomize {path}: {message}")]
    Kubectl {
        /// The folder.
        path: PathBuf,
        /// Its error output.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Kustomization {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    components: Vec<String>,
    #[serde(default)]
    images: Vec<Image>,
    #[serde(default)]
    config_map_generator: Vec<Generator>,
    #[serde(default)]
    secret_generator: Vec<Generator>,
    #[serde(default)]
    patches: Vec<Patch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Image {
    name: String,
    new_tag: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Generator {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    literals: Vec<String>,
    /// Files of `KEY=VALUE` lines (`#` comments and blank lines skipped).
    #[serde(default)]
    envs: Vec<String>,
    #[serde(default)]
    options: Option<GeneratorOptions>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeneratorOptions {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    target: Target,
    patch: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    kind: String,
    name: String,
}

/// The `kubectl` binary the checks use, if any: `KUBECTL`, else `kubectl` on the PATH.
pub fn kubectl() -> Option<PathBuf> {
    if let Some(k) = std::env::var_os("KUBECTL") {
        return Some(PathBuf::from(k));
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("kubectl")).find(|p| p.is_file()))
}

/// Which builder [`build`] uses here: `kubectl kustomize` or the fallback.
pub fn builder() -> &'static str {
    if kubectl().is_some() { "kubectl kustomize" } else { "the fallback subset of kustomize (no kubectl found)" }
}

/// Every object of the kustomization in `dir`, as JSON (see the module header for which
/// builder runs).
pub fn build(dir: &Path) -> Result<Vec<Value>, BuildError> {
    match kubectl() {
        Some(bin) => build_with_kubectl(&bin, dir),
        None => build_subset(dir),
    }
}

/// The build of `kubectl kustomize`, with generated names' hash suffixes taken off.
pub fn build_with_kubectl(kubectl: &Path, dir: &Path) -> Result<Vec<Value>, BuildError> {
    let out = std::process::Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|source| BuildError::Read { path: kubectl.to_owned(), source })?;
    if !out.status.success() {
        return Err(BuildError::Kubectl {
            path: dir.to_owned(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut objects = parse_documents(&text, dir)?;
    // kustomize appends `-<10-character hash>` to generated names and rewrites references.
    let mut renamed = BTreeMap::new();
    for o in &objects {
        if !matches!(o["kind"].as_str(), Some("ConfigMap" | "Secret")) {
            continue;
        }
        let Some(name) = o["metadata"]["name"].as_str() else { continue };
        if let Some((base, hash)) = name.rsplit_once('-')
            && hash.len() == 10
            && hash.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            renamed.insert(name.to_owned(), base.to_owned());
        }
    }
    for o in &mut objects {
        unhash(o, &renamed);
        // Secrets as the files write them: `stringData`, not kustomize's wrapped base64.
        if o["kind"] == "Secret"
            && let Some(data) = o.as_object_mut().and_then(|m| m.remove("data"))
        {
            let mut plain = serde_json::Map::new();
            for (k, v) in data.as_object().into_iter().flatten() {
                let b64: String = v.as_str().unwrap_or_default().split_whitespace().collect();
                let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).map_err(|e| {
                    BuildError::Kubectl { path: dir.to_owned(), message: format!("Secret data {k}: {e}") }
                })?;
                plain.insert(k.clone(), json!(String::from_utf8_lossy(&bytes)));
            }
            o["stringData"] = Value::Object(plain);
        }
    }
    Ok(objects)
}

fn unhash(v: &mut Value, renamed: &BTreeMap<String, String>) {
    match v {
        Value::String(s) => {
            if let Some(base) = renamed.get(s.as_str()) {
                *s = base.clone();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| unhash(x, renamed)),
        Value::Object(m) => m.values_mut().for_each(|x| unhash(x, renamed)),
        _ => {}
    }
}

/// The fallback build of the subset of kustomize the repository uses.
pub fn build_subset(dir: &Path) -> Result<Vec<Value>, BuildError> {
    build_onto(dir, Vec::new())
}

/// Builds the kustomization (or component) in `dir` onto `objects`: a kustomization gets
/// none, a component the objects built so far, which its transformations then change.
fn build_onto(dir: &Path, mut objects: Vec<Value>) -> Result<Vec<Value>, BuildError> {
    let path = dir.join("kustomization.yaml");
    let text = read(&path)?;
    let k: Kustomization =
        serde_yaml_ng::from_str(&text).map_err(|e| BuildError::Yaml { path: path.clone(), message: e.to_string() })?;
    for r in &k.resources {
        let p = dir.join(r);
        if p.is_dir() {
            objects.extend(build_subset(&p)?);
        } else {
            objects.extend(documents(&p)?);
        }
    }
    for c in &k.components {
        objects = build_onto(&dir.join(c), objects)?;
    }
    for (g, kind) in
        k.config_map_generator.iter().map(|g| (g, "ConfigMap")).chain(k.secret_generator.iter().map(|g| (g, "Secret")))
    {
        let mut data = BTreeMap::new();
        for f in &g.files {
            let (key, file) = f.split_once('=').unwrap_or((f.rsplit('/').next().unwrap_or(f), f));
            data.insert(key.to_owned(), read(&dir.join(file))?);
        }
        for file in &g.envs {
            let text = read(&dir.join(file))?;
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                let (key, value) = line.split_once('=').ok_or_else(|| BuildError::Yaml {
                    path: dir.join(file),
                    message: format!("line {line:?} is not KEY=VALUE"),
                })?;
                data.insert(key.to_owned(), value.to_owned());
            }
        }
        for l in &g.literals {
            let (key, value) = l.split_once('=').ok_or_else(|| BuildError::Yaml {
                path: path.clone(),
                message: format!("literal {l:?} is not key=value"),
            })?;
            data.insert(key.to_owned(), value.to_owned());
        }
        let mut metadata = json!({"name": g.name});
        if let Some(ns) = &g.namespace {
            metadata["namespace"] = json!(ns);
        }
        if let Some(o) = &g.options {
            if !o.labels.is_empty() {
                metadata["labels"] = json!(o.labels);
            }
            if !o.annotations.is_empty() {
                metadata["annotations"] = json!(o.annotations);
            }
        }
        let data_field = if kind == "Secret" { "stringData" } else { "data" };
        objects.push(json!({"apiVersion": "v1", "kind": kind, "metadata": metadata, data_field: data}));
    }
    if let Some(ns) = &k.namespace {
        for o in &mut objects {
            if o["kind"] != "Namespace" {
                o["metadata"]["namespace"] = json!(ns);
            }
        }
    }
    for image in &k.images {
        for o in &mut objects {
            for c in containers_mut(o) {
                let current = c["image"].as_str().unwrap_or_default();
                if current.split(':').next() == Some(image.name.as_str()) {
                    c["image"] = json!(format!("{}:{}", image.name, image.new_tag));
                }
            }
        }
    }
    for p in &k.patches {
        let ops: json_patch::Patch = serde_yaml_ng::from_str(&p.patch).map_err(|e| BuildError::Patch {
            path: path.clone(),
            kind: p.target.kind.clone(),
            name: p.target.name.clone(),
            message: e.to_string(),
        })?;
        let targets: Vec<&mut Value> = objects
            .iter_mut()
            .filter(|o| o["kind"] == p.target.kind.as_str() && o["metadata"]["name"] == p.target.name.as_str())
            .collect();
        if targets.is_empty() {
            return Err(BuildError::Patch {
                path: path.clone(),
                kind: p.target.kind.clone(),
                name: p.target.name.clone(),
                message: "no such object".into(),
            });
        }
        for o in targets {
            json_patch::patch(o, &ops).map_err(|e| BuildError::Patch {
                path: path.clone(),
                kind: p.target.kind.clone(),
                name: p.target.name.clone(),
                message: e.to_string(),
            })?;
        }
    }
    Ok(objects)
}

/// The objects of a multi-document YAML file.
pub fn documents(path: &Path) -> Result<Vec<Value>, BuildError> {
    parse_documents(&read(path)?, path)
}

fn parse_documents(text: &str, path: &Path) -> Result<Vec<Value>, BuildError> {
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v =
            Value::deserialize(doc).map_err(|e| BuildError::Yaml { path: path.to_owned(), message: e.to_string() })?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// The pod template's spec of a workload, if it has one.
pub fn pod_spec(o: &Value) -> Option<&Value> {
    match o["kind"].as_str()? {
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => Some(&o["spec"]["template"]["spec"]),
        "CronJob" => Some(&o["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
        _ => None,
    }
}

fn containers_mut(o: &mut Value) -> Vec<&mut Value> {
    let spec = match o["kind"].as_str() {
        Some("Deployment" | "StatefulSet" | "DaemonSet" | "Job") => &mut o["spec"]["template"]["spec"],
        Some("CronJob") => &mut o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => return Vec::new(),
    };
    spec["containers"].as_array_mut().map(|a| a.iter_mut().collect()).unwrap_or_default()
}

fn read(path: &Path) -> Result<String, BuildError> {
    std::fs::read_to_string(path).map_err(|source| BuildError::Read { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_generators_images_and_patches() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(
            base.join("app.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers: [{name: a, image: 'x/a:latest'}]\n",
        )
        .unwrap();
        std::fs::write(base.join("a.toml"), "k = 1\n").unwrap();
        std::fs::write(
            base.join("kustomization.yaml"),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: n\nresources: [app.yaml]\nconfigMapGenerator:\n  - {name: c, files: [conf.toml=a.toml]}\n",
        )
        .unwrap();
        let over = dir.path().join("over");
        std::fs::create_dir_all(&over).unwrap();
        std::fs::write(
            over.join("kustomization.yaml"),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../base]\nimages: [{name: x/a, newTag: '1.0'}]\npatches:\n  - target: {kind: Deployment, name: a}\n    patch: |-\n      - op: replace\n        path: /spec/replicas\n        value: 3\n",
        )
        .unwrap();
        let objects = build_subset(&over).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0]["spec"]["replicas"], 3);
        assert_eq!(objects[0]["metadata"]["namespace"], "n");
        assert_eq!(objects[0]["spec"]["template"]["spec"]["containers"][0]["image"], "x/a:1.0");
        assert_eq!(objects[1]["data"]["conf.toml"], "k = 1\n");

        // A feature this build does not implement is refused, not skipped.
        std::fs::write(
            over.join("kustomization.yaml"),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../base]\nreplicas: [{name: a, count: 2}]\n",
        )
        .unwrap();
        assert!(build_subset(&over).unwrap_err().to_string().contains("replicas"));
    }
}
