//! The baselines every forecast is judged against, behind one interface.
//!
//! - `persistence`: the value at the origin, for every horizon;
//! - `seasonal_naive`: the value one day before the target;
//! - `holt_winters`: additive Holt-Winters with a daily season, smoothing constants chosen
//!   on the validation part;
//! - `ridge`: ridge regression, one per horizon, on recent lags and on the same time one
//!   day and one week before the target, solved exactly on standardised features with
//!   `linfa-linalg`'s Cholesky (coordinate descent, as in `linfa-elasticnet`, converges
//!   far too slowly on lag features this collinear).
//!
//! Baselines produce a median; their p90 comes from [`ResidualQuantiles`], the
//! validation-part quantile of their errors relative to the recent level.

use linfa_linalg::cholesky::SolveC;
use ndarray::{Array1, Array2, Axis};

use crate::scores::Forecasts;
use crate::series::{Series, mean_observed};

/// Anything that forecasts a median trajectory from the data up to each origin.
pub trait PointForecaster {
    /// The model's name in reports (`persistence`, `ridge`, ...).
    fn name(&self) -> &'static str;
    /// Median forecasts for horizons `1..=horizon` at each origin, using only values at
    /// or before the origin.
    fn p50(&self, series: &Series, origins: &[usize], horizon: usize) -> Array2<f64>;
}

/// Mean of the observed values in the `window` steps up to `origin`; the scale that
/// residual quantiles are relative to. Falls back to the last observed value.
pub fn recent_level(series: &Series, origin: usize, window: usize) -> f64 {
    let from = origin.saturating_sub(window - 1);
    mean_observed(&series.values[from..=origin]).or_else(|| series.last_observed(origin)).unwrap_or(0.0)
}

const LEVEL_WINDOW: usize = 12;

/// Per-horizon 0.9 quantiles of `(actual - p50) / level`, fitted on validation origins.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResidualQuantiles {
    /// One quantile per horizon.
    pub q90: Vec<f64>,
}

impl ResidualQuantiles {
    /// Fits the quantiles from a model's forecasts at validation origins.
    pub fn fit(series: &Series, origins: &[usize], p50: &Array2<f64>) -> Self {
        let levels: Vec<f64> = origins.iter().map(|&o| recent_level(series, o, LEVEL_WINDOW).max(1e-9)).collect();
        let q90 = residual_q90(series, origins, p50, &levels);
        Self { q90 }
    }

    /// p90 = p50 + quantile × level, never below p50.
    pub fn p90(&self, series: &Series, origins: &[usize], p50: &Array2<f64>) -> Array2<f64> {
        let mut p90 = p50.clone();
        for (row, &o) in origins.iter().enumerate() {
            let level = recent_level(series, o, LEVEL_WINDOW);
            for (h, q) in self.q90.iter().enumerate() {
                p90[[row, h]] += (q * level).max(0.0);
            }
        }
        p90
    }
}

/// Per horizon, the 0.9 quantile of `(actual - pred) / level` over `origins` (rows of
/// `pred`, with `levels[row]`); missing actuals are skipped.
pub fn residual_q90(series: &Series, origins: &[usize], pred: &Array2<f64>, levels: &[f64]) -> Vec<f64> {
    (1..=pred.ncols())
        .map(|h| {
            let mut r: Vec<f64> = origins
                .iter()
                .enumerate()
                .filter_map(|(row, &o)| Some((series.at((o + h) as isize)? - pred[[row, h - 1]]) / levels[row]))
                .collect();
            quantile(&mut r, 0.9)
        })
        .collect()
}

/// The `q` quantile of `values` (linear interpolation); 0 for no values.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let pos = q * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
}

/// Wraps a point forecaster with residual quantiles into full forecasts.
pub fn with_quantiles(
    model: &dyn PointForecaster,
    series: &Series,
    valid_origins: &[usize],
    origins: &[usize],
    horizon: usize,
) -> (Forecasts, ResidualQuantiles) {
    let calib = ResidualQuantiles::fit(series, valid_origins, &model.p50(series, valid_origins, horizon));
    let p50 = model.p50(series, origins, horizon);
    let p90 = calib.p90(series, origins, &p50);
    (Forecasts { origins: origins.to_vec(), p50, p90 }, calib)
}

/// MAE over every horizon of median trajectories (`[origins, horizon]`) against what
/// happened; missing actuals are skipped.
pub fn trajectory_mae(series: &Series, origins: &[usize], p50: &Array2<f64>) -> f64 {
    let (mut err, mut n) = (0.0, 0);
    for (row, &o) in origins.iter().enumerate() {
        for (k, p) in p50.row(row).iter().enumerate() {
            if let Some(a) = series.at((o + k + 1) as isize) {
                err += (a - p).abs();
                n += 1;
            }
        }
    }
    if n == 0 { f64::INFINITY } else { err / n as f64 }
}

