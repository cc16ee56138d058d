//! The step engine against a real Prometheus holding a recent synthetic history of the
//! storefront's metrics, with a small transformer trained on that pattern and published
//! to a model folder: forecasts, the reactive fallback without a model, hot reload that
//! refuses a corrupt model, the burst term once a model carries a burst profile,
//! Prometheus going away, and the HTTP API over the result.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use chrono::{DateTime, DurationRound, Utc};
use prescale_core::prometheus::Source;
use prescale_core::prometheus::catalog::{Catalog, CatalogConfig, CatalogName};
use prescale_core::prometheus::source::{PrometheusConfig, ServicesConfig};
use prescale_core::store::{LocalStore, ObjectStore, S3Options};
use prescale_core::{ServiceId, StepGrid};
use prescale_models::artifact;
use prescale_models::baselines::{HwParams, ResidualQuantiles};
use prescale_models::burst::{BurstProfile, LEVELS};
use prescale_models::fleet::{self, Shard};
use prescale_models::forecaster::TransformerModel;
use prescale_models::series::{Series, Split};
use prescale_models::served::{Baseline, BaselineFit, Served};
use prescale_models::train::{Quiet, TrainConfig};
use prescale_policy::{PolicySettings, Quantile, Reason};
use prescale_predictor::config::ServicePlan;
use prescale_predictor::engine::Engine;
use prescale_predictor::http::{self, Api};
use prescale_predictor::metrics::Metrics;
use prescale_predictor::model::{Models, ReloadOutcome};
use prescale_predictor::state::Shared;
use prescale_testkit::prometheus::{Prometheus, load_openmetrics};
use tower::ServiceExt;

mod common;

const STEP: i64 = 30;
const PERIOD: f64 = 3600.0;

/// Requests/s of `order` at unix time `t`: an hourly wave.
fn rate(t: f64) -> f64 {
    40.0 + 25.0 * (std::f64::consts::TAU * t / PERIOD).sin()
}

/// Requests/s of `cart`: steady, so its reactive fallback's replica count does not change
/// from step to step and the scale-down stabilisation never holds an earlier one (with a
/// wave, whether it does depended on the time of day the test ran).
const CART_RATE: f64 = 20.0;

/// Six hours of 15 s samples up to `end`: the request counter (integrating the wave for
/// `order`, the steady rate for `cart`) and `up` for both.
fn history(end: i64) -> String {
    history_of(end, &[("order", rate, 6 * 3600), ("cart", |_| CART_RATE, 6 * 3600)])
}

/// A service of a synthetic history: its name, its requests/s at a unix time, and how many
/// seconds of history it has.
type Synthetic<'a> = (&'a str, fn(f64) -> f64, i64);

