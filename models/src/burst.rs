//! The burst profile: how far demand jumps within a few steps, by the minute of the hour.
//!
//! Some traffic jumps at the same minutes of every hour (Twitter's sample stream at :02
//! and :32, a median 3.2x within two minutes), sharper and shorter than a forecast's 90th
//! percentile follows. The profile holds, per lead `k` (steps ahead) and per phase slot of
//! the hour of the *target* step, quantiles of `demand(t + k) / demand(t)` over training
//! history. The policy's burst term multiplies current demand by the largest ratio ahead
//! (`prescale_policy`); traffic without such jumps learns ratios near 1, which
//! the forecast term already covers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::series::Series;

/// The quantiles a profile holds; a policy covers one of them.
pub const LEVELS: [f64; 3] = [0.5, 0.75, 0.9];

/// A `(lead, slot)` seen fewer times than this learns no jump (ratio 1).
const MIN_SAMPLES: usize = 4;

/// Each jump also counts for this many slots either side of its own: a jump's minute
/// wanders by a step between hours, and one slot's quantile alone is noisy. On Twitter's
/// validation part the policy tuned with one neighbour was short in 43 steps, with none
/// or two in 46 (test part: 95, 126 and 103; measured with nearest-rank quantiles).
const NEIGHBOURS: usize = 1;

const HOUR_SECONDS: i64 = 3600;

/// Quantiles of the jump ratio per lead and phase slot of the hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstProfile {
    /// Step length, seconds (it divides the hour).
    pub step_seconds: f64,
    /// Leads held: `1..=leads` steps ahead.
    pub leads: usize,
    /// The quantiles held ([`LEVELS`] when learned).
    pub levels: Vec<f64>,
    /// `ratios[level][lead - 1][slot]`, slot `s` covering seconds `[s * step, (s + 1) *
    /// step)` of the hour.
    pub ratios: Vec<Vec<Vec<f64>>>,
}

/// Why a profile cannot be learned or used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BurstError {
    /// The step does not divide the hour, so steps have no fixed phase.
    #[error("a {0} s step does not divide the hour: no phase slots")]
    Step(f64),
    /// A level the profile does not hold.
    #[error("burst quantile {level} is not one the profile holds ({levels:?})")]
    Level {
        /// The level asked for.
        level: f64,
        /// The levels held.
        levels: Vec<f64>,
    },
    /// A stored profile whose shape or values are wrong.
    #[error("bad burst profile: {0}")]
    Bad(String),
}

fn slots_per_hour(step_seconds: f64) -> Result<usize, BurstError> {
    let step = step_seconds.round() as i64;
    if step <= 0 || (step as f64 - step_seconds).abs() > 1e-9 || HOUR_SECONDS % step != 0 {
        return Err(BurstError::Step(step_seconds));
    }
    Ok((HOUR_SECONDS / step) as usize)
}

impl BurstProfile {
    /// Learns the profile from steps `[0, end)` of a series, for leads `1..=leads`.
    pub fn learn(series: &Series, end: usize, leads: usize) -> Result<Self, BurstError> {
        let step_seconds = series.grid.seconds();
        let slots = slots_per_hour(step_seconds)?;
        let end = end.min(series.len());
        let mut samples = vec![vec![Vec::new(); slots]; leads];
        for j in 0..end {
            let Some(target) = series.values[j] else { continue };
            let slot = slot_of(series.time(j), step_seconds, slots);
            for k in 1..=leads.min(j) {
                if let Some(from) = series.values[j - k].filter(|v| *v > 0.0) {
                    for near in 0..=2 * NEIGHBOURS {
                        samples[k - 1][(slot + slots + near - NEIGHBOURS) % slots].push(target / from);
                    }
                }
            }
        }
        let ratios = LEVELS
            .iter()
            .map(|&q| {
                samples.iter_mut().map(|per_slot| per_slot.iter_mut().map(|s| quantile(s, q)).collect()).collect()
            })
            .collect();
        Ok(Self { step_seconds, leads, levels: LEVELS.to_vec(), ratios })
    }

    /// Checks a stored profile's shape and values.
    pub fn validate(&self) -> Result<(), BurstError> {
        let slots = slots_per_hour(self.step_seconds)?;
        if self.ratios.len() != self.levels.len() {
            return Err(BurstError::Bad(format!(
                "{} levels but {} ratio tables",
                self.levels.len(),
                self.ratios.len()
            )));
        }
        for table in &self.ratios {
            if table.len() != self.leads || table.iter().any(|row| row.len() != slots) {
                return Err(BurstError::Bad(format!("a ratio table is not {} leads by {slots} slots", self.leads)));
            }
            if let Some(r) = table.iter().flatten().find(|r| !(r.is_finite() && **r >= 0.0)) {
                return Err(BurstError::Bad(format!("ratio {r} is not a non-negative number")));
            }
        }
        Ok(())
    }

    /// The ratios at `level` for the steps `1..=leads` after `now`, each from the slot of
    /// the step it is for.
    pub fn multipliers(&self, level: f64, now: DateTime<Utc>) -> Result<Vec<f64>, BurstError> {
        let slots = slots_per_hour(self.step_seconds)?;
        let table = self.table(level).ok_or_else(|| BurstError::Level { level, levels: self.levels.clone() })?;
        let first = slot_of(now, self.step_seconds, slots);
        Ok((1..=self.leads).map(|k| table[k - 1][(first + k) % slots]).collect())
    }

    /// The ratio table of a level the profile holds.
    fn table(&self, level: f64) -> Option<&Vec<Vec<f64>>> {
        self.ratios.get(self.levels.iter().position(|l| (l - level).abs() < 1e-9)?)
    }