/// MAE of `pred` (one value per origin) against the values `horizon` steps later.
fn mae_at_horizon(series: &Series, origins: &[usize], pred: &Array1<f64>, horizon: usize) -> f64 {
    let (mut err, mut n) = (0.0, 0);
    for (row, &o) in origins.iter().enumerate() {
        if let Some(a) = series.at((o + horizon) as isize) {
            err += (a - pred[row]).abs();
            n += 1;
        }
    }
    if n == 0 { f64::INFINITY } else { err / n as f64 }
}

/// Ridge regression in closed form: standardise the columns, solve
/// `(XᵀX/n + λI) w = Xᵀy/n` by Cholesky, and map back to an intercept and coefficients on
/// the original scale. `None` when there are no rows or the system is singular.
fn solve_ridge(x: &Array2<f64>, y: &Array1<f64>, penalty: f64) -> Option<(f64, Array1<f64>)> {
    let n = x.nrows();
    if n == 0 {
        return None;
    }
    let mean = x.mean_axis(Axis(0))?;
    let std = x.std_axis(Axis(0), 0.0).mapv(|s| if s > 1e-12 { s } else { 1.0 });
    let z = (x - &mean) / &std;
    let y_mean = y.mean()?;
    let yc = y - y_mean;
    let mut a = z.t().dot(&z) / n as f64;
    for i in 0..a.nrows() {
        a[[i, i]] += penalty;
    }
    let b = (z.t().dot(&yc) / n as f64).insert_axis(Axis(1));
    let w_std = a.solvec(&b).ok()?.remove_axis(Axis(1));
    let w = &w_std / &std;
    Some((y_mean - w.dot(&mean), w))
}

/// The value at the origin (the last observed one when it is missing).
#[derive(Debug, Clone, Copy, Default)]
pub struct Persistence;

impl PointForecaster for Persistence {
    fn name(&self) -> &'static str {
        "persistence"
    }
    fn p50(&self, series: &Series, origins: &[usize], horizon: usize) -> Array2<f64> {
        Array2::from_shape_fn((origins.len(), horizon), |(row, _)| series.last_observed(origins[row]).unwrap_or(0.0))
    }
}

/// The value one season (a day) before the target; persistence where that is missing.
#[derive(Debug, Clone, Copy)]
pub struct SeasonalNaive {
    /// Season length in steps.
    pub period: usize,
}

impl PointForecaster for SeasonalNaive {
    fn name(&self) -> &'static str {
        "seasonal_naive"
    }
    fn p50(&self, series: &Series, origins: &[usize], horizon: usize) -> Array2<f64> {
        Array2::from_shape_fn((origins.len(), horizon), |(row, h)| {
            let o = origins[row];
            series.at(o as isize + h as isize + 1 - self.period as isize).or(series.last_observed(o)).unwrap_or(0.0)
        })
    }
}

/// Smoothing constants of Holt-Winters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HwParams {
    /// Level smoothing.
    pub alpha: f64,
    /// Trend smoothing.
    pub beta: f64,
    /// Season smoothing.
    pub gamma: f64,
}

/// Additive Holt-Winters with a daily season.
#[derive(Debug, Clone, Copy)]
pub struct HoltWinters {
    /// Season length in steps.
    pub period: usize,
    /// Smoothing constants.
    pub params: HwParams,
    /// The initial state is estimated from steps before this one only (the fitting part);
    /// with fewer than two seasons there, the season starts flat.
    pub init_end: usize,
}

impl HoltWinters {
    /// Chooses the smoothing constants minimising full-horizon MAE on `valid_origins`,
    /// running the filter over the data before them only.
    pub fn fit(series: &Series, period: usize, init_end: usize, valid_origins: &[usize], horizon: usize) -> Self {
        let mut best = (f64::INFINITY, HwParams { alpha: 0.5, beta: 0.0, gamma: 0.1 });
        for alpha in [0.05, 0.1, 0.2, 0.4, 0.6, 0.8] {
            for beta in [0.0, 0.001, 0.01] {
                for gamma in [0.01, 0.05, 0.1, 0.2] {
                    let model = HoltWinters { period, params: HwParams { alpha, beta, gamma }, init_end };
                    let p50 = model.p50(series, valid_origins, horizon);
                    let mae = mae_at_horizon(series, valid_origins, &p50.column(horizon - 1).to_owned(), horizon);
                    if mae < best.0 {
                        best = (mae, model.params);
                    }
                }
            }
        }
        HoltWinters { period, params: best.1, init_end }
    }
}