/// Samples every 15 s up to `end` of each service.
fn history_of(end: i64, services: &[Synthetic<'_>]) -> String {
    let mut series: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for &(svc, svc_rate, seconds) in services {
        let start = end - seconds;
        let labels = format!(r#"namespace="storefront",service="{svc}""#);
        let mut count = 0.0;
        for t in (start..=end).step_by(15) {
            count += svc_rate(t as f64 - 7.5) * 15.0;
            series.entry(format!("http_requests_total{{{labels},status=\"200\"}}")).or_default().push((t, count));
            series.entry(format!("up{{{labels}}}")).or_default().push((t, 2.0));
        }
    }
    let mut out = String::new();
    for (s, samples) in series {
        for (t, v) in samples {
            out.push_str(&format!("{s} {v} {t}\n"));
        }
    }
    out + "# EOF\n"
}

/// A tiny transformer trained on the same wave at 30 s steps, published as `v1`.
async fn publish_model(store: &dyn ObjectStore) {
    publish_model_with(store, None).await;
}

/// [`publish_model`], its manifest carrying `policy` (a menu tuned on validation).
async fn publish_model_with(store: &dyn ObjectStore, policy: Option<prescale_policy::Menu>) {
    let grid = StepGrid::from_secs(STEP as u64).unwrap();
    let start = DateTime::parse_from_rfc3339("2024-03-04T00:00:00Z").unwrap().with_timezone(&Utc);
    let values: Vec<Option<f64>> = (0..2400).map(|i| Some(rate((start.timestamp() + i * STEP) as f64))).collect();
    let series = Series::new("storefront/order", grid, start, values).unwrap();
    let config = TrainConfig { max_epochs: 2, ..TrainConfig::small(Some((PERIOD as i64 / STEP) as usize)) };
    let (model, _) = TransformerModel::train(&series, Split::of(series.len()), 20, &config, &mut Quiet).unwrap();
    let manifest = artifact::Manifest { policy, ..common::manifest(&model, "v1", Utc::now(), STEP as f64) };
    artifact::write_version(store, &model, manifest).await.unwrap();
    artifact::publish(store, "v1", true).await.unwrap();
}

/// The storefront catalog's source over `prometheus` for `services`, failing fast.
fn source(prometheus: &Prometheus, services: &[&ServiceId]) -> Source {
    let catalog = Catalog::from_config(&CatalogConfig {
        base: CatalogName::Storefront,
        window: Duration::from_secs(60),
        features: Default::default(),
    })
    .unwrap();
    Source::new(
        PrometheusConfig { url: prometheus.url(), retries: 0, timeout: Duration::from_secs(2), ..Default::default() },
        catalog,
        ServicesConfig { list: services.iter().map(ToString::to_string).collect(), ..Default::default() },
        Default::default(),
    )
    .unwrap()
}

fn steps(n: u64) -> Duration {
    Duration::from_secs(n * STEP as u64)
}

fn policy() -> PolicySettings {
    PolicySettings {
        capacity: 10.0,
        min_replicas: 1,
        max_replicas: 50,
        startup: steps(2),
        lookahead: steps(20),
        quantile: Quantile::P90,
        headroom: 0.1,
        floor_utilisation: 0.8,
        scale_down_window: steps(4),
        max_change: None,
        burst_quantile: None,
        burst_span: Duration::ZERO,
        forecast_scale_down: false,
        shortfall_penalty: None,
        objective: None,
    }
}

async fn get(app: &axum::Router, uri: &str, token: Option<&str>, method: &str, body: &str) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = app.clone().oneshot(req.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecasts_decide_fall_back_and_reload_safely() {
    let dir = tempfile::tempdir().unwrap();
    let end = (Utc::now() - chrono::Duration::minutes(2)).duration_trunc(chrono::Duration::seconds(STEP)).unwrap();
    let prom_dir = dir.path().join("prometheus");
    load_openmetrics(&Prometheus::data_dir(&prom_dir), &history(end.timestamp()));
    let mut prometheus = tokio::task::block_in_place(|| Prometheus::start(&prom_dir, "15s", ""));

    let models_root = dir.path().join("models");
    let order_store = LocalStore::new(models_root.join("storefront/order"));
    publish_model(&order_store).await;

    let grid = StepGrid::from_secs(STEP as u64).unwrap();
    let order = ServiceId::new("storefront", "order").unwrap();
    let cart = ServiceId::new("storefront", "cart").unwrap();
    let plans: Vec<ServicePlan> = [&order, &cart]
        .iter()
        .map(|id| ServicePlan {
            id: (*id).clone(),
            models: models_root.join(format!("{}/{}", id.namespace(), id.name())).to_str().unwrap().parse().unwrap(),
            // Order covers the burst profile's 90th percentile; its first model has none.
            policy: PolicySettings { burst_quantile: (*id == &order).then_some(0.9), ..policy() },
            schedules: Vec::new(),
        })
        .collect();
    let metrics = Metrics::new();
    let source = source(&prometheus, &[&order, &cart]);
    let locations: Vec<_> = plans.iter().map(|p| (p.id.clone(), p.models.clone())).collect();
    let models = Arc::new(Models::open(grid, &locations, &S3Options::default()).await.unwrap());
    let reloads = models.reload(&metrics).await;
    assert_eq!(reloads[0], (cart.clone(), ReloadOutcome::NothingPublished));
    assert_eq!(reloads[1], (order.clone(), ReloadOutcome::Swapped { version: "v1".into() }));
    let shared =
        Arc::new(Shared::new(vec![order.clone(), cart.clone()], false, Duration::from_secs(3600), metrics.clone()));
    let mut engine = Engine::new(grid, 240, source, models.clone(), shared.clone(), plans).unwrap();

    // The first step reads two hours with range queries; the next ones one instant each.
    let t0 = end - chrono::Duration::minutes(20);
    for k in 0..3 {
        engine.step(t0 + chrono::Duration::seconds(STEP * k)).await.unwrap();
    }
    let t = t0 + chrono::Duration::seconds(STEP * 2);
    let served = shared.served(&order).unwrap();
    let d = &served.decision;
    assert_eq!(d.time, t);
    let observed = d.observed_demand.unwrap();
    assert!((observed - rate(t.timestamp() as f64 - 30.0)).abs() < 1.5, "observed {observed} at {t}");
    let f = d.forecast.as_ref().expect("a forecast with a model and enough history");
    assert_eq!((f.p50.len(), f.model_version.as_str()), (20, "v1"));
    assert!(f.p50.iter().zip(&f.p90).all(|(a, b)| a.is_finite() && b >= a));
    assert!(matches!(d.reason, Reason::Forecast { .. } | Reason::ReactiveFloor | Reason::Stabilised), "{:?}", d.reason);
    // What the true wave needs over the lookahead (startup to 20 steps ahead, with the
    // policy's 10% headroom; observed demand lags the wave by the rate window's half):
    // the forecast may miss it by one replica at most. The wave's phase depends on the
    // clock, so this holds at any time of day, rising or falling.
    let ideal = (2..=20)
        .map(|k| (rate((t.timestamp() + k * STEP) as f64 - 30.0) * 1.1 / 10.0 - 1e-9).ceil() as u32)
        .max()
        .unwrap();
    assert!(
        d.desired_replicas + 1 >= ideal,
        "demand {observed} now; the next 10 minutes need {ideal} replicas at 10 req/s each, got {}",
        d.desired_replicas
    );
    assert_eq!(served.replicas, d.desired_replicas);

    // No model for cart: the reactive fallback, from current demand.
    let c = shared.served(&cart).unwrap().decision;
    assert_eq!((c.reason, c.forecast), (Reason::Reactive, None));
    let observed = c.observed_demand.unwrap();
    assert!((observed - CART_RATE).abs() < 0.5, "cart observed {observed}");
    assert_eq!(c.desired_replicas, (CART_RATE / 0.8 / 10.0).ceil() as u32);

    // A new version is published, then its weights file is corrupted before the
    // predictor loads it: refused, and the good one keeps serving.
    let weights = order_store.get("v1/weights.safetensors").await.unwrap();
    let mut m1: serde_json::Value =
        serde_json::from_slice(&order_store.get("v1/manifest.json").await.unwrap()).unwrap();
    m1["version"] = "v2".into();
    order_store.put("v2/weights.safetensors", weights.clone()).await.unwrap();
    order_store.put("v2/manifest.json", Bytes::from(serde_json::to_vec(&m1).unwrap())).await.unwrap();
    artifact::publish(&order_store, "v2", true).await.unwrap();
    let mut bad = weights.to_vec();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    order_store.put("v2/weights.safetensors", Bytes::from(bad)).await.unwrap();
    let reloads = models.reload(&shared.metrics).await;
    assert!(matches!(&reloads[1].1, ReloadOutcome::Rejected { version: Some(v), .. } if v == "v2"), "{reloads:?}");
    engine.step(t + chrono::Duration::seconds(STEP)).await.unwrap();
    let still = shared.served(&order).unwrap().decision;
    assert_eq!(still.forecast.unwrap().model_version, "v1", "the good model keeps serving");

    // A version whose manifest is well checksummed (the pointer agrees) but invalid: no
    // attention heads. Refused by reload, naming the field; reloading goes on.
    let mut m3 = m1.clone();
    m3["version"] = "v3".into();
    m3["params"]["net"]["heads"] = 0.into();
    let raw = Bytes::from(serde_json::to_vec(&m3).unwrap());
    order_store.put("v3/weights.safetensors", weights.clone()).await.unwrap();
    order_store.put("v3/manifest.json", raw.clone()).await.unwrap();
    let pointer = serde_json::json!({"version": "v3", "manifest_sha256": artifact::sha256(&raw)});
    order_store.put("latest", Bytes::from(pointer.to_string())).await.unwrap();
    let reloads = models.reload(&shared.metrics).await;
    assert!(
        matches!(&reloads[1].1, ReloadOutcome::Rejected { reason, .. } if reason.contains("params.net.heads")),
        "{reloads:?}"
    );

    // The HTTP API over the same state.
    let api = Api { shared: shared.clone(), admin_token: Some("s3cret".into()), reload: Default::default() };
    let app = http::app(api);
    let (status, body) = get(&app, "/api/v1/services/storefront/order", None, "GET", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["replicas"], json["desired_replicas"]);
    assert_eq!(json["forecast"]["p90"].as_array().unwrap().len(), 20);
    let (status, body) = get(&app, "/api/v1/services", None, "GET", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["services"].as_array().unwrap().len(), 2);
    assert_eq!(get(&app, "/api/v1/services/payments", None, "GET", "").await.0, StatusCode::NOT_FOUND);
    let (_, metrics) = get(&app, "/metrics", None, "GET", "").await;
    for needle in [
        r#"ml_predicted_replicas{namespace="storefront",service="order"}"#,
        r#"prescale_predictor_forecast_requests_per_second{namespace="storefront",service="order",quantile="0.9",horizon_seconds="600"}"#,
        r#"prescale_predictor_model_info{namespace="storefront",service="order",version="v1",forecaster="transformer"} 1"#,
        r#"prescale_predictor_decision_reason{namespace="storefront",service="cart",reason="reactive"} 1"#,
        r#"prescale_predictor_fallbacks_total{namespace="storefront",service="cart",kind="no_model"}"#,
        r#"prescale_build_info{component="predictor",version="#,
        r#"prescale_predictor_model_reloads_total{kind="rejected"} 2"#,
    ] {
        assert!(metrics.contains(needle), "{needle} missing from:\n{metrics}");
    }
    // Admin: shadow mode needs the token; then KEDA is told the replicas ready now.
    assert_eq!(get(&app, "/api/v1/admin/shadow", None, "PUT", r#"{"shadow":true}"#).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&app, "/api/v1/admin/shadow", Some("nope"), "PUT", r#"{"shadow":true}"#).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&app, "/api/v1/admin/shadow", Some("s3cret"), "PUT", r#"{"shadow":"yes"}"#).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(get(&app, "/api/v1/admin/shadow", Some("s3cret"), "PUT", r#"{"shadow":true}"#).await.0, StatusCode::OK);
    engine.step(t + chrono::Duration::seconds(2 * STEP)).await.unwrap();
    let shadowed = shared.served(&order).unwrap();
    assert!(shadowed.shadow);
    assert_eq!(shadowed.replicas, 2, "in shadow mode KEDA keeps the 2 replicas ready now");
    assert_eq!(get(&app, "/api/v1/admin/reload", Some("s3cret"), "POST", "").await.0, StatusCode::ACCEPTED);

    // A model whose burst profile expects demand to jump 6x at every minute: the burst
    // term asks for current demand times 6 from the pods' startup on (the wave's forecast
    // never needs that much).
    let mut m3 = m1.clone();
    m3["version"] = "v3".into();
    let jumps = BurstProfile {
        step_seconds: STEP as f64,
        leads: 20,
        levels: LEVELS.to_vec(),
        ratios: vec![vec![vec![6.0; 120]; 20]; 3],
    };
    m3["burst"] = serde_json::to_value(&jumps).unwrap();
    order_store.put("v3/weights.safetensors", weights).await.unwrap();
    order_store.put("v3/manifest.json", Bytes::from(serde_json::to_vec(&m3).unwrap())).await.unwrap();
    artifact::publish(&order_store, "v3", true).await.unwrap();
    let reloads = models.reload(&shared.metrics).await;
    assert_eq!(reloads[1], (order.clone(), ReloadOutcome::Swapped { version: "v3".into() }));
    engine.step(t + chrono::Duration::seconds(3 * STEP)).await.unwrap();
    let burst = shared.served(&order).unwrap().decision;
    let observed = burst.observed_demand.unwrap();
    let at_seconds = policy().startup.as_secs() as u32;
    assert_eq!(burst.reason, Reason::Burst { at_seconds }, "demand {observed}: {burst:?}");
    assert_eq!(burst.desired_replicas, (observed * 6.0 / 10.0 - 1e-9).ceil() as u32);
    let (_, metrics) = get(&app, "/metrics", None, "GET", "").await;
    let needle = r#"prescale_predictor_decision_reason{namespace="storefront",service="order",reason="burst"} 1"#;
    assert!(metrics.contains(needle), "{needle} missing from:\n{metrics}");

    // Prometheus gone: the step fails, the last decision is still served (not stale yet).
    tokio::task::block_in_place(|| prometheus.stop());
    assert!(engine.step(t + chrono::Duration::seconds(4 * STEP)).await.is_err());
    assert_eq!(shared.served(&order).unwrap().decision.time, t + chrono::Duration::seconds(3 * STEP));
}

#[tokio::test]
async fn the_api_marks_decisions_older_than_the_staleness_limit() {
    use prescale_policy::{Decision, Served};
    let order: ServiceId = "storefront/order".parse().unwrap();
    let cart: ServiceId = "storefront/cart".parse().unwrap();
    let shared =
        Arc::new(Shared::new(vec![order.clone(), cart.clone()], false, Duration::from_secs(60), Metrics::new()));
    let decision = |id: &ServiceId, age_seconds: i64| Served {
        decision: Decision {
            service: id.clone(),
            time: Utc::now() - chrono::Duration::seconds(age_seconds),
            desired_replicas: 3,
            observed_demand: None,
            forecast: None,
            reason: Reason::Reactive,
            ready_replicas: None,
            reactive_replicas: None,
        },
        replicas: 3,
        shadow: false,
        stale: false,
    };
    shared.publish(vec![(order.clone(), decision(&order, 600)), (cart.clone(), decision(&cart, 1))]);
    let app = http::app(Api { shared, admin_token: None, reload: Default::default() });
    let (status, body) = get(&app, "/api/v1/services", None, "GET", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let stale = |name: &str| {
        json["services"].as_array().unwrap().iter().find(|s| s["service"] == name).unwrap()["stale"].clone()
    };
    assert_eq!(stale("storefront/order"), true, "{json}");
    assert_eq!(stale("storefront/cart"), false, "{json}");
}

#[tokio::test]
async fn a_reloader_that_dies_is_restarted_and_readiness_says_so_meanwhile() {
    use prescale_core::ops::Probe;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let order: ServiceId = "storefront/order".parse().unwrap();
    let shared = Arc::new(Shared::new(vec![order], false, Duration::from_secs(60), Metrics::new()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let starts = Arc::new(AtomicUsize::new(0));
    // The restarted task clears readiness only when the test lets it, so the window in
    // which readiness fails is the test's to observe however slowly the machine runs (the
    // panic hook printing a backtrace blocks this one-thread runtime for seconds in CI).
    let release = Arc::new(tokio::sync::Notify::new());
    let (s2, starts2, release2) = (shared.clone(), starts.clone(), release.clone());
    let supervisor = tokio::spawn(prescale_predictor::run::supervise(shared.clone(), stopped, move || {
        let (shared, starts, release) = (s2.clone(), starts2.clone(), release2.clone());
        async move {
            if starts.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("a model that panics while loading");
            }
            release.notified().await;
            shared.set_reloader_down(false);
            std::future::pending::<()>().await;
        }
    }));
    let within = |secs| tokio::time::Instant::now() + Duration::from_secs(secs);
    // After the panic, readiness fails and the failure is counted.
    let deadline = within(30);
    while shared.not_ready() != Some("the model reloader failed and is restarting") {
        assert!(tokio::time::Instant::now() < deadline, "readiness never said the reloader failed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(shared.metrics.encode().contains("prescale_predictor_reloader_failures_total 1"));
    // The supervisor restarts it (after a backoff of at most a second), and readiness
    // stays failed until the restarted reloader says it works.
    let deadline = within(30);
    while starts.load(Ordering::SeqCst) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the reloader was not restarted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(shared.not_ready(), Some("the model reloader failed and is restarting"));
    release.notify_one();
    let deadline = within(30);
    while shared.not_ready() == Some("the model reloader failed and is restarting") {
        assert!(tokio::time::Instant::now() < deadline, "readiness did not come back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    tokio::time::timeout(Duration::from_secs(10), supervisor).await.expect("stops with the predictor").unwrap();
}

/// The services follow the inventory at every step, as ScaledObjects are added, changed,
/// refused and deleted: new services are decided with their own settings, gone ones stop
/// being served and leave `/metrics`, refusals are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_follow_the_scaled_objects_without_restarts() {
    use prescale_core::inventory::Overrides;
    use prescale_core::prometheus::source::DeclaredNow;
    use prescale_predictor::state::Unavailable;
    let dir = tempfile::tempdir().unwrap();
    // Prometheus scraping nothing: every feature missing, so decisions are the bounds'.
    let prometheus = tokio::task::block_in_place(|| Prometheus::start(&dir.path().join("prometheus"), "15s", ""));
    let toml = format!(
        r#"step = "30s"
[catalog]
base = "storefront"
window = "60s"
[models]
location = {:?}
[policy]
startup = "60s"
lookahead = "120s"
[scaled_objects]
predictor = "predictor.prescale.svc.cluster.local"
# A sale for cart in force now (in New York's time), one for every service long over.
[[schedule]]
name = "sale"
services = "shop/cart"
min_replicas = 3
timezone = "America/New_York"
from = "2020-01-01T00:00:00"
to = "2100-01-01T00:00:00"
[[schedule]]
name = "over"
min_replicas = 9
cron = "0 9 * * *"
duration = "1h"
except = [{except}]
"#,
        dir.path().join("models").display().to_string(),
        // The "over" entry's daily window excluded today and tomorrow, so it is never in
        // force during the test, whatever the hour.
        except = {
            let today = Utc::now().date_naive();
            format!("\"{}\", \"{}\", \"{}\"", today.pred_opt().unwrap(), today, today.succ_opt().unwrap())
        }
    );
    let config: prescale_predictor::config::PredictorConfig = prescale_core::config::from_toml_str(&toml).unwrap();
    let predictor = config.build(&S3Options::default()).unwrap();
    assert!(predictor.plans.is_empty());
    let declared = Arc::new(std::sync::Mutex::new(DeclaredNow::default()));
    let now = declared.clone();
    let source = Source::new(
        PrometheusConfig { url: prometheus.url(), retries: 0, timeout: Duration::from_secs(2), ..Default::default() },
        predictor.catalog.clone(),
        predictor.config.services_config(),
        Default::default(),
    )
    .unwrap()
    .with_declared(Arc::new(move || now.lock().unwrap().clone()));
    let grid = StepGrid::from_secs(30).unwrap();
    let models = Arc::new(Models::open(grid, &[], &S3Options::default()).await.unwrap());
    let metrics = Metrics::new();
    let shared = Arc::new(Shared::new(Vec::new(), false, Duration::from_secs(3600), metrics.clone()));
    let mut engine =
        Engine::new(grid, 10, source, models, shared.clone(), Vec::new()).unwrap().following(predictor.planner);
    let (order, cart, bad): (ServiceId, ServiceId, ServiceId) =
        ("shop/order".parse().unwrap(), "shop/cart".parse().unwrap(), "shop/bad".parse().unwrap());
    let set = |services: Vec<(ServiceId, Overrides)>, refused: usize| {
        *declared.lock().unwrap() = DeclaredNow { services, refused };
    };
    let bounds =
        |min: u32, max: u32| Overrides { min_replicas: Some(min), max_replicas: Some(max), ..Default::default() };
    let mut t = grid.floor(Utc::now()) - chrono::Duration::minutes(10);
    let mut step = async || {
        t += chrono::Duration::seconds(30);
        engine.step(t).await.unwrap();
    };

    set(vec![(order.clone(), bounds(3, 10))], 0);
    step().await;
    assert_eq!(shared.services(), vec![order.clone()]);
    assert_eq!(shared.served(&order).unwrap().replicas, 3);

    // Cart added, order's bounds changed, one ScaledObject refused by the inventory and
    // one whose settings the policy refuses (min above max).
    set(vec![(bad.clone(), bounds(9, 2)), (cart.clone(), bounds(2, 4)), (order.clone(), bounds(5, 10))], 1);
    step().await;
    assert_eq!(shared.services(), vec![cart.clone(), order.clone()]);
    assert_eq!(shared.served(&order).unwrap().replicas, 5, "the new bounds apply without a restart");
    // The scheduled floor: above what cart's bounds and (missing) demand give.
    let served = shared.served(&cart).unwrap();
    assert_eq!(served.replicas, 3);
    assert_eq!(served.decision.reason, Reason::Scheduled);
    let text = metrics.encode();
    assert!(
        text.contains(r#"prescale_predictor_decision_reason{namespace="shop",service="cart",reason="scheduled"} 1"#),
        "{text}"
    );
    assert!(text.contains("prescale_predictor_services 2\n"), "{text}");
    assert!(text.contains("prescale_predictor_services_refused 2\n"), "{text}");

    // Order deleted: no longer served, and its series leave /metrics.
    set(vec![(cart.clone(), bounds(2, 4))], 0);
    step().await;
    assert!(matches!(shared.served(&order), Err(Unavailable::UnknownService(_))));
    let text = metrics.encode();
    assert!(!text.contains(r#"service="order""#), "{text}");
    assert!(text.contains(r#"ml_predicted_replicas{namespace="shop",service="cart"} 3"#), "{text}");

    // A bad cron is refused at start, naming the entry and field.
    let bad = toml.replace("cron = \"0 9 * * *\"", "cron = \"0 9 * * Funday\"");
    let config: prescale_predictor::config::PredictorConfig = prescale_core::config::from_toml_str(&bad).unwrap();
    let err = config.build(&S3Options::default()).unwrap_err().to_string();
    assert!(err.contains("schedule[1].cron") && err.contains("Funday"), "{err}");
}

/// Services whose plans name one model folder (as a fleet model's do) share one loaded
/// model, checked once per reload, and are forecast together in one batch; the memory
/// their windows hold is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_naming_one_model_folder_share_it_and_are_forecast_in_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let end = (Utc::now() - chrono::Duration::minutes(2)).duration_trunc(chrono::Duration::seconds(STEP)).unwrap();
    let prom_dir = dir.path().join("prometheus");
    load_openmetrics(&Prometheus::data_dir(&prom_dir), &history(end.timestamp()));
    let prometheus = tokio::task::block_in_place(|| Prometheus::start(&prom_dir, "15s", ""));
    let fleet = dir.path().join("models/fleet");
    publish_model(&LocalStore::new(&fleet)).await;

    let grid = StepGrid::from_secs(STEP as u64).unwrap();
    let ids = [ServiceId::new("storefront", "order").unwrap(), ServiceId::new("storefront", "cart").unwrap()];
    let plans: Vec<ServicePlan> = ids
        .iter()
        .map(|id| ServicePlan {
            id: id.clone(),
            models: fleet.to_str().unwrap().parse().unwrap(),
            policy: policy(),
            schedules: Vec::new(),
        })
        .collect();
    let metrics = Metrics::new();
    let source = source(&prometheus, &[&ids[0], &ids[1]]);
    let locations: Vec<_> = plans.iter().map(|p| (p.id.clone(), p.models.clone())).collect();
    let models = Arc::new(Models::open(grid, &locations, &S3Options::default()).await.unwrap());
    let reloads = models.reload(&metrics).await;
    let swapped = ReloadOutcome::Swapped { version: "v1".into() };
    assert_eq!(reloads, vec![(ids[1].clone(), swapped.clone()), (ids[0].clone(), swapped)]);
    // One check of the folder for both services, one model in memory.
    assert!(metrics.encode().contains(r#"prescale_predictor_model_reloads_total{kind="swapped"} 1"#));
    let (a, b) = (models.get(&ids[0]).unwrap(), models.get(&ids[1]).unwrap());
    assert!(Arc::ptr_eq(&a, &b), "one loaded model for the folder");

    let shared = Arc::new(Shared::new(ids.to_vec(), false, Duration::from_secs(3600), metrics.clone()));
    let mut engine = Engine::new(grid, 240, source, models.clone(), shared.clone(), plans).unwrap();
    let t0 = end - chrono::Duration::minutes(20);
    for k in 0..3 {
        engine.step(t0 + chrono::Duration::seconds(STEP * k)).await.unwrap();
    }
    let forecasts: Vec<_> = ids.iter().map(|id| shared.served(id).unwrap().decision.forecast.unwrap()).collect();
    assert!(forecasts.iter().all(|f| f.model_version == "v1" && f.p50.len() == 20));
    // Each service's own window went into the batch: a wave and a flat line differ.
    assert_ne!(forecasts[0].p50, forecasts[1].p50);
    let cart = &forecasts[1];
    assert!(
        cart.p50.iter().all(|v| (v - CART_RATE).abs() < CART_RATE),
        "cart forecasts near its flat rate: {:?}",
        cart.p50
    );
    // Two services' windows of 240 steps: a few KiB each, not a copy of every row.
    let bytes = shared.metrics.window_bytes.get();
    assert!(bytes > 0 && bytes < 2 * 64 * 1024, "{bytes} bytes of windows and buffers for two services");
}

/// A model carrying a policy menu tuned on validation: a service stating an objective
/// runs the cheapest entry meeting it; without one, its configured settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_services_objective_chooses_its_policy_from_the_models_menu() {
    use prescale_policy::objective::{Entry, Knobs, Menu, Score};

    let dir = tempfile::tempdir().unwrap();
    let end = (Utc::now() - chrono::Duration::minutes(2)).duration_trunc(chrono::Duration::seconds(STEP)).unwrap();
    let prom_dir = dir.path().join("prometheus");
    load_openmetrics(&Prometheus::data_dir(&prom_dir), &history(end.timestamp()));
    let prometheus = tokio::task::block_in_place(|| Prometheus::start(&prom_dir, "15s", ""));

    // The model, with a menu of three settings: very safe and dear (headroom 400%),
    // middling (100%), cheap and short 5% of the time (0%).
    let folder = dir.path().join("models/order");
    let grid = StepGrid::from_secs(STEP as u64).unwrap();
    let knobs = |headroom: f64| Knobs { headroom, scale_down_window: Duration::ZERO, ..Knobs::of(&policy()) };
    let entry = |headroom, under, cost| Entry {
        knobs: knobs(headroom),
        score: Score { under_provisioned: under, tight: under, cost },
    };
    let menu = Menu {
        startup: policy().startup,
        hpa: Score { under_provisioned: 0.02, tight: 0.1, cost: 1.0 },
        entries: vec![entry(4.0, 0.0, 3.0), entry(1.0, 0.001, 1.5), entry(0.0, 0.05, 0.8)],
        margin: 0.0,
    };
    publish_model_with(&LocalStore::new(&folder), Some(menu)).await;

    // The same service and model run three times: without an objective, at 1%, at 0.
    let order = ServiceId::new("storefront", "order").unwrap();
    let with = |objective: Option<f64>| PolicySettings { objective, headroom: 0.1, ..policy() };
    let run = |objective: Option<f64>| {
        let (prometheus, folder, order) = (&prometheus, folder.clone(), order.clone());
        async move {
            let plans = vec![ServicePlan {
                id: order.clone(),
                models: folder.to_str().unwrap().parse().unwrap(),
                policy: with(objective),
                schedules: Vec::new(),
            }];
            let metrics = Metrics::new();
            let locations: Vec<_> = plans.iter().map(|p| (p.id.clone(), p.models.clone())).collect();
            let models = Arc::new(Models::open(grid, &locations, &S3Options::default()).await.unwrap());
            models.reload(&metrics).await;
            let shared = Arc::new(Shared::new(vec![order.clone()], false, Duration::from_secs(3600), metrics.clone()));
            let mut engine =
                Engine::new(grid, 240, source(prometheus, &[&order]), models, shared.clone(), plans).unwrap();
            let t0 = end - chrono::Duration::minutes(20);
            for k in 0..3 {
                engine.step(t0 + chrono::Duration::seconds(STEP * k)).await.unwrap();
            }
            let d = shared.served(&order).unwrap().decision;
            assert!(d.forecast.is_some(), "a forecast to size from");
            let text = metrics.encode();
            let met = r#"prescale_predictor_objective_met{namespace="storefront",service="order"} 1"#;
            assert_eq!(text.contains(met), objective.is_some(), "{text}");
            // One `policy_info` series, naming the setting run and where it came from.
            let info: Vec<&str> = text.lines().filter(|l| l.starts_with("prescale_predictor_policy_info{")).collect();
            assert_eq!(info.len(), 1, "{text}");
            let (source, headroom) = match objective {
                None => ("configured", "headroom=0.1 "),
                Some(o) if o > 0.0 => ("objective", "headroom=1 "),
                Some(_) => ("objective", "headroom=4 "),
            };
            assert!(info[0].contains(&format!("source=\"{source}\"")) && info[0].contains(headroom), "{}", info[0]);
            d.desired_replicas
        }
    };
    let configured = run(None).await;
    let one_percent = run(Some(0.01)).await;
    let strict = run(Some(0.0)).await;
    // Headroom 10% (configured), 100% (at 1%: the cheapest entry meeting it), 400% (at 0:
    // the only one), on the same forecast.
    assert!(configured < one_percent && one_percent < strict, "{configured} < {one_percent} < {strict}");
}

/// A fleet model serving three services of one folder: order by its transformer with
/// order's own calibration, cart by the Holt-Winters its validation chose, and a service
/// fifteen minutes old (not in the fleet's entries) by the transformer with the fleet's
/// wider p90 as soon as one context of history is observed; each forecaster reported in
/// `model_info` and the JSON API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_model_serves_each_service_with_its_forecaster_and_a_new_one_cold() {
    let dir = tempfile::tempdir().unwrap();
    let end = (Utc::now() - chrono::Duration::minutes(2)).duration_trunc(chrono::Duration::seconds(STEP)).unwrap();
    let prom_dir = dir.path().join("prometheus");
    let services: [Synthetic<'_>; 3] =
        [("order", rate, 6 * 3600), ("cart", |_| CART_RATE, 6 * 3600), ("new", rate, 15 * 60)];
    load_openmetrics(&Prometheus::data_dir(&prom_dir), &history_of(end.timestamp(), &services));
    let prometheus = tokio::task::block_in_place(|| Prometheus::start(&prom_dir, "15s", ""));

    // The fleet model, trained on order's wave and cart's flat line at 30 s steps.
    let grid = StepGrid::from_secs(STEP as u64).unwrap();
    let start = DateTime::parse_from_rfc3339("2024-03-04T00:00:00Z").unwrap().with_timezone(&Utc);
    let period = (PERIOD as i64 / STEP) as usize;
    let wave: Vec<Option<f64>> = (0..2400).map(|i| Some(rate((start.timestamp() + i * STEP) as f64))).collect();
    let series = [
        Series::new("storefront/cart", grid, start, vec![Some(CART_RATE); 2400]).unwrap(),
        Series::new("storefront/order", grid, start, wave).unwrap(),
    ];
    let config = TrainConfig { max_epochs: 2, ..TrainConfig::small(Some(period)) };
    let trained = tokio::task::block_in_place(|| fleet::train(&series, 20, &config, &mut Quiet)).unwrap();
    let folder = dir.path().join("models/fleet");
    let store = LocalStore::new(&folder);
    let mut manifest = common::manifest(&trained.model, "f1", Utc::now(), STEP as f64);
    manifest.backtest = None;
    manifest.fleet = Some(artifact::FleetInfo {
        selector: "storefront/*".into(),
        services: vec!["storefront/cart".into(), "storefront/order".into()],
        shards: 1,
        range: Default::default(),
    });
    let manifest = artifact::write_version(&store, &trained.model, manifest).await.unwrap();
    let mut entries = BTreeMap::new();
    for s in &series {
        let mut entry = tokio::task::block_in_place(|| fleet::evaluate_service(&trained.model, s, period)).unwrap();
        // What serves each is fixed here (the choice itself is the trainer's tests').
        entry.served = if s.name.ends_with("order") {
            Served::Transformer
        } else {
            Served::Baseline(BaselineFit {
                model: Baseline::HoltWinters { period, params: HwParams { alpha: 0.2, beta: 0.0, gamma: 0.1 } },
                p90: ResidualQuantiles { q90: vec![0.1; 20] },
            })
        };
        entries.insert(s.name.clone(), entry);
    }
    let order_calibration = entries["storefront/order"].calibration.clone();
    artifact::write_shard(&store, &manifest, Shard::ALL, entries).await.unwrap();
    // Published through the gate, no force: the fleet's gate is per service.
    artifact::publish(&store, "f1", false).await.unwrap();

    let ids: Vec<ServiceId> =
        ["order", "cart", "new"].iter().map(|n| ServiceId::new("storefront", *n).unwrap()).collect();
    let plans: Vec<ServicePlan> = ids
        .iter()
        .map(|id| ServicePlan {
            id: id.clone(),
            models: folder.to_str().unwrap().parse().unwrap(),
            policy: policy(),
            schedules: Vec::new(),
        })
        .collect();
    let metrics = Metrics::new();
    let source = source(&prometheus, &ids.iter().collect::<Vec<_>>());
    let locations: Vec<_> = plans.iter().map(|p| (p.id.clone(), p.models.clone())).collect();
    let models = Arc::new(Models::open(grid, &locations, &S3Options::default()).await.unwrap());
    models.reload(&metrics).await;
    let shared = Arc::new(Shared::new(ids.clone(), false, Duration::from_secs(3600), metrics.clone()));
    let mut engine = Engine::new(grid, 240, source, models.clone(), shared.clone(), plans).unwrap();
    let t0 = end - chrono::Duration::minutes(3);
    for k in 0..3 {
        engine.step(t0 + chrono::Duration::seconds(STEP * k)).await.unwrap();
    }
    let forecast = |i: usize| shared.served(&ids[i]).unwrap().decision.forecast.expect("a forecast");
    let (order, cart, new) = (forecast(0), forecast(1), forecast(2));
    assert_eq!(
        [order.forecaster.as_str(), cart.forecaster.as_str(), new.forecaster.as_str()],
        ["transformer", "holt_winters", "transformer_cold"]
    );
    assert!([&order, &cart, &new].iter().all(|f| f.model_version == "f1" && f.p50.len() == 20));
    // Holt-Winters on cart's flat line: its level, and p90 = p50 + 0.1 × the recent level.
    for (p50, p90) in cart.p50.iter().zip(&cart.p90) {
        assert!((p50 - CART_RATE).abs() < 1.0, "cart's Holt-Winters p50 {p50}");
        assert!((p90 - p50 - 0.1 * CART_RATE).abs() < 0.2, "cart's p90 {p90} over p50 {p50}");
    }
    // The new service (30 steps of history, the context is 16) is forecast by the
    // transformer with the fleet's widened shift; order with its own.
    let loaded = models.get(&ids[0]).unwrap();
    let cold = &loaded.manifest.params.p90_shift;
    assert_eq!(cold, &trained.cold);
    assert_ne!(cold, &order_calibration.p90_shift, "order is calibrated on its own validation part");
    assert!(new.p50.iter().zip(&new.p90).all(|(a, b)| a.is_finite() && b >= a));

    let exported = metrics.encode();
    for (service, forecaster) in [("order", "transformer"), ("cart", "holt_winters"), ("new", "transformer_cold")] {
        let needle = format!(
            r#"prescale_predictor_model_info{{namespace="storefront",service="{service}",version="f1",forecaster="{forecaster}"}} 1"#
        );
        assert!(exported.contains(&needle), "{needle} in\n{exported}");
    }
    let api = Api { shared: shared.clone(), admin_token: None, reload: Default::default() };
    let (status, body) = get(&http::app(api), "/api/v1/services/storefront/cart", None, "GET", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["forecast"]["forecaster"], "holt_winters", "{json}");
}