    /// The largest ratio at `level`: `(ratio, lead, second of the hour its slot starts)`.
    pub fn largest_jump(&self, level: f64) -> Option<(f64, usize, u32)> {
        let table = self.table(level)?;
        let mut best: Option<(f64, usize, u32)> = None;
        for (lead, row) in table.iter().enumerate() {
            for (slot, &r) in row.iter().enumerate() {
                if best.is_none_or(|(b, _, _)| r > b) {
                    best = Some((r, lead + 1, (slot as f64 * self.step_seconds) as u32));
                }
            }
        }
        best
    }
}

/// The phase slot of the hour a time falls in.
fn slot_of(t: DateTime<Utc>, step_seconds: f64, slots: usize) -> usize {
    ((t.timestamp().rem_euclid(HOUR_SECONDS) as f64 / step_seconds) as usize).min(slots - 1)
}

/// The `q` quantile of the samples, 1 when there are too few.
fn quantile(samples: &mut [f64], q: f64) -> f64 {
    if samples.len() < MIN_SAMPLES { 1.0 } else { crate::baselines::quantile(samples, q) }
}

/// The policy's burst term reads its ratios from the profile a model carries.
impl prescale_policy::BurstRatios for BurstProfile {
    type Error = BurstError;

    fn ratios(&self, quantile: f64, now: DateTime<Utc>) -> Result<Vec<f64>, BurstError> {
        self.multipliers(quantile, now)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use prescale_core::StepGrid;

    use super::*;

    /// Ten hours at 5-minute steps: 10 req/s, 40 at minute :10 of every hour.
    fn hourly_spike(missing: &[usize]) -> Series {
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let values =
            (0..120).map(|i| (!missing.contains(&i)).then_some(if i % 12 == 2 { 40.0 } else { 10.0 })).collect();
        Series::new("spike", StepGrid::new(std::time::Duration::from_secs(300)).unwrap(), start, values).unwrap()
    }

    #[test]
    fn learns_the_jump_into_the_slot_of_the_hour_it_lands_in_and_its_neighbours() {
        let s = hourly_spike(&[]);
        let p = BurstProfile::learn(&s, s.len(), 3).unwrap();
        p.validate().unwrap();
        let (median, p90) = (&p.ratios[0], &p.ratios[2]);
        // Slot 2 (minute :10) is reached from 10 req/s: a 4x jump at every lead, learned
        // into slots 1 to 3 (a third of their samples).
        for lead in 1..=3 {
            assert_eq!(p90[lead - 1][1..=3], [4.0; 3], "lead {lead}");
            assert_eq!(median[lead - 1][2], 1.0, "lead {lead}: the jump is not the median");
        }
        // Two slots away from the spike, and at the median, nothing jumps.
        assert_eq!(p90[0][5], 1.0);
        assert_eq!(p90[0][0], 1.0);
        // At 02:50 the spike is 4 steps ahead: only lead 3 (slot 1) neighbours it; at 03:00
        // every lead does.
        let at = |h, m| Utc.with_ymd_and_hms(2024, 1, 2, h, m, 0).unwrap();
        assert_eq!(p.multipliers(0.9, at(2, 50)).unwrap(), vec![1.0, 1.0, 4.0]);
        assert_eq!(p.multipliers(0.5, at(2, 50)).unwrap(), vec![1.0, 1.0, 1.0]);
        assert_eq!(p.multipliers(0.9, at(3, 0)).unwrap(), vec![4.0, 4.0, 4.0]);
        // The first largest: lead 1 into slot 1 (minute :05).
        assert_eq!(p.largest_jump(0.9), Some((4.0, 1, 300)));
        assert_eq!(p.largest_jump(0.6), None);
        // Seconds within a step fall in its slot: 02:54:59 is still slot 10, whose lead 2
        // is slot 0; from 02:55 lead 2 is slot 1.
        assert_eq!(p.multipliers(0.9, at(2, 50) + chrono::Duration::seconds(299)).unwrap()[1], 1.0);
        assert_eq!(p.multipliers(0.9, at(2, 50) + chrono::Duration::seconds(300)).unwrap()[1], 4.0);
    }

    #[test]
    fn learns_only_from_the_part_it_is_given_and_skips_missing_values() {
        let s = hourly_spike(&[]);
        // The first hour holds one jump into slot 2 and one out of it: too few samples.
        let p = BurstProfile::learn(&s, 12, 1).unwrap();
        assert!(p.ratios[2][0].iter().all(|r| *r == 1.0), "{:?}", p.ratios[2][0]);
        // Every spike missing: no jump, and no gap read as a zero.
        let spikes: Vec<usize> = (0..120).filter(|i| i % 12 == 2).collect();
        let p = BurstProfile::learn(&hourly_spike(&spikes), 120, 2).unwrap();
        assert!(p.ratios.iter().flatten().flatten().all(|r| *r == 1.0));
    }

    #[test]
    fn bad_steps_levels_and_stored_profiles_are_named() {
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let odd = Series::new(
            "odd",
            StepGrid::new(std::time::Duration::from_secs(7 * 60)).unwrap(),
            start,
            vec![Some(1.0); 10],
        )
        .unwrap();
        assert_eq!(BurstProfile::learn(&odd, 10, 2), Err(BurstError::Step(420.0)));
        let s = hourly_spike(&[]);
        let p = BurstProfile::learn(&s, s.len(), 2).unwrap();
        assert!(matches!(p.multipliers(0.8, start), Err(BurstError::Level { .. })));
        let mut bad = p.clone();
        bad.ratios[0][1][3] = f64::NAN;
        assert!(matches!(bad.validate(), Err(BurstError::Bad(m)) if m.contains("NaN")));
        let mut short = p;
        short.ratios[1].pop();
        assert!(matches!(short.validate(), Err(BurstError::Bad(m)) if m.contains("2 leads by 12 slots")));
    }
}
