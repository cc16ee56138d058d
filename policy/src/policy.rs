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
//!    recurs at fixed minutes and is too sharp for the forecast;
//! 3. **reactive floor**: never below what current demand needs at the floor's utilisation
//!    target (1.0: exactly what it needs; 0.7: the HPA's usual headroom);
//! 4. **stabilisation**: scale down only to the highest recommendation of the last
//!    `scale_down_window`, so a dip does not drop pods that are needed again soon; with
//!    `forecast_scale_down`, also keep the current replicas the forecast needs before
//!    pods asked for now could be ready (the release the oracle makes);
//! 5. **largest change**: at most `max_change` replicas up or down per decision;
//! 6. **bounds**: `[min, max]`.
//!
//! The decision carries the [`Reason`] of the last term that changed the number.
//! [`Policy::decide_at`] is the one way the predictor and the benchmark assemble the input
//! from a forecast, a burst profile and current demand.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use prescale_core::StepGrid;

use crate::decision::Reason;
use crate::settings::{PolicyError, PolicySettings, Quantile, StepSettings};
use crate::terms::{burst_need, forecast_need, newsvendor, replicas_for};

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

/// Where the burst term's ratios come from: a profile of how demand jumps at each minute
/// of the hour (the models' `BurstProfile`).
pub trait BurstRatios {
    /// Why the profile has no ratios for a quantile or a time.
    type Error: std::error::Error;

    /// Demand(now + i + 1) / demand(now) expected at `quantile`, for the steps after `now`.
    fn ratios(&self, quantile: f64, now: DateTime<Utc>) -> Result<Vec<f64>, Self::Error>;
}

/// What one step's decision is made from, before the burst ratios are looked up.
#[derive(Debug, Clone, Copy)]
pub struct Present<'a> {
    /// The step decided.
    pub time: DateTime<Utc>,
    /// The forecast's median and 90th percentile per step ahead; `None`: no forecast.
    pub forecast: Option<(&'a [f64], &'a [f64])>,
    /// Demand observed now, requests/s.
    pub demand_now: Option<f64>,
    /// Replicas the service has now.
    pub replicas_now: u32,
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
    settings: PolicySettings,
    steps: StepSettings,
    recent: VecDeque<u32>,
    /// The newsvendor quantile per step, refilled at each decision.
    level: Vec<f64>,
    /// Scheduled floors, applied by [`Policy::decide_at`] (which knows the time).
    schedules: Vec<crate::schedule::Schedule>,
}

impl Policy {
    /// A policy with settings checked on the grid it decides on.
    pub fn new(settings: PolicySettings, grid: StepGrid) -> Result<Self, PolicyError> {
        settings.validate(grid)?;
        let steps = settings.in_steps(grid);
        Ok(Self { settings, steps, recent: VecDeque::new(), level: Vec::new(), schedules: Vec::new() })
    }

    /// The same policy with scheduled floors.
    pub fn with_schedules(mut self, schedules: Vec<crate::schedule::Schedule>) -> Self {
        self.schedules = schedules;
        self
    }

    /// The scheduled floors.
    pub fn schedules(&self) -> &[crate::schedule::Schedule] {
        &self.schedules
    }

