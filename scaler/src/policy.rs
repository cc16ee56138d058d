//! The replica policy, as pure functions of a forecast and the present.
//!
//! One decision, in order:
//! 1. **forecast**: enough replicas for the chosen quantile (times `1 + headroom`) at every
//!    step of `[now + startup, now + lookahead]` (`lookahead` is at most the 10-minute
//!    horizon): a pod started now is ready from `now + startup`, and the steps before
//!    that are served by pods earlier decisions started (the stabilisation window keeps
//!    them); without a forecast, current demand (`reactive`);
//! 2. **burst** (when configured and the model carries a burst profile): current demand
//!    times the largest jump the profile expects over `[now + startup, now + startup +
//!    span]` at these minutes of the hour, so that pods are asked for before a jump that
//!    recurs at fixed minutes and is too sharp for the forecast (`prescale_models::burst`);
//! 3. **reactive floor**: never below what current demand needs at the floor's utilisation
//!    target (1.0: exactly what it needs; 0.7: the HPA's usual headroom);
//! 4. **stabilisation**: scale down only to the highest recommendation of the last
//!    `scale_down_window` steps, so a dip does not drop pods that are needed again soon;
//! 5. **largest change**: at most `max_change` replicas up or down per decision;
//! 6. **bounds**: `[min, max]`.
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
    /// The quantile of the burst profile to cover (one it holds: 0.5, 0.75 or 0.9);
    /// `None`: no burst term.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_quantile: Option<f64>,
    /// Steps after the pods' startup the burst term also covers (see [`burst_need`]).
    #[serde(default)]
    pub burst_span_steps: usize,
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
        if let Some(q) = self.burst_quantile
            && !(q > 0.0 && q < 1.0)
        {
            return bad("burst_quantile", format!("{q} is not in (0, 1)"));
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
    /// The burst profile's ratios at the configured quantile for the steps after now
    /// (`[i]` is `i + 1` steps ahead); `None` when there is no profile. Unused without a
    /// configured `burst_quantile`.
    pub burst: Option<&'a [f64]>,
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
    peak_need(trajectory.len(), startup_steps, lookahead_steps, capacity, |ahead| {
        trajectory[ahead - 1] * (1.0 + headroom)
    })
}

/// Most replicas `demand(ahead)` needs over `ahead` in `[startup, last]` (1-based, `last`
/// clamped to `len` steps, `startup` to `last`), with the earliest step that needs them.
fn peak_need(
    len: usize,
    startup_steps: usize,
    last: usize,
    capacity: f64,
    demand: impl Fn(usize) -> f64,
) -> Option<(u32, usize)> {
    let to = last.min(len);
    let from = startup_steps.max(1).min(to);
    (from.max(1)..=to)
        .map(|ahead| (replicas_for(demand(ahead), capacity), ahead))
        .max_by_key(|&(n, ahead)| (n, std::cmp::Reverse(ahead)))
}

