//! Versioned model artifacts on any object store.
//!
//! Layout below a store location:
//!
//! ```text
//! <version>/weights.safetensors   the transformer's variables
//! <version>/manifest.json         what the model is, how it was trained and scored, and the
//!                                 SHA-256 and size of every other file of the version
//! latest                          {"version": ..., "manifest_sha256": ...}
//! ```
//!
//! A fleet model (one transformer for many services, [`crate::fleet`]) also has its
//! per-service work, written by shards that may run on different machines:
//!
//! ```text
//! <version>/shards/<i>-of-<n>.json  the entries of the services of shard i of n
//! <version>/services.json          every service's entry, merged at publication
//! ```
//!
//! Publishing a fleet version checks that every shard finished and covers exactly its
//! services, merges them into `services.json`, records its checksum in the manifest, and
//! only then moves `latest`: a missing shard blocks publication, naming it.
//!
//! A version is written file by file, manifest last; [`publish`] moves `latest` only after
//! that, so a reader following `latest` never sees a half-written model. Loading checks
//! every checksum and every tensor's name and shape, and refuses anything that does not
//! match with an error saying what.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use prescale_core::store::{ObjectStore, StoreError};
use serde::{Deserialize, Serialize};

use crate::dataset::TimeRange;
use sha2::{Digest, Sha256};
use tch::Device;

use prescale_core::{Feature, SCHEMA_VERSION};

use crate::backtest::Backtest;
use crate::burst::BurstProfile;
use crate::fleet::{MAX_SHARDS, Shard};
use crate::forecaster::{ModelParams, TransformerModel};
use crate::scores::ModelScores;
use crate::series::Series;
use crate::served::ServiceEntry;
use crate::train::TrainSummary;
use prescale_policy::objective::Menu;

/// Version of this layout and manifest format.
pub const ARTIFACT_FORMAT: u32 = 1;
const WEIGHTS: &str = "weights.safetensors";
const MANIFEST: &str = "manifest.json";
const LATEST: &str = "latest";
const SERVICES: &str = "services.json";
/// Most services one fleet model holds.
pub const MAX_FLEET: usize = 100_000;

/// Why an artifact could not be written, found or trusted.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Nothing has been published yet.
    #[error("no model published at {0} (no `latest` pointer)")]
    NothingPublished(String),
    /// A file's content does not match the manifest.
    #[error("model {version}: {file} is corrupt: {reason}")]
    Corrupt {
        /// The version.
        version: String,
        /// The file.
        file: String,
        /// What does not match.
        reason: String,
    },
    /// A manifest that cannot be parsed or is of another format.
    #[error("model {version}: bad manifest: {reason}")]
    BadManifest {
        /// The version.
        version: String,
        /// What is wrong.
        reason: String,
    },
    /// The weights do not fit the network the manifest describes.
    #[error("model {version}: weights do not match the network: {reason}")]
    ShapeMismatch {
        /// The version.
        version: String,
        /// Which tensor and how.
        reason: String,
    },
    /// The quality gate refused to publish.
    #[error("quality gate: {0}")]
    Gate(String),
    /// libtorch or the file system failed while (de)serialising weights.
    #[error("model weights: {0}")]
    Weights(String),
}

/// A file of a version, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// Where the training data came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingData {
    /// A trace file or a store location and service.
    pub source: String,
    /// First step.
    pub from: DateTime<Utc>,
    /// Last step of the training part.
    pub to: DateTime<Utc>,
    /// Steps used for fitting and validation.
    pub steps: usize,
    /// Step length, seconds.
    pub step_seconds: f64,
}

/// The backtest numbers the quality gate reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestSummary {
    /// Scores per model name.
    pub models: BTreeMap<String, ModelScores>,
}

