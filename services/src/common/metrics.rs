//! Each service's Prometheus metrics, in the names the collector's `storefront` catalog
//! queries: `http_requests_total{service,route,method,status}`,
//! `http_request_duration_seconds{service,route,method}` (histogram),
//! `http_requests_in_flight{service}`, and the process's CPU seconds and resident memory
//! when the process serves this one service. A process serving several (`storefront all`)
//! does not export them: they would be the whole process's under every service's name,
//! each service's `cpu_cores` and `memory_bytes` the sum of all seven. Those features are
//! then missing, which is the truth; run one service per process (as the demo and the
//! cluster do) to have them.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a request count.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// Service name.
    pub service: String,
    /// Route template (`/products/{id}`), never the raw path.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// Status code.
    pub status: String,
}

/// Labels of a latency histogram.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// Service name.
    pub service: String,
    /// Route template.
    pub route: String,
    /// HTTP method.
    pub method: String,
}

/// Labels carrying the service only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ServiceLabels {
    /// Service name.
    pub service: String,
}

/// Latency buckets, seconds: from a cache hit to an overloaded queue.
pub const BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// One service's metrics and their registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    service: String,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    in_flight: Family<ServiceLabels, Gauge>,
    /// The process's CPU time and resident memory, when the process is this service's alone.
    process: Option<ProcessFigures>,
    registry: Arc<Registry>,
}

impl Metrics {
    /// Metrics of `service`; `extra` registers service-specific ones. `alone`: whether the
    /// process serves this service only (then its CPU and memory are the service's).
    pub fn new(service: &str, alone: bool, extra: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::default();
        prescale_core::ops::register_build_info(&mut registry, &format!("storefront-{service}"));
        let requests = Family::<RequestLabels, Counter>::default();
        let duration =
            Family::<RouteLabels, Histogram>::new_with_constructor(|| Histogram::new(BUCKETS.iter().copied()));
        let in_flight = Family::<ServiceLabels, Gauge>::default();
        registry.register("http_requests", "Requests served", requests.clone());
        registry.register("http_request_duration_seconds", "Request latency, queueing included", duration.clone());
        registry.register("http_requests_in_flight", "Requests being served or queued", in_flight.clone());
        let process = alone.then(|| ProcessFigures::register(&mut registry));
        extra(&mut registry);
        Self { service: service.to_owned(), requests, duration, in_flight, process, registry: Arc::new(registry) }
    }

    /// The text exposition, with process figures read now.
    pub fn render(&self) -> String {
        if let Some(process) = &self.process {
            process.update();
        }
        prescale_core::ops::encode(&self.registry)
    }
}

/// The process's CPU seconds (a counter, exposed as `process_cpu_seconds_total`,
/// Prometheus' convention, which the storefront catalog reads with `rate()`) and resident
/// memory.
#[derive(Debug, Clone)]
struct ProcessFigures {
    cpu: Counter<f64, AtomicU64>,
    /// Serialises the read-and-advance of `cpu` (two scrapes at once would add twice).
    cpu_advance: Arc<std::sync::Mutex<()>>,
    rss: Gauge,
}

impl ProcessFigures {
    fn register(registry: &mut Registry) -> Self {
        let figures = Self { cpu: Counter::default(), cpu_advance: Arc::default(), rss: Gauge::default() };
        registry.register(
            "process_cpu_seconds",
            "CPU time of the process (user and system), seconds",
            figures.cpu.clone(),
        );
        registry.register("process_resident_memory_bytes", "Resident memory of the process", figures.rss.clone());
        figures
    }

    fn update(&self) {
        if let Some((cpu, rss)) = process_usage() {
            let _one = self.cpu_advance.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // The process' total CPU time only grows; advance the counter to it.
            let delta = cpu - self.cpu.get();
            if delta > 0.0 {
                self.cpu.inc_by(delta);
            }
            self.rss.set(rss as i64);
        }
    }
}

impl prescale_core::ops::Probe for Metrics {
    fn metrics(&self) -> String {
        self.render()
    }
}

/// CPU seconds and resident bytes of this process, from `/proc/self`.
fn process_usage() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // Linux reports in clock ticks of 100 Hz and 4 KiB pages on the platforms we ship.
    Some((ticks / 100.0, pages * 4096))
}

/// Middleware recording every request under its route template.
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let in_flight = metrics.in_flight.get_or_create(&ServiceLabels { service: metrics.service.clone() }).clone();
    in_flight.inc();
    let started = Instant::now();
    let response = next.run(request).await;
    in_flight.dec();
    let labels = RouteLabels { service: metrics.service.clone(), route, method };
    metrics.duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            service: labels.service,
            route: labels.route,
            method: labels.method,
            status: response.status().as_u16().to_string(),
        })
        .inc();
    response
}
