//! The policy's settings: one form, in durations, for configs, tuning and reports; turned
//! into steps on the grid a policy runs on.

use std::time::Duration;

use prescale_core::StepGrid;
use serde::{Deserialize, Serialize};

/// Which forecast quantile the policy covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantile {
    /// The median.
    P50,
    /// The 90th percentile.
    P90,
}

/// The policy's settings for one service; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// Requests per second one replica serves within its latency objective.
    pub capacity: f64,
    /// Fewest replicas.
    pub min_replicas: u32,
    /// Most replicas.
    pub max_replicas: u32,
    /// Pod startup: a pod asked for now serves from then on.
    #[serde(with = "humantime_serde")]
    pub startup: Duration,
    /// How far ahead the forecast term looks (clamped to the forecast's length); a
    /// longer lookahead starts pods earlier for peaks further away, at a cost.
    #[serde(with = "humantime_serde")]
    pub lookahead: Duration,
    /// The quantile to cover.
    pub quantile: Quantile,
    /// Extra share of demand to provision for (0.1 = 10% more).
    pub headroom: f64,
    /// Utilisation the reactive floor provisions current demand at (0 to 1; 1 covers it
    /// exactly; 0.7 is the HPA's usual target).
    pub floor_utilisation: f64,
    /// Scale-down stabilisation: scale down only to the highest recommendation of this
    /// window (0: at once).
    #[serde(with = "humantime_serde")]
    pub scale_down_window: Duration,
    /// Largest change of replicas per decision; unset: unlimited.
    pub max_change: Option<u32>,
    /// The burst profile's quantile to cover (one it holds: 0.5, 0.75 or 0.9), when the
    /// model carries a profile; unset: no burst term.
    pub burst_quantile: Option<f64>,
    /// How long after the pod startup the burst term also covers (a jump whose minute
    /// wanders between hours).
    #[serde(with = "humantime_serde")]
    pub burst_span: Duration,
    /// Scale down by the forecast: keep the current replicas the forecast needs before
    /// pods asked for now could be ready, and release the rest at once (with a
    /// stabilisation window of 0, capacity goes as soon as the next startup allows, as
    /// the oracle's does).
    pub forecast_scale_down: bool,
    /// The newsvendor rule instead of `quantile`: a replica-step short costs this many
    /// times a provisioned one, so the forecast term covers the quantile at
    /// `penalty / (penalty + 1)` (see `terms::newsvendor`); unset: `quantile`.
    pub shortfall_penalty: Option<f64>,
    /// The largest share of under-provisioned steps the service accepts (0.001: 0.1%).
    /// When set and the service's model carries settings tuned on its validation part,
    /// the cheapest of them meeting it there sets the quantile, headroom, lookahead,
    /// reactive floor, scale-down and burst term (the safest when none meets it).
    pub objective: Option<f64>,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            capacity: 50.0,
            min_replicas: 1,
            max_replicas: 50,
            startup: Duration::from_secs(120),
            lookahead: Duration::from_secs(600),
            quantile: Quantile::P90,
            headroom: 0.1,
            floor_utilisation: 0.8,
            scale_down_window: Duration::from_secs(300),
            max_change: None,
            burst_quantile: None,
            burst_span: Duration::ZERO,
            forecast_scale_down: false,
            shortfall_penalty: None,
            objective: None,
        }
    }
}

/// The settings' durations in whole steps of a grid (rounded up), as the policy runs them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSettings {
    /// The step length, seconds.
    pub step_seconds: f64,
    /// Pod startup.
    pub startup: usize,
    /// Last step ahead the forecast term covers.
    pub lookahead: usize,
    /// The stabilisation window.
    pub scale_down_window: usize,
    /// Steps after the startup the burst term covers.
    pub burst_span: usize,
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

impl PolicySettings {
    /// The knobs tuning sets, in words, durations in steps of `grid` (for the frontier
    /// file and the predictor's `policy_info`): e.g. `quantile=p90 headroom=0.1
    /// lookahead=20 window=10 forecast_scale_down=false floor=0.8 burst=none`.
    pub fn describe(&self, grid: StepGrid) -> String {
        let st = self.in_steps(grid);
        format!(
            "quantile={} headroom={} lookahead={} window={} forecast_scale_down={} floor={} burst={}",
            self.shortfall_penalty
                .map_or(format!("{:?}", self.quantile), |p| format!("newsvendor@{:.2}", p / (p + 1.0))),
            self.headroom,
            st.lookahead,
            st.scale_down_window,
            self.forecast_scale_down,
            self.floor_utilisation,
            self.burst_quantile.map_or("none".to_owned(), |q| format!("{q}+{}", st.burst_span))
        )
        .to_lowercase()
    }

    /// The durations in steps of `grid`.
    pub fn in_steps(&self, grid: StepGrid) -> StepSettings {
        StepSettings {
            step_seconds: grid.seconds(),
            startup: grid.steps_in(self.startup),
            lookahead: grid.steps_in(self.lookahead),
            scale_down_window: grid.steps_in(self.scale_down_window),
            burst_span: grid.steps_in(self.burst_span),
        }
    }

    /// Checks the settings on a grid, naming the first bad one.
    pub fn validate(&self, grid: StepGrid) -> Result<(), PolicyError> {
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
        if let Some(p) = self.shortfall_penalty
            && !(p.is_finite() && p > 0.0)
        {
            return bad("shortfall_penalty", format!("{p} is not a positive multiple of a replica's cost"));
        }
        if let Some(o) = self.objective
            && !(0.0..1.0).contains(&o)
        {
            return bad("objective", format!("{o} is not a share of under-provisioned time in [0, 1)"));
        }
        let steps = self.in_steps(grid);
        if steps.lookahead < steps.startup {
            return bad(
                "lookahead",
                format!(
                    "{} ({} steps) is shorter than the pod startup of {} steps",
                    humantime::format_duration(self.lookahead),
                    steps.lookahead,
                    steps.startup
                ),
            );
        }
        if self.max_change == Some(0) {
            return bad("max_change", "0 would never change anything".into());
        }
        Ok(())
    }
}
