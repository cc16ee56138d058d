//! Cutting a series into model inputs: one window per forecast origin.
//!
//! For an origin `t` the transformer sees
//! - the context: the last `context` steps, each with its value, an observed flag, the
//!   value one day earlier (so attention can compare today with yesterday), and calendar
//!   features (time of day, day of week, holiday, and the position within the hour and
//!   the half hour, where scheduled jobs and bots put their bursts);
//! - one query token per horizon step `t+h`, with the target's calendar features and its
//!   seasonal lags (the same time one day and one week before), each with an observed flag.
//!
//! With collector data, each context token also carries the step's principal components
//! of the other features (see [`crate::preprocess`]) and their observed flag.
//!
//! When the model refines a base forecast (see [`crate::base`]),
//! each horizon token also carries the base forecast for its step, and the anchor the
//! network corrects is that forecast rather than the last observed value.
//!
//! Every value is divided by the window's *level* (the mean observed value of the
//! context), so one model serves services of any size; the prediction is multiplied back.
//! Missing values enter as 0 with their observed flag 0, and missing targets are masked
//! out of the loss: a gap is never learned as zero load.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use ndarray::{Array1, Array2, Array3};
use serde::{Deserialize, Serialize};

use crate::base::Base;
use crate::baselines::PointForecaster;
use crate::series::{Series, mean_observed};

/// Calendar features per timestamp.
pub const CALENDAR_FEATURES: usize = 5;
/// Position within the hour and the half hour (each as sine and cosine).
pub const HOUR_FEATURES: usize = 4;
/// Features of a context token (before exogenous ones).
pub const CONTEXT_FEATURES: usize = 4 + CALENDAR_FEATURES;
/// Features of a horizon token.
pub const HORIZON_FEATURES: usize = 5 + CALENDAR_FEATURES;

/// Shape of the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowConfig {
    /// Context length in steps.
    pub context: usize,
    /// Horizon in steps (10 minutes).
    pub horizon: usize,
    /// Steps per day.
    pub day: usize,
    /// Whether tokens carry the position within the hour ([`HOUR_FEATURES`]); models
    /// stored before it existed have none.
    #[serde(default)]
    pub hour_phase: bool,
}

impl WindowConfig {
    /// Features of the position within the hour, if any.
    pub fn hour_features(&self) -> usize {
        if self.hour_phase { HOUR_FEATURES } else { 0 }
    }
}

/// The position of `t` within the hour and within the half hour, as sines and cosines.
pub fn hour_phase(t: DateTime<Utc>) -> [f32; HOUR_FEATURES] {
    use std::f64::consts::TAU;
    let hour_frac = f64::from(t.minute() * 60 + t.second()) / 3600.0;
    [
        (TAU * hour_frac).sin() as f32,
        (TAU * hour_frac).cos() as f32,
        (2.0 * TAU * hour_frac).sin() as f32,
        (2.0 * TAU * hour_frac).cos() as f32,
    ]
}

/// Time of day, day of week (each as sine and cosine) and a holiday flag.
pub fn calendar(t: DateTime<Utc>, holidays: &[NaiveDate]) -> [f32; CALENDAR_FEATURES] {
    use std::f64::consts::TAU;
    let day_frac = t.num_seconds_from_midnight() as f64 / 86_400.0;
    let week_frac = (t.weekday().num_days_from_monday() as f64 + day_frac) / 7.0;
    let holiday = holidays.contains(&t.date_naive());
    [
        (TAU * day_frac).sin() as f32,
        (TAU * day_frac).cos() as f32,
        (TAU * week_frac).sin() as f32,
        (TAU * week_frac).cos() as f32,
        f32::from(u8::from(holiday)),
    ]
}

/// A batch of windows as arrays, ready to become tensors.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[B, context, CONTEXT_FEATURES + exogenous width]`.
    pub context: Array3<f32>,
    /// `[B, horizon, HORIZON_FEATURES]`.
    pub horizon: Array3<f32>,
    /// What the network corrects, over the level, `[B, horizon]`: the base forecast, or
    /// the last observed value at every horizon.
    pub anchor: Array2<f32>,
    /// Targets over the level, `[B, horizon]` (0 where missing).
    pub target: Array2<f32>,
    /// 1 where the target is observed, `[B, horizon]`.
    pub target_mask: Array2<f32>,
    /// The level of each window, `[B]`, requests/s.
    pub level: Array1<f32>,
    /// How much demand moves from one step to the next in each window's context: the
    /// mean absolute change between observed neighbours, `[B]`, requests/s (at least the
    /// level floor; the level when no two neighbours are observed).
    pub volatility: Array1<f32>,
}

