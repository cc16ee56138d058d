//! Training a small transformer, forecasting, and the artifact lifecycle: save/load
//! round trip, corruption and checksum refusal, the quality gate, and the fallback when
//! history is too short.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use prescale_core::StepGrid;
use prescale_core::store::{LocalStore, ObjectStore};
use prescale_models::artifact::{self, ArtifactError, BacktestSummary, Manifest, TrainingData};
use prescale_models::burst::BurstProfile;
use prescale_models::forecaster::{ModelError, TransformerModel};
use prescale_models::scores::ModelScores;
use prescale_models::series::{Series, Split};
use prescale_models::train::{Quiet, TrainConfig};
use tch::Device;

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-03-04T00:00:00Z").unwrap().with_timezone(&Utc)
}

/// A daily pattern on a 96-step "day" of 60 s steps, with deterministic noise and a gap.
fn series(steps: usize) -> Series {
    let mut values: Vec<Option<f64>> = (0..steps)
        .map(|t| {
            let phase = 2.0 * std::f64::consts::PI * (t % 96) as f64 / 96.0;
            Some(50.0 + 30.0 * phase.sin() + ((t * 7919) % 13) as f64)
        })
        .collect();
    for v in values.iter_mut().skip(300).take(10) {
        *v = None;
    }
    Series::new("synthetic", StepGrid::from_secs(60).unwrap(), start(), values).unwrap()
}

fn small() -> TrainConfig {
    TrainConfig::small(Some(96))
}

fn manifest_for(model: &TransformerModel, version: &str, transformer_mae: f64) -> Manifest {
    let mut models = BTreeMap::new();
    let with_mae = |mae| {
        let mut s = ModelScores::default();
        s.horizon.mae = mae;
        s
    };
    models.insert("transformer".to_owned(), with_mae(transformer_mae));
    models.insert("persistence".to_owned(), with_mae(2.0));
    Manifest {
        format: artifact::ARTIFACT_FORMAT,
        schema_version: prescale_core::SCHEMA_VERSION,
        version: version.to_owned(),
        created: start(),
        features: vec!["requests_per_second".into()],
        quantiles: vec![0.5, 0.9],
        params: model.params.clone(),
        training: TrainingData { source: "synthetic".into(), from: start(), to: start(), steps: 1, step_seconds: 60.0 },
        train_summary: prescale_models::train::TrainSummary {
            epochs: 1,
            best_valid_loss: 0.0,
            windows_seen: 0,
            seconds: 0.0,
            early_stopped: false,
        },
        backtest: Some(BacktestSummary { models }),
        files: BTreeMap::new(),
        tensors: BTreeMap::new(),
        burst: Some(BurstProfile::learn(&series(1500), 900, model.params.window.horizon).unwrap()),
        fleet: None,
        policy: None,
    }
}

/// libtorch's seed is process-wide: tests that train take turns, so that each run is
/// reproducible while the test harness runs tests on several threads.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn train(s: &Series, config: &TrainConfig) -> Result<TransformerModel, ModelError> {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    TransformerModel::train(s, Split::of(s.len()), 10, config, &mut Quiet).map(|(m, summary)| {
        assert!(summary.epochs >= 1 && summary.best_valid_loss.is_finite());
        m
    })
}

fn trained() -> (Series, TransformerModel) {
    let s = series(1500);
    let model = train(&s, &small()).unwrap();
    (s, model)
}

#[tokio::test]
async fn save_load_round_trip_gives_identical_forecasts_and_gate_applies() {
    let (s, model) = trained();
    let origins: Vec<usize> = (1300..1400).collect();
    let before = model.forecast(&s, &origins).unwrap();
    assert!(before.p50.iter().all(|v| v.is_finite() && *v >= 0.0));
    assert!(before.p90.iter().zip(before.p50.iter()).all(|(a, b)| a >= b));

    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    // A model worse than the baseline is refused by the gate, and `latest` does not move.
    artifact::write_version(&store, &model, manifest_for(&model, "v1", 5.0)).await.unwrap();
    let err = artifact::publish(&store, "v1", false).await.unwrap_err();
    assert!(matches!(err, ArtifactError::Gate(_)), "{err}");
    assert!(err.to_string().contains("persistence"), "{err}");
    assert!(artifact::latest(&store).await.unwrap().is_none());
    // Forced, it publishes.
    artifact::publish(&store, "v1", true).await.unwrap();
    // A better one publishes through the gate.
    artifact::write_version(&store, &model, manifest_for(&model, "v2", 1.0)).await.unwrap();
    artifact::publish(&store, "v2", false).await.unwrap();
    assert_eq!(artifact::latest(&store).await.unwrap().unwrap().version, "v2");

    let (manifest, loaded) = artifact::load_latest(&store, Device::Cpu).await.unwrap();
    assert_eq!(manifest.version, "v2");
    assert_eq!(loaded.params, model.params, "constants survive the manifest");
    assert!(manifest.burst.is_some());
    assert_eq!(manifest.burst, manifest_for(&model, "v2", 1.0).burst, "the burst profile survives the manifest");
    for (name, t) in model.vs.variables() {
        assert!(t.equal(&loaded.vs.variables()[&name]), "variable {name} differs after loading");
    }
    let after = loaded.forecast(&s, &origins).unwrap();
    assert_eq!(before.p50, after.p50);
    assert_eq!(before.p90, after.p90);
    let listed: Vec<String> = artifact::list(&store).await.unwrap().into_iter().map(|(v, _)| v).collect();
    assert_eq!(listed, vec!["v1", "v2"]);
}

