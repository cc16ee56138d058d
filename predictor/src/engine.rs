//! The step loop: read the window, forecast, decide, publish.
//!
//! Each service keeps its recent steps (the collector's features, from the same catalog
//! the training data came from) in a small [`Window`]: at start, and after any step
//! Prometheus could not answer, the missing stretch is read with range queries; otherwise
//! one instant query per feature, for every service at once, adds the new step. The
//! window becomes the model's input series as the trainer builds it from the collector's
//! Parquet. Services served by the same model are forecast together, a forward pass per
//! [`LIVE_BATCH`] of them, into buffers reused from step to step.
//! Without a model, or with too little history for its context, the decision is
//! reactive (current demand); if Prometheus is unreachable nothing is published, and the
//! last decision is served until it goes stale.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use prescale_core::prometheus::source::{QueryError, Source};
use prescale_core::{Feature, ServiceId, StepGrid};
use prescale_models::burst::BurstProfile;
use prescale_models::fleet;
use prescale_models::forecaster::{Calibration, Live};
use prescale_models::preprocess::Covariates;
use prescale_models::series::Series;
use prescale_policy::{Decision, ForecastView, Menu, Policy, PolicyError, Present, Reason, replicas_for};

use crate::config::{Planner, ServicePlan};
use crate::hpa_view::HpaView;
use crate::metrics::{ForecastLabels, ModelLabels, PolicyLabels, ReasonLabels, ServiceLabels};
use crate::model::{Loaded, Models, Serving};
use crate::state::{Served, Shared};
use crate::window::Window;

/// Services forecast in one forward pass. Their input series are built for one batch at a
/// time, so the step's transient memory is that of one batch, whatever the fleet's size.
pub const LIVE_BATCH: usize = 256;

#[derive(Debug)]
struct ServiceRun {
    plan: ServicePlan,
    policy: Policy,
    /// The recent steps.
    window: Window,
    /// `namespace/name`, the model input's name.
    name: String,
    /// (target step, p50 forecast for it) of forecasts not yet due, for the error gauge.
    pending: VecDeque<(DateTime<Utc>, f64)>,
    labels: ServiceLabels,
    /// The model version and forecaster that served it last (its `model_info` series).
    last_model: Option<(String, &'static str)>,
    /// Forecast points exported (per quantile), to take them out of `/metrics` when the
    /// service goes.
    exported_points: usize,
    /// The model version the policy's settings were last chosen for (with an objective:
    /// from that version's tuned menu).
    tuned_for: Option<String>,
    /// Whether the policy runs a setting chosen for the objective (else the configured).
    chosen: bool,
    /// Its `policy_info` series.
    policy_info: Option<PolicyLabels>,
    /// What its HPA was last told and acted on, for the tolerance.
    hpa: HpaView,
}

/// Takes a gone service's series out of `/metrics`.
fn forget(run: &ServiceRun, grid: StepGrid, m: &crate::metrics::Metrics) {
    let (namespace, service) = (run.labels.namespace.clone(), run.labels.service.clone());
    m.forget(&run.labels);
    for r in Reason::ALL {
        m.reason.remove(&ReasonLabels { namespace: namespace.clone(), service: service.clone(), reason: r.label() });
    }
    if let Some(labels) = &run.policy_info {
        m.policy_info.remove(labels);
    }
    if let Some((version, forecaster)) = &run.last_model {
        m.model_info.remove(&ModelLabels {
            namespace: namespace.clone(),
            service: service.clone(),
            version: version.clone(),
            forecaster: (*forecaster).to_owned(),
        });
    }
    for k in 1..=run.exported_points {
        let horizon_seconds = (k as f64 * grid.seconds()).round() as u32;
        for quantile in crate::metrics::QUANTILES {
            m.forecast.remove(&ForecastLabels {
                namespace: namespace.clone(),
                service: service.clone(),
                quantile,
                horizon_seconds,
            });
        }
    }
}

/// The plan's scheduled floors (checked when the config was built, so none is refused).
fn schedules(plan: &ServicePlan) -> Vec<prescale_policy::Schedule> {
    plan.schedules.iter().filter_map(|s| prescale_policy::Schedule::new(s).ok()).collect()
}

fn new_run(plan: ServicePlan, grid: StepGrid, history_steps: usize) -> Result<ServiceRun, PolicyError> {
    let policy = Policy::new(plan.policy.clone(), grid)?.with_schedules(schedules(&plan));
    let labels = ServiceLabels { namespace: plan.id.namespace().to_owned(), service: plan.id.name().to_owned() };
    Ok(ServiceRun {
        name: plan.id.to_string(),
        plan,
        policy,
        window: Window::new(grid, history_steps),
        pending: VecDeque::new(),
        labels,
        last_model: None,
        exported_points: 0,
        tuned_for: None,
        chosen: false,
        policy_info: None,
        hpa: HpaView::default(),
    })
}

/// The live loop's state.
#[derive(Debug)]
pub struct Engine {
    grid: StepGrid,
    history_steps: usize,
    source: Source,
    models: Arc<Models>,
    shared: Arc<Shared>,
    runs: Vec<ServiceRun>,
    last_step: Option<DateTime<Utc>>,
    /// When set, the services follow the inventory each step (ScaledObjects come and go).
    planner: Option<Planner>,
    /// Input series and covariates of one batch, refilled for every batch of every step.
    inputs: Vec<(Series, Covariates)>,
    /// The input series of a service a baseline serves, refilled for each.
    baseline_input: Series,
    /// The HPA's tolerance KEDA's value is made past (0: decisions as they are).
    hpa_tolerance: f64,
}

impl Engine {
    /// An engine for the planned services.
    pub fn new(
        grid: StepGrid,
        history_steps: usize,
        source: Source,
        models: Arc<Models>,
        shared: Arc<Shared>,
        plans: Vec<ServicePlan>,
    ) -> Result<Self, PolicyError> {
        let history_steps = history_steps.max(2);
        let runs = plans
            .into_iter()
            .map(|plan| new_run(plan, grid, history_steps))
            .collect::<Result<Vec<_>, PolicyError>>()?;
        Ok(Self {
            grid,
            history_steps,
            source,
            models,
            shared,
            runs,
            last_step: None,
            planner: None,
            inputs: Vec::new(),
            baseline_input: blank_input(grid).0,
            hpa_tolerance: 0.0,
        })
    }

