//! The models in use, one per service, and their hot reload.
//!
//! Each service's model folder has the trainer's versions and a `latest` pointer. The
//! predictor checks the pointer every `reload_interval` (and on the admin reload). A new
//! version is loaded (checksums and tensor shapes verified by the artifact format) and
//! then validated: trained on this step, and forecasting finite, ordered values of the
//! right length. Only then does it replace the model in use; a corrupt or bad model
//! never replaces a good one, and the failure shows in logs and metrics.
//!
//! A fleet model (one folder that every service is served from) also carries each
//! service's entry: the forecaster chosen for it on its own validation part and the
//! transformer's calibration on it ([`Loaded::serving`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use ndarray::Array2;
use prescale_core::store::{self, ObjectStore, S3Options};
use prescale_core::{Location, ServiceId, StepGrid};
use prescale_models::artifact::{self, Manifest};
use prescale_models::forecaster::{Calibration, ModelError, Scratch, TransformerModel};
use prescale_models::preprocess::Covariates;
use prescale_models::series::{DataError, Series};
use prescale_models::served::{BaselineFit, Served, ServiceEntry};

use crate::metrics::{KindLabels, Metrics};

/// A model in use.
#[derive(Debug)]
pub struct Loaded {
    /// Its manifest.
    pub manifest: Manifest,
    /// The network. `tch` modules are not `Sync`; a forecast takes the lock briefly.
    pub model: Mutex<TransformerModel>,
    /// The batch arrays of its last forward passes, reused at the next step.
    pub scratch: Mutex<Scratch>,
    /// When it was loaded here.
    pub loaded_at: DateTime<Utc>,
    /// For a fleet model: each service's entry, by `namespace/name`.
    pub services: Option<BTreeMap<String, ServiceEntry>>,
}

/// How a model serves one service.
#[derive(Debug, Clone, Copy)]
pub enum Serving<'a> {
    /// A per-service model: its own calibration.
    Own,
    /// A fleet model's transformer with the service's calibration.
    Fleet(&'a Calibration),
    /// A baseline that beat the transformer on the service's validation part.
    Baseline(&'a BaselineFit),
    /// A fleet model's transformer for a service it has no entry for (new since training,
    /// or too young for a validation part): the fleet's widened p90.
    Cold,
}

impl Serving<'_> {
    /// The forecaster's name, as `prescale_predictor_model_info` and the JSON API say it.
    pub fn name(&self) -> &'static str {
        match self {
            Serving::Own | Serving::Fleet(_) => "transformer",
            Serving::Baseline(b) => b.model.name(),
            Serving::Cold => "transformer_cold",
        }
    }
}

impl Loaded {
    /// How this model serves `service` (`namespace/name`).
    pub fn serving(&self, service: &str) -> Serving<'_> {
        let Some(services) = &self.services else { return Serving::Own };
        match services.get(service) {
            Some(ServiceEntry { cold: true, .. }) | None => Serving::Cold,
            Some(ServiceEntry { served: Served::Baseline(b), .. }) => Serving::Baseline(b),
            Some(ServiceEntry { served: Served::Transformer, calibration, .. }) => Serving::Fleet(calibration),
        }
    }
}

/// What a reload check did for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Nothing published yet.
    NothingPublished,
    /// The published version is already in use.
    Unchanged,
    /// A new version is in use.
    Swapped {
        /// The version now in use.
        version: String,
    },
    /// The published version was refused; the previous model (if any) stays.
    Rejected {
        /// The refused version, when known.
        version: Option<String>,
        /// Why.
        reason: String,
    },
}

impl ReloadOutcome {
    /// A label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ReloadOutcome::NothingPublished => "nothing_published",
            ReloadOutcome::Unchanged => "unchanged",
            ReloadOutcome::Swapped { .. } => "swapped",
            ReloadOutcome::Rejected { .. } => "rejected",
        }
    }
}

#[derive(Debug)]
struct Slot {
    store: Arc<dyn ObjectStore>,
    current: RwLock<Option<Arc<Loaded>>>,
}

/// Every service's model.
#[derive(Debug)]
pub struct Models {
    grid: StepGrid,
    s3: S3Options,
    /// Behind a lock: services come and go with the inventory.
    slots: RwLock<BTreeMap<ServiceId, (Location, Arc<Slot>)>>,
}

