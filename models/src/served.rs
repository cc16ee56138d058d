//! What a service of a fleet model is served with, and what it keeps of its own.
//!
//! A fleet model's artifact holds one [`ServiceEntry`] per service: the forecaster chosen
//! for it on its own validation part (the fleet transformer or a baseline, whichever had
//! the lowest 10-minute MAE there), the transformer's calibration on that service, the
//! baselines' fits, its burst profile and its backtest scores. Baselines are servable:
//! [`BaselineFit`] is a fitted baseline with its validation-calibrated p90, so a service
//! whose transformer loses is still forecast, by the forecaster that won.

use std::collections::BTreeMap;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::artifact::BacktestSummary;
use crate::base::{AdaptiveSmoothing, Base};
use crate::baselines::{HoltWinters, HwParams, Persistence, PointForecaster, ResidualQuantiles, Ridge, SeasonalNaive};
use crate::burst::BurstProfile;
use crate::forecaster::{Calibration, limits};
use crate::scores::Forecasts;
use crate::series::Series;

/// The name the fleet transformer goes by in entries, reports and metrics.
pub const FLEET: &str = "transformer";

/// A baseline that can serve forecasts: its kind and fitted constants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Baseline {
    /// The value at the origin.
    Persistence,
    /// The value one season before the target.
    SeasonalNaive {
        /// Season length, steps.
        period: usize,
    },
    /// Additive Holt-Winters, its season started from the first season of the history it
    /// is given.
    HoltWinters {
        /// Season length, steps.
        period: usize,
        /// Smoothing constants chosen on validation.
        params: HwParams,
    },
    /// Ridge regression per horizon on lags and seasonal lags.
    Ridge {
        /// The fitted regression.
        ridge: Ridge,
    },
    /// Exponential smoothing with the factor chosen at each origin.
    AdaptiveSmoothing {
        /// Its candidate factors and spans.
        smoothing: AdaptiveSmoothing,
    },
}

impl Baseline {
    /// Its name in reports and metrics (the backtest's names).
    pub fn name(&self) -> &'static str {
        match self {
            Baseline::Persistence => "persistence",
            Baseline::SeasonalNaive { .. } => "seasonal_naive",
            Baseline::HoltWinters { .. } => "holt_winters",
            Baseline::Ridge { .. } => "ridge",
            Baseline::AdaptiveSmoothing { .. } => "adaptive_smoothing",
        }
    }

    /// Steps of history before an origin it reads: what a live window must keep for it
    /// to forecast as it did on validation.
    pub fn history_steps(&self, horizon: usize) -> usize {
        match self {
            Baseline::Persistence => 1,
            Baseline::SeasonalNaive { period } => period + horizon,
            // Two seasons start the season from data; the rest of the filter converges.
            Baseline::HoltWinters { period, .. } => 2 * period + horizon,
            Baseline::Ridge { ridge } => 7 * ridge.period() + horizon + 1,
            Baseline::AdaptiveSmoothing { smoothing } => smoothing.warmup + smoothing.lookback + horizon + 1,
        }
    }

    /// Median forecasts at `origins` of `series`.
    pub fn p50(&self, series: &Series, origins: &[usize], horizon: usize) -> Array2<f64> {
        match self {
            Baseline::Persistence => Persistence.p50(series, origins, horizon),
            Baseline::SeasonalNaive { period } => SeasonalNaive { period: *period }.p50(series, origins, horizon),
            // Live, everything before the origin is past: the season starts from the
            // history's first season.
            Baseline::HoltWinters { period, params } => {
                HoltWinters { period: *period, params: *params, init_end: series.len() }.p50(series, origins, horizon)
            }
            Baseline::Ridge { ridge } => ridge.p50(series, origins, horizon),
            Baseline::AdaptiveSmoothing { smoothing } => smoothing.p50(series, origins, horizon),
        }
    }

    /// Checks a baseline read from a store: sizes within bounds, finite constants.
    pub fn validate(&self) -> Result<(), String> {
        let period_ok = |p: usize| (1..=limits::DAY * 7).contains(&p);
        match self {
            Baseline::Persistence => Ok(()),
            Baseline::SeasonalNaive { period } if !period_ok(*period) => {
                Err(format!("period {period} is out of range"))
            }
            Baseline::SeasonalNaive { .. } => Ok(()),
            Baseline::HoltWinters { period, .. } if !period_ok(*period) => {
                Err(format!("period {period} is out of range"))
            }
            Baseline::HoltWinters { params, .. } => {
                let HwParams { alpha, beta, gamma } = *params;
                if [alpha, beta, gamma].iter().all(|v| (0.0..=1.0).contains(v)) {
                    Ok(())
                } else {
                    Err(format!("smoothing constants {alpha}, {beta}, {gamma} are not all within 0..=1"))
                }
            }
            Baseline::Ridge { ridge } => ridge.check(limits::DAY),
            Baseline::AdaptiveSmoothing { smoothing } => Base::Smoothing(smoothing.clone()).check(limits::DAY),
        }
    }
}

