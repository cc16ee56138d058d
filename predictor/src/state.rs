//! What the predictor serves: the latest decision per service, shared by the step loop
//! (writer) and the gRPC and HTTP servers (readers).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use prescale_core::ServiceId;
pub use prescale_policy::Served;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Why there is nothing to serve for a service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// The service is not configured.
    #[error("service {0} is not configured in this predictor")]
    UnknownService(String),
    /// No step has completed for it yet.
    #[error("no decision for {0} yet: the predictor is starting or Prometheus has not answered")]
    NoDecisionYet(String),
    /// The last decision is older than the staleness limit (Prometheus unreachable).
    #[error(
        "the last decision for {service} is {age_seconds} s old, over the {limit_seconds} s staleness limit (Prometheus unreachable?)"
    )]
    Stale {
        /// The service.
        service: String,
        /// Age of its last decision.
        age_seconds: i64,
        /// The limit.
        limit_seconds: u64,
    },
}

/// The shared state.
#[derive(Debug)]
pub struct Shared {
    /// The services forecast now (the inventory's, updated each step).
    services: RwLock<BTreeSet<ServiceId>>,
    latest: RwLock<BTreeMap<ServiceId, Served>>,
    shadow: AtomicBool,
    staleness: Duration,
    steps: watch::Sender<u64>,
    /// Set while the model reloader is down (it ended unexpectedly and is restarting).
    reloader_down: AtomicBool,
    /// The file shadow mode is read from, when configured (the admin endpoint then
    /// refuses to change it in one replica).
    shadow_file: std::sync::OnceLock<std::path::PathBuf>,
    /// The last hour of every service, for the live page.
    pub history: crate::history::History,
    /// The metrics.
    pub metrics: Metrics,
}

impl Shared {
    /// State for `services`, nothing decided yet.
    pub fn new(services: Vec<ServiceId>, shadow: bool, staleness: Duration, metrics: Metrics) -> Self {
        metrics.shadow.set(i64::from(shadow));
        Self {
            services: RwLock::new(services.into_iter().collect()),
            latest: RwLock::new(BTreeMap::new()),
            shadow: AtomicBool::new(shadow),
            staleness,
            steps: watch::channel(0).0,
            reloader_down: AtomicBool::new(false),
            shadow_file: std::sync::OnceLock::new(),
            history: crate::history::History::new(Duration::from_secs(3600)),
            metrics,
        }
    }

    /// Shadow mode is read from `path` from now on (see `shadow_file`).
    pub fn follow_shadow_file(&self, path: std::path::PathBuf) {
        let _ = self.shadow_file.set(path);
    }

    /// The file shadow mode is read from, if any.
    pub fn shadow_file(&self) -> Option<&std::path::Path> {
        self.shadow_file.get().map(|p| p.as_path())
    }

    /// Marks the model reloader down (readiness fails) or running again.
    pub fn set_reloader_down(&self, down: bool) {
        self.reloader_down.store(down, Ordering::SeqCst);
    }