/// Builds windows from a series. Calendar features are computed per window, not per
/// series: a live forecast needs one window of a long history.
#[derive(Debug, Clone)]
pub struct Windows<'a> {
    series: &'a Series,
    config: WindowConfig,
    level_floor: f64,
    holidays: &'a [NaiveDate],
    /// Exogenous context features of the last `exog.nrows()` steps (`[steps, width]`), if
    /// any; earlier steps have none (zeros, as before the series starts).
    exog: Option<Array2<f32>>,
    /// The base forecast the network refines, if any.
    base: Option<&'a Base>,
}

impl<'a> Windows<'a> {
    /// Windows over `series`; levels below `level_floor` are raised to it so that near-idle
    /// windows do not blow up normalised values.
    pub fn new(series: &'a Series, config: WindowConfig, level_floor: f64, holidays: &'a [NaiveDate]) -> Self {
        Self { series, config, level_floor, holidays, exog: None, base: None }
    }

    /// Adds exogenous context features, one row per step of the series' last
    /// `exog.nrows()` steps (`[steps, width]`): all of them when training; at least the
    /// context for a live forecast at the last step, which keeps only that much.
    pub fn with_exog(mut self, exog: Option<Array2<f32>>) -> Self {
        if let Some(e) = &exog {
            assert!(e.nrows() <= self.series.len(), "at most one row of exogenous features per step");
        }
        self.exog = exog;
        self
    }

    /// The shape of the windows.
    pub fn config(&self) -> WindowConfig {
        self.config
    }

