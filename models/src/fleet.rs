//! One transformer for a fleet of services, and the per-service work around it.
//!
//! - [`train`] fits one network on windows sampled across every service's fitting part
//!   (windows are level-normalised, so services of any size share it; each service's
//!   loss weights are relative to its own typical level, so no service drowns the
//!   others), early-stopped on every service's validation windows.
//! - [`evaluate_service`] is one service's own work: the transformer's calibration on the
//!   service's validation part, the baselines fitted and calibrated on it, every
//!   candidate scored on validation (which chooses what serves it) and on test (the
//!   backtest), and its burst profile. It needs the model and the service's series only,
//!   so services are split over processes by [`Shard`]s.
//! - A service with too little history for a validation part of its own is *cold*: it
//!   is served by the transformer with the fleet's widened p90 ([`FleetModel::cold`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use sha2::{Digest, Sha256};

use crate::artifact::BacktestSummary;
use crate::base::{AdaptiveSmoothing, Base};
use crate::baselines::{
    HoltWinters, Persistence, PointForecaster, ResidualQuantiles, Ridge, SeasonalNaive, quantile, residual_q90,
    with_quantiles,
};
use crate::burst::BurstProfile;
use crate::forecaster::{Calibration, ModelError, ModelParams, P90Unit, TransformerModel, shift_p90};
use crate::scores::{Forecasts, score, seasonal_naive_scale};
use crate::series::{Series, Split, mean_observed};
use crate::served::{Baseline, BaselineFit, FLEET, Served, ServiceEntry};
use crate::train::{Observer, Source, TrainConfig, TrainSummary, fit_network};
use crate::tuning;
use crate::window::{WindowConfig, Windows};

/// Most validation windows over the whole fleet (each service gets its share).
const MAX_VALID_WINDOWS: usize = 8192;

/// One of `count` parts of a fleet's services: `index/count`, `index` from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shard {
    /// This part, `0..count`.
    pub index: u32,
    /// How many parts.
    pub count: u32,
}

/// Most shards a fleet is split into.
pub const MAX_SHARDS: u32 = 10_000;

impl Shard {
    /// The whole fleet as one part.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether `service` (`namespace/name`) belongs to this part.
    pub fn holds(&self, service: &str) -> bool {
        shard_of(service, self.count) == self.index
    }

