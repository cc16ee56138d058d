//! One service's recent history, kept small.
//!
//! The model reads a day of demand (its horizon tokens carry the same time yesterday,
//! its base forecast seasonal lags) but the other features only over its context (a few
//! hours at most). A window of full feature rows would hold eleven numbers, a timestamp
//! and the service's name for every step of the day, about 840 KiB per service at 30 s
//! steps (8 GiB for 10,000 services); this keeps demand for the whole history and the
//! other features for the model's context only, in `f32` (the network computes in `f32`),
//! about 20 KiB per service. The series the model is given is built from it as
//! `prescale_models::dataset::service_series` builds it from the collector's rows, into
//! buffers reused from step to step.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use ndarray::Array2;
use prescale_core::{Feature, FeatureRow, StepGrid};
use prescale_models::preprocess::Covariates;
use prescale_models::series::Series;

/// Most steps of demand a window keeps, whatever a forecaster asks for: eight days of
/// 30 s steps (a ridge reads the same time a week back), 92 KiB per service.
pub const MAX_HISTORY: usize = 8 * 2_880;

/// The features besides demand, in the order the trainer's covariates have them.
const OTHERS: usize = Feature::COUNT - 1;

fn others() -> impl Iterator<Item = Feature> {
    Feature::ALL.into_iter().filter(|f| *f != Feature::RequestsPerSecond)
}

fn stored(v: Option<f64>) -> f32 {
    v.map_or(f32::NAN, |v| v as f32)
}

fn read(v: f32) -> Option<f64> {
    (!v.is_nan()).then_some(f64::from(v))
}

/// A service's recent steps, oldest first, without gaps (a step not read is missing).
#[derive(Debug)]
pub struct Window {
    grid: StepGrid,
    /// Steps of demand kept (the predictor's `history`).
    steps: usize,
    /// Steps of the other features kept (the largest context of the models that served
    /// the service).
    covariate_steps: usize,
    /// The last step held.
    end: Option<DateTime<Utc>>,
    /// Requests per second, NaN where missing.
    demand: VecDeque<f32>,
    /// The other features of the last `covariate_steps` steps, NaN where missing.
    others: VecDeque<[f32; OTHERS]>,
    /// The last step's row as read (`f64`): what is observed now is exported as read.
    last: [Option<f64>; Feature::COUNT],
}

impl Window {
    /// An empty window keeping `steps` steps of demand.
    pub fn new(grid: StepGrid, steps: usize) -> Self {
        Self {
            grid,
            steps: steps.max(1),
            covariate_steps: 0,
            end: None,
            demand: VecDeque::new(),
            others: VecDeque::new(),
            last: [None; Feature::COUNT],
        }
    }

    /// Keeps the other features for at least `steps` steps from now on (a model with this
    /// context serves the service). Steps already dropped stay missing.
    pub fn keep_covariates(&mut self, steps: usize) {
        self.covariate_steps = self.covariate_steps.max(steps.min(self.steps));
    }

    /// Keeps demand for at least `steps` steps from now on (a forecaster reading that far
    /// back serves the service), at most [`MAX_HISTORY`]. Steps already dropped stay
    /// missing.
    pub fn keep_history(&mut self, steps: usize) {
        self.steps = self.steps.max(steps.min(MAX_HISTORY));
    }

    /// Steps of demand kept.
    pub fn capacity(&self) -> usize {
        self.steps
    }

    /// The last step held.
    pub fn end(&self) -> Option<DateTime<Utc>> {
        self.end
    }

    /// Steps held.
    pub fn len(&self) -> usize {
        self.demand.len()
    }

    /// Whether no step is held.
    pub fn is_empty(&self) -> bool {
        self.demand.is_empty()
    }

    /// A feature at the last step, if the last step is `t`.
    pub fn at(&self, t: DateTime<Utc>, feature: Feature) -> Option<f64> {
        (self.end == Some(t)).then(|| self.last[feature.index()]).flatten()
    }

    /// Adds a step after the last one (an earlier or repeated step is ignored; steps
    /// skipped in between are missing) and drops what falls out of the history.
    pub fn push(&mut self, row: &FeatureRow) {
        let delta = self.grid.delta();
        match self.end {
            Some(end) if row.timestamp <= end => return,
            Some(end) => {
                let skipped = ((row.timestamp - end).num_milliseconds() / delta.num_milliseconds() - 1).max(0) as usize;
                if skipped >= self.steps {
                    self.demand.clear();
                    self.others.clear();
                } else {
                    for _ in 0..skipped {
                        self.demand.push_back(f32::NAN);
                        self.others.push_back([f32::NAN; OTHERS]);
                    }
                }
            }
            None => {}
        }
        // Room for one step more than is kept (pushed, then the oldest dropped), and no
        // more: a doubling deque would hold up to twice the history.
        if self.demand.capacity() <= self.steps {
            self.demand.reserve_exact(self.steps + 1 - self.demand.len());
        }
        let keep = self.covariate_steps.max(1);
        if self.others.capacity() <= keep {
            self.others.reserve_exact(keep + 1 - self.others.len());
        }
        self.demand.push_back(stored(row.get(Feature::RequestsPerSecond)));
        let mut rest = [f32::NAN; OTHERS];
        for (slot, f) in rest.iter_mut().zip(others()) {
            *slot = stored(row.get(f));
        }
        self.others.push_back(rest);
        self.last = row.values;
        self.end = Some(row.timestamp);
        while self.demand.len() > self.steps {
            self.demand.pop_front();
        }
        while self.others.len() > keep {
            self.others.pop_front();
        }
    }

