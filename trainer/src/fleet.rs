//! The fleet commands: fit one model for every service a selector names, do the
//! per-service work of one shard, and report what each service is served with.
//!
//! `train --services SELECTOR` fits the transformer on every selected service's demand
//! and stores it as a candidate version naming its services and shard count; the
//! per-service work then runs once per shard (`evaluate --shard i/N`, in this process or
//! as the pods of a Kubernetes Indexed Job), each shard writing its services' entries
//! under the version; `publish` checks every shard finished and moves `latest`.

use std::collections::BTreeMap;
use std::time::Instant;

use prescale_core::store::{ObjectStore, S3Options};
use prescale_models::artifact::{self, FleetInfo, Manifest, TrainingData};
use prescale_models::dataset::TimeRange;
use prescale_models::fleet::{self, Shard};
use prescale_models::series::{Series, Split};
use prescale_models::served::{FLEET, ServiceEntry};
use prescale_models::train::{Observer, TrainConfig};
use prescale_models::{backtest, dataset};

use crate::input::{DataArgs, InputError};

/// Loads the demand of each service, in order, in one pass over the steps of `range`.
async fn demand(
    data: &DataArgs,
    s3: &S3Options,
    services: &[String],
    range: TimeRange,
) -> Result<Vec<Series>, InputError> {
    let (store, prefix) = data.table(s3).await?;
    Ok(dataset::load_demands(store.as_ref(), &prefix, services, range).await?)
}

/// Fits the fleet model on every service of the data `selector` names and stores it as a
/// new version (not published) split into `shards`; returns its manifest.
pub async fn fit(
    data: &DataArgs,
    s3: &S3Options,
    selector: &str,
    config: &TrainConfig,
    store: &dyn ObjectStore,
    shards: u32,
    observer: &mut dyn Observer,
) -> anyhow::Result<Manifest> {
    let started = Instant::now();
    let services: Vec<String> = data.services(s3, selector).await?.iter().map(ToString::to_string).collect();
    anyhow::ensure!(!services.is_empty(), "no service of the data matches {selector:?}");
    let range = data.range()?;
    let series = demand(data, s3, &services, range).await?;
    let steps: usize = series.iter().map(Series::len).sum();
    eprintln!("fleet: {} services matching {selector:?}, {steps} steps in all", services.len());
    if !range.is_all() {
        eprintln!("fleet: steps from {range}");
    }
    let first = &series[0];
    let horizon = first.grid.steps_in(backtest::HORIZON);
    let trained = tokio::task::block_in_place(|| fleet::train(&series, horizon, config, observer))?;
    let now = chrono::Utc::now();
    let version = artifact::new_version(now);
    let from = series.iter().map(|s| s.start).min().unwrap_or(first.start);
    let to = series.iter().map(|s| s.time(Split::of(s.len()).test_start.saturating_sub(1))).max().unwrap_or(from);
    let manifest = Manifest {
        format: artifact::ARTIFACT_FORMAT,
        schema_version: prescale_core::SCHEMA_VERSION,
        version: version.clone(),
        created: now,
        features: vec![prescale_core::Feature::RequestsPerSecond.name().to_owned()],
        quantiles: vec![0.5, 0.9],
        params: trained.model.params.clone(),
        training: TrainingData {
            source: format!("{} services {selector} of {}", services.len(), data.data.as_deref().unwrap_or("")),
            from,
            to,
            steps: series.iter().map(|s| Split::of(s.len()).test_start).sum(),
            step_seconds: first.grid.seconds(),
        },
        train_summary: trained.summary.clone(),
        backtest: None,
        files: BTreeMap::new(),
        tensors: BTreeMap::new(),
        burst: None,
        policy: None,
        fleet: Some(FleetInfo { selector: selector.to_owned(), services, shards, range }),
    };
    let manifest = artifact::write_version(store, &trained.model, manifest).await?;
    println!(
        "stored fleet model {version} in {} ({} epochs, {:.0} s; {:.0} s in all)",
        store.location(),
        trained.summary.epochs,
        trained.summary.seconds,
        started.elapsed().as_secs_f64()
    );
    Ok(manifest)
}