/// A fitted baseline with its p90: the validation-part quantile of its errors relative to
/// the recent level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineFit {
    /// The baseline.
    pub model: Baseline,
    /// Its per-horizon residual quantiles.
    pub p90: ResidualQuantiles,
}

impl BaselineFit {
    /// Calibrated forecasts at `origins`.
    pub fn forecast(&self, series: &Series, origins: &[usize]) -> Forecasts {
        let horizon = self.p90.q90.len();
        let p50 = self.model.p50(series, origins, horizon);
        let p90 = self.p90.p90(series, origins, &p50);
        Forecasts { origins: origins.to_vec(), p50, p90 }
    }

    /// Checks a fit read from a store against the model's horizon.
    pub fn validate(&self, horizon: usize) -> Result<(), String> {
        self.model.validate()?;
        if self.p90.q90.len() != horizon {
            return Err(format!("{} p90 quantiles for a {horizon}-step horizon", self.p90.q90.len()));
        }
        if self.p90.q90.iter().any(|q| !q.is_finite()) {
            return Err("a p90 quantile is not a finite number".into());
        }
        Ok(())
    }
}

/// The forecaster a service is served with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "forecaster", rename_all = "snake_case")]
pub enum Served {
    /// The fleet transformer, with the service's calibration.
    Transformer,
    /// A baseline that beat it on the service's validation part.
    Baseline(BaselineFit),
}

impl Served {
    /// The forecaster's name (`transformer`, `holt_winters`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Served::Transformer => FLEET,
            Served::Baseline(b) => b.model.name(),
        }
    }
}

/// What a fleet model keeps of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceEntry {
    /// The forecaster it is served with.
    pub served: Served,
    /// The fleet transformer's calibration on this service (its level floor and p90
    /// shift), used when it serves the service.
    pub calibration: Calibration,
    /// 10-minute MAE of each candidate on the service's validation part, by name: what
    /// chose [`Self::served`].
    pub validation_mae: BTreeMap<String, f64>,
    /// Each candidate's scores on the service's test part.
    pub backtest: Option<BacktestSummary>,
    /// How far its demand jumps within minutes, by the minute of the hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<BurstProfile>,
    /// Too little history for a validation part of its own: served by the transformer
    /// with the fleet's widened p90.
    pub cold: bool,
    /// The scaling policy's settings tuned on its validation part with the forecaster it
    /// is served with, for the objective it states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<prescale_policy::Menu>,
}

impl ServiceEntry {
    /// Checks an entry read from a store against its model's horizon.
    pub fn validate(&self, horizon: usize) -> Result<(), String> {
        self.calibration.validate(horizon).map_err(|e| e.to_string())?;
        if let Served::Baseline(b) = &self.served {
            b.validate(horizon)?;
        }
        if let Some(Err(e)) = self.burst.as_ref().map(BurstProfile::validate) {
            return Err(e.to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_json_and_bad_ones_are_refused() {
        let entry = ServiceEntry {
            served: Served::Baseline(BaselineFit {
                model: Baseline::HoltWinters { period: 48, params: HwParams { alpha: 0.2, beta: 0.0, gamma: 0.1 } },
                p90: ResidualQuantiles { q90: vec![0.1, 0.2] },
            }),
            calibration: Calibration { level_floor: 0.5, p90_shift: vec![0.3, 0.4] },
            validation_mae: BTreeMap::from([("holt_winters".into(), 1.0), ("transformer".into(), 2.0)]),
            backtest: None,
            burst: None,
            cold: false,
            policy: None,
        };
        let json = serde_json::to_string(&entry).unwrap();
        assert!(json.contains(r#""forecaster":"baseline""#) && json.contains(r#""kind":"holt_winters""#), "{json}");
        let back: ServiceEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(back, entry);
        back.validate(2).unwrap();
        assert!(back.validate(3).unwrap_err().contains("horizon"));
        let mut bad = entry.clone();
        bad.served = Served::Baseline(BaselineFit {
            model: Baseline::HoltWinters { period: 48, params: HwParams { alpha: 2.0, beta: 0.0, gamma: 0.1 } },
            p90: ResidualQuantiles { q90: vec![0.1, 0.2] },
        });
        assert!(bad.validate(2).unwrap_err().contains("smoothing constants"));
        assert_eq!(Served::Transformer.name(), "transformer");
    }
}
