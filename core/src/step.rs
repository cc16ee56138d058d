//! The step grid: the single clock every component agrees on.
//!
//! A step is the sampling interval of the whole pipeline (30 s in production, 1 s in
//! tests and demos). Grid points are the multiples of the step length since the Unix
//! epoch, so two processes that never talked to each other agree on which timestamps
//! exist. The length is carried by a [`StepGrid`] value built from configuration; no
//! other code assumes a particular step length.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Why a step length was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The step is zero or not a whole number of milliseconds.
    #[error("step length {0:?} must be a positive whole number of milliseconds")]
    NotWholeMillis(Duration),
    /// The step is longer than a day, which would make daily seasonality meaningless.
    #[error("step length {0:?} is longer than one day")]
    TooLong(Duration),
}

/// A grid of timestamps `k * step` since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawStep", into = "RawStep")]
pub struct StepGrid {
    millis: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct RawStep(#[serde(with = "humantime_serde")] Duration);

impl TryFrom<RawStep> for StepGrid {
    type Error = StepError;
    fn try_from(raw: RawStep) -> Result<Self, StepError> {
        Self::new(raw.0)
    }
}

impl From<StepGrid> for RawStep {
    fn from(grid: StepGrid) -> Self {
        RawStep(grid.duration())
    }
}

impl Default for StepGrid {
    /// 30 s, the production step.
    fn default() -> Self {
        Self { millis: 30_000 }
    }
}

const DAY_MILLIS: i64 = 86_400_000;

impl StepGrid {
    /// A grid with the given step length (whole milliseconds, at most one day).
    pub fn new(step: Duration) -> Result<Self, StepError> {
        if step.is_zero() || !step.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(StepError::NotWholeMillis(step));
        }
        let millis = i64::try_from(step.as_millis()).map_err(|_| StepError::TooLong(step))?;
        if millis > DAY_MILLIS {
            return Err(StepError::TooLong(step));
        }
        Ok(Self { millis })
    }

    /// A grid of `secs`-second steps.
    pub fn from_secs(secs: u64) -> Result<Self, StepError> {
        Self::new(Duration::from_secs(secs))
    }

    /// The step length.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.millis as u64)
    }

    /// The step length in seconds, for turning counts per step into rates.
    pub fn seconds(&self) -> f64 {
        self.millis as f64 / 1000.0
    }

    /// The step length as a chrono delta.
    pub fn delta(&self) -> TimeDelta {
        TimeDelta::milliseconds(self.millis)
    }

    /// The grid point at or before `t`.
    pub fn floor(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let ms = t.timestamp_millis();
        from_millis(ms - ms.rem_euclid(self.millis))
    }

    /// The grid point at or after `t`.
    pub fn ceil(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let floor = self.floor(t);
        if floor == t { floor } else { floor + self.delta() }
    }

    /// The first grid point strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        self.floor(t) + self.delta()
    }

    /// Whether `t` lies on the grid.
    pub fn is_aligned(&self, t: DateTime<Utc>) -> bool {
        t.timestamp_millis().rem_euclid(self.millis) == 0 && t.timestamp_subsec_nanos().is_multiple_of(1_000_000)
    }

    /// Grid points in `[from, to]`, both ends included when they are on the grid.
    pub fn range(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + use<> {
        let first = self.ceil(from);
        let last = self.floor(to);
        let n = if last < first { 0 } else { (last - first).num_milliseconds() / self.millis + 1 };
        let step = self.delta();
        (0..n).map(move |k| first + step * k as i32)
    }

    /// Number of whole steps from `from` to `to` (negative when `to` is earlier).
    pub fn steps_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        (self.floor(to).timestamp_millis() - self.floor(from).timestamp_millis()) / self.millis
    }

    /// How many steps it takes to cover `span` (rounded up): a 10-minute horizon is 20
    /// steps on a 30 s grid and 10 on a 60 s grid.
    pub fn steps_in(&self, span: Duration) -> usize {
        let ms = span.as_millis() as i64;
        ((ms + self.millis - 1) / self.millis) as usize
    }

    /// Steps per day, the period of the daily season.
    pub fn per_day(&self) -> usize {
        (DAY_MILLIS / self.millis) as usize
    }
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("grid arithmetic stays within chrono's range")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn floor_ceil_and_next() {
        let g = StepGrid::from_secs(30).unwrap();
        assert_eq!(g.floor(t("2024-01-01T00:00:45Z")), t("2024-01-01T00:00:30Z"));
        assert_eq!(g.ceil(t("2024-01-01T00:00:45Z")), t("2024-01-01T00:01:00Z"));
        assert_eq!(g.ceil(t("2024-01-01T00:01:00Z")), t("2024-01-01T00:01:00Z"));
        assert_eq!(g.next_after(t("2024-01-01T00:01:00Z")), t("2024-01-01T00:01:30Z"));
        assert!(g.is_aligned(t("2024-01-01T00:01:30Z")));
        assert!(!g.is_aligned(t("2024-01-01T00:01:31Z")));
    }

    #[test]
    fn floor_before_the_epoch() {
        let g = StepGrid::from_secs(30).unwrap();
        assert_eq!(g.floor(t("1969-12-31T23:59:45Z")), t("1969-12-31T23:59:30Z"));
    }

    #[test]
    fn range_is_inclusive_and_aligned() {
        let g = StepGrid::from_secs(1).unwrap();
        let pts: Vec<_> = g.range(t("2024-01-01T00:00:00.5Z"), t("2024-01-01T00:00:03Z")).collect();
        assert_eq!(pts, vec![t("2024-01-01T00:00:01Z"), t("2024-01-01T00:00:02Z"), t("2024-01-01T00:00:03Z")]);
        assert_eq!(g.range(t("2024-01-01T00:00:03Z"), t("2024-01-01T00:00:01Z")).count(), 0);
    }

    #[test]
    fn horizon_and_season_in_steps() {
        let g30 = StepGrid::default();
        assert_eq!(g30.steps_in(Duration::from_secs(600)), 20);
        assert_eq!(StepGrid::from_secs(60).unwrap().steps_in(Duration::from_secs(600)), 10);
        assert_eq!(g30.per_day(), 2880);
        assert_eq!(g30.steps_between(t("2024-01-01T00:00:00Z"), t("2024-01-01T00:10:00Z")), 20);
    }

    #[test]
    fn bad_steps_are_refused() {
        assert!(matches!(StepGrid::new(Duration::ZERO), Err(StepError::NotWholeMillis(_))));
        assert!(matches!(StepGrid::new(Duration::from_nanos(1_500_000)), Err(StepError::NotWholeMillis(_))));
        assert!(matches!(StepGrid::from_secs(90_000), Err(StepError::TooLong(_))));
    }

    #[test]
    fn parses_human_durations() {
        let g: StepGrid = serde_json::from_str(r#""1s""#).unwrap();
        assert_eq!(g.seconds(), 1.0);
        let err = serde_json::from_str::<StepGrid>(r#""0s""#).unwrap_err().to_string();
        assert!(err.contains("positive"), "{err}");
        assert_eq!(serde_json::to_string(&StepGrid::default()).unwrap(), r#""30s""#);
    }
}