    /// The engine, its services following the source's inventory at every step through
    /// `planner` (instead of the services it was built with).
    pub fn following(self, planner: Planner) -> Self {
        Self { planner: Some(planner), ..self }
    }

    /// The engine, telling KEDA counts past the HPA's `tolerance` when a decision rises
    /// within it (see `hpa_tolerance` in the config).
    pub fn with_hpa_tolerance(self, tolerance: f64) -> Self {
        Self { hpa_tolerance: tolerance, ..self }
    }

    /// Brings the services in line with the inventory at `t`: new ones get a run (and a
    /// model folder), gone ones are dropped, changed settings rebuild the policy (the
    /// window is kept). A service whose settings are refused is logged and left out.
    async fn follow_inventory(&mut self, t: DateTime<Utc>) -> Result<(), QueryError> {
        let Some(planner) = &self.planner else { return Ok(()) };
        let inventory = self.source.inventory_at(t).await?;
        let m = &self.shared.metrics;
        let mut refused = inventory.refused.len() + inventory.invalid;
        let mut plans = Vec::with_capacity(inventory.entries.len());
        for entry in &inventory.entries {
            match planner.plan(&entry.id, &entry.overrides) {
                Ok(plan) => plans.push(plan),
                Err(reason) => {
                    refused += 1;
                    tracing::warn!(service = %entry.id, reason, "settings refused; the service is not forecast");
                }
            }
        }
        let mut old: HashMap<ServiceId, ServiceRun> =
            std::mem::take(&mut self.runs).into_iter().map(|r| (r.plan.id.clone(), r)).collect();
        for plan in plans {
            let run = match old.remove(&plan.id) {
                Some(run) if run.plan == plan => run,
                Some(mut run) => match Policy::new(plan.policy.clone(), self.grid) {
                    Ok(policy) => {
                        run.policy = policy.with_schedules(schedules(&plan));
                        run.chosen = false;
                        run.plan = plan;
                        // Chosen again from the model's menu for the new settings.
                        run.tuned_for = None;
                        run
                    }
                    Err(e) => {
                        refused += 1;
                        tracing::warn!(service = %plan.id, error = %e, "settings refused; the service is not forecast");
                        continue;
                    }
                },
                None => match new_run(plan, self.grid, self.history_steps) {
                    Ok(run) => run,
                    Err(e) => {
                        refused += 1;
                        tracing::warn!(error = %e, "settings refused; the service is not forecast");
                        continue;
                    }
                },
            };
            self.runs.push(run);
        }
        for (gone, run) in &old {
            tracing::info!(service = %gone, "no longer in the inventory; not forecast any more");
            forget(run, self.grid, m);
        }
        let locations: Vec<_> = self.runs.iter().map(|r| (r.plan.id.clone(), r.plan.models.clone())).collect();
        match self.models.sync(&locations).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(opened = n, "model folders of new services opened; loaded at the next reload"),
            Err(e) => tracing::warn!(error = %e, "opening model folders failed; retried next step"),
        }
        self.shared.set_services(self.runs.iter().map(|r| r.plan.id.clone()));
        m.services.set(self.runs.len() as i64);
        m.services_refused.set(refused as i64);
        Ok(())
    }