    /// The settings.
    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }

    /// The settings in steps.
    pub fn steps(&self) -> StepSettings {
        self.steps
    }

    /// Decides from the present, looking up the burst ratios in `profile` when a burst
    /// quantile is configured. A profile without ratios for the quantile or time is an
    /// input error naming `burst`; like any bad input, it changes nothing.
    pub fn decide_at<B: BurstRatios + ?Sized>(
        &mut self,
        present: Present<'_>,
        profile: Option<&B>,
    ) -> Result<(u32, Reason), PolicyError> {
        let ratios = match (self.settings.burst_quantile, profile) {
            (Some(q), Some(profile)) => Some(
                profile
                    .ratios(q, present.time)
                    .map_err(|e| PolicyError::Input { field: "burst", reason: e.to_string() })?,
            ),
            _ => None,
        };
        let (n, reason) = self.decide(Input {
            forecast: present.forecast,
            demand_now: present.demand_now,
            replicas_now: present.replicas_now,
            burst: ratios.as_deref(),
        })?;
        // A scheduled floor is what an operator knows and the forecaster cannot: it wins
        // over every term but the service's maximum.
        Ok(match crate::schedule::floor_at(&self.schedules, present.time) {
            Some((floor, _)) if floor > n => (floor.min(self.settings.max_replicas), Reason::Scheduled),
            _ => (n, reason),
        })
    }

    /// Decides the replicas for this step and why. Bad input changes nothing.
    pub fn decide(&mut self, input: Input<'_>) -> Result<(u32, Reason), PolicyError> {
        let (c, s) = (&self.settings, self.steps);
        let ahead_seconds = |ahead: usize| (ahead as f64 * s.step_seconds).round() as u32;
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
                Some(match (c.shortfall_penalty, c.quantile) {
                    (Some(penalty), _) => {
                        newsvendor(p50, p90, penalty, &mut self.level);
                        self.level.as_slice()
                    }
                    (None, Quantile::P50) => p50,
                    (None, Quantile::P90) => p90,
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
                input.demand_now.and_then(|d| burst_need(d, ratios, s.startup, s.burst_span, c.capacity))
            }
            _ => None,
        };
        let floor = input.demand_now.map_or(0, |d| replicas_for(d / c.floor_utilisation, c.capacity));
        let (mut n, mut reason) =
            match forecast.and_then(|f| forecast_need(f, s.startup, s.lookahead, c.capacity, c.headroom)) {
                Some((n, ahead)) => (n, Reason::Forecast { at_seconds: ahead_seconds(ahead) }),
                None => (floor, Reason::Reactive),
            };
        if let Some((need, ahead)) = burst
            && need > n
        {
            (n, reason) = (need, Reason::Burst { at_seconds: ahead_seconds(ahead) });
        }
        if floor > n {
            (n, reason) = (floor, Reason::ReactiveFloor);
        }
        // The window holds raw recommendations, as the HPA's does.
        self.recent.push_back(n);
        while self.recent.len() > s.scale_down_window.max(1) {
            self.recent.pop_front();
        }
        let mut held = self.recent.iter().copied().max().unwrap_or(n);
        if c.forecast_scale_down
            && let Some((near, _)) =
                forecast.and_then(|f| forecast_need(f, 1, s.startup.saturating_sub(1), c.capacity, c.headroom))
        {
            // Pods let go now cannot be back before the startup: keep those needed sooner.
            held = held.max(near.min(input.replicas_now));
        }
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
    use std::time::Duration;

    use super::*;

    fn grid() -> StepGrid {
        StepGrid::from_secs(30).unwrap()
    }

    fn steps(n: u64) -> Duration {
        Duration::from_secs(30 * n)
    }

    fn config() -> PolicySettings {
        PolicySettings {
            capacity: 10.0,
            min_replicas: 1,
            max_replicas: 50,
            startup: steps(4),
            lookahead: steps(10),
            quantile: Quantile::P90,
            headroom: 0.0,
            floor_utilisation: 1.0,
            scale_down_window: steps(1),
            max_change: None,
            burst_quantile: None,
            burst_span: Duration::ZERO,
            forecast_scale_down: false,
            shortfall_penalty: None,
            objective: None,
        }
    }

    fn policy(c: PolicySettings) -> Policy {
        Policy::new(c, grid()).unwrap()
    }

    fn decide(p: &mut Policy, p50: &[f64], p90: &[f64], now: Option<f64>, replicas: u32) -> (u32, Reason) {
        p.decide(Input { forecast: Some((p50, p90)), demand_now: now, replicas_now: replicas, burst: None }).unwrap()
    }

    #[test]
    fn forecast_term_covers_the_quantile_after_startup_only() {
        let mut p = policy(config());
        // A spike 2 steps ahead is before startup (4 steps): pods started now cannot serve it.
        let p90 = [10.0, 300.0, 10.0, 55.0, 41.0, 20.0];
        let p50 = [5.0; 6];
        assert_eq!(decide(&mut p, &p50, &p90, Some(10.0), 3), (6, Reason::Forecast { at_seconds: 120 }));
        let mut median = policy(PolicySettings { quantile: Quantile::P50, ..config() });
        assert_eq!(decide(&mut median, &p50, &p90, Some(1.0), 3).0, 1);
        let mut roomy = policy(PolicySettings { headroom: 0.2, ..config() });
        assert_eq!(decide(&mut roomy, &p50, &p90, Some(1.0), 3).0, 7, "55 * 1.2 = 66 needs 7");
        // The newsvendor rule at penalty 9 covers the p90; at 1, the median.
        let mut nine = policy(PolicySettings { shortfall_penalty: Some(9.0), quantile: Quantile::P50, ..config() });
        assert_eq!(decide(&mut nine, &p50, &p90, Some(10.0), 3).0, 6);
        let mut one = policy(PolicySettings { shortfall_penalty: Some(1.0), ..config() });
        assert_eq!(decide(&mut one, &p50, &p90, Some(1.0), 3).0, 1);
        let mut near = policy(PolicySettings { lookahead: steps(5), ..config() });
        let p90 = [0.0, 0.0, 0.0, 20.0, 41.0, 90.0];
        assert_eq!(
            decide(&mut near, &p50, &p90, None, 3),
            (5, Reason::Forecast { at_seconds: 150 }),
            "6 steps is beyond"
        );
    }

    /// A profile answering with fixed ratios, or refusing a quantile.
    struct Fixed(Vec<f64>);

    #[derive(Debug, thiserror::Error)]
    #[error("no ratios at quantile {0}")]
    struct NoLevel(f64);

    impl BurstRatios for Fixed {
        type Error = NoLevel;
        fn ratios(&self, quantile: f64, _now: DateTime<Utc>) -> Result<Vec<f64>, NoLevel> {
            if quantile == 0.9 { Ok(self.0.clone()) } else { Err(NoLevel(quantile)) }
        }
    }

    #[test]
    fn burst_term_covers_the_profiles_jump_from_startup_over_its_span() {
        let with_burst = PolicySettings { burst_quantile: Some(0.9), ..config() };
        let flat = [10.0; 6];
        // A 5x jump 2 steps ahead (before the 4-step startup), 3x at 4 steps, 4x at 5.
        let ratios = [1.0, 5.0, 1.0, 3.0, 4.0, 1.0];
        let decide = |config: &PolicySettings, demand_now, ratios: &[f64]| {
            let present =
                Present { time: DateTime::UNIX_EPOCH, forecast: Some((&flat, &flat)), demand_now, replicas_now: 1 };
            policy(config.clone()).decide_at(present, Some(&Fixed(ratios.to_vec())))
        };
        assert_eq!(decide(&with_burst, Some(10.0), &ratios), Ok((3, Reason::Burst { at_seconds: 120 })));
        let wider = PolicySettings { burst_span: steps(1), ..with_burst.clone() };
        assert_eq!(decide(&wider, Some(10.0), &ratios), Ok((4, Reason::Burst { at_seconds: 150 })));
        // A forecast needing more wins; without current demand or a burst quantile there
        // is no burst term.
        let roomy = PolicySettings { headroom: 4.0, ..with_burst.clone() };
        assert_eq!(decide(&roomy, Some(10.0), &ratios), Ok((5, Reason::Forecast { at_seconds: 120 })));
        assert_eq!(decide(&with_burst, None, &ratios), Ok((1, Reason::Forecast { at_seconds: 120 })));
        assert_eq!(decide(&config(), Some(10.0), &ratios), Ok((1, Reason::Forecast { at_seconds: 120 })));
        assert_eq!(decide(&with_burst, Some(10.0), &[]), Ok((1, Reason::Forecast { at_seconds: 120 })));
        // A bad ratio is named and changes nothing.
        let err = decide(&with_burst, Some(10.0), &[1.0, f64::NAN, 1.0, 1.0]).unwrap_err().to_string();
        assert!(err.contains("burst") && err.contains("NaN"), "{err}");
        // A quantile the profile does not hold is named too.
        let other = PolicySettings { burst_quantile: Some(0.8), ..config() };
        let err = decide(&other, Some(10.0), &ratios).unwrap_err().to_string();
        assert!(err.contains("burst") && err.contains("0.8"), "{err}");
    }

    #[test]
    fn reactive_floor_and_no_forecast() {
        let mut p = policy(config());
        assert_eq!(decide(&mut p, &[1.0; 6], &[1.0; 6], Some(95.0), 3), (10, Reason::ReactiveFloor));
        let mut hpa_like = policy(PolicySettings { floor_utilisation: 0.7, ..config() });
        assert_eq!(decide(&mut hpa_like, &[1.0; 6], &[1.0; 6], Some(70.0), 3), (10, Reason::ReactiveFloor));
        let r = p.decide(Input { forecast: None, demand_now: Some(42.0), replicas_now: 3, burst: None }).unwrap();
        assert_eq!(r, (5, Reason::Reactive));
    }

    #[test]
    fn stabilisation_holds_scale_down_for_the_window() {
        let mut p = policy(PolicySettings { scale_down_window: steps(3), ..config() });
        assert_eq!(decide(&mut p, &[80.0; 6], &[80.0; 6], None, 1).0, 8);
        assert_eq!(decide(&mut p, &[20.0; 6], &[20.0; 6], None, 8), (8, Reason::Stabilised));
        assert_eq!(decide(&mut p, &[20.0; 6], &[20.0; 6], None, 8), (8, Reason::Stabilised));
        assert_eq!(decide(&mut p, &[20.0; 6], &[20.0; 6], None, 8).0, 2, "the 8 left the window");
        assert_eq!(decide(&mut p, &[90.0; 6], &[90.0; 6], None, 2).0, 9, "scale-up is never held");
    }

    #[test]
    fn forecast_scale_down_keeps_only_what_is_needed_before_new_pods_are_ready() {
        let mut p = policy(PolicySettings { forecast_scale_down: true, scale_down_window: Duration::ZERO, ..config() });
        // Startup 4 steps: steps 1-3 ahead need 6, 4 and 2 replicas; from step 4 on, 1.
        let p90 = [60.0, 40.0, 20.0, 10.0, 10.0, 10.0];
        assert_eq!(decide(&mut p, &p90, &p90, None, 8), (6, Reason::Stabilised), "keeps 6 of the 8");
        assert_eq!(decide(&mut p, &p90, &p90, None, 3), (3, Reason::Stabilised), "never adds pods it cannot use");
        let later = [0.0, 0.0, 0.0, 10.0, 10.0, 10.0];
        assert_eq!(decide(&mut p, &later, &later, None, 8).0, 1, "nothing needed before startup: released at once");
        let mut held = policy(PolicySettings { scale_down_window: Duration::ZERO, ..config() });
        assert_eq!(decide(&mut held, &p90, &p90, None, 8).0, 1, "without it, the window alone decides");
    }

    #[test]
    fn largest_change_and_bounds() {
        let mut p = policy(PolicySettings { max_change: Some(2), ..config() });
        assert_eq!(decide(&mut p, &[80.0; 6], &[80.0; 6], None, 3), (5, Reason::RateLimited));
        assert_eq!(decide(&mut p, &[0.0; 6], &[0.0; 6], None, 5), (3, Reason::RateLimited));
        let mut b = policy(PolicySettings { min_replicas: 2, max_replicas: 4, ..config() });
        assert_eq!(decide(&mut b, &[0.0; 6], &[0.0; 6], Some(0.0), 3), (2, Reason::MinBound));
        assert_eq!(decide(&mut b, &[500.0; 6], &[500.0; 6], None, 3), (4, Reason::MaxBound));
    }

    #[test]
    fn bad_settings_and_inputs_are_named() {
        let err = |c: PolicySettings| Policy::new(c, grid()).unwrap_err().to_string();
        assert!(err(PolicySettings { capacity: 0.0, ..config() }).contains("capacity"));
        assert!(err(PolicySettings { capacity: f64::NAN, ..config() }).contains("capacity"));
        assert!(err(PolicySettings { min_replicas: 5, max_replicas: 2, ..config() }).contains("above max_replicas"));
        assert!(err(PolicySettings { headroom: -0.1, ..config() }).contains("headroom"));
        assert!(err(PolicySettings { lookahead: steps(2), ..config() }).contains("shorter than the pod startup"));
        assert!(err(PolicySettings { floor_utilisation: 0.0, ..config() }).contains("floor_utilisation"));
        assert!(err(PolicySettings { burst_quantile: Some(1.5), ..config() }).contains("burst_quantile"));
        assert!(err(PolicySettings { objective: Some(1.0), ..config() }).contains("objective"));
        assert!(err(PolicySettings { shortfall_penalty: Some(0.0), ..config() }).contains("shortfall_penalty"));
        assert!(err(PolicySettings { objective: Some(-0.1), ..config() }).contains("objective"));
        let mut p = policy(config());
        let bad = |p: &mut Policy, p90: &[f64], now| {
            p.decide(Input { forecast: Some((&[1.0; 3], p90)), demand_now: now, replicas_now: 1, burst: None })
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
    fn durations_become_steps_of_the_grid() {
        let s = config().in_steps(StepGrid::from_secs(60).unwrap());
        assert_eq!((s.startup, s.lookahead, s.scale_down_window, s.burst_span), (2, 5, 1, 0));
        assert_eq!(s.step_seconds, 60.0);
    }
}
