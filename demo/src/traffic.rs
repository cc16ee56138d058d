//! The demo's traffic, built in so that a fresh clone needs no trace: the synthetic day of
//! `loadtest/synthetic_day_1min.csv`, compressed so that one day lasts [`DAY_STEPS`]
//! steps. The same shape trains the starter model and drives k6, so the model has seen
//! days like the one it forecasts, never the exact one (days vary in size and noise).

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};

/// Steps in one compressed day: an hour of wall-clock time at 10 s steps.
pub const DAY_STEPS: usize = 360;

const DAY: &str = include_str!("../../loadtest/synthetic_day_1min.csv");

/// The built-in day, requests per minute, 1,440 values.
pub fn day() -> Vec<f64> {
    DAY.lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1))
        .map(|v| v.trim().parse::<f64>().expect("the built-in day is numeric"))
        .collect()
}

/// Trace seconds per wall-clock second when a day lasts [`DAY_STEPS`] steps of `step_secs`.
pub fn compress(step_secs: f64) -> f64 {
    86_400.0 / (DAY_STEPS as f64 * step_secs)
}

/// A deterministic stream of numbers in [0, 1) (an LCG): the same demo every time.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A service's history (`timestamp,requests`, requests per step): `days` compressed days
/// at `step_secs`, with the busiest minute of the built-in day at `peak` requests/s. Each
/// day is scaled by 0.75 to 1.25 and each step by up to ±8% of noise, drawn from `seed`
/// (each service its own).
pub fn training_csv(days: usize, step_secs: f64, peak: f64, seed: u64) -> String {
    let day = day();
    let max = day.iter().copied().fold(0.0, f64::max);
    let per = day.len() / DAY_STEPS;
    let mut rng = Lcg(seed);
    let start = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").expect("a valid date").with_timezone(&Utc);
    let step = Duration::milliseconds((step_secs * 1000.0).round() as i64);
    let mut out = String::from("timestamp,requests\n");
    for d in 0..days {
        let size = 0.75 + 0.5 * rng.next();
        for s in 0..DAY_STEPS {
            let mean = day[s * per..(s + 1) * per].iter().sum::<f64>() / per as f64;
            let noise = 1.0 + 0.16 * (rng.next() - 0.5);
            let t = start + step * (d * DAY_STEPS + s) as i32;
            let _ = writeln!(out, "{},{:.4}", t.to_rfc3339(), mean / max * peak * size * noise * step_secs);
        }
    }
    out
}

/// The load for k6's `profile.js` (`timestamp,requests` at one minute): the built-in day
/// from `start_hour`, `repeats` times over. Starting in the early morning puts the day's
/// first ramp within the demo's first minutes.
pub fn load_csv(start_hour: usize, repeats: usize) -> String {
    let day = day();
    let start = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").expect("a valid date").with_timezone(&Utc);
    let mut out = String::from("timestamp,requests\n");
    for i in 0..day.len() * repeats {
        let v = day[(start_hour * 60 + i) % day.len()];
        let _ = writeln!(out, "{},{v}", (start + Duration::minutes(i as i64)).to_rfc3339());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_training_trace_is_the_compressed_day() {
        assert_eq!(day().len(), 1440);
        let csv = training_csv(2, 10.0, 40.0, 7);
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.len(), 1 + 2 * DAY_STEPS);
        assert!(rows[1].starts_with("2024-01-01T00:00:00+00:00,"));
        assert!(rows[2].starts_with("2024-01-01T00:00:10+00:00,"));
        // Requests per 10 s step: the busiest at 40 requests/s, give or take a day's size.
        let values: Vec<f64> =
            rows[1..].iter().map(|r| r.split(',').nth(1).unwrap().parse::<f64>().unwrap() / 10.0).collect();
        let max = values.iter().copied().fold(0.0, f64::max);
        assert!(max > 25.0 && max < 40.0 * 1.25 * 1.08 + 1e-9, "peak {max}");
        // The evening peak (20:00, step 300) is far above the night (02:00, step 30).
        assert!(values[300] > 3.0 * values[30]);
        assert_eq!(training_csv(2, 10.0, 40.0, 7), csv, "deterministic");
        assert_ne!(training_csv(2, 10.0, 40.0, 8), csv, "another service, other noise");
    }

    #[test]
    fn the_load_starts_at_the_chosen_hour() {
        let csv = load_csv(4, 2);
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.len(), 1 + 2 * 1440);
        assert_eq!(rows[1].split(',').nth(1).unwrap().parse::<f64>().unwrap(), day()[240]);
        assert!((compress(10.0) - 24.0).abs() < 1e-12);
    }
}