    /// Computes and publishes the decisions of step `t`. On error (Prometheus
    /// unreachable) nothing is published.
    pub async fn step(&mut self, t: DateTime<Utc>) -> Result<(), QueryError> {
        let started = Instant::now();
        if let Err(e) = self.follow_inventory(t).await {
            self.shared.metrics.fallback("prometheus_unreachable");
            tracing::warn!(step = %t, error = %e, "Prometheus unreachable; serving the last decisions until they go stale");
            return Err(e);
        }
        let ids: Vec<ServiceId> = self.runs.iter().map(|r| r.plan.id.clone()).collect();
        let oldest = t - self.grid.delta() * (self.history_steps as i32 - 1);
        let rows = match self.last_step {
            // In step: one instant query per feature, for every service at once.
            Some(last) if last + self.grid.delta() == t => self.source.rows_at(t, &ids).await,
            // Start, or back after a gap: read what is missing with range queries.
            last => {
                let from = last.map_or(oldest, |l| (l + self.grid.delta()).max(oldest));
                self.source.rows_between(from, t, self.grid, &ids).await
            }
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                self.shared.metrics.fallback("prometheus_unreachable");
                tracing::warn!(step = %t, error = %e, "Prometheus unreachable; serving the last decisions until they go stale");
                return Err(e);
            }
        };
        // One look-up of the model in use per service and step: the forecast and the burst
        // profile come from the same version even if a reload swaps it meanwhile. The
        // window keeps the other features as far back as the model's context.
        let loaded: Vec<Option<Arc<Loaded>>> = self.runs.iter().map(|r| self.models.get(&r.plan.id)).collect();
        for (run, model) in self.runs.iter_mut().zip(&loaded) {
            if let Some(model) = model {
                run.window.keep_covariates(model.manifest.params.window.context);
            }
        }
        // Rows come back in the order of `ids` (step by step for a range): place them by
        // index, not by searching the runs for each one.
        let at: HashMap<&ServiceId, usize> = ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
        for row in rows.iter().filter(|r| r.timestamp >= oldest) {
            if let Some(&i) = at.get(&row.service)
                && let Some(run) = self.runs.get_mut(i)
            {
                run.window.push(row);
            }
        }
        drop(rows);
        let forecasts = self.forecast_all(&loaded, t);
        let shadow = self.shared.shadow();
        let mut served = Vec::with_capacity(self.runs.len());
        for ((run, model), forecast) in self.runs.iter_mut().zip(&loaded).zip(forecasts) {
            let s = decide(run, model.as_deref(), forecast, &self.shared, (self.grid, self.hpa_tolerance), t, shadow);
            served.push((run.plan.id.clone(), s));
        }
        self.shared.publish(served);
        self.last_step = Some(t);
        let m = &self.shared.metrics;
        let windows: usize = self.runs.iter().map(|r| r.window.bytes()).sum();
        let inputs: usize =
            self.inputs.iter().map(|(s, c)| s.values.capacity() * 16 + c.values.len() * 8 + s.name.capacity()).sum();
        m.window_bytes.set((windows + inputs) as i64);
        m.step_seconds.observe(started.elapsed().as_secs_f64());
        m.last_step.set(t.timestamp_millis() as f64 / 1000.0);
        Ok(())
    }

    /// Every service's forecast at `t`, or `None` (counted as a fallback) when it has no
    /// model, too little history or its forecast failed. Services served by the same
    /// transformer are forecast together, [`LIVE_BATCH`] per forward pass; a service a
    /// fleet model serves with a baseline is forecast by that baseline from its window.
    fn forecast_all(&mut self, loaded: &[Option<Arc<Loaded>>], t: DateTime<Utc>) -> Vec<Option<ForecastView>> {
        let m = &self.shared.metrics;
        let mut out: Vec<Option<ForecastView>> = vec![None; self.runs.len()];
        let mut groups: HashMap<usize, Group> = HashMap::new();
        let mut needed = self.history_steps;
        for (i, (run, model)) in self.runs.iter_mut().zip(loaded).enumerate() {
            let Some(model) = model else {
                m.fallback_for(&run.labels, "no_model");
                continue;
            };
            let serving = model.serving(&run.name);
            note_model(run, model, serving.name(), m);
            let w = &run.window;
            let params = &model.manifest.params;
            let context = params.window.context;
            if w.end() != Some(t) || w.at(t, Feature::RequestsPerSecond).is_none() {
                m.fallback_for(&run.labels, "short_history");
                continue;
            }
            let calib = match serving {
                Serving::Baseline(fit) => {
                    // A baseline reads further back than the transformer: the window keeps
                    // what it needs, and a restart reads that much.
                    let history = fit.model.history_steps(params.window.horizon);
                    run.window.keep_history(history);
                    needed = needed.max(run.window.capacity());
                    let series = &mut self.baseline_input;
                    run.window.fill_series(&run.name, series);
                    let f = fit.forecast(series, &[series.len() - 1]);
                    out[i] = Some(view(self.grid, model, serving.name(), &f));
                    continue;
                }
                _ if w.len() < context => {
                    m.fallback_for(&run.labels, "short_history");
                    continue;
                }
                Serving::Own => Calib::Model,
                Serving::Fleet(c) => Calib::Own(c.clone()),
                Serving::Cold => Calib::Cold,
            };
            groups.entry(Arc::as_ptr(model) as usize).or_insert_with(|| (model.clone(), Vec::new())).1.push((i, calib));
        }
        self.history_steps = needed;
        for (model, members) in groups.into_values() {
            let forecasts = self.forecast_group(&model, &members);
            for ((i, _), f) in members.into_iter().zip(forecasts) {
                out[i] = f;
            }
        }
        out
    }

    /// The forecasts of the services `members` (indices into the runs, with the
    /// calibration each is forecast with), all served by `model`'s transformer.
    fn forecast_group(&mut self, model: &Loaded, members: &[(usize, Calib)]) -> Vec<Option<ForecastView>> {
        let m = &self.shared.metrics;
        let params = &model.manifest.params;
        let context = params.window.context;
        let covariates = params.preprocess.is_some();
        let (net, scratch) = match (model.model.lock(), model.scratch.lock()) {
            (Ok(net), Ok(scratch)) => (net, scratch),
            _ => {
                tracing::warn!(model = %model.manifest.version, "the model's lock is poisoned; reactive decisions");
                members.iter().for_each(|(i, _)| m.fallback_for(&self.runs[*i].labels, "forecast_failed"));
                return vec![None; members.len()];
            }
        };
        let mut scratch = scratch;
        let mut out = Vec::with_capacity(members.len());
        let mut cold = Vec::new();
        for chunk in members.chunks(LIVE_BATCH) {
            while self.inputs.len() < chunk.len() {
                self.inputs.push(blank_input(self.grid));
            }
            cold.clear();
            for ((i, calib), (series, cov)) in chunk.iter().zip(self.inputs.iter_mut()) {
                let run = &self.runs[*i];
                run.window.fill_series(&run.name, series);
                if covariates {
                    run.window.fill_covariates(context, cov);
                }
                // A service the fleet model has no calibration for: its own level floor
                // (a hundredth of its mean demand), the fleet's widened p90 shift.
                cold.push(matches!(calib, Calib::Cold).then(|| Calibration {
                    level_floor: fleet::level_floor(&series.values),
                    p90_shift: params.p90_shift.clone(),
                }));
            }
            let inputs: Vec<Live> = self.inputs[..chunk.len()]
                .iter()
                .zip(chunk)
                .zip(&cold)
                .map(|(((series, cov), (_, calib)), cold)| Live {
                    series,
                    covariates: covariates.then_some(cov),
                    calibration: match calib {
                        Calib::Model => None,
                        Calib::Own(c) => Some(c),
                        Calib::Cold => cold.as_ref(),
                    },
                })
                .collect();
            for ((i, calib), result) in chunk.iter().zip(net.forecast_last(&inputs, &mut scratch)) {
                let name = if matches!(calib, Calib::Cold) { "transformer_cold" } else { "transformer" };
                out.push(match result {
                    Ok(f) => Some(view(self.grid, model, name, &f)),
                    Err(e) => {
                        tracing::warn!(service = %self.runs[*i].plan.id, error = %e, "forecast failed; reactive decision");
                        m.fallback_for(&self.runs[*i].labels, "forecast_failed");
                        None
                    }
                });
            }
        }
        out
    }
}

