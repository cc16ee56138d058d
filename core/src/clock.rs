//! The step clock: which step a long-running loop works on next, and when it is due.
//!
//! A step `t` is due at `t + delay`: the delay lets scrapes of the step settle before it
//! is queried. A loop that fell behind (a restart, a slow step, a machine that slept)
//! does not replay every step live; it jumps to the newest settled step and reports the
//! steps it skipped, which the collector fills from range queries and the predictor
//! reads back as history.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::StepGrid;

/// The step a loop works on next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextStep {
    /// The step.
    pub step: DateTime<Utc>,
    /// Steps skipped between the last one worked on and `step`, both ends included.
    pub skipped: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// A step grid and the settling delay of its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepClock {
    grid: StepGrid,
    delay: TimeDelta,
}

impl StepClock {
    /// A clock over `grid` whose steps are due `delay` after they begin.
    pub fn new(grid: StepGrid, delay: Duration) -> Self {
        Self { grid, delay: TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX) }
    }

    /// The grid.
    pub fn grid(&self) -> StepGrid {
        self.grid
    }

    /// The newest step that is due at `now`.
    pub fn latest(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.grid.floor(now - self.delay)
    }

    /// The step after `last` (`None`: nothing worked on yet, the newest due step): the
    /// next one on the grid, or the newest due one when the loop is more than a step
    /// behind, with the steps skipped on the way.
    pub fn next(&self, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> NextStep {
        let latest = self.latest(now);
        let step = self.grid.delta();
        match last {
            None => NextStep { step: latest, skipped: None },
            Some(l) if l + step >= latest => NextStep { step: l + step, skipped: None },
            Some(l) => NextStep { step: latest, skipped: Some((l + step, latest - step)) },
        }
    }

    /// How long from `now` until `step` is due (zero when it already is).
    pub fn until_due(&self, step: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
        (step + self.delay - now).to_std().unwrap_or_default()
    }

    /// Sleeps until `step` is due.
    pub async fn wait_for(&self, step: DateTime<Utc>) {
        tokio::time::sleep(self.until_due(step, Utc::now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn clock() -> StepClock {
        StepClock::new(StepGrid::from_secs(30).unwrap(), Duration::from_secs(2))
    }

    #[test]
    fn a_step_is_due_after_its_delay() {
        let c = clock();
        assert_eq!(c.latest(t("2024-01-01T00:01:01Z")), t("2024-01-01T00:00:30Z"), "00:01:00 is not settled yet");
        assert_eq!(c.latest(t("2024-01-01T00:01:02Z")), t("2024-01-01T00:01:00Z"));
        assert_eq!(c.until_due(t("2024-01-01T00:01:30Z"), t("2024-01-01T00:01:02Z")), Duration::from_secs(30));
        assert_eq!(c.until_due(t("2024-01-01T00:00:30Z"), t("2024-01-01T00:01:02Z")), Duration::ZERO);
    }

    #[test]
    fn in_step_behind_and_first() {
        let c = clock();
        let now = t("2024-01-01T00:10:05Z");
        assert_eq!(c.next(None, now), NextStep { step: t("2024-01-01T00:10:00Z"), skipped: None });
        // In step (or ahead): the next grid point, even if not due yet.
        let in_step = c.next(Some(t("2024-01-01T00:09:30Z")), now);
        assert_eq!(in_step, NextStep { step: t("2024-01-01T00:10:00Z"), skipped: None });
        let ahead = c.next(Some(t("2024-01-01T00:10:00Z")), now);
        assert_eq!(ahead, NextStep { step: t("2024-01-01T00:10:30Z"), skipped: None });
        // Behind: the newest due step, with what was skipped.
        let behind = c.next(Some(t("2024-01-01T00:08:00Z")), now);
        assert_eq!(
            behind,
            NextStep {
                step: t("2024-01-01T00:10:00Z"),
                skipped: Some((t("2024-01-01T00:08:30Z"), t("2024-01-01T00:09:30Z")))
            }
        );
    }
}