    /// The series the windows are cut from.
    pub fn series(&self) -> &'a Series {
        self.series
    }

    /// Adds a base forecast for the network to refine.
    pub fn with_base(mut self, base: Option<&'a Base>) -> Self {
        self.base = base;
        self
    }

    /// Features per horizon token.
    pub fn horizon_features(&self) -> usize {
        HORIZON_FEATURES + self.config.hour_features() + usize::from(self.base.is_some())
    }

    /// Features per context token.
    pub fn context_features(&self) -> usize {
        CONTEXT_FEATURES + self.config.hour_features() + self.exog.as_ref().map_or(0, |e| e.ncols())
    }

    /// The level of the window ending at `origin`; `None` when the context holds no
    /// observed value (no forecast can be made from it).
    pub fn level(&self, origin: usize) -> Option<f64> {
        mean_observed(self.context_values(origin)).map(|m| m.max(self.level_floor))
    }

    /// The values of the context of `origin`: the `context` steps up to and including it.
    fn context_values(&self, origin: usize) -> &[Option<f64>] {
        let from = (origin + 1).saturating_sub(self.config.context);
        &self.series.values[from..=origin]
    }

    /// Mean absolute change between observed neighbours in the context of `origin`, at
    /// least the level floor; `None` when no two neighbours are observed.
    pub fn volatility(&self, origin: usize) -> Option<f64> {
        let (sum, n) = self
            .context_values(origin)
            .windows(2)
            .filter_map(|w| Some((w[1]? - w[0]?).abs()))
            .fold((0.0, 0usize), |(s, n), d| (s + d, n + 1));
        (n > 0).then(|| (sum / n as f64).max(self.level_floor))
    }

    /// Origins in `[from, to)` that can be forecast (some observed context).
    pub fn usable_origins(&self, from: usize, to: usize) -> Vec<usize> {
        (from.max(self.config.context - 1)..to.min(self.series.len())).filter(|&o| self.level(o).is_some()).collect()
    }

    /// The windows of the given origins (each must be usable).
    pub fn batch(&self, origins: &[usize]) -> Batch {
        let mut out = Batch::zeros(
            origins.len(),
            (self.config.context, self.context_features()),
            (self.config.horizon, self.horizon_features()),
        );
        self.fill(origins, &mut out, 0);
        out
    }

    /// Writes the windows of the given origins (each must be usable) into rows `at..` of
    /// `out`, which must have this builder's shapes: windows of several series share one
    /// batch, and a batch's arrays are reused from one forward pass to the next.
    pub fn fill(&self, origins: &[usize], out: &mut Batch, at: usize) {
        let WindowConfig { context, horizon, day, .. } = self.config;
        let hour = self.config.hour_features();
        assert_eq!(out.context.shape()[1..], [context, self.context_features()], "context shape");
        assert_eq!(out.horizon.shape()[1..], [horizon, self.horizon_features()], "horizon shape");
        let s = self.series;
        let exog_from = self.exog.as_ref().map_or(0, |e| (s.len() - e.nrows()) as isize);
        let base = self.base.map(|r| r.p50(s, origins, horizon));
        let norm = |v: Option<f64>, level: f64| v.map_or((0.0, 0.0), |x| ((x / level) as f32, 1.0));
        for (i, &o) in origins.iter().enumerate() {
            let row = at + i;
            // A reused batch holds the last pass's numbers: what is not written is zero.
            out.context.slice_mut(ndarray::s![row, .., ..]).fill(0.0);
            out.horizon.slice_mut(ndarray::s![row, .., ..]).fill(0.0);
            let level = self.level(o).unwrap_or(self.level_floor);
            out.level[row] = level as f32;
            out.volatility[row] = self.volatility(o).unwrap_or(level) as f32;
            let last = (s.last_observed(o).unwrap_or(level) / level) as f32;
            out.anchor.row_mut(row).fill(last);
            for k in 0..context {
                let t = o as isize - (context - 1 - k) as isize;
                let (v, m) = norm(s.at(t), level);
                let (lag, lag_m) = norm(s.at(t - day as isize), level);
                let cal = if t >= 0 { calendar(s.time(t as usize), self.holidays) } else { [0.0; CALENDAR_FEATURES] };
                let mut f = out.context.slice_mut(ndarray::s![row, k, ..]);
                f[0] = v;
                f[1] = m;
                f[2] = lag;
                f[3] = lag_m;
                for (j, c) in cal.iter().enumerate() {
                    f[4 + j] = *c;
                }
                if hour > 0 && t >= 0 {
                    for (j, c) in hour_phase(s.time(t as usize)).iter().enumerate() {
                        f[CONTEXT_FEATURES + j] = *c;
                    }
                }
                if let (Some(exog), true) = (&self.exog, t >= exog_from) {
                    for (j, v) in exog.row((t - exog_from) as usize).iter().enumerate() {
                        f[CONTEXT_FEATURES + hour + j] = *v;
                    }
                }
            }
            for h in 1..=horizon {
                let t = (o + h) as isize;
                let (d, dm) = norm(s.at(t - day as isize), level);
                let (w, wm) = norm(s.at(t - 7 * day as isize), level);
                let mut f = out.horizon.slice_mut(ndarray::s![row, h - 1, ..]);
                f[0] = d;
                f[1] = dm;
                f[2] = w;
                f[3] = wm;
                f[4] = h as f32 / horizon as f32;
                // Past the end of the series too: a live forecast's horizon is the future.
                for (j, c) in calendar(s.time(t as usize), self.holidays).iter().enumerate() {
                    f[5 + j] = *c;
                }
                if hour > 0 {
                    for (j, c) in hour_phase(s.time(t as usize)).iter().enumerate() {
                        f[HORIZON_FEATURES + j] = *c;
                    }
                }
                if let Some(base) = &base {
                    let b = (base[[i, h - 1]] / level) as f32;
                    out.anchor[[row, h - 1]] = b;
                    f[HORIZON_FEATURES + hour] = b;
                }
                let (y, ym) = norm(s.at(t), level);
                out.target[[row, h - 1]] = y;
                out.target_mask[[row, h - 1]] = ym;
            }
        }
    }
}

impl Batch {
    /// A batch of `rows` zero windows of `(steps, features)` context and horizon shapes.
    pub fn zeros(rows: usize, context: (usize, usize), horizon: (usize, usize)) -> Self {
        Self {
            context: Array3::zeros((rows, context.0, context.1)),
            horizon: Array3::zeros((rows, horizon.0, horizon.1)),
            anchor: Array2::zeros((rows, horizon.0)),
            target: Array2::zeros((rows, horizon.0)),
            target_mask: Array2::zeros((rows, horizon.0)),
            level: Array1::zeros(rows),
            volatility: Array1::zeros(rows),
        }
    }

    /// Windows in the batch.
    pub fn rows(&self) -> usize {
        self.level.len()
    }