/// Services forecast by one loaded transformer: the model, and each member's index into
/// the runs with its calibration.
type Group = (Arc<Loaded>, Vec<(usize, Calib)>);

/// The calibration a service is forecast with by a transformer.
#[derive(Debug, Clone)]
enum Calib {
    /// The model's own (a per-service model).
    Model,
    /// The service's, from a fleet model's entry.
    Own(Calibration),
    /// None of its own yet: its level, the fleet's widened p90.
    Cold,
}

/// An empty input series and covariates, filled for each forecast.
fn blank_input(grid: StepGrid) -> (Series, Covariates) {
    let series =
        Series { name: String::new(), grid, start: DateTime::UNIX_EPOCH, values: Vec::new(), covariates: None };
    (series, Covariates { names: Vec::new(), values: ndarray::Array2::zeros((0, 0)) })
}

/// A forecast at the last step as decisions and the API show it.
fn view(grid: StepGrid, model: &Loaded, forecaster: &str, f: &prescale_models::scores::Forecasts) -> ForecastView {
    ForecastView {
        step_seconds: grid.seconds(),
        p50: f.p50.row(0).to_vec(),
        p90: f.p90.row(0).to_vec(),
        model_version: model.manifest.version.clone(),
        forecaster: forecaster.to_owned(),
    }
}