impl PointForecaster for HoltWinters {
    fn name(&self) -> &'static str {
        "holt_winters"
    }
    fn p50(&self, series: &Series, origins: &[usize], horizon: usize) -> Array2<f64> {
        let m = self.period;
        let HwParams { alpha, beta, gamma } = self.params;
        let mut out = Array2::zeros((origins.len(), horizon));
        if origins.is_empty() {
            return out;
        }
        // Initial state from the first season: its mean level and deviations from it. Only
        // data from the fitting part may shape it, or the forecasts would know the future.
        let seasonal = 2 * m <= self.init_end;
        let init = if seasonal { m } else { self.init_end.min(m) };
        let first: Vec<f64> = series.values[..init.min(series.len())].iter().flatten().copied().collect();
        let mut level = first.iter().sum::<f64>() / first.len().max(1) as f64;
        let mut trend = 0.0;
        let mut season: Vec<f64> = (0..m)
            .map(|i| if seasonal { series.at(i as isize).map(|v| v - level).unwrap_or(0.0) } else { 0.0 })
            .collect();
        let mut order: Vec<usize> = (0..origins.len()).collect();
        order.sort_by_key(|&r| origins[r]);
        let mut next = 0;
        let last = origins[order[order.len() - 1]];
        for t in 0..=last {
            let s = t % m;
            match series.values[t] {
                Some(y) => {
                    let prev = level;
                    level = alpha * (y - season[s]) + (1.0 - alpha) * (level + trend);
                    trend = beta * (level - prev) + (1.0 - beta) * trend;
                    season[s] = gamma * (y - level) + (1.0 - gamma) * season[s];
                }
                None => level += trend,
            }
            while next < order.len() && origins[order[next]] == t {
                let row = order[next];
                for h in 1..=horizon {
                    out[[row, h - 1]] = (level + h as f64 * trend + season[(t + h) % m]).max(0.0);
                }
                next += 1;
            }
        }
        out
    }
}

/// Ridge regression per horizon on recent lags and daily and weekly seasonal lags.
/// Serialisable: the transformer stores the one it refines in its manifest.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ridge {
    lags: usize,
    period: usize,
    /// Per horizon: intercept and coefficients.
    coefs: Vec<(f64, Vec<f64>)>,
}

impl Ridge {
    const LAGS: usize = 12;
    const MAX_ROWS: usize = 60_000;

    /// The season its seasonal lags are one and seven of, steps.
    pub fn period(&self) -> usize {
        self.period
    }

    /// Checks a stored ridge (as read from a manifest): sizes within bounds, one weight per
    /// design column, finite numbers.
    pub(crate) fn check(&self, most_steps: usize) -> Result<(), String> {
        if !(1..=1_000).contains(&self.lags) {
            return Err(format!("lags {} is outside 1..=1000", self.lags));
        }
        if !(1..=most_steps).contains(&self.period) {
            return Err(format!("period {} is outside 1..={most_steps}", self.period));
        }
        for (h, (intercept, w)) in self.coefs.iter().enumerate() {
            if w.len() != self.lags + 2 {
                return Err(format!("horizon {}: {} weights, not {}", h + 1, w.len(), self.lags + 2));
            }
            if !intercept.is_finite() || w.iter().any(|v| !v.is_finite()) {
                return Err(format!("horizon {}: a weight is not a finite number", h + 1));
            }
        }
        Ok(())
    }

    /// Fits one ridge per horizon on origins in `[lags, fit_end - horizon)`, choosing the
    /// penalty on `valid_origins` by full-horizon MAE.
    pub fn fit(series: &Series, period: usize, fit_end: usize, valid_origins: &[usize], horizon: usize) -> Self {
        let lags = Self::LAGS;
        let candidates: Vec<usize> = (lags..fit_end.saturating_sub(horizon)).collect();
        let stride = candidates.len().div_ceil(Self::MAX_ROWS).max(1);
        let origins: Vec<usize> = candidates.into_iter().step_by(stride).collect();
        let fit_penalty = |penalty: f64, hs: &[usize]| -> Vec<(f64, Array1<f64>)> {
            hs.iter()
                .map(|&h| {
                    let rows: Vec<usize> =
                        origins.iter().copied().filter(|&o| series.at((o + h) as isize).is_some()).collect();
                    let x = Self::design(series, &rows, h, lags, period);
                    let y = Array1::from_iter(rows.iter().map(|&o| series.at((o + h) as isize).unwrap_or(0.0)));
                    solve_ridge(&x, &y, penalty).unwrap_or_else(|| (y.mean().unwrap_or(0.0), Array1::zeros(lags + 2)))
                })
                .collect()
        };
        // Choose the penalty on the full horizon alone, then fit every horizon with it.
        let x_valid = Self::design(series, valid_origins, horizon, lags, period);
        let mut best = (f64::INFINITY, 0.0);
        for penalty in [1e-6, 1e-4, 1e-2, 1e-1] {
            let (intercept, w) = fit_penalty(penalty, &[horizon]).remove(0);
            let p50 = (x_valid.dot(&w) + intercept).mapv(|v| v.max(0.0));
            let mae = mae_at_horizon(series, valid_origins, &p50, horizon);
            if mae < best.0 {
                best = (mae, penalty);
            }
        }
        let all: Vec<usize> = (1..=horizon).collect();
        let coefs = fit_penalty(best.1, &all).into_iter().map(|(b, w)| (b, w.to_vec())).collect();
        Ridge { lags, period, coefs }
    }