    /// Whether it has `rows` windows of these shapes (and can be reused for them).
    pub fn fits(&self, rows: usize, context: (usize, usize), horizon: (usize, usize)) -> bool {
        self.context.dim() == (rows, context.0, context.1) && self.horizon.dim() == (rows, horizon.0, horizon.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescale_core::StepGrid;

    #[test]
    fn windows_normalise_mask_and_never_peek() {
        let start = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let mut values: Vec<Option<f64>> = (0..40).map(|i| Some(10.0 + i as f64)).collect();
        values[9] = None;
        values[12] = None;
        let s = Series::new("s", StepGrid::from_secs(60).unwrap(), start, values).unwrap();
        let w = Windows::new(&s, WindowConfig { context: 4, horizon: 3, day: 5, hour_phase: false }, 1.0, &[]);
        let b = w.batch(&[10]);
        // Context 7..=10 with 9 missing: level = mean(17, 18, 20).
        let level = (17.0 + 18.0 + 20.0) / 3.0;
        assert!((b.level[0] as f64 - level).abs() < 1e-4);
        assert_eq!(b.context[[0, 2, 1]], 0.0, "missing context step is flagged");
        assert_eq!(b.context[[0, 2, 0]], 0.0);
        assert!((b.anchor[[0, 2]] as f64 - 20.0 / level).abs() < 1e-5);
        // Target 12 (h=2) is missing and masked; target 11 (h=1) is not.
        assert_eq!(b.target_mask.row(0).to_vec(), vec![1.0, 0.0, 1.0]);
        // Horizon token h=1 (t=11) carries the value one day (5 steps) earlier: t=6.
        assert!((b.horizon[[0, 0, 0]] as f64 - 16.0 / level).abs() < 1e-5);
        assert!(w.usable_origins(0, 40).first() == Some(&3));
        // Volatility: only 7→8 are observed neighbours (9 is missing): |18 - 17| = 1,
        // raised to the level floor (1).
        assert_eq!(b.volatility[0], 1.0);
        let flat = Series::new("flat", s.grid, start, vec![Some(5.0); 10]).unwrap();
        let w = Windows::new(&flat, WindowConfig { context: 4, horizon: 3, day: 5, hour_phase: false }, 0.5, &[]);
        assert_eq!(w.volatility(5), Some(0.5), "a flat context is floored");
        let lone = Series::new("lone", s.grid, start, vec![Some(3.0), None, Some(9.0), None]).unwrap();
        let w = Windows::new(&lone, WindowConfig { context: 4, horizon: 1, day: 5, hour_phase: false }, 0.5, &[]);
        assert_eq!(w.volatility(3), None, "no two observed neighbours");
        assert_eq!(w.batch(&[3]).volatility[0], w.level(3).unwrap() as f32, "falls back to the level");
    }

    #[test]
    fn hour_phase_places_the_half_hours_alike() {
        let at = |m: u32| DateTime::parse_from_rfc3339(&format!("2024-01-01T05:{m:02}:00Z")).unwrap().to_utc();
        let (two, thirty_two) = (hour_phase(at(2)), hour_phase(at(32)));
        // Opposite within the hour, the same within the half hour.
        assert!((two[0] + thirty_two[0]).abs() < 1e-6 && (two[1] + thirty_two[1]).abs() < 1e-6);
        assert!((two[2] - thirty_two[2]).abs() < 1e-6 && (two[3] - thirty_two[3]).abs() < 1e-6);
        // In a batch they sit after the calendar, before exogenous features and the base.
        let s = Series::new("s", StepGrid::from_secs(60).unwrap(), at(0), (0..40).map(|i| Some(i as f64)).collect())
            .unwrap();
        let w = Windows::new(&s, WindowConfig { context: 4, horizon: 3, day: 5, hour_phase: true }, 1.0, &[]);
        let b = w.batch(&[29]);
        assert_eq!(b.context.shape()[2], CONTEXT_FEATURES + HOUR_FEATURES);
        assert_eq!(b.horizon.shape()[2], HORIZON_FEATURES + HOUR_FEATURES);
        assert_eq!(b.context[[0, 3, CONTEXT_FEATURES]], hour_phase(at(29))[0]);
        assert_eq!(b.horizon[[0, 2, HORIZON_FEATURES + 1]], hour_phase(at(32))[1]);
    }

    #[test]
    fn calendar_features_encode_time_of_day_and_holidays() {
        let noon = DateTime::parse_from_rfc3339("2024-12-25T12:00:00Z").unwrap().with_timezone(&Utc);
        let c = calendar(noon, &[NaiveDate::from_ymd_opt(2024, 12, 25).unwrap()]);
        assert!(c[0].abs() < 1e-6 && (c[1] + 1.0).abs() < 1e-6);
        assert_eq!(c[4], 1.0);
    }
}