/// One service's decision at `t`, with every metric it moves.
fn decide(
    run: &mut ServiceRun,
    loaded: Option<&Loaded>,
    forecast: Option<ForecastView>,
    shared: &Shared,
    (grid, hpa_tolerance): (StepGrid, f64),
    t: DateTime<Utc>,
    shadow: bool,
) -> Served {
    let m = &shared.metrics;
    let demand_now = run.window.at(t, Feature::RequestsPerSecond);
    let ready_now = run.window.at(t, Feature::ReplicasReady).map(|r| r.round().max(0.0) as u32);
    if let Some(d) = demand_now {
        m.observed.get_or_create(&run.labels).set(d);
    }
    // The forecast that was made one horizon ago for this step.
    while run.pending.front().is_some_and(|(due, _)| *due < t) {
        run.pending.pop_front();
    }
    if run.pending.front().is_some_and(|(due, _)| *due == t)
        && let (Some((_, p50)), Some(d)) = (run.pending.pop_front(), demand_now)
    {
        m.forecast_error.get_or_create(&run.labels).set((p50 - d).abs());
    }

    tune(run, loaded, grid, m);
    note_policy(run, grid, m);
    let present = Present {
        time: t,
        forecast: forecast.as_ref().map(|f| (f.p50.as_slice(), f.p90.as_slice())),
        demand_now,
        replicas_now: ready_now.unwrap_or(run.plan.policy.min_replicas),
    };
    let profile = loaded.and_then(|l| burst_profile(l, &run.name));
    // A profile without ratios for this quantile costs the burst term only; an input the
    // policy refuses otherwise costs the forecast (a reactive decision).
    let decided = run.policy.decide_at(present, profile).or_else(|e| {
        tracing::warn!(service = %run.plan.id, error = %e, "the policy refused its input");
        run.policy.decide_at(present, None::<&BurstProfile>)
    });
    let (desired, reason) = decided.unwrap_or_else(|e| {
        tracing::warn!(service = %run.plan.id, error = %e, "reactive decision");
        run.policy
            .decide_at(Present { forecast: None, ..present }, None::<&BurstProfile>)
            .unwrap_or((run.plan.policy.min_replicas, Reason::Reactive))
    });
    if let Some(f) = &forecast {
        if let Some(last) = f.p50.last() {
            run.pending.push_back((t + grid.delta() * f.p50.len() as i32, *last));
        }
        run.exported_points = run.exported_points.max(f.p50.len());
        for (k, (p50, p90)) in f.p50.iter().zip(&f.p90).enumerate() {
            let horizon_seconds = ((k + 1) as f64 * grid.seconds()).round() as u32;
            for (quantile, v) in crate::metrics::QUANTILES.into_iter().zip([p50, p90]) {
                let labels = ForecastLabels {
                    namespace: run.labels.namespace.clone(),
                    service: run.labels.service.clone(),
                    quantile,
                    horizon_seconds,
                };
                m.forecast.get_or_create(&labels).set(*v);
            }
        }
    }
    for r in Reason::ALL {
        let labels = ReasonLabels {
            namespace: run.labels.namespace.clone(),
            service: run.labels.service.clone(),
            reason: r.label(),
        };
        m.reason.get_or_create(&labels).set(i64::from(r.label() == reason.label()));
    }
    // KEDA is told a rise the HPA's tolerance would swallow as just past it, judged
    // against what the HPA last acted on while its pods may still start (twice the
    // startup), the ready count after.
    let replicas = match (shadow, ready_now) {
        (true, _) => ready_now.unwrap_or(desired),
        (false, Some(ready)) if hpa_tolerance > 0.0 => {
            let settle = TimeDelta::from_std(run.plan.policy.startup.saturating_mul(2)).unwrap_or(TimeDelta::MAX);
            run.hpa.tell(desired, ready, t, settle, hpa_tolerance)
        }
        (false, _) => desired,
    };
    let reactive_replicas = demand_now.map(|d| replicas_for(d, run.plan.policy.capacity));
    if let Some(n) = reactive_replicas {
        m.reactive_replicas.get_or_create(&run.labels).set(f64::from(n));
    }
    if let Some(n) = ready_now {
        m.ready_replicas.get_or_create(&run.labels).set(f64::from(n));
    }
    m.decided_replicas.get_or_create(&run.labels).set(f64::from(desired));
    m.predicted_replicas.get_or_create(&run.labels).set(f64::from(replicas));
    let decision = Decision {
        service: run.plan.id.clone(),
        time: t,
        desired_replicas: desired,
        observed_demand: demand_now,
        forecast,
        reason,
        ready_replicas: ready_now,
        reactive_replicas,
    };
    Served { decision, replicas, shadow, stale: false }
}