impl BacktestSummary {
    /// The baseline with the lowest 10-minute MAE, and that MAE.
    pub fn best_baseline(&self) -> Option<(&str, f64)> {
        self.models
            .iter()
            .filter(|(name, _)| name.as_str() != "transformer")
            .map(|(name, s)| (name.as_str(), s.horizon.mae))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// Everything known about a model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`ARTIFACT_FORMAT`].
    pub format: u32,
    /// The feature schema version of the data it was trained on.
    pub schema_version: u32,
    /// This version's name.
    pub version: String,
    /// When it was built.
    pub created: DateTime<Utc>,
    /// Input features (the target first).
    pub features: Vec<String>,
    /// Quantiles of the outputs.
    pub quantiles: Vec<f64>,
    /// Network, window, normalisation and calibration constants.
    pub params: ModelParams,
    /// Training data range.
    pub training: TrainingData,
    /// How training went.
    pub train_summary: TrainSummary,
    /// Backtest scores, when a backtest was run.
    pub backtest: Option<BacktestSummary>,
    /// Checksums of every other file of the version.
    pub files: BTreeMap<String, FileEntry>,
    /// Name and shape of every weight tensor.
    pub tensors: BTreeMap<String, Vec<i64>>,
    /// The burst profile of the training part (see [`crate::burst`]); absent from models
    /// trained before profiles existed, and when the step does not divide the hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<BurstProfile>,
    /// For a fleet model: the services it was trained for and how their work is split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetInfo>,
    /// The scaling policy's settings tuned on the validation part, for the objective the
    /// service states (see [`crate::tuning::menu`]); absent from older models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Menu>,
}

/// What a fleet model's manifest says of its fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetInfo {
    /// The selector the services were chosen by (`shop/*`).
    pub selector: String,
    /// The services (`namespace/name`), sorted: the shards' work covers exactly these.
    pub services: Vec<String>,
    /// How many shards the per-service work is split into.
    pub shards: u32,
    /// The steps the fit read (`--from`/`--to`, resolved), which the shards read too;
    /// absent: the whole table.
    #[serde(default, skip_serializing_if = "TimeRange::is_all")]
    pub range: TimeRange,
}

/// The entries one shard wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardResult {
    /// `index/count`.
    pub shard: String,
    /// Entry per service (`namespace/name`).
    pub services: BTreeMap<String, ServiceEntry>,
}

fn shard_file(version: &str, shard: Shard) -> String {
    format!("{version}/shards/{}-of-{}.json", shard.index, shard.count)
}
/// The `latest` pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latest {
    /// The published version.
    pub version: String,
    /// SHA-256 of its manifest.
    pub manifest_sha256: String,
}

/// The hex SHA-256 of some bytes, as manifests and the `latest` pointer record them.
pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl Manifest {
    /// The manifest of the transformer a backtest trained, with the backtest's scores
    /// (files and tensors are filled in by [`write_version`]).
    pub fn from_backtest(version: &str, created: DateTime<Utc>, series: &Series, bt: &Backtest) -> Self {
        let p = &bt.transformer.params;
        let mut features = vec![Feature::RequestsPerSecond.name().to_owned()];
        if let Some(pre) = &p.preprocess {
            features.extend(pre.columns.iter().cloned());
        }
        Manifest {
            format: ARTIFACT_FORMAT,
            schema_version: SCHEMA_VERSION,
            version: version.to_owned(),
            created,
            features,
            quantiles: vec![0.5, 0.9],
            params: p.clone(),
            training: TrainingData {
                source: series.name.clone(),
                from: series.start,
                to: series.time(bt.split.test_start.saturating_sub(1)),
                steps: bt.split.test_start,
                step_seconds: series.grid.seconds(),
            },
            train_summary: bt.training.clone(),
            backtest: Some(BacktestSummary {
                models: bt.models.iter().map(|m| (m.name.to_owned(), m.scores)).collect(),
            }),
            files: BTreeMap::new(),
            tensors: BTreeMap::new(),
            fleet: None,
            // The steps before validation, as `prescale-trainer simulate` learns it.
            burst: BurstProfile::learn(series, bt.split.valid_start, p.window.horizon).ok(),
            policy: None,
        }
        .tuned(series, bt)
    }

    /// With the policy's menu tuned on the transformer's validation forecasts; without
    /// one (said in the log) when those cannot be made.
    fn tuned(mut self, series: &Series, bt: &Backtest) -> Self {
        let (horizon, to) = (self.params.window.horizon, bt.split.test_start);
        let from = bt.split.valid_start.max(to.saturating_sub(crate::tuning::MAX_TUNING_STEPS));
        let menu = crate::tuning::StepForecasts::between(&bt.transformer, series, from, to)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                crate::tuning::menu(series, &f, self.burst.as_ref(), horizon, from, to).map_err(|e| e.to_string())
            });
        match menu {
            Ok(menu) => self.policy = Some(menu),
            Err(e) => tracing::warn!(error = %e, "no policy tuned on validation; services run their configured policy"),
        }
        self
    }
}

