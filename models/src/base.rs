//! The base forecast the transformer refines.
//!
//! The network predicts a correction to a simple forecast rather than the demand itself
//! (as ES-RNN did with exponential smoothing): the correction starts at zero, so an
//! untrained network forecasts exactly its base, and training only has to learn what the
//! base misses. Which base serves a series is chosen on its validation part.
//!
//! - the last observed value (no base);
//! - [`Ridge`] on recent and seasonal lags, where the series' daily shape is regular;
//! - [`AdaptiveSmoothing`], where demand is noisy around a slowly moving level.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::baselines::{PointForecaster, Ridge};
use crate::series::Series;

/// A base forecast stored with the model. Untagged: a manifest written before smoothing
/// existed holds a bare ridge, and still loads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Base {
    /// Ridge regression on lags.
    Ridge(Ridge),
    /// Exponential smoothing with a smoothing factor chosen per origin and horizon.
    Smoothing(AdaptiveSmoothing),
}

impl Base {
    /// Checks a stored base (as read from a manifest) before it is used.
    pub(crate) fn check(&self, most_steps: usize) -> Result<(), String> {
        match self {
            Base::Ridge(r) => r.check(most_steps),
            Base::Smoothing(s) => {
                if s.alphas.is_empty() || s.alphas.len() > 100 {
                    return Err(format!("{} smoothing factors, not 1 to 100", s.alphas.len()));
                }
                if s.alphas.iter().any(|a| !(*a > 0.0 && *a <= 1.0)) {
                    return Err("a smoothing factor is outside (0, 1]".into());
                }
                if s.lookback == 0 || s.lookback > most_steps || s.warmup > most_steps {
                    return Err(format!("lookback {} or warmup {} is outside 1..={most_steps}", s.lookback, s.warmup));
                }
                Ok(())
            }
        }
    }
}

impl PointForecaster for Base {
    fn name(&self) -> &'static str {
        match self {
            Base::Ridge(r) => r.name(),
            Base::Smoothing(s) => s.name(),
        }
    }

    fn p50(&self, series: &Series, origins: &[usize], horizon: usize) -> Array2<f64> {
        match self {
            Base::Ridge(r) => r.p50(series, origins, horizon),
            Base::Smoothing(s) => s.p50(series, origins, horizon),
        }
    }
}

/// Simple exponential smoothing whose smoothing factor is chosen at each origin, for each
/// horizon `h`, as the one whose `h`-step forecasts had the smallest absolute error over
/// the last `lookback` steps. Everything it uses is known at the origin.
///
/// A fixed factor suits one regime only: a quiet, noisy series wants heavy smoothing (the
/// last value is mostly noise), a busy one with sharp swings wants the last value. Chosen
/// on recent errors, the factor follows a series from one regime to the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveSmoothing {
    /// Candidate smoothing factors (1 is persistence).
    pub alphas: Vec<f64>,
    /// Steps of recent errors each choice is made on.
    pub lookback: usize,
    /// Steps before the lookback that warm the smoothed levels up.
    pub warmup: usize,
}

impl Default for AdaptiveSmoothing {
    fn default() -> Self {
        Self { alphas: vec![1.0, 0.7, 0.5, 0.3, 0.2, 0.1, 0.05], lookback: 120, warmup: 200 }
    }
}