/// The burst term: replicas for `demand` times the largest ratio over steps
/// `[startup_steps, startup_steps + span_steps]` ahead, with the step (1-based) of that
/// ratio.
///
/// From the pods' startup on, as the forecast term: a jump sooner cannot be met by pods
/// asked for now. The span covers a jump whose minute wanders by a step or two between
/// hours (a single slot's quantile is noisy).
pub fn burst_need(
    demand: f64,
    ratios: &[f64],
    startup_steps: usize,
    span_steps: usize,
    capacity: f64,
) -> Option<(u32, usize)> {
    peak_need(ratios.len(), startup_steps, startup_steps + span_steps, capacity, |ahead| demand * ratios[ahead - 1])
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
        let burst = match (c.burst_quantile, input.burst) {
            (Some(_), Some(ratios)) => {
                if let Some(r) = ratios.iter().find(|r| !(r.is_finite() && **r >= 0.0)) {
                    return Err(PolicyError::Input {
                        field: "burst",
                        reason: format!("ratio {r} is not non-negative"),
                    });
                }
                input.demand_now.and_then(|d| burst_need(d, ratios, c.startup_steps, c.burst_span_steps, c.capacity))
            }
            _ => None,
        };
        let floor = input.demand_now.map_or(0, |d| replicas_for(d / c.floor_utilisation, c.capacity));
        let (mut n, mut reason) =
            match forecast.and_then(|f| forecast_need(f, c.startup_steps, c.lookahead_steps, c.capacity, c.headroom)) {
                Some((n, ahead)) => (n, Reason::Forecast { at_seconds: (ahead as f64 * step_seconds).round() as u32 }),
                None => (floor, Reason::Reactive),
            };
        if let Some((need, ahead)) = burst
            && need > n
        {
            (n, reason) = (need, Reason::Burst { at_seconds: (ahead as f64 * step_seconds).round() as u32 });
        }
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
            burst_quantile: None,
            burst_span_steps: 0,
        }
    }

    fn decide(p: &mut Policy, p50: &[f64], p90: &[f64], now: Option<f64>, replicas: u32) -> (u32, Reason) {
        p.decide(Input { forecast: Some((p50, p90)), demand_now: now, replicas_now: replicas, burst: None }, 30.0)
            .unwrap()
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
    fn burst_term_covers_the_profiles_jump_from_startup_over_its_span() {
        let with_burst = PolicyConfig { burst_quantile: Some(0.9), ..config() };
        let flat = [10.0; 6];
        // A 5x jump 2 steps ahead (before the 4-step startup), 3x at 4 steps, 4x at 5.
        let ratios = [1.0, 5.0, 1.0, 3.0, 4.0, 1.0];
        let decide = |config: &PolicyConfig, demand_now, ratios: &[f64]| {
            let input = Input { forecast: Some((&flat, &flat)), demand_now, replicas_now: 1, burst: Some(ratios) };
            Policy::new(config.clone()).unwrap().decide(input, 30.0)
        };
        assert_eq!(decide(&with_burst, Some(10.0), &ratios), Ok((3, Reason::Burst { at_seconds: 120 })));
        let wider = PolicyConfig { burst_span_steps: 1, ..with_burst.clone() };
        assert_eq!(decide(&wider, Some(10.0), &ratios), Ok((4, Reason::Burst { at_seconds: 150 })));
        // A forecast needing more wins; without current demand or a burst quantile there
        // is no burst term.
        let roomy = PolicyConfig { headroom: 4.0, ..with_burst.clone() };
        assert_eq!(decide(&roomy, Some(10.0), &ratios), Ok((5, Reason::Forecast { at_seconds: 120 })));
        assert_eq!(decide(&with_burst, None, &ratios), Ok((1, Reason::Forecast { at_seconds: 120 })));
        assert_eq!(decide(&config(), Some(10.0), &ratios), Ok((1, Reason::Forecast { at_seconds: 120 })));
        assert_eq!(decide(&with_burst, Some(10.0), &[]), Ok((1, Reason::Forecast { at_seconds: 120 })));
        // A bad ratio is named and changes nothing.
        let err = decide(&with_burst, Some(10.0), &[1.0, f64::NAN, 1.0, 1.0]).unwrap_err().to_string();
        assert!(err.contains("burst") && err.contains("NaN"), "{err}");
    }

    #[test]
    fn reactive_floor_and_no_forecast() {
        let mut p = Policy::new(config()).unwrap();
        assert_eq!(decide(&mut p, &[1.0; 6], &[1.0; 6], Some(95.0), 3), (10, Reason::ReactiveFloor));
        let mut hpa_like = Policy::new(PolicyConfig { floor_utilisation: 0.7, ..config() }).unwrap();
        assert_eq!(decide(&mut hpa_like, &[1.0; 6], &[1.0; 6], Some(70.0), 3), (10, Reason::ReactiveFloor));
        let r = p.decide(Input { forecast: None, demand_now: Some(42.0), replicas_now: 3, burst: None }, 30.0).unwrap();
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
        assert!(err(PolicyConfig { burst_quantile: Some(1.5), ..config() }).contains("burst_quantile"));
        let mut p = Policy::new(config()).unwrap();
        let bad = |p: &mut Policy, p90: &[f64], now| {
            p.decide(Input { forecast: Some((&[1.0; 3], p90)), demand_now: now, replicas_now: 1, burst: None }, 30.0)
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