/// A new version name: the UTC build time, sortable.
pub fn new_version(now: DateTime<Utc>) -> String {
    now.format("%Y%m%dT%H%M%S%.3fZ").to_string().replace('.', "")
}

/// Serialises a model's weights.
fn weights_bytes(model: &TransformerModel) -> Result<Vec<u8>, ArtifactError> {
    let dir = tempfile::tempdir().map_err(|e| ArtifactError::Weights(e.to_string()))?;
    let path = dir.path().join(WEIGHTS);
    model.vs.save(&path).map_err(|e| ArtifactError::Weights(e.to_string()))?;
    std::fs::read(&path).map_err(|e| ArtifactError::Weights(e.to_string()))
}

/// Writes a model as a new version (files first, manifest last); does not move `latest`.
pub async fn write_version(
    store: &dyn ObjectStore,
    model: &TransformerModel,
    mut manifest: Manifest,
) -> Result<Manifest, ArtifactError> {
    let weights = weights_bytes(model)?;
    manifest.files.insert(WEIGHTS.into(), FileEntry { sha256: sha256(&weights), bytes: weights.len() as u64 });
    manifest.tensors = model.vs.variables().into_iter().map(|(name, t)| (name, t.size())).collect();
    let v = &manifest.version;
    store.put(&format!("{v}/{WEIGHTS}"), Bytes::from(weights)).await?;
    let json = serde_json::to_vec_pretty(&manifest).expect("manifests serialise");
    store.put(&format!("{v}/{MANIFEST}"), Bytes::from(json)).await?;
    Ok(manifest)
}

/// Reads and parses a version's manifest, returning it with its checksum.
pub async fn read_manifest(store: &dyn ObjectStore, version: &str) -> Result<(Manifest, String), ArtifactError> {
    let raw = store.get(&format!("{version}/{MANIFEST}")).await?;
    let manifest = parse_manifest(version, &raw)?;
    Ok((manifest, sha256(&raw)))
}

/// Parses the manifest of `version` from its bytes and checks it: the format, the version
/// it names, every network parameter within limits and the burst profile. Nothing is
/// built from a manifest this refuses; the error names the field.
pub fn parse_manifest(version: &str, raw: &[u8]) -> Result<Manifest, ArtifactError> {
    let bad = |reason: String| ArtifactError::BadManifest { version: version.into(), reason };
    let manifest: Manifest = serde_json::from_slice(raw).map_err(|e| bad(e.to_string()))?;
    if manifest.format != ARTIFACT_FORMAT {
        return Err(bad(format!("format {} is not the supported {ARTIFACT_FORMAT}", manifest.format)));
    }
    if manifest.version != version {
        return Err(bad(format!("it names version {:?}", manifest.version)));
    }
    // Every parameter within limits before any network, buffer or window is built from it.
    manifest.params.validate().map_err(|e| bad(e.to_string()))?;
    if let Some(Err(e)) = manifest.burst.as_ref().map(BurstProfile::validate) {
        return Err(bad(e.to_string()));
    }
    if let Some(fleet) = &manifest.fleet {
        if !(1..=MAX_SHARDS).contains(&fleet.shards) {
            return Err(bad(format!("fleet.shards {} is outside 1..={MAX_SHARDS}", fleet.shards)));
        }
        if fleet.services.len() > MAX_FLEET {
            return Err(bad(format!("fleet.services: {} services, at most {MAX_FLEET}", fleet.services.len())));
        }
    }
    Ok(manifest)
}

/// The services of a fleet version that `shard` covers.
pub fn shard_services(fleet: &FleetInfo, shard: Shard) -> Vec<String> {
    fleet.services.iter().filter(|s| shard.holds(s)).cloned().collect()
}