    /// Fills `series` with the demand held (its name, grid and start set, its covariates
    /// cleared), reusing its buffer. `None` when the window is empty.
    pub fn fill_series(&self, name: &str, series: &mut Series) -> Option<()> {
        let end = self.end?;
        series.name.clear();
        series.name.push_str(name);
        series.grid = self.grid;
        series.start = end - self.grid.delta() * (self.demand.len() as i32 - 1);
        series.values.clear();
        series.values.extend(self.demand.iter().map(|v| read(*v)));
        series.covariates = None;
        Some(())
    }

    /// Fills `covariates` with the other features of the last `steps` steps (missing
    /// where not held), named as the trainer names them, reusing its array when it fits.
    pub fn fill_covariates(&self, steps: usize, covariates: &mut Covariates) {
        if covariates.names.len() != OTHERS {
            covariates.names = others().map(|f| f.name().to_owned()).collect();
        }
        if covariates.values.dim() != (steps, OTHERS) {
            covariates.values = Array2::from_elem((steps, OTHERS), f64::NAN);
        }
        let held = self.others.len().min(steps);
        let mut rows = covariates.values.rows_mut().into_iter();
        for row in rows.by_ref().take(steps - held) {
            row.into_iter().for_each(|v| *v = f64::NAN);
        }
        for (row, values) in rows.zip(self.others.iter().skip(self.others.len() - held)) {
            for (v, x) in row.into_iter().zip(values) {
                *v = read(*x).unwrap_or(f64::NAN);
            }
        }
    }

    /// Bytes this window holds on the heap and inline.
    pub fn bytes(&self) -> usize {
        size_of::<Self>()
            + self.demand.capacity() * size_of::<f32>()
            + self.others.capacity() * size_of::<[f32; OTHERS]>()
    }
}

#[cfg(test)]
mod tests {
    use prescale_core::ServiceId;
    use prescale_models::dataset::service_series;

    use super::*;

    fn rows(n: usize, skip: &[usize]) -> Vec<FeatureRow> {
        let start = DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z").unwrap().to_utc();
        let id: ServiceId = "shop/cart".parse().unwrap();
        (0..n)
            .filter(|i| !skip.contains(i))
            .map(|i| {
                let mut row = FeatureRow::empty(start + chrono::Duration::seconds(30 * i as i64), id.clone());
                for (j, f) in Feature::ALL.into_iter().enumerate() {
                    if (i + j) % 9 != 4 {
                        row.set(f, Some((i * 3 + j) as f64 * 0.25));
                    }
                }
                row
            })
            .collect()
    }

    #[test]
    fn the_series_and_covariates_match_the_trainers_over_what_is_kept() {
        let grid = StepGrid::from_secs(30).unwrap();
        let all = rows(100, &[40, 41, 77]);
        let mut w = Window::new(grid, 60);
        w.keep_covariates(20);
        for r in &all {
            w.push(r);
            w.push(r); // a repeated step changes nothing
        }
        // What the trainer builds from the last 60 steps' rows.
        let kept: Vec<FeatureRow> = all
            .iter()
            .filter(|r| r.timestamp >= all[0].timestamp + chrono::Duration::seconds(30 * 40))
            .cloned()
            .collect();
        let want = service_series(&kept, "shop/cart").unwrap();
        let mut got = Series::new("x", grid, all[0].timestamp, vec![Some(1.0)]).unwrap();
        w.fill_series("shop/cart", &mut got).unwrap();
        // The trainer's series starts at its first row (step 42); the window at step 40,
        // with 40 and 41 missing.
        assert_eq!(got.len(), 60);
        assert_eq!(got.values[..2], [None, None]);
        for (a, b) in got.values[2..].iter().zip(&want.values) {
            assert_eq!(a.map(|v| v as f32), b.map(|v| v as f32));
        }
        let mut cov = Covariates { names: Vec::new(), values: Array2::zeros((0, 0)) };
        w.fill_covariates(25, &mut cov);
        let trainer = want.covariates.unwrap();
        assert_eq!(cov.names, trainer.names);
        // 25 asked, 20 kept: the first 5 rows are missing, the last 20 equal the trainer's.
        assert!(cov.values.rows().into_iter().take(5).all(|r| r.iter().all(|v| v.is_nan())));
        let n = trainer.values.nrows();
        for k in 0..20 {
            for j in 0..OTHERS {
                let (a, b) = (cov.values[[5 + k, j]], trainer.values[[n - 20 + k, j]]);
                assert!(a.is_nan() && b.is_nan() || (a - b).abs() < 1e-3, "row {k} col {j}: {a} vs {b}");
            }
        }
        let t = all.last().unwrap().timestamp;
        assert_eq!(w.at(t, Feature::RequestsPerSecond), all.last().unwrap().get(Feature::RequestsPerSecond));
        assert_eq!(w.at(t - grid.delta(), Feature::RequestsPerSecond), None, "only the last step is current");
        // 60 steps of demand and 20 of the rest, with at most as much again of slack.
        assert!(w.bytes() <= size_of::<Window>() + 2 * (61 * 4 + 21 * 40), "{} bytes", w.bytes());
    }

    #[test]
    fn a_gap_longer_than_the_history_starts_over() {
        let grid = StepGrid::from_secs(30).unwrap();
        let all = rows(200, &(10..150).collect::<Vec<_>>());
        let mut w = Window::new(grid, 50);
        for r in &all {
            w.push(r);
        }
        assert_eq!(w.len(), 50, "steps 150..200");
        assert_eq!(w.end(), Some(all.last().unwrap().timestamp));
    }
}