impl Models {
    /// Opens each service's model folder; loads nothing yet.
    pub async fn open(
        grid: StepGrid,
        locations: &[(ServiceId, Location)],
        s3: &S3Options,
    ) -> Result<Self, store::StoreError> {
        let models = Self { grid, s3: s3.clone(), slots: RwLock::new(BTreeMap::new()) };
        models.sync(locations).await?;
        Ok(models)
    }

    /// Follows the inventory: opens the folder of each new service (or of a service whose
    /// folder moved; its model is loaded at the next reload) and forgets services gone.
    /// Returns how many were opened.
    pub async fn sync(&self, locations: &[(ServiceId, Location)]) -> Result<usize, store::StoreError> {
        let current: BTreeMap<ServiceId, Location> = match self.slots.read() {
            Ok(slots) => slots.iter().map(|(id, (l, _))| (id.clone(), l.clone())).collect(),
            Err(_) => BTreeMap::new(),
        };
        // One slot per folder: services naming the same folder share its model (one copy
        // in memory, forecast in one batch).
        let mut by_location: std::collections::HashMap<Location, Arc<Slot>> = match self.slots.read() {
            Ok(slots) => slots.values().map(|(l, s)| (l.clone(), s.clone())).collect(),
            Err(_) => std::collections::HashMap::new(),
        };
        let mut opened = Vec::new();
        for (id, location) in locations {
            if current.get(id) != Some(location) {
                let slot = match by_location.get(location) {
                    Some(slot) => slot.clone(),
                    None => {
                        let store = store::open(location, &self.s3).await?;
                        let slot = Arc::new(Slot { store, current: RwLock::new(None) });
                        by_location.insert(location.clone(), slot.clone());
                        slot
                    }
                };
                opened.push((id.clone(), location.clone(), slot));
            }
        }
        let wanted: std::collections::BTreeSet<&ServiceId> = locations.iter().map(|(id, _)| id).collect();
        let n = opened.len();
        if let Ok(mut slots) = self.slots.write() {
            slots.retain(|id, _| wanted.contains(id));
            for (id, location, slot) in opened {
                slots.insert(id, (location, slot));
            }
        }
        Ok(n)
    }

    /// The model in use for a service.
    pub fn get(&self, id: &ServiceId) -> Option<Arc<Loaded>> {
        let slot = self.slots.read().ok()?.get(id).map(|(_, s)| s.clone())?;
        slot.current.read().ok().and_then(|c| c.clone())
    }

    /// Checks every service's `latest` pointer and swaps in validated new versions,
    /// counting each outcome in `metrics`.
    pub async fn reload(&self, metrics: &Metrics) -> Vec<(ServiceId, ReloadOutcome)> {
        let mut out = Vec::new();
        let slots: Vec<(ServiceId, Arc<Slot>)> = match self.slots.read() {
            Ok(slots) => slots.iter().map(|(id, (_, s))| (id.clone(), s.clone())).collect(),
            Err(_) => Vec::new(),
        };
        // A folder shared by several services is checked once; each of them gets its outcome.
        // Keyed by the slot's address (a `usize`, so the future stays `Send`).
        let mut checked: std::collections::HashMap<usize, ReloadOutcome> = std::collections::HashMap::new();
        for (id, slot) in &slots {
            if let Some(outcome) = checked.get(&(Arc::as_ptr(slot) as usize)) {
                out.push((id.clone(), outcome.clone()));
                continue;
            }
            let outcome = self.reload_one(id, slot).await;
            checked.insert(Arc::as_ptr(slot) as usize, outcome.clone());
            match &outcome {
                ReloadOutcome::Swapped { version } => tracing::info!(service = %id, version, "model swapped in"),
                ReloadOutcome::Rejected { version, reason } => {
                    tracing::warn!(service = %id, ?version, reason, "model refused; the previous one stays")
                }
                _ => {}
            }
            metrics.reloads.get_or_create(&KindLabels { kind: outcome.label() }).inc();
            out.push((id.clone(), outcome));
        }
        out
    }

