//! Synthetic services of varied shapes and sizes, for the fleet benchmarks: levels from
//! 0.1 to 1,000 requests/s, daily and weekly seasons of their own phases and depths,
//! noise, and some with bursts at fixed minutes, trends, no season, or a level shift.

use chrono::{DateTime, Utc};

/// A deterministic stream in [0, 1).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One synthetic service's shape.
pub struct Shape {
    level: f64,
    daily: f64,
    phase: f64,
    weekend: f64,
    noise: f64,
    /// Extra demand in the first minutes after this minute of every hour.
    burst: Option<(u32, f64)>,
    trend: f64,
    /// Level factor in the second half.
    shift: f64,
}

impl Shape {
    pub fn new(rng: &mut Lcg) -> Self {
        let kind = rng.next();
        Shape {
            level: 10f64.powf(-1.0 + 4.0 * rng.next()),
            daily: if kind < 0.1 { 0.0 } else { 0.2 + 0.7 * rng.next() },
            phase: rng.next(),
            weekend: 0.5 + 0.5 * rng.next(),
            noise: 0.02 + 0.25 * rng.next(),
            burst: (kind > 0.8).then(|| ((rng.next() * 60.0) as u32, 1.0 + 2.0 * rng.next())),
            trend: if (0.1..0.25).contains(&kind) { 0.5 * rng.next() } else { 0.0 },
            shift: if (0.25..0.35).contains(&kind) { 0.5 + rng.next() } else { 1.0 },
        }
    }

    /// Requests/s at step `i` of `n`, from its own noise stream.
    pub fn at(&self, i: usize, n: usize, t: DateTime<Utc>, rng: &mut Lcg) -> f64 {
        use chrono::{Datelike, Timelike};
        let day = (t.num_seconds_from_midnight() as f64 / 86_400.0 + self.phase).fract();
        let season = 1.0 + self.daily * (std::f64::consts::TAU * day).sin();
        let week = if t.weekday().number_from_monday() >= 6 { self.weekend } else { 1.0 };
        let progress = i as f64 / n as f64;
        let mut v = self.level * season * week * (1.0 + self.trend * progress);
        if progress > 0.5 {
            v *= self.shift;
        }
        if let Some((minute, factor)) = self.burst
            && t.minute() >= minute
            && t.minute() < minute + 3
        {
            v *= factor;
        }
        (v * (1.0 + self.noise * (2.0 * rng.next() - 1.0))).max(0.0)
    }
}