#[tokio::test]
async fn corrupt_weights_and_wrong_checksums_are_refused() {
    let (_, model) = trained();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    artifact::write_version(&store, &model, manifest_for(&model, "v1", 1.0)).await.unwrap();

    // Flip one byte of the weights.
    let mut weights = store.get("v1/weights.safetensors").await.unwrap().to_vec();
    let mid = weights.len() / 2;
    weights[mid] ^= 0xff;
    store.put("v1/weights.safetensors", Bytes::from(weights.clone())).await.unwrap();
    let err = artifact::load_version(&store, "v1", Device::Cpu).await.unwrap_err();
    assert!(matches!(err, ArtifactError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("SHA-256"), "{err}");
    assert!(artifact::publish(&store, "v1", true).await.is_err(), "a corrupt model must not be published");

    // A manifest whose checksum was edited to match other content.
    weights[mid] ^= 0xff;
    store.put("v1/weights.safetensors", Bytes::from(weights)).await.unwrap();
    let raw = store.get("v1/manifest.json").await.unwrap();
    let mut m: Manifest = serde_json::from_slice(&raw).unwrap();
    m.files.get_mut("weights.safetensors").unwrap().sha256 = "00".repeat(32);
    store.put("v1/manifest.json", Bytes::from(serde_json::to_vec(&m).unwrap())).await.unwrap();
    let err = artifact::load_version(&store, "v1", Device::Cpu).await.unwrap_err();
    assert!(err.to_string().contains("weights.safetensors is corrupt"), "{err}");

    // Weights of a different network are refused by shape.
    let mut other = small();
    other.d_model = 8;
    let s = series(1500);
    let small_model = train(&s, &other).unwrap();
    let mut m = manifest_for(&model, "v3", 1.0);
    m.params = model.params.clone();
    artifact::write_version(&store, &small_model, m).await.unwrap();
    let err = artifact::load_version(&store, "v3", Device::Cpu).await.unwrap_err();
    assert!(matches!(err, ArtifactError::ShapeMismatch { .. }), "{err}");

    // A burst profile missing a lead is refused, naming the profile.
    let mut m = manifest_for(&model, "v4", 1.0);
    m.burst.as_mut().unwrap().ratios[0].pop();
    artifact::write_version(&store, &model, m).await.unwrap();
    let err = artifact::load_version(&store, "v4", Device::Cpu).await.unwrap_err();
    assert!(matches!(err, ArtifactError::BadManifest { .. }), "{err}");
    assert!(err.to_string().contains("bad burst profile"), "{err}");
}

#[tokio::test]
async fn manifests_with_parameters_out_of_bounds_are_refused_naming_the_field() {
    let (_, model) = trained();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    type Edit = fn(&mut Manifest);
    let cases: [(&str, Edit, &str); 6] = [
        ("heads", |m| m.params.net.heads = 0, "params.net.heads"),
        ("divisible", |m| m.params.net.heads = m.params.net.d_model + 1, "params.net.heads"),
        ("shift", |m| m.params.p90_shift.push(0.5), "params.p90_shift"),
        (
            "context",
            |m| {
                m.params.window.context = 1 << 40;
                m.params.net.context = 1 << 40;
            },
            "params.net.context",
        ),
        ("dropout", |m| m.params.net.dropout = 1.5, "params.net.dropout"),
        ("floor", |m| m.params.level_floor = -1.0, "params.level_floor"),
    ];
    for (version, edit, field) in cases {
        let mut m = manifest_for(&model, version, 1.0);
        edit(&mut m);
        artifact::write_version(&store, &model, m).await.unwrap();
        let Err(err) = artifact::load_version(&store, version, Device::Cpu).await else {
            panic!("{version}: the manifest was accepted");
        };
        assert!(matches!(err, ArtifactError::BadManifest { .. }), "{version}: {err}");
        assert!(err.to_string().contains(field), "{version}: expected {field} in {err}");
        assert!(artifact::publish(&store, version, true).await.is_err(), "{version} must not be published");
    }
}

#[tokio::test]
async fn load_latest_uses_the_manifest_it_verified() {
    let (_, model) = trained();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    artifact::write_version(&store, &model, manifest_for(&model, "v1", 1.0)).await.unwrap();
    artifact::publish(&store, "v1", true).await.unwrap();
    // Another manifest in place of the published one: its checksum no longer matches the
    // pointer, so nothing is loaded from it.
    let mut m = manifest_for(&model, "v1", 1.0);
    m.params.level_floor *= 2.0;
    store.put("v1/manifest.json", Bytes::from(serde_json::to_vec(&m).unwrap())).await.unwrap();
    let err = artifact::load_latest(&store, Device::Cpu).await.unwrap_err();
    assert!(err.to_string().contains("latest pointer"), "{err}");
}

#[test]
fn too_short_history_says_why() {
    let s = series(120);
    let err = train(&s, &small()).unwrap_err();
    assert!(matches!(err, ModelError::TooShort { .. }), "{err}");
    assert!(err.to_string().contains("too little history"), "{err}");
}
