//! The replica policy, as pure functions of a forecast and the present.
//!
//! One decision, in order:
//! 1. **forecast**: enough replicas for the chosen quantile (times `1 + headroom`) at every
//!    step of `[now + startup, now + lookahead]` (`lookahead` is at most the 10-minute
//!    horizon): a pod started now is ready from `now + startup`, and the steps before
//!    that are served by pods earlier decisions started (the stabilisation window keeps
//!    them); without a forecast, current demand (`reactive`);
//! 2. **reactive floor**: never below what current demand needs at the floor's utilisation
//!    target (1.0: exactly what it needs; 0.7: the HPA's usual headroom);
//! 3. **stabilisation**: scale down only to the highest recommendation of the last
//!    `scale_down_window` steps, so a dip does not drop pods that are needed again soon;
//! 4. **largest change**: at most `max_change` replicas up or down per decision;
//! 5. **bounds**: `[min, max]`.
//!
//! The decision carries the [`Reason`] of the last term that changed the number.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::decision::Reason;

/// Which forecast quantile the policy covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantile {
    /// The median.
    P50,
    /// The 90th percentile.
    P90,
}

/// The policy's settings for one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Requests per second one replica serves within its latency objective.
    pub capacity: f64,
    /// Fewest replicas.
    pub min_replicas: u32,
    /// Most replicas.
    pub max_replicas: u32,
    /// Pod startup, in steps.
    pub startup_steps: usize,
    /// Last step ahead the forecast term covers (clamped to the forecast's length); a
    /// longer lookahead starts pods earlier for peaks further away, at a cost.
    pub lookahead_steps: usize,
    /// The quantile to cover.
    pub quantile: Quantile,
    /// Extra share of demand to provision for (0.1 = 10% more).
    pub headroom: f64,
    /// Utilisation the reactive floor provisions current demand at (0 to 1; 1 covers it
    /// exactly).
    #[serde(default = "full_utilisation")]
    pub floor_utilisation: f64,
    /// Scale-down stabilisation window, in steps (0: scale down at once).
    pub scale_down_window: usize,
    /// Largest change of replicas per decision; `None`: unlimited.
    pub max_change: Option<u32>,
}

/// A setting or an input the policy cannot work with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// A bad setting.
    #[error("policy setting {field}: {reason}")]
    Config {
        /// Which setting.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A bad input.
    #[error("policy input {field}: {reason}")]
    Input {
        /// Which input.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn full_utilisation() -> f64 {
    1.0
}

impl PolicyConfig {
    /// Checks the settings, naming the first bad one.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |field, reason: String| Err(PolicyError::Config { field, reason });
        if !(self.capacity.is_finite() && self.capacity > 0.0) {
            return bad("capacity", format!("{} is not a positive number of requests/s", self.capacity));
        }
        if self.min_replicas > self.max_replicas {
            return bad("min_replicas", format!("{} is above max_replicas {}", self.min_replicas, self.max_replicas));
        }
        if !(self.headroom.is_finite() && self.headroom >= 0.0) {
            return bad("headroom", format!("{} is not a non-negative share", self.headroom));
        }
        if !(self.floor_utilisation > 0.0 && self.floor_utilisation <= 1.0) {
            return bad("floor_utilisation", format!("{} is not in (0, 1]", self.floor_utilisation));
        }
        if self.lookahead_steps < self.startup_steps {
            return bad(
                "lookahead_steps",
                format!("{} is shorter than the pod startup of {} steps", self.lookahead_steps, self.startup_steps),
            );
        }
        if self.max_change == Some(0) {
            return bad("max_change", "0 would never change anything".into());
        }
        Ok(())
    }
}

/// The present and the forecast one decision is made from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Forecast demand per horizon step (step `i` is `i + 1` steps ahead) at the median
    /// and the 90th percentile, requests/s; `None` when there is no forecast.
    pub forecast: Option<(&'a [f64], &'a [f64])>,
    /// Demand observed now, requests/s; `None` when missing.
    pub demand_now: Option<f64>,
    /// Replicas the service has now.
    pub replicas_now: u32,
}

/// Replicas for a demand at a capacity.
pub fn replicas_for(demand: f64, capacity: f64) -> u32 {
    // A hair below an integer is that integer: float noise must not add a pod.
    let n = demand / capacity;
    (n - 1e-9).ceil().max(0.0).min(u32::MAX as f64) as u32
}

/// The forecast term: most replicas needed over `[startup, horizon]` steps ahead, with the
/// step (1-based, ahead of now) that needs them.
pub fn forecast_need(
    trajectory: &[f64],
    startup_steps: usize,
    lookahead_steps: usize,
    capacity: f64,
    headroom: f64,
) -> Option<(u32, usize)> {
    let to = lookahead_steps.min(trajectory.len());
    let from = startup_steps.max(1).min(to);
    (from..=to)
        .map(|ahead| (replicas_for(trajectory[ahead - 1] * (1.0 + headroom), capacity), ahead))
        .max_by_key(|&(n, ahead)| (n, std::cmp::Reverse(ahead)))
}