    /// Every part of `count`.
    pub fn all(count: u32) -> impl Iterator<Item = Shard> {
        (0..count).map(move |index| Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s.split_once('/').ok_or_else(|| format!("{s:?} is not INDEX/COUNT (such as 0/4)"))?;
        let index: u32 = i.trim().parse().map_err(|_| format!("{s:?}: index {i:?} is not a whole number"))?;
        let count: u32 = n.trim().parse().map_err(|_| format!("{s:?}: count {n:?} is not a whole number"))?;
        if count == 0 || count > MAX_SHARDS {
            return Err(format!("{s:?}: count {count} is outside 1..={MAX_SHARDS}"));
        }
        if index >= count {
            return Err(format!("{s:?}: index {index} is not below the count {count} (indices start at 0)"));
        }
        Ok(Shard { index, count })
    }
}

/// The part of `count` that `service` belongs to: a hash of its name, so the same service
/// lands in the same part on every machine and run, whatever else is in the fleet.
pub fn shard_of(service: &str, count: u32) -> u32 {
    let digest = Sha256::digest(service.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
}

/// Why a fleet could not be trained or a service evaluated.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// No service was given.
    #[error("no service to train on")]
    Empty,
    /// Services on different steps cannot share windows.
    #[error("{service} has {step} s steps; {first} has {first_step} s: a fleet model is trained on one step")]
    Steps {
        /// The service that differs.
        service: String,
        /// Its step.
        step: f64,
        /// The first service.
        first: String,
        /// Its step.
        first_step: f64,
    },
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// A trained fleet model and what it knows of the fleet as a whole.
#[derive(Debug)]
pub struct FleetModel {
    /// The network (its own p90 shift is the cold one).
    pub model: TransformerModel,
    /// How training went.
    pub summary: TrainSummary,
    /// The calibration a service without one of its own gets: per horizon, the 90th
    /// percentile of the trained services' own p90 shifts (wider than most services
    /// need, as a new service's errors are not known yet).
    pub cold: Vec<f64>,
}

/// The level floor of a service: a hundredth of its mean demand over `values`.
pub fn level_floor(values: &[Option<f64>]) -> f64 {
    (0.01 * mean_observed(values).unwrap_or(0.0)).max(1e-6)
}

/// Trains one transformer on the fitting parts of every series (all on one step),
/// early-stopped on their validation parts. Series too short for a fitting window add
/// none; there must be enough windows in all.
pub fn train(
    series: &[Series],
    horizon: usize,
    config: &TrainConfig,
    observer: &mut dyn Observer,
) -> Result<FleetModel, FleetError> {
    config.validate().map_err(ModelError::from)?;
    let first = series.first().ok_or(FleetError::Empty)?;
    if let Some(s) = series.iter().find(|s| s.grid != first.grid) {
        return Err(FleetError::Steps {
            service: s.name.clone(),
            step: s.grid.seconds(),
            first: first.name.clone(),
            first_step: first.grid.seconds(),
        });
    }
    let started = std::time::Instant::now();
    tch::manual_seed(config.seed as i64);
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let day = config.season_steps.unwrap_or_else(|| first.grid.per_day());
    let window = WindowConfig { context: config.context, horizon, day, hour_phase: config.hour_phase };
    // The base the network refines: adaptive smoothing, which has nothing fitted per
    // service (a ridge's coefficients are one series'), so one network serves them all.
    let base = config.refine_base.then(|| Base::Smoothing(AdaptiveSmoothing::default()));
    let mut sources = Vec::with_capacity(series.len());
    let mut floors = Vec::with_capacity(series.len());
    for s in series {
        let split = Split::of(s.len());
        let floor = level_floor(&s.values[..split.valid_start]);
        let windows = Windows::new(s, window, floor, &config.holidays).with_base(base.as_ref());
        let fit = windows.usable_origins(0, split.valid_start.saturating_sub(horizon));
        let valid = windows.usable_origins(split.valid_start, split.test_start.saturating_sub(horizon));
        let sample: Vec<f64> =
            fit.iter().step_by(fit.len().div_ceil(1_000).max(1)).filter_map(|&o| windows.level(o)).collect();
        let weight_scale = if sample.is_empty() { 1.0 } else { sample.iter().sum::<f64>() / sample.len() as f64 };
        floors.push(floor);
        sources.push(Source { windows, fit, valid, weight_scale });
    }
    let usable: usize = sources.iter().map(|s| s.fit.len()).sum();
    let needed = config.batch.max(64);
    if usable < needed {
        return Err(ModelError::TooShort {
            usable,
            needed,
            reason: format!(
                "{} services, a {}-step context and a {horizon}-step horizon",
                series.len(),
                config.context
            ),
        }
        .into());
    }
    let total_valid: usize = sources.iter().map(|s| s.valid.len()).sum();
    if total_valid > MAX_VALID_WINDOWS {
        let stride = total_valid.div_ceil(MAX_VALID_WINDOWS);
        for s in &mut sources {
            s.valid = s.valid.iter().copied().step_by(stride).collect();
        }
    }
    let params = ModelParams {
        net: config.net(horizon, &sources[0].windows),
        window,
        // A service without a calibration of its own is normalised with the smallest
        // floor of the fleet's.
        level_floor: floors.iter().copied().fold(f64::INFINITY, f64::min).max(1e-6),
        holidays: config.holidays.clone(),
        p90_shift: vec![0.0; horizon],
        p90_unit: P90Unit::Volatility,
        preprocess: None,
        base: base.clone(),
    };
    let mut model = TransformerModel::empty(params, tch::Device::cuda_if_available());
    let summary = fit_network(&mut model, &sources, config, &mut rng, observer, started)?;
    // Each trained service's own shift on its validation windows; the cold shift is the
    // 90th percentile of them per horizon.
    let mut shifts: Vec<Vec<f64>> = Vec::new();
    for ((s, src), floor) in series.iter().zip(&sources).zip(&floors) {
        if !src.valid.is_empty() {
            shifts.push(calibrate(&model, s, &src.valid, *floor)?.p90_shift);
        }
    }
    let cold: Vec<f64> = (0..horizon)
        .map(|k| {
            let mut at: Vec<f64> = shifts.iter().map(|s| s[k]).collect();
            quantile(&mut at, 0.9)
        })
        .collect();
    model.params.p90_shift = cold.clone();
    Ok(FleetModel { model, summary, cold })
}

/// The transformer's calibration on one service's validation origins, its windows
/// normalised with `level_floor`.
fn calibrate(
    model: &TransformerModel,
    series: &Series,
    valid: &[usize],
    level_floor: f64,
) -> Result<Calibration, ModelError> {
    let (raw, units) = model.raw(series, valid, level_floor)?;
    Ok(Calibration { level_floor, p90_shift: residual_q90(series, valid, &raw.p90, &units) })
}

/// One service's own work for a fleet model: calibration, baselines, the choice of its
/// forecaster on validation, the backtest on test, the burst profile. `period` is the
/// season in steps.
pub fn evaluate_service(fleet: &TransformerModel, series: &Series, period: usize) -> Result<ServiceEntry, ModelError> {
    let p = &fleet.params;
    let horizon = p.window.horizon;
    let split = Split::of(series.len());
    let floor = level_floor(&series.values[..split.valid_start.max(1).min(series.len())]);
    let windows = Windows::new(series, p.window, floor, &p.holidays);
    let valid = thin(windows.usable_origins(split.valid_start, split.test_start.saturating_sub(horizon)));
    let test = thin(windows.usable_origins(split.test_start, series.len().saturating_sub(horizon)));
    // Too little history for a validation part of its own (or a season for the
    // baselines): the transformer with the fleet's widened p90.
    if valid.is_empty() || test.is_empty() || split.valid_start < period {
        return Ok(ServiceEntry {
            served: Served::Transformer,
            calibration: Calibration { level_floor: level_floor(&series.values), p90_shift: p.p90_shift.clone() },
            validation_mae: BTreeMap::new(),
            backtest: None,
            burst: None,
            cold: true,
            policy: None,
        });
    }
    // One pass over the validation windows gives both the calibration and the
    // calibrated forecasts (the shift moves p90 only).
    let (mut ours_valid, units) = fleet.raw(series, &valid, floor)?;
    let calibration =
        Calibration { level_floor: floor, p90_shift: residual_q90(series, &valid, &ours_valid.p90, &units) };
    shift_p90(&mut ours_valid, &units, &calibration.p90_shift);
    let scale = seasonal_naive_scale(series, split.test_start, period);
    let mut validation_mae = BTreeMap::new();
    let mut test_scores = BTreeMap::new();
    let mut keep = |name: &str, on_valid: &Forecasts, on_test: &Forecasts| {
        let mae = score(series, on_valid, scale).horizon.mae;
        if mae.is_finite() {
            validation_mae.insert(name.to_owned(), mae);
        }
        test_scores.insert(name.to_owned(), score(series, on_test, scale));
    };
    let ours_test = fleet.forecast_calibrated(series, &test, Some(&calibration))?;
    keep(FLEET, &ours_valid, &ours_test);
    let candidates = [
        Baseline::Persistence,
        Baseline::SeasonalNaive { period },
        Baseline::HoltWinters {
            period,
            params: HoltWinters::fit(series, period, split.valid_start, &valid, horizon).params,
        },
        Baseline::Ridge { ridge: Ridge::fit(series, period, split.valid_start, &valid, horizon) },
        Baseline::AdaptiveSmoothing { smoothing: AdaptiveSmoothing::default() },
    ];
    let mut fits = Vec::new();
    for model in candidates {
        let point: Box<dyn PointForecaster> = match &model {
            Baseline::Persistence => Box::new(Persistence),
            Baseline::SeasonalNaive { period } => Box::new(SeasonalNaive { period: *period }),
            // Scored as the backtest scores it: the season from the fitting part's start.
            Baseline::HoltWinters { period, params } => {
                Box::new(HoltWinters { period: *period, params: *params, init_end: split.valid_start })
            }
            Baseline::Ridge { ridge } => Box::new(ridge.clone()),
            Baseline::AdaptiveSmoothing { smoothing } => Box::new(smoothing.clone()),
        };
        let (on_valid, p90) = with_quantiles(point.as_ref(), series, &valid, &valid, horizon);
        let on_test = Forecasts {
            p90: p90.p90(series, &test, &point.p50(series, &test, horizon)),
            p50: point.p50(series, &test, horizon),
            origins: test.clone(),
        };
        keep(model.name(), &on_valid, &on_test);
        fits.push(BaselineFit { model, p90: ResidualQuantiles { q90: p90.q90 } });
    }
    let served = choose(&validation_mae, fits);
    let burst = BurstProfile::learn(series, split.valid_start, horizon).ok();
    // The policy tuned on the served forecaster's forecasts at every step of the end of
    // validation.
    let to = split.test_start;
    let from = split.valid_start.max(to.saturating_sub(tuning::MAX_TUNING_STEPS));
    let origins = windows.usable_origins(from, to);
    let forecasts = match &served {
        Served::Transformer => fleet.forecast_calibrated(series, &origins, Some(&calibration))?,
        Served::Baseline(b) => b.forecast(series, &origins),
    };
    let forecasts = tuning::StepForecasts::placed(from, to, &forecasts);
    let policy = match tuning::menu(series, &forecasts, burst.as_ref(), horizon, from, to) {
        Ok(menu) => Some(menu),
        Err(e) => {
            tracing::warn!(error = %e, "no policy tuned on validation");
            None
        }
    };
    Ok(ServiceEntry {
        served,
        calibration,
        validation_mae,
        backtest: Some(BacktestSummary { models: test_scores }),
        burst,
        cold: false,
        policy,
    })
}

/// Most origins a service is calibrated, chosen or scored on, evenly spread: enough for
/// stable quantiles and MAEs (two weeks of 30 s steps have 8,064 in their test part: one
/// in four, spread over all of them), and
/// a bound on the per-service work whatever the history's length.
pub const MAX_SCORED_ORIGINS: usize = 2048;

fn thin(origins: Vec<usize>) -> Vec<usize> {
    if origins.len() <= MAX_SCORED_ORIGINS {
        return origins;
    }
    let stride = origins.len().div_ceil(MAX_SCORED_ORIGINS);
    origins.into_iter().step_by(stride).collect()
}

/// The candidate with the lowest validation MAE: the transformer on a tie or when it is
/// the only one scored.
pub fn choose(validation_mae: &BTreeMap<String, f64>, fits: Vec<BaselineFit>) -> Served {
    let ours = validation_mae.get(FLEET).copied().unwrap_or(f64::INFINITY);
    fits.into_iter()
        .filter_map(|f| validation_mae.get(f.model.name()).map(|&mae| (mae, f)))
        .filter(|(mae, _)| *mae < ours)
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(Served::Transformer, |(_, f)| Served::Baseline(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_parsed_and_refused_naming_the_fault() {
        assert_eq!("2/4".parse::<Shard>().unwrap(), Shard { index: 2, count: 4 });
        assert!("4/4".parse::<Shard>().unwrap_err().contains("not below"));
        assert!("0/0".parse::<Shard>().unwrap_err().contains("outside"));
        assert!("1".parse::<Shard>().unwrap_err().contains("INDEX/COUNT"));
        assert!("a/2".parse::<Shard>().unwrap_err().contains("index"));
        assert_eq!(Shard { index: 3, count: 8 }.to_string(), "3/8");
    }

    #[test]
    fn every_service_is_in_exactly_one_shard_and_stays_there() {
        let services: Vec<String> = (0..2_000).map(|i| format!("ns-{}/svc-{i}", i % 7)).collect();
        for count in [1, 2, 4, 7, 16] {
            let mut sizes = vec![0usize; count as usize];
            for s in &services {
                let holders: Vec<Shard> = Shard::all(count).filter(|sh| sh.holds(s)).collect();
                assert_eq!(holders.len(), 1, "{s} in {holders:?} of {count}");
                sizes[holders[0].index as usize] += 1;
            }
            // A hash spreads them: no part holds twice its share.
            let share = services.len() / count as usize;
            assert!(sizes.iter().all(|&n| n < 2 * share + 10), "{count}: {sizes:?}");
        }
        // Stable: the SHA-256 of the name, whatever the fleet, the machine or the build
        // (a std hasher is seeded per process).
        let digest_based = |name: &str, n: u64| {
            let d = Sha256::digest(name.as_bytes());
            (u64::from_be_bytes(d[..8].try_into().unwrap()) % n) as u32
        };
        for name in ["shop/order", "shop/cart", "storefront/gateway"] {
            assert_eq!(shard_of(name, 4), digest_based(name, 4));
        }
    }

    #[test]
    fn the_choice_is_the_lowest_validation_error_and_the_transformer_on_a_tie() {
        let fit = |model: Baseline| BaselineFit { model, p90: ResidualQuantiles { q90: vec![0.1] } };
        let maes = BTreeMap::from([
            ("transformer".to_owned(), 2.0),
            ("persistence".into(), 3.0),
            ("holt_winters".into(), 1.5),
        ]);
        let hw = Baseline::HoltWinters {
            period: 4,
            params: crate::baselines::HwParams { alpha: 0.1, beta: 0.0, gamma: 0.1 },
        };
        let chosen = choose(&maes, vec![fit(Baseline::Persistence), fit(hw.clone())]);
        assert_eq!(chosen.name(), "holt_winters");
        let tie = BTreeMap::from([("transformer".to_owned(), 1.5), ("holt_winters".into(), 1.5)]);
        assert_eq!(choose(&tie, vec![fit(hw.clone())]), Served::Transformer);
        // A baseline never scored (no finite MAE) is never chosen.
        let only = BTreeMap::from([("transformer".to_owned(), 9.0)]);
        assert_eq!(choose(&only, vec![fit(hw)]), Served::Transformer);
    }
}