    /// Features of each origin for horizon `h`; missing values are imputed with the last
    /// observed value, never with zeros.
    fn design(series: &Series, origins: &[usize], h: usize, lags: usize, period: usize) -> Array2<f64> {
        let mut x = Array2::zeros((origins.len(), lags + 2));
        for (row, &o) in origins.iter().enumerate() {
            let now = series.last_observed(o).unwrap_or(0.0);
            let mut carry = now;
            for k in (0..lags).rev() {
                let v = series.at(o as isize - k as isize).unwrap_or(carry);
                carry = v;
                x[[row, lags - 1 - k]] = v;
            }
            let target = (o + h) as isize;
            x[[row, lags]] = series.at(target - period as isize).unwrap_or(now);
            x[[row, lags + 1]] = series.at(target - 7 * period as isize).unwrap_or(now);
        }
        x
    }
}

impl PointForecaster for Ridge {
    fn name(&self) -> &'static str {
        "ridge"
    }
    fn p50(&self, series: &Series, origins: &[usize], horizon: usize) -> Array2<f64> {
        let mut out = Array2::zeros((origins.len(), horizon));
        for h in 1..=horizon.min(self.coefs.len()) {
            let (intercept, w) = &self.coefs[h - 1];
            let x = Self::design(series, origins, h, self.lags, self.period);
            let y = x.dot(&Array1::from(w.clone())) + *intercept;
            for (row, v) in y.iter().enumerate() {
                out[[row, h - 1]] = v.max(0.0);
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

    /// A clean daily sine on a 60-step "day", plus a slow trend.
    fn seasonal(days: usize) -> Series {
        let period = 60;
        let values = (0..days * period)
            .map(|t| {
                Some(100.0 + 0.01 * t as f64 + 30.0 * (2.0 * std::f64::consts::PI * t as f64 / period as f64).sin())
            })
            .collect();
        Series::new("sine", StepGrid::default(), Utc::now(), values).unwrap()
    }

    #[test]
    fn seasonal_models_beat_persistence_on_a_seasonal_series() {
        let s = seasonal(30);
        let (period, h) = (60, 10);
        let valid: Vec<usize> = (1200..1500).collect();
        let test: Vec<usize> = (1500..1700).collect();
        let mae = |p50: Array2<f64>| {
            test.iter()
                .enumerate()
                .map(|(r, &o)| (s.at((o + h) as isize).unwrap() - p50[[r, h - 1]]).abs())
                .sum::<f64>()
                / test.len() as f64
        };
        let persistence = mae(Persistence.p50(&s, &test, h));
        let snaive = mae(SeasonalNaive { period }.p50(&s, &test, h));
        let hw = mae(HoltWinters::fit(&s, period, 1200, &valid, h).p50(&s, &test, h));
        let ridge = mae(Ridge::fit(&s, period, 1200, &valid, h).p50(&s, &test, h));
        assert!(snaive < persistence / 5.0, "{snaive} vs {persistence}");
        assert!(hw < persistence / 5.0, "{hw} vs {persistence}");
        assert!(ridge < persistence / 5.0, "{ridge} vs {persistence}");
    }

    #[test]
    fn residual_quantiles_cover_about_ninety_percent() {
        let mut s = seasonal(20);
        // Deterministic noise.
        for (t, v) in s.values.iter_mut().enumerate() {
            *v = v.map(|x| x + ((t * 7919 % 101) as f64 - 50.0) / 5.0);
        }
        let valid: Vec<usize> = (600..900).collect();
        let test: Vec<usize> = (900..1150).collect();
        let (f, _) = with_quantiles(&Persistence, &s, &valid, &test, 5);
        let m = crate::scores::score(&s, &f, 1.0);
        assert!((0.8..=0.97).contains(&m.all_horizons.coverage_p90), "{}", m.all_horizons.coverage_p90);
    }

    #[test]
    fn missing_values_are_imputed_not_zeroed() {
        let mut s = seasonal(3);
        s.values[100] = None;
        let p = Persistence.p50(&s, &[100], 3);
        assert_eq!(p[[0, 0]], s.values[99].unwrap());
    }
}