/// Exports which model version and forecaster serve the service, replacing the series of
/// the last ones (and warns once per version about a burst setting the model cannot
/// honour).
fn note_model(run: &mut ServiceRun, loaded: &Loaded, forecaster: &'static str, m: &crate::metrics::Metrics) {
    let version = &loaded.manifest.version;
    if run.last_model.as_ref().is_none_or(|(v, f)| v != version || *f != forecaster) {
        let labels = |version: &str, forecaster: &str| ModelLabels {
            namespace: run.labels.namespace.clone(),
            service: run.labels.service.clone(),
            version: version.to_owned(),
            forecaster: forecaster.to_owned(),
        };
        if let Some((old, old_forecaster)) = run.last_model.take() {
            m.model_info.remove(&labels(&old, old_forecaster));
        }
        m.model_info.get_or_create(&labels(version, forecaster)).set(1);
        if run.plan.policy.burst_quantile.is_some() && burst_profile(loaded, &run.name).is_none() {
            tracing::warn!(
                service = %run.plan.id,
                model = %version,
                "burst_quantile is set but the model has no burst profile (trained before profiles, or its step \
                 does not divide the hour): no burst term"
            );
        }
        run.last_model = Some((version.clone(), forecaster));
    }
    m.model_age
        .get_or_create(&run.labels)
        .set((Utc::now() - loaded.manifest.created).num_milliseconds() as f64 / 1000.0);
}

