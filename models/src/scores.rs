//! Forecast metrics, as `../shared/specs/evaluation.md` defines them.
//!
//! Every metric skips targets that are missing: an outage of the logging is not a
//! forecast error.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::series::Series;

/// Forecasts of one model: for each origin, the trajectory over horizons `1..=H`.
#[derive(Debug, Clone)]
pub struct Forecasts {
    /// Origin step indices into the series.
    pub origins: Vec<usize>,
    /// Median forecasts, `origins.len() × H`, in requests/s.
    pub p50: Array2<f64>,
    /// 90th-percentile forecasts, same shape.
    pub p90: Array2<f64>,
}

impl Forecasts {
    /// Forecast horizon in steps.
    pub fn horizon(&self) -> usize {
        self.p50.ncols()
    }
}

/// Errors at one horizon, or averaged over horizons.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Mean absolute error of p50, requests/s.
    #[serde(deserialize_with = "number_or_nan")]
    pub mae: f64,
    /// Root mean squared error of p50, requests/s.
    #[serde(deserialize_with = "number_or_nan")]
    pub rmse: f64,
    /// MAE divided by the in-sample seasonal-naive MAE (not a number when that is zero:
    /// a flat series).
    #[serde(deserialize_with = "number_or_nan")]
    pub mase: f64,
    /// Pinball loss of p90 at quantile 0.9, requests/s.
    #[serde(deserialize_with = "number_or_nan")]
    pub pinball_p90: f64,
    /// Share of actuals at or below p90.
    #[serde(deserialize_with = "number_or_nan")]
    pub coverage_p90: f64,
    /// Number of scored (origin, horizon) pairs.
    pub count: usize,
}

/// A score as JSON writes it: a number, or `null` for one that is not a number (JSON has
/// no NaN; `serde_json` writes it as `null`).
fn number_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A model's scores at the last horizon (10 minutes) and averaged over all horizons.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelScores {
    /// At the full horizon (`target = origin + 10 min`).
    pub horizon: Scores,
    /// Averaged over horizons 1..=H (each horizon weighted by its scored pairs).
    pub all_horizons: Scores,
}

/// Pinball (quantile) loss of `pred` against `actual` at quantile `q`.
pub fn pinball(actual: f64, pred: f64, q: f64) -> f64 {
    let d = actual - pred;
    if d >= 0.0 { q * d } else { (q - 1.0) * d }
}

/// Mean absolute difference between each value and the value one `period` earlier,
/// over steps `[0, end)`: the MASE denominator.
pub fn seasonal_naive_scale(series: &Series, end: usize, period: usize) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for t in period..end.min(series.len()) {
        if let (Some(a), Some(b)) = (series.values[t], series.values[t - period]) {
            sum += (a - b).abs();
            n += 1;
        }
    }
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

#[derive(Default)]
struct Acc {
    abs: f64,
    sq: f64,
    pin: f64,
    covered: usize,
    n: usize,
}

impl Acc {
    fn add(&mut self, actual: f64, p50: f64, p90: f64) {
        self.abs += (actual - p50).abs();
        self.sq += (actual - p50).powi(2);
        self.pin += pinball(actual, p90, 0.9);
        self.covered += usize::from(actual <= p90);
        self.n += 1;
    }

    fn scores(&self, scale: f64) -> Scores {
        let n = self.n.max(1) as f64;
        let mae = self.abs / n;
        Scores {
            mae,
            rmse: (self.sq / n).sqrt(),
            mase: mae / scale,
            pinball_p90: self.pin / n,
            coverage_p90: self.covered as f64 / n,
            count: self.n,
        }
    }
}

/// Scores forecasts against the series; `scale` is the MASE denominator.
pub fn score(series: &Series, forecasts: &Forecasts, scale: f64) -> ModelScores {
    let h_max = forecasts.horizon();
    let mut last = Acc::default();
    let mut all = Acc::default();
    for (row, &origin) in forecasts.origins.iter().enumerate() {
        for h in 1..=h_max {
            let Some(actual) = series.at((origin + h) as isize) else { continue };
            let (p50, p90) = (forecasts.p50[[row, h - 1]], forecasts.p90[[row, h - 1]]);
            all.add(actual, p50, p90);
            if h == h_max {
                last.add(actual, p50, p90);
            }
        }
    }
    ModelScores { horizon: last.scores(scale), all_horizons: all.scores(scale) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use ndarray::array;
    use prescale_core::StepGrid;

    #[test]
    fn pinball_is_asymmetric() {
        assert!((pinball(10.0, 8.0, 0.9) - 1.8).abs() < 1e-12);
        assert!((pinball(8.0, 10.0, 0.9) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn scores_skip_missing_targets() {
        let values = vec![Some(1.0), Some(2.0), None, Some(4.0), Some(5.0)];
        let s = Series::new("t", StepGrid::default(), Utc::now(), values).unwrap();
        let f = Forecasts {
            origins: vec![0, 1, 2],
            p50: array![[2.0, 2.0], [3.0, 3.0], [4.0, 4.0]],
            p90: array![[3.0, 3.0], [3.0, 3.0], [4.0, 6.0]],
        };
        let m = score(&s, &f, 2.0);
        // h=2 targets: y[2] missing, y[3]=4 vs 3, y[4]=5 vs 4.
        assert_eq!(m.horizon.count, 2);
        assert!((m.horizon.mae - 1.0).abs() < 1e-12);
        assert!((m.horizon.mase - 0.5).abs() < 1e-12);
        assert!((m.horizon.coverage_p90 - 0.5).abs() < 1e-12);
        // All horizons: h=1 targets y[1]=2 vs 2, y[2] missing, y[3]=4 vs 4.
        assert_eq!(m.all_horizons.count, 4);
        assert!((m.all_horizons.mae - 0.5).abs() < 1e-12);
    }

    #[test]
    fn seasonal_scale_ignores_missing_pairs() {
        let s = Series::new("t", StepGrid::default(), Utc::now(), vec![Some(1.0), Some(3.0), None, Some(6.0)]).unwrap();
        assert!((seasonal_naive_scale(&s, 4, 1) - 2.0).abs() < 1e-12);
    }
}