    async fn reload_one(&self, id: &ServiceId, slot: &Slot) -> ReloadOutcome {
        let pointer = match artifact::latest(slot.store.as_ref()).await {
            Ok(Some(p)) => p,
            Ok(None) => return ReloadOutcome::NothingPublished,
            Err(e) => return ReloadOutcome::Rejected { version: None, reason: e.to_string() },
        };
        let current = slot.current.read().ok().and_then(|c| c.as_ref().map(|l| l.manifest.version.clone()));
        if current.as_deref() == Some(pointer.version.as_str()) {
            return ReloadOutcome::Unchanged;
        }
        let (manifest, model) = match artifact::load_latest(slot.store.as_ref(), tch::Device::Cpu).await {
            Ok(v) => v,
            Err(e) => return ReloadOutcome::Rejected { version: Some(pointer.version), reason: e.to_string() },
        };
        if let Err(unfit) = validate(&manifest, &model, self.grid, id) {
            return ReloadOutcome::Rejected { version: Some(manifest.version.clone()), reason: unfit.to_string() };
        }
        let services = match &manifest.fleet {
            None => None,
            Some(_) => match artifact::load_services(slot.store.as_ref(), &manifest).await {
                Ok(services) => Some(services),
                Err(e) => {
                    return ReloadOutcome::Rejected { version: Some(manifest.version.clone()), reason: e.to_string() };
                }
            },
        };
        let version = manifest.version.clone();
        let loaded = Arc::new(Loaded {
            manifest,
            model: Mutex::new(model),
            scratch: Mutex::new(Scratch::default()),
            loaded_at: Utc::now(),
            services,
        });
        if let Ok(mut current) = slot.current.write() {
            *current = Some(loaded);
        }
        ReloadOutcome::Swapped { version }
    }
}

/// Why a loaded model is not fit for this predictor.
#[derive(Debug, thiserror::Error)]
pub enum Unfit {
    /// Trained on another step.
    #[error("trained on {model} s steps; this predictor runs {ours} s steps")]
    Step {
        /// The model's step, seconds.
        model: f64,
        /// The predictor's, seconds.
        ours: f64,
    },
    /// A plain window could not be built for it.
    #[error("a plain window: {0}")]
    Window(#[from] DataError),
    /// It could not forecast.
    #[error("forecast failed: {0}")]
    Forecast(#[from] ModelError),
    /// Its forecast is not as long as its manifest says.
    #[error("forecasts {got} steps; the manifest says {want}")]
    Horizon {
        /// Steps forecast.
        got: usize,
        /// Steps the manifest says.
        want: usize,
    },
    /// A forecast value is not finite, non-negative and ordered.
    #[error("step {step}: p50 {p50}, p90 {p90} are not finite, non-negative and ordered")]
    Values {
        /// The step ahead, 1-based.
        step: usize,
        /// Its median.
        p50: f64,
        /// Its 90th percentile.
        p90: f64,
    },
}

/// A model fit for this predictor: trained on its step, and forecasting finite, ordered
/// (p90 ≥ p50 ≥ 0) values over its horizon from a plain window.
pub fn validate(manifest: &Manifest, model: &TransformerModel, grid: StepGrid, id: &ServiceId) -> Result<(), Unfit> {
    let step = manifest.training.step_seconds;
    if (step - grid.seconds()).abs() > 1e-9 {
        return Err(Unfit::Step { model: step, ours: grid.seconds() });
    }
    let window = manifest.params.window;
    let len = window.context + 1;
    let start = grid.floor(Utc::now()) - grid.delta() * len as i32;
    let mut series = Series::new(id.to_string(), grid, start, vec![Some(10.0); len])?;
    if let Some(p) = &manifest.params.preprocess {
        let covariates =
            Covariates { names: p.columns.clone(), values: Array2::from_elem((len, p.columns.len()), 1.0) };
        series = series.with_covariates(covariates)?;
    }
    let f = model.forecast(&series, &[len - 1])?;
    if f.horizon() != window.horizon {
        return Err(Unfit::Horizon { got: f.horizon(), want: window.horizon });
    }
    for k in 0..f.horizon() {
        let (p50, p90) = (f.p50[[0, k]], f.p90[[0, k]]);
        if !(p50.is_finite() && p90.is_finite() && p50 >= 0.0 && p90 >= p50 - 1e-9) {
            return Err(Unfit::Values { step: k + 1, p50, p90 });
        }
    }
    Ok(())
}