impl PointForecaster for AdaptiveSmoothing {
    fn name(&self) -> &'static str {
        "adaptive_smoothing"
    }

    fn p50(&self, series: &Series, origins: &[usize], horizon: usize) -> Array2<f64> {
        let mut out = Array2::zeros((origins.len(), horizon));
        let k = self.alphas.len();
        for (row, &o) in origins.iter().enumerate() {
            // Each origin on its own span, so a forecast never depends on which other
            // origins share its batch.
            let from = o.saturating_sub(self.warmup + self.lookback + horizon);
            let len = o - from + 1;
            // levels[i * k + a]: the smoothed level after step from + i, factor a.
            let mut levels = vec![f64::NAN; len * k];
            let mut state: Option<Vec<f64>> = None;
            for i in 0..len {
                if let Some(y) = series.at((from + i) as isize) {
                    let s = state.get_or_insert_with(|| vec![y; k]);
                    for (a, alpha) in self.alphas.iter().enumerate() {
                        s[a] += alpha * (y - s[a]);
                    }
                }
                if let Some(s) = &state {
                    levels[i * k..(i + 1) * k].copy_from_slice(s);
                }
            }
            let fallback = series.last_observed(o).unwrap_or(0.0);
            let now = &levels[(len - 1) * k..];
            if now[0].is_nan() {
                out.row_mut(row).fill(fallback);
                continue;
            }
            // Errors of h-step forecasts whose targets lie in the last `lookback` steps.
            let first_target = len.saturating_sub(self.lookback);
            for h in 1..=horizon {
                let mut err = vec![0.0; k];
                for t in first_target.max(h)..len {
                    let Some(y) = series.at((from + t) as isize) else { continue };
                    let past = &levels[(t - h) * k..(t - h + 1) * k];
                    if past[0].is_nan() {
                        continue;
                    }
                    for a in 0..k {
                        err[a] += (past[a] - y).abs();
                    }
                }
                // Ties (no errors yet) go to the first candidate, persistence.
                let best = (0..k).min_by(|&a, &b| err[a].total_cmp(&err[b])).unwrap_or(0);
                out[[row, h - 1]] = now[best];
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use prescale_core::StepGrid;

    fn series(values: Vec<Option<f64>>) -> Series {
        Series::new("s", StepGrid::default(), Utc::now(), values).unwrap()
    }

    fn mae(s: &Series, base: &AdaptiveSmoothing, origins: &[usize], h: usize) -> f64 {
        let p = base.p50(s, origins, h);
        origins.iter().enumerate().map(|(r, &o)| (s.at((o + h) as isize).unwrap() - p[[r, h - 1]]).abs()).sum::<f64>()
            / origins.len() as f64
    }

    #[test]
    fn smooths_noise_and_follows_a_trend() {
        // Seeded noise around a constant level: smoothing beats the last value.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let noisy = series((0..1000).map(|_| Some(100.0 + rng.random_range(-50.0..50.0))).collect());
        let origins: Vec<usize> = (500..980).collect();
        let base = AdaptiveSmoothing::default();
        let persistence = AdaptiveSmoothing { alphas: vec![1.0], ..base.clone() };
        let (smoothed, last) = (mae(&noisy, &base, &origins, 10), mae(&noisy, &persistence, &origins, 10));
        // Uniform noise of width 100: the true level is off by 25 on average, the last
        // value by 33.
        assert!(smoothed < 26.5 && smoothed < 0.85 * last, "{smoothed} vs {last}");
        // A clean ramp: the last value is best, and is what gets chosen.
        let ramp = series((0..1000).map(|t| Some(t as f64)).collect());
        let p = base.p50(&ramp, &[600], 10);
        assert!(p.iter().all(|&v| (v - 600.0).abs() < 1e-9), "{p:?}");
    }

    #[test]
    fn uses_nothing_after_the_origin_and_skips_missing_values() {
        let mut values: Vec<Option<f64>> = (0..600).map(|t| Some(50.0 + (t % 7) as f64)).collect();
        values[550] = None;
        let s = series(values.clone());
        let base = AdaptiveSmoothing::default();
        let before = base.p50(&s, &[560, 400], 10);
        // Changing the future changes nothing; neither does the batch's other origins.
        for v in values.iter_mut().skip(561) {
            *v = Some(1e6);
        }
        let after = base.p50(&series(values), &[560], 10);
        assert_eq!(before.row(0), after.row(0));
        assert!(before.iter().all(|v| v.is_finite() && (49.0..=57.0).contains(v)), "{before:?}");
    }

    #[test]
    fn a_stored_ridge_base_still_loads() {
        let ridge = serde_json::json!({ "lags": 2, "period": 10, "coefs": [[1.0, [0.5, 0.5, 0.0, 0.0]]] });
        assert!(matches!(serde_json::from_value::<Base>(ridge).unwrap(), Base::Ridge(_)));
        let smoothing = serde_json::to_value(Base::Smoothing(AdaptiveSmoothing::default())).unwrap();
        assert!(matches!(serde_json::from_value::<Base>(smoothing).unwrap(), Base::Smoothing(_)));
    }
}