/// The per-service work of one shard of a stored fleet version: each of its services'
/// entry, written under the version. Every service is tried; fails if any failed (and
/// then writes nothing, so the shard shows as unfinished and can be rerun alone).
pub async fn evaluate_shard(
    data: &DataArgs,
    s3: &S3Options,
    store: &dyn ObjectStore,
    version: &str,
    shard: Shard,
) -> anyhow::Result<BTreeMap<String, ServiceEntry>> {
    let started = Instant::now();
    let (manifest, model) = artifact::load_version(store, version, tch::Device::Cpu).await?;
    let fleet_info =
        manifest.fleet.as_ref().ok_or_else(|| anyhow::anyhow!("model {version} is not a fleet model"))?.clone();
    anyhow::ensure!(
        shard.count == fleet_info.shards,
        "model {version} is split into {} shards; --shard {shard} names {}",
        fleet_info.shards,
        shard.count
    );
    // The shards read the steps the fit read: a relative `--from 28d` resolved again in
    // each pod would give each shard other data.
    if !data.range()?.is_all() {
        anyhow::bail!("evaluate reads the steps the fit of {version} read ({}); drop --from/--to", fleet_info.range);
    }
    let services = artifact::shard_services(&fleet_info, shard);
    eprintln!("shard {shard} of {version}: {} of {} services", services.len(), fleet_info.services.len());
    let period = manifest.params.window.day;
    let mut entries = BTreeMap::new();
    let mut failed = Vec::new();
    let series = demand(data, s3, &services, fleet_info.range).await?;
    for (service, series) in services.iter().zip(&series) {
        let entry = tokio::task::block_in_place(|| fleet::evaluate_service(&model, series, period));
        match entry {
            Ok(entry) => {
                entries.insert(service.clone(), entry);
            }
            Err(e) => {
                eprintln!("error: {service}: {e:#}");
                failed.push(service.clone());
            }
        }
    }
    anyhow::ensure!(
        failed.is_empty(),
        "shard {shard}: {} of {} services failed ({}); nothing written, rerun the shard",
        failed.len(),
        services.len(),
        failed.join(", ")
    );
    artifact::write_shard(store, &manifest, shard, entries.clone()).await?;
    println!(
        "shard {shard} of {version}: {} services evaluated in {:.0} s",
        entries.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(entries)
}

/// A line per service: what serves it and how the candidates did, on validation (which
/// chose) and on test (the backtest): the served forecaster's and the fleet
/// transformer's test MAE beside the best baseline's, and their p90 coverage.
pub fn table(entries: &BTreeMap<String, ServiceEntry>) -> String {
    let mut out = format!(
        "{:<32} {:<20} {:>10} {:>10} {:>12} {:>24} {:>7} {:>8} {:>8}\n",
        "service", "served by", "valid MAE", "test MAE", "transformer", "best baseline", "ratio", "p90 cov", "tf cov"
    );
    let num = |v: Option<f64>| v.filter(|v| v.is_finite()).map_or("-".to_owned(), |v| format!("{v:.4}"));
    for (service, e) in entries {
        let served = e.served.name();
        let scores = |name: &str| e.backtest.as_ref().and_then(|b| b.models.get(name)).map(|s| s.horizon);
        let best = e.backtest.as_ref().and_then(|b| b.best_baseline());
        let ours = scores(FLEET).map(|s| s.mae);
        out.push_str(&format!(
            "{:<32} {:<20} {:>10} {:>10} {:>12} {:>24} {:>7} {:>8} {:>8}\n",
            service,
            if e.cold { format!("{served} (cold)") } else { served.to_owned() },
            num(e.validation_mae.get(served).copied()),
            num(scores(served).map(|s| s.mae)),
            num(ours),
            best.map_or("-".to_owned(), |(n, v)| format!("{n} {v:.4}")),
            ours.zip(best).map_or("-".to_owned(), |(o, (_, b))| format!("{:.3}", o / b)),
            scores(served).map_or("-".to_owned(), |s| format!("{:.3}", s.coverage_p90)),
            scores(FLEET).map_or("-".to_owned(), |s| format!("{:.3}", s.coverage_p90)),
        ));
    }
    out
}
