//! Exponential backoff with jitter, for every retry in Prescale (Prometheus queries, the
//! collector's flushes, the scaler's conflicting writes, restarts of supervised tasks).
//!
//! The ceiling doubles from `base` at each attempt up to `cap`; the wait is drawn
//! uniformly in the upper half of it ("equal jitter"): never less than half the ceiling,
//! so a retry does not come back at once, and spread so that many clients that failed
//! together (every collector after a Prometheus restart, two scalers after a conflict) do
//! not retry together either.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// A backoff sequence; [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    state: u64,
}

impl Backoff {
    /// Waits from about `base` up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        // A per-process random seed from std's hasher keys; xorshift from there. The
        // spread matters here, not the quality of the randomness.
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish() | 1;
        Self { base, cap: cap.max(base), attempt: 0, state: seed }
    }

    /// The ceiling of the next wait.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next wait: uniform in `[ceiling / 2, ceiling]`; the ceiling then doubles.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let unit = (self.state >> 11) as f64 / (1u64 << 53) as f64;
        ceiling.mul_f64(0.5 + 0.5 * unit)
    }

    /// Back to the first, shortest wait.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts made since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_the_cap_within_the_upper_half_of_their_ceiling() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut b = Backoff::new(base, cap);
        let mut ceilings = Vec::new();
        for _ in 0..40 {
            let ceiling = b.ceiling();
            let wait = b.next_delay();
            assert!(wait >= ceiling / 2 && wait <= ceiling, "{wait:?} outside the upper half of {ceiling:?}");
            ceilings.push(ceiling.as_millis());
        }
        assert_eq!(&ceilings[..6], &[100, 200, 400, 800, 1600, 2000]);
        assert!(ceilings.iter().all(|c| *c <= 2000));
        b.reset();
        assert_eq!(b.ceiling(), base);
    }

    #[test]
    fn waits_are_spread_not_fixed() {
        let mut waits = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
            waits.insert(b.next_delay().as_micros());
        }
        assert!(waits.len() > 40, "only {} distinct waits of 50", waits.len());
    }
}