/// Writes one shard's entries under a fleet version: they must be exactly the services
/// of the manifest that the shard holds, of the manifest's shard count. A shard rerun
/// rewrites its file.
pub async fn write_shard(
    store: &dyn ObjectStore,
    manifest: &Manifest,
    shard: Shard,
    services: BTreeMap<String, ServiceEntry>,
) -> Result<(), ArtifactError> {
    let version = &manifest.version;
    let fleet = fleet_of(manifest)?;
    if shard.count != fleet.shards {
        return Err(ArtifactError::Gate(format!(
            "model {version} is split into {} shards, not {} (shard {shard})",
            fleet.shards, shard.count
        )));
    }
    let wanted = shard_services(fleet, shard);
    let got: Vec<String> = services.keys().cloned().collect();
    if wanted != got {
        return Err(ArtifactError::Gate(format!(
            "shard {shard} of model {version} holds {} services, its results {}: refusing a partial shard",
            wanted.len(),
            got.len()
        )));
    }
    let result = ShardResult { shard: shard.to_string(), services };
    let json = serde_json::to_vec(&result).map_err(|e| ArtifactError::Weights(e.to_string()))?;
    store.put(&shard_file(version, shard), Bytes::from(json)).await?;
    Ok(())
}

fn fleet_of(manifest: &Manifest) -> Result<&FleetInfo, ArtifactError> {
    manifest.fleet.as_ref().ok_or_else(|| ArtifactError::BadManifest {
        version: manifest.version.clone(),
        reason: "not a fleet model (no `fleet` in its manifest)".into(),
    })
}

/// Checks every shard of a fleet version finished and covers exactly its services, then
/// merges them into `services.json` and records its checksum in the manifest (rewritten
/// last). Fails naming every missing shard.
async fn finish_fleet(store: &dyn ObjectStore, mut manifest: Manifest) -> Result<Manifest, ArtifactError> {
    let version = manifest.version.clone();
    let fleet = fleet_of(&manifest)?.clone();
    let horizon = manifest.params.window.horizon;
    let mut merged = BTreeMap::new();
    let mut missing = Vec::new();
    for shard in Shard::all(fleet.shards) {
        let file = shard_file(&version, shard);
        let raw = match store.get(&file).await {
            Ok(raw) => raw,
            Err(StoreError::NotFound { .. }) => {
                missing.push(shard.to_string());
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let corrupt = |reason: String| ArtifactError::Corrupt { version: version.clone(), file: file.clone(), reason };
        let result: ShardResult = serde_json::from_slice(&raw).map_err(|e| corrupt(e.to_string()))?;
        let wanted = shard_services(&fleet, shard);
        if result.services.keys().ne(wanted.iter()) {
            return Err(corrupt(format!("it holds {} services, the shard {}", result.services.len(), wanted.len())));
        }
        for (service, entry) in result.services {
            entry.validate(horizon).map_err(|e| corrupt(format!("{service}: {e}")))?;
            merged.insert(service, entry);
        }
    }
    if !missing.is_empty() {
        return Err(ArtifactError::Gate(format!(
            "model {version}: shard{} {} of {} not finished (no {version}/shards/<i>-of-{}.json); run \
             `prescale-trainer evaluate --shard <i>/{}` for each, then publish",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", "),
            fleet.shards,
            fleet.shards,
            fleet.shards
        )));
    }
    let json = serde_json::to_vec(&merged).map_err(|e| ArtifactError::Weights(e.to_string()))?;
    manifest.files.insert(SERVICES.into(), FileEntry { sha256: sha256(&json), bytes: json.len() as u64 });
    store.put(&format!("{version}/{SERVICES}"), Bytes::from(json)).await?;
    let json = serde_json::to_vec_pretty(&manifest).expect("manifests serialise");
    store.put(&format!("{version}/{MANIFEST}"), Bytes::from(json)).await?;
    Ok(manifest)
}

/// A published fleet version's per-service entries, checked against the manifest's
/// checksum and the model's horizon.
pub async fn load_services(
    store: &dyn ObjectStore,
    manifest: &Manifest,
) -> Result<BTreeMap<String, ServiceEntry>, ArtifactError> {
    let version = manifest.version.as_str();
    let corrupt = |reason: String| ArtifactError::Corrupt { version: version.into(), file: SERVICES.into(), reason };
    let entry = manifest
        .files
        .get(SERVICES)
        .ok_or_else(|| corrupt("the manifest lists none: the fleet version was never finished".into()))?;
    let raw = store.get(&format!("{version}/{SERVICES}")).await?;
    let actual = sha256(&raw);
    if actual != entry.sha256 {
        return Err(corrupt(format!("SHA-256 {actual}, the manifest says {}", entry.sha256)));
    }
    let services: BTreeMap<String, ServiceEntry> = serde_json::from_slice(&raw).map_err(|e| corrupt(e.to_string()))?;
    let horizon = manifest.params.window.horizon;
    for (service, e) in &services {
        e.validate(horizon).map_err(|e| corrupt(format!("{service}: {e}")))?;
    }
    Ok(services)
}

/// Checks a safetensors file against the network's variables (`expected`: name to
/// shape) from its header alone, before libtorch allocates anything: a header that does
/// not parse, a tensor missing, extra, of another shape or not 32-bit float is refused,
/// naming it.
pub fn check_weights(expected: &BTreeMap<String, Vec<i64>>, bytes: &[u8]) -> Result<(), WeightsMismatch> {
    let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| WeightsMismatch::Unreadable(e.to_string()))?;
    let mut found = BTreeMap::new();
    for (name, view) in file.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(WeightsMismatch::Dtype { tensor: name, dtype: format!("{:?}", view.dtype()) });
        }
        let shape: Vec<i64> = view.shape().iter().map(|&d| i64::try_from(d).unwrap_or(i64::MAX)).collect();
        found.insert(name, shape);
    }
    if *expected != found {
        let missing: Vec<_> = expected.keys().filter(|k| !found.contains_key(*k)).collect();
        let wrong: Vec<_> = expected
            .iter()
            .filter_map(|(k, s)| found.get(k).filter(|f| *f != s).map(|f| format!("{k}: {f:?} not {s:?}")))
            .collect();
        let extra: Vec<_> = found.keys().filter(|k| !expected.contains_key(*k)).collect();
        return Err(WeightsMismatch::Network(format!(
            "missing {missing:?}, wrong shape {wrong:?}, unexpected {extra:?}"
        )));
    }
    Ok(())
}

