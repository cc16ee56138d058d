//! Helpers shared by the predictor's tests and benchmark.

#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use prescale_core::store::ObjectStore;
use prescale_models::artifact::{self, BacktestSummary, Manifest, TrainingData};
use prescale_models::forecaster::TransformerModel;
use prescale_models::scores::ModelScores;
use prescale_models::train::TrainSummary;

/// A manifest for a model trained in a test (no backtest numbers: published with force).
pub fn manifest(model: &TransformerModel, version: &str, created: DateTime<Utc>, step_seconds: f64) -> Manifest {
    let mut models = BTreeMap::new();
    models.insert("transformer".to_owned(), ModelScores::default());
    Manifest {
        format: artifact::ARTIFACT_FORMAT,
        schema_version: prescale_core::SCHEMA_VERSION,
        version: version.to_owned(),
        created,
        features: vec!["requests_per_second".into()],
        quantiles: vec![0.5, 0.9],
        params: model.params.clone(),
        training: TrainingData { source: "synthetic".into(), from: created, to: created, steps: 1, step_seconds },
        train_summary: TrainSummary {
            epochs: 1,
            best_valid_loss: 0.1,
            windows_seen: 0,
            seconds: 0.0,
            early_stopped: false,
        },
        backtest: Some(BacktestSummary { models }),
        files: BTreeMap::new(),
        tensors: BTreeMap::new(),
        burst: None,
        fleet: None,
        policy: None,
    }
}

/// Writes `model` as `version` and points `latest` at it.
pub async fn publish(store: &dyn ObjectStore, model: &TransformerModel, version: &str, step_seconds: f64) {
    artifact::write_version(store, model, manifest(model, version, Utc::now(), step_seconds)).await.unwrap();
    artifact::publish(store, version, true).await.unwrap();
}