fn check_demand(field: &'static str, v: f64) -> Result<(), PolicyError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(PolicyError::Input { field, reason: format!("{v} is not a non-negative number of requests/s") })
    }
}

/// A policy for one service: the settings and the recommendations of the stabilisation
/// window.
#[derive(Debug, Clone)]
pub struct Policy {
    config: PolicyConfig,
    recent: VecDeque<u32>,
}

impl Policy {
    /// A policy with checked settings.
    pub fn new(config: PolicyConfig) -> Result<Self, PolicyError> {
        config.validate()?;
        Ok(Self { config, recent: VecDeque::new() })
    }

    /// Decides the replicas for this step and why. Bad input changes nothing.
    pub fn decide(&mut self, input: Input<'_>, step_seconds: f64) -> Result<(u32, Reason), PolicyError> {
        let c = &self.config;
        if let Some(d) = input.demand_now {
            check_demand("demand_now", d)?;
        }
        let forecast = match input.forecast {
            Some((p50, p90)) => {
                if p50.len() != p90.len() || p50.is_empty() {
                    return Err(PolicyError::Input {
                        field: "forecast",
                        reason: format!("p50 has {} steps and p90 {}", p50.len(), p90.len()),
                    });
                }
                for v in p50.iter().chain(p90) {
                    check_demand("forecast", *v)?;
                }
                Some(match c.quantile {
                    Quantile::P50 => p50,
                    Quantile::P90 => p90,
                })
            }
            None => None,
        };
        let floor = input.demand_now.map_or(0, |d| replicas_for(d / c.floor_utilisation, c.capacity));
        let (mut n, mut reason) =
            match forecast.and_then(|f| forecast_need(f, c.startup_steps, c.lookahead_steps, c.capacity, c.headroom)) {
                Some((n, ahead)) => (n, Reason::Forecast { at_seconds: (ahead as f64 * step_seconds).round() as u32 }),
                None => (floor, Reason::Reactive),
            };
        if floor > n {
            (n, reason) = (floor, Reason::ReactiveFloor);
        }
        // The window holds raw recommendations, as the HPA's does.
        self.recent.push_back(n);
        while self.recent.len() > c.scale_down_window.max(1) {
            self.recent.pop_front();
        }
        let held = self.recent.iter().copied().max().unwrap_or(n);
        if held > n {
            (n, reason) = (held, Reason::Stabilised);
        }
        if let Some(step) = c.max_change {
            let now = input.replicas_now;
            if n > now.saturating_add(step) {
                (n, reason) = (now + step, Reason::RateLimited);
            } else if n + step < now {
                (n, reason) = (now - step, Reason::RateLimited);
            }
        }
        if n < c.min_replicas {
            (n, reason) = (c.min_replicas, Reason::MinBound);
        } else if n > c.max_replicas {
            (n, reason) = (c.max_replicas, Reason::MaxBound);
        }
        Ok((n, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PolicyConfig {
        PolicyConfig {
            capacity: 10.0,
            min_replicas: 1,
            max_replicas: 50,
            startup_steps: 4,
            lookahead_steps: 10,
            quantile: Quantile::P90,
            headroom: 0.0,
            floor_utilisation: 1.0,
            scale_down_window: 1,
            max_change: None,
        }
    }

    fn decide(p: &mut Policy, p50: &[f64], p90: &[f64], now: Option<f64>, replicas: u32) -> (u32, Reason) {
        p.decide(Input { forecast: Some((p50, p90)), demand_now: now, replicas_now: replicas }, 30.0).unwrap()
    }

    #[test]
    fn forecast_term_covers_the_quantile_after_startup_only() {
        let mut p = Policy::new(config()).unwrap();
        // A spike 2 steps ahead is before startup (4 steps): pods started now cannot serve it.
        let p90 = [10.0, 300.0, 10.0, 55.0, 41.0, 20.0];
        let p50 = [5.0; 6];
        assert_eq!(decide(&mut p, &p50, &p90, Some(10.0), 3), (6, Reason::Forecast { at_seconds: 120 }));
        let mut median = Policy::new(PolicyConfig { quantile: Quantile::P50, ..config() }).unwrap();
        assert_eq!(decide(&mut median, &p50, &p90, Some(1.0), 3).0, 1);
        let mut roomy = Policy::new(PolicyConfig { headroom: 0.2, ..config() }).unwrap();
        assert_eq!(decide(&mut roomy, &p50, &p90, Some(1.0), 3).0, 7, "55 * 1.2 = 66 needs 7");
        let mut near = Policy::new(PolicyConfig { lookahead_steps: 5, ..config() }).unwrap();
        let p90 = [0.0, 0.0, 0.0, 20.0, 41.0, 90.0];
        assert_eq!(
            decide(&mut near, &p50, &p90, None, 3),
            (5, Reason::Forecast { at_seconds: 150 }),
            "6 steps is beyond"
        );
    }

    #[test]
    fn reactive_floor_and_no_forecast() {
        let mut p = Policy::new(config()).unwrap();
        assert_eq!(decide(&mut p, &[1.0; 6], &[1.0; 6], Some(95.0), 3), (10, Reason::ReactiveFloor));
        let mut hpa_like = Policy::new(PolicyConfig { floor_utilisation: 0.7, ..config() }).unwrap();
        assert_eq!(decide(&mut hpa_like, &[1.0; 6], &[1.0; 6], Some(70.0), 3), (10, Reason::ReactiveFloor));
        let r = p.decide(Input { forecast: None, demand_now: Some(42.0), replicas_now: 3 }, 30.0).unwrap();
        assert_eq!(r, (5, Reason::Reactive));
    }

    #[test]
    fn stabilisation_holds_scale_down_for_the_window() {
        let mut p = Policy::new(PolicyConfig { scale_down_window: 3, ..config() }).unwrap();
        assert_eq!(decide(&mut p, &[80.0; 6], &[80.0; 6], None, 1).0, 8);
        assert_eq!(decide(&mut p, &[20.0; 6], &[20.0; 6], None, 8), (8, Reason::Stabilised));
        assert_eq!(decide(&mut p, &[20.0; 6], &[20.0; 6], None, 8), (8, Reason::Stabilised));
        assert_eq!(decide(&mut p, &[20.0; 6], &[20.0; 6], None, 8).0, 2, "the 8 left the window");
        assert_eq!(decide(&mut p, &[90.0; 6], &[90.0; 6], None, 2).0, 9, "scale-up is never held");
    }

    #[test]
    fn largest_change_and_bounds() {
        let mut p = Policy::new(PolicyConfig { max_change: Some(2), ..config() }).unwrap();
        assert_eq!(decide(&mut p, &[80.0; 6], &[80.0; 6], None, 3), (5, Reason::RateLimited));
        assert_eq!(decide(&mut p, &[0.0; 6], &[0.0; 6], None, 5), (3, Reason::RateLimited));
        let mut b = Policy::new(PolicyConfig { min_replicas: 2, max_replicas: 4, ..config() }).unwrap();
        assert_eq!(decide(&mut b, &[0.0; 6], &[0.0; 6], Some(0.0), 3), (2, Reason::MinBound));
        assert_eq!(decide(&mut b, &[500.0; 6], &[500.0; 6], None, 3), (4, Reason::MaxBound));
    }

    #[test]
    fn bad_settings_and_inputs_are_named() {
        let err = |c: PolicyConfig| Policy::new(c).unwrap_err().to_string();
        assert!(err(PolicyConfig { capacity: 0.0, ..config() }).contains("capacity"));
        assert!(err(PolicyConfig { capacity: f64::NAN, ..config() }).contains("capacity"));
        assert!(err(PolicyConfig { min_replicas: 5, max_replicas: 2, ..config() }).contains("above max_replicas"));
        assert!(err(PolicyConfig { headroom: -0.1, ..config() }).contains("headroom"));
        assert!(err(PolicyConfig { lookahead_steps: 2, ..config() }).contains("shorter than the pod startup"));
        assert!(err(PolicyConfig { floor_utilisation: 0.0, ..config() }).contains("floor_utilisation"));
        let mut p = Policy::new(config()).unwrap();
        let bad = |p: &mut Policy, p90: &[f64], now| {
            p.decide(Input { forecast: Some((&[1.0; 3], p90)), demand_now: now, replicas_now: 1 }, 30.0)
                .unwrap_err()
                .to_string()
        };
        assert!(bad(&mut p, &[1.0, -2.0, 1.0], None).contains("forecast"));
        assert!(bad(&mut p, &[1.0, f64::NAN, 1.0], None).contains("forecast"));
        assert!(bad(&mut p, &[1.0; 3], Some(f64::INFINITY)).contains("demand_now"));
        assert!(bad(&mut p, &[1.0; 2], None).contains("p50 has 3 steps and p90 2"));
        // Bad input leaves the stabilisation window untouched.
        assert_eq!(decide(&mut p, &[10.0; 6], &[10.0; 6], None, 1).0, 1);
    }

    #[test]
    fn replicas_for_tolerates_float_noise() {
        assert_eq!(replicas_for(30.000000000001, 10.0), 3);
        assert_eq!(replicas_for(30.1, 10.0), 4);
        assert_eq!(replicas_for(0.0, 10.0), 0);
    }
}