/// Why a weights file does not fit its network.
#[derive(Debug, thiserror::Error)]
pub enum WeightsMismatch {
    /// The safetensors header or layout is broken.
    #[error("not a readable safetensors file: {0}")]
    Unreadable(String),
    /// A tensor is not 32-bit float.
    #[error("tensor {tensor} is {dtype}, not F32")]
    Dtype {
        /// The tensor.
        tensor: String,
        /// Its stored type.
        dtype: String,
    },
    /// Names or shapes differ from the network's.
    #[error("{0}")]
    Network(String),
}

/// The version `latest` points to, if any.
pub async fn latest(store: &dyn ObjectStore) -> Result<Option<Latest>, ArtifactError> {
    match store.get(LATEST).await {
        Ok(raw) => serde_json::from_slice(&raw).map(Some).map_err(|e| ArtifactError::BadManifest {
            version: LATEST.into(),
            reason: format!("unreadable latest pointer: {e}"),
        }),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Publishes a written version: checks it loads, applies the quality gate unless
/// `force`, then moves `latest` to it. The pointer moves last.
pub async fn publish(store: &dyn ObjectStore, version: &str, force: bool) -> Result<Manifest, ArtifactError> {
    let (mut manifest, _) = load_version(store, version, Device::Cpu).await?;
    if manifest.fleet.is_some() {
        // Every service must have its entry: without one there is nothing to serve it
        // with, so not even `force` publishes a fleet version with a shard missing.
        manifest = finish_fleet(store, manifest).await?;
    }
    if !force {
        gate(&manifest)?;
    }
    let (_, manifest_sha256) = read_manifest(store, version).await?;
    let pointer = Latest { version: version.to_owned(), manifest_sha256 };
    store.put(LATEST, Bytes::from(serde_json::to_vec(&pointer).expect("pointer serialises"))).await?;
    Ok(manifest)
}

/// The quality gate: the transformer's backtest MAE must not be worse than the best
/// baseline's.
pub fn gate(manifest: &Manifest) -> Result<(), ArtifactError> {
    // A fleet model is judged per service: each is served by whichever of the
    // transformer and the baselines did best on its own validation part.
    if manifest.fleet.is_some() {
        return if manifest.files.contains_key(SERVICES) {
            Ok(())
        } else {
            Err(ArtifactError::Gate(format!("fleet model {}: its shards have not been merged", manifest.version)))
        };
    }
    let bt = manifest
        .backtest
        .as_ref()
        .ok_or_else(|| ArtifactError::Gate(format!("model {} has no backtest to judge it by", manifest.version)))?;
    let ours = bt
        .models
        .get("transformer")
        .ok_or_else(|| ArtifactError::Gate("the backtest has no transformer score".into()))?
        .horizon
        .mae;
    let (name, best) =
        bt.best_baseline().ok_or_else(|| ArtifactError::Gate("the backtest has no baseline scores".into()))?;
    if ours.is_nan() || ours > best {
        return Err(ArtifactError::Gate(format!(
            "transformer 10-minute MAE {ours:.4} is worse than baseline {name} ({best:.4}); use --force to publish anyway"
        )));
    }
    Ok(())
}

/// Loads a version, verifying every checksum and every tensor's name and shape.
pub async fn load_version(
    store: &dyn ObjectStore,
    version: &str,
    device: Device,
) -> Result<(Manifest, TransformerModel), ArtifactError> {
    let (manifest, _) = read_manifest(store, version).await?;
    load_weights(store, manifest, device).await
}

/// Loads the weights a read manifest lists, verifying their checksum and every tensor's
/// name and shape; the manifest is the one already read (and checked), never re-read.
async fn load_weights(
    store: &dyn ObjectStore,
    manifest: Manifest,
    device: Device,
) -> Result<(Manifest, TransformerModel), ArtifactError> {
    let version = manifest.version.clone();
    let version = version.as_str();
    let corrupt =
        |file: &str, reason: String| ArtifactError::Corrupt { version: version.into(), file: file.into(), reason };
    let entry = manifest.files.get(WEIGHTS).ok_or_else(|| corrupt(MANIFEST, format!("it lists no {WEIGHTS}")))?;
    let weights = store.get(&format!("{version}/{WEIGHTS}")).await?;
    if weights.len() as u64 != entry.bytes {
        return Err(corrupt(WEIGHTS, format!("{} bytes, the manifest says {}", weights.len(), entry.bytes)));
    }
    let actual = sha256(&weights);
    if actual != entry.sha256 {
        return Err(corrupt(WEIGHTS, format!("SHA-256 {actual}, the manifest says {}", entry.sha256)));
    }
    let mut model = TransformerModel::empty(manifest.params.clone(), device);
    let expected: BTreeMap<String, Vec<i64>> =
        model.vs.variables().into_iter().map(|(name, t)| (name, t.size())).collect();
    // The header is checked in memory first: libtorch only ever reads a file whose every
    // tensor is one the network has, of its shape and type.
    check_weights(&expected, &weights).map_err(|e| match e {
        WeightsMismatch::Network(reason) => ArtifactError::ShapeMismatch { version: version.into(), reason },
        other => corrupt(WEIGHTS, other.to_string()),
    })?;
    let dir = tempfile::tempdir().map_err(|e| ArtifactError::Weights(e.to_string()))?;
    let path = dir.path().join(WEIGHTS);
    std::fs::write(&path, &weights).map_err(|e| ArtifactError::Weights(e.to_string()))?;
    model.vs.load(&path).map_err(|e| corrupt(WEIGHTS, e.to_string()))?;
    Ok((manifest, model))
}

/// Loads whatever `latest` points to, checking the manifest against the pointer.
pub async fn load_latest(
    store: &dyn ObjectStore,
    device: Device,
) -> Result<(Manifest, TransformerModel), ArtifactError> {
    let pointer = latest(store).await?.ok_or_else(|| ArtifactError::NothingPublished(store.location().to_string()))?;
    // Read once, verify once: the manifest checked against the pointer is the one used
    // (reading it again could pick up a version rewritten in between).
    let (manifest, sha) = read_manifest(store, &pointer.version).await?;
    if sha != pointer.manifest_sha256 {
        return Err(ArtifactError::Corrupt {
            version: pointer.version.clone(),
            file: MANIFEST.into(),
            reason: format!("SHA-256 {sha}, the latest pointer says {}", pointer.manifest_sha256),
        });
    }
    load_weights(store, manifest, device).await
}

/// A stored version, or the one `latest` points to when none is named.
pub async fn load(
    store: &dyn ObjectStore,
    version: Option<&str>,
    device: Device,
) -> Result<(Manifest, TransformerModel), ArtifactError> {
    match version {
        Some(v) => load_version(store, v, device).await,
        None => load_latest(store, device).await,
    }
}

/// Every version in the store with its manifest, oldest first; unreadable ones are
/// reported with their error.
pub async fn list(store: &dyn ObjectStore) -> Result<Vec<(String, Result<Manifest, ArtifactError>)>, ArtifactError> {
    let mut versions: Vec<String> = store
        .list("")
        .await?
        .into_iter()
        .filter_map(|m| m.key.strip_suffix(&format!("/{MANIFEST}")).map(str::to_owned))
        .collect();
    versions.sort();
    let mut out = Vec::new();
    for v in versions {
        let manifest = read_manifest(store, &v).await.map(|(m, _)| m);
        out.push((v, manifest));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Strategy as _;

    use super::*;

    /// A safetensors file: the 8-byte header length, the JSON header, the data.
    fn file(header: &str, data_len: usize, declared_len: Option<u64>) -> Vec<u8> {
        let mut out = declared_len.unwrap_or(header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.resize(out.len() + data_len, 0);
        out
    }

    fn expected() -> BTreeMap<String, Vec<i64>> {
        BTreeMap::from([("a.weight".to_owned(), vec![2, 3]), ("a.bias".to_owned(), vec![2])])
    }

    #[test]
    fn a_matching_header_passes_and_each_mismatch_is_named() {
        let good = r#"{"a.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"a.bias":{"dtype":"F32","shape":[2],"data_offsets":[24,32]}}"#;
        check_weights(&expected(), &file(good, 32, None)).unwrap();
        let shape = good.replace("[2,3]", "[3,2]");
        assert!(check_weights(&expected(), &file(&shape, 32, None)).unwrap_err().to_string().contains("a.weight"));
        let dtype = good.replace(r#""F32","shape":[2]"#, r#""F64","shape":[1]"#);
        assert!(matches!(check_weights(&expected(), &file(&dtype, 32, None)), Err(WeightsMismatch::Dtype { .. })));
        let huge = file(good, 32, Some(u64::MAX));
        assert!(matches!(check_weights(&expected(), &huge), Err(WeightsMismatch::Unreadable(_))));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, failure_persistence: None, ..Default::default() })]

        /// Any bytes, and headers of any names, types, shapes, offsets and declared
        /// lengths: refused with a reason or accepted only when every tensor matches;
        /// never a panic, and nothing allocated from what the header claims.
        #[test]
        fn any_weights_file_is_refused_or_matches_exactly(
            raw in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            tensors in proptest::collection::vec((
                proptest::sample::select(vec!["a.weight", "a.bias", "b", ""]),
                proptest::sample::select(vec!["F32", "F64", "I64", "U8", "BOGUS"]),
                proptest::collection::vec(proptest::prop_oneof![0u64..4, proptest::num::u64::ANY], 0..3),
                (0u64..64, proptest::prop_oneof![0u64..64, proptest::num::u64::ANY]),
            ), 0..4),
            data_len in 0usize..64,
            declared in proptest::option::of(proptest::num::u64::ANY.prop_map(|n| n % 1_000_000_000_000)),
        ) {
            let _ = check_weights(&expected(), &raw);
            let header: serde_json::Map<String, serde_json::Value> = tensors
                .into_iter()
                .map(|(name, dtype, shape, (from, to))| {
                    (name.to_owned(), serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [from, to]}))
                })
                .collect();
            let header = serde_json::Value::Object(header).to_string();
            if check_weights(&expected(), &file(&header, data_len, declared)).is_ok() {
                let parsed: serde_json::Value = serde_json::from_str(&header).unwrap();
                proptest::prop_assert_eq!(parsed["a.weight"]["shape"].clone(), serde_json::json!([2, 3]));
                proptest::prop_assert_eq!(parsed["a.bias"]["shape"].clone(), serde_json::json!([2]));
            }
        }
    }
}