/// Exports the setting the service's policy runs, replacing the series of the one before.
fn note_policy(run: &mut ServiceRun, grid: StepGrid, m: &crate::metrics::Metrics) {
    let labels = PolicyLabels {
        namespace: run.labels.namespace.clone(),
        service: run.labels.service.clone(),
        source: if run.chosen { "objective" } else { "configured" },
        setting: run.policy.settings().describe(grid),
    };
    if run.policy_info.as_ref() != Some(&labels) {
        if let Some(old) = run.policy_info.take() {
            m.policy_info.remove(&old);
        }
        m.policy_info.get_or_create(&labels).set(1);
        run.policy_info = Some(labels);
    }
}

/// The burst profile of a service: its own in a fleet model, the model's otherwise.
/// The policy tuned on validation that a model carries for a service.
fn menu<'a>(loaded: &'a Loaded, service: &str) -> Option<&'a Menu> {
    match &loaded.services {
        Some(services) => services.get(service).and_then(|e| e.policy.as_ref()),
        None => loaded.manifest.policy.as_ref(),
    }
}

/// With an objective, the policy's settings are chosen from the serving model's menu
/// whenever that model changes: the cheapest meeting the objective on the service's
/// validation part, the safest when none does (a warning), the configured settings when
/// the model has no menu (or one tuned for another pod startup). The stabilisation
/// window starts afresh with new settings.
fn tune(run: &mut ServiceRun, loaded: Option<&Loaded>, grid: StepGrid, m: &crate::metrics::Metrics) {
    let Some(objective) = run.plan.policy.objective else { return };
    let version = loaded.map(|l| l.manifest.version.as_str());
    if run.tuned_for.as_deref() == version {
        return;
    }
    run.tuned_for = version.map(str::to_owned);
    let choice = loaded.and_then(|l| menu(l, &run.name)).and_then(|m| m.choose(objective, &run.plan.policy));
    m.objective_validation_share.remove(&run.labels);
    m.objective_met.remove(&run.labels);
    let chosen = choice.is_some();
    let settings = match choice {
        Some(c) => {
            m.objective_validation_share.get_or_create(&run.labels).set(c.score.under_provisioned);
            m.objective_met.get_or_create(&run.labels).set(i64::from(c.met));
            if c.met {
                tracing::info!(service = %run.plan.id, objective, version, under_provisioned = c.score.under_provisioned,
                    cost_vs_hpa = c.score.cost, "policy chosen for the objective on the model's validation part");
            } else {
                tracing::warn!(service = %run.plan.id, objective, version, under_provisioned = c.score.under_provisioned,
                    "no tuned setting meets the objective on validation; the safest is used");
            }
            c.settings
        }
        None => {
            if version.is_some() {
                tracing::info!(service = %run.plan.id, version,
                    "the model carries no policy tuned for this service's startup; the configured policy is used");
            }
            run.plan.policy.clone()
        }
    };
    match Policy::new(settings, grid) {
        Ok(policy) => {
            run.policy = policy.with_schedules(schedules(&run.plan));
            run.chosen = chosen;
        }
        Err(e) => {
            tracing::warn!(service = %run.plan.id, error = %e, "tuned settings refused; the configured ones stay")
        }
    }
}

fn burst_profile<'a>(loaded: &'a Loaded, service: &str) -> Option<&'a BurstProfile> {
    match &loaded.services {
        Some(services) => services.get(service).and_then(|e| e.burst.as_ref()),
        None => loaded.manifest.burst.as_ref(),
    }
}