    /// The services forecast now, sorted.
    pub fn services(&self) -> Vec<ServiceId> {
        self.services.read().map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    /// Replaces the services forecast (the inventory changed): a service gone is no longer
    /// served, and its last decision is dropped.
    pub fn set_services(&self, services: impl IntoIterator<Item = ServiceId>) {
        let now: BTreeSet<ServiceId> = services.into_iter().collect();
        if let Ok(mut latest) = self.latest.write() {
            latest.retain(|id, _| now.contains(id));
        }
        self.history.retain(&now);
        if let Ok(mut s) = self.services.write() {
            *s = now;
        }
    }

    /// Finds a service by `namespace/name`, or by name when unique.
    pub fn resolve(&self, namespace: Option<&str>, name: &str) -> Result<ServiceId, Unavailable> {
        let unknown = || Unavailable::UnknownService(namespace.map_or(name.to_owned(), |n| format!("{n}/{name}")));
        let services = self.services.read().map_err(|_| unknown())?;
        if let Some(ns) = namespace {
            let id = ServiceId::new(ns, name).map_err(|_| unknown())?;
            return if services.contains(&id) { Ok(id) } else { Err(unknown()) };
        }
        let mut matches = services.iter().filter(|s| s.name() == name);
        match (matches.next(), matches.next()) {
            (Some(one), None) => Ok(one.clone()),
            _ => Err(unknown()),
        }
    }

    /// Whether decisions are only exported.
    pub fn shadow(&self) -> bool {
        self.shadow.load(Ordering::Relaxed)
    }

    /// Turns shadow mode on or off; takes effect at the next step.
    pub fn set_shadow(&self, on: bool) {
        self.shadow.store(on, Ordering::Relaxed);
        self.metrics.shadow.set(i64::from(on));
    }

    /// Publishes a step's decisions and wakes the `StreamIsActive` streams.
    pub fn publish(&self, served: Vec<(ServiceId, Served)>) {
        self.history.record(&served);
        if let Ok(mut latest) = self.latest.write() {
            latest.extend(served);
        }
        self.steps.send_modify(|n| *n += 1);
    }

    /// A receiver that changes at every published step.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.steps.subscribe()
    }

    /// How many subscribers there are (one per open `StreamIsActive`): a count that only
    /// grows would be a leak.
    pub fn subscribers(&self) -> usize {
        self.steps.receiver_count()
    }

    /// What to serve for a service now, unless it is unknown, undecided or stale.
    pub fn served(&self, id: &ServiceId) -> Result<Served, Unavailable> {
        self.fresh(id, Served::clone)
    }

    /// The replicas to serve for a service now, unless it is unknown, undecided or stale:
    /// what KEDA's calls need, read without copying the decision.
    pub fn replicas(&self, id: &ServiceId) -> Result<u32, Unavailable> {
        self.fresh(id, |s| s.replicas)
    }

    fn fresh<T>(&self, id: &ServiceId, read: impl FnOnce(&Served) -> T) -> Result<T, Unavailable> {
        if !self.services.read().is_ok_and(|s| s.contains(id)) {
            return Err(Unavailable::UnknownService(id.to_string()));
        }
        let latest = self.latest.read().map_err(|_| Unavailable::NoDecisionYet(id.to_string()))?;
        let served = latest.get(id).ok_or_else(|| Unavailable::NoDecisionYet(id.to_string()))?;
        let age_ms = (Utc::now() - served.decision.time).num_milliseconds();
        if age_ms > self.staleness.as_millis() as i64 {
            let age = age_ms / 1000;
            self.metrics.fallback_for(
                &crate::metrics::ServiceLabels { namespace: id.namespace().to_owned(), service: id.name().to_owned() },
                "stale",
            );
            return Err(Unavailable::Stale {
                service: id.to_string(),
                age_seconds: age,
                limit_seconds: self.staleness.as_secs(),
            });
        }
        Ok(read(served))
    }

    /// Every service's latest decision, fresh or not (for people and the JSON API), each
    /// marked `stale` when older than the staleness limit, so no client acts on it.
    pub fn all(&self) -> Vec<Served> {
        let now = Utc::now();
        let limit = self.staleness.as_millis() as i64;
        self.latest
            .read()
            .map(|l| {
                l.values()
                    .cloned()
                    .map(|mut s| {
                        s.stale = (now - s.decision.time).num_milliseconds() > limit;
                        s
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The predictor's `/metrics`, and `/readyz` once a first decision is made.
impl prescale_core::ops::Probe for Shared {
    fn metrics(&self) -> String {
        self.metrics.encode()
    }

    fn not_ready(&self) -> Option<&'static str> {
        if self.reloader_down.load(Ordering::SeqCst) {
            return Some("the model reloader failed and is restarting");
        }
        // Not `all()`: that copies every decision, and probes come every few seconds.
        self.latest.read().map_or(true, |l| l.is_empty()).then_some("no decision yet")
    }
}
