//! `make demo` end to end, shortened to 5 s steps: the real storefront, Prometheus (with
//! the shipped rules), k6, collector, trainer and predictor binaries. Every service gets
//! forecasts; once forecasts made one horizon (ten minutes) ago can be scored, every query
//! of the Grafana dashboards in `deploy/grafana` returns data from this Prometheus; the
//! collector has written Parquet; the live page is served; and stopping leaves nothing
//! running. Takes about 13 minutes (the forecast error needs one horizon of forecasts).

/// The whole loop under kills and outages, run beside the demo's test (which mostly
/// waits) rather than after it.
mod faults;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use prescale_checks::dashboards::{Query, queries};
use prescale_demo::{Demo, Ports, Settings};
use serde_json::Value;

/// (what, PromQL or series selector, is a series query) of every dashboard, with "All"
/// selected for the template variables.
fn dashboard_queries() -> Vec<(String, String, bool)> {
    let dir = prescale_testkit::repo_root().join("deploy/grafana");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "dashboards in {}", dir.display());
    let mut out = Vec::new();
    for f in files {
        for q in queries(&f).unwrap() {
            // The demo runs no KEDA and no kube-state-metrics: the panels of what KEDA and
            // the HPA did have nothing to show here (checks/tests/dashboards.rs checks
            // them); the model-published annotation shows only around a publication.
            if let Query::Panel { panel, expr } = &q
                && (panel.starts_with("annotation ")
                    || expr.contains("keda_scaler_")
                    || expr.contains("kube_horizontalpodautoscaler_"))
            {
                continue;
            }
            out.push(match q {
                Query::Panel { panel, expr } => (format!("{}: {panel}", f.display()), expr, false),
                Query::Variable { name, selector, .. } => (format!("{}: variable {name}", f.display()), selector, true),
            });
        }
    }
    out
}

/// `n` consecutive free ports.
fn free_run(n: u16) -> u16 {
    for _ in 0..200 {
        let base = prescale_testkit::tools::free_port();
        if base < 60000 && (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// Query requests Prometheus has answered (instant and range), from its own `/metrics`
/// (read after a pause: it counts a request once its answer is sent).
async fn query_requests(prom: &str) -> f64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = reqwest::get(format!("{prom}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("prometheus_http_requests_total{"))
        .filter(|l| l.contains(r#"handler="/api/v1/query""#) || l.contains(r#"handler="/api/v1/query_range""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The predictor's last step, Unix seconds.
async fn last_step(predictor: &str) -> f64 {
    let text = reqwest::get(format!("{predictor}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("prescale_predictor_last_step_timestamp_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the predictor exports its last step")
}

async fn get(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_reaches_live_forecasts_and_feeds_every_dashboard() {
    let exe = std::env::current_exe().unwrap();
    let bin_dir: PathBuf = exe.parent().and_then(|p| p.parent()).unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let free = prescale_testkit::tools::free_port;
    let settings = Settings {
        dir: dir.path().join("demo"),
        repo: prescale_testkit::repo_root(),
        bin_dir,
        step_secs: 5,
        peak: 30.0,
        train_days: 12,
        train_seconds: 30,
        context: 24,
        start_hour: 6,
        ports: Ports {
            gateway: free(),
            backends: free_run(6),
            prometheus: free(),
            collector: free(),
            predictor_http: free(),
            predictor_grpc: free(),
        },
        quiet: true,
    };
    let started = Instant::now();
    let mut demo = Demo::start(settings.clone()).await.unwrap_or_else(|e| {
        panic!("{e:#}\n(the binaries come from `cargo build --workspace --bins`; `make test` builds them)")
    });
    println!("demo started in {:.0} s", started.elapsed().as_secs_f64());

    // Every service forecast.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let c = demo.coverage().await.unwrap();
        if c.services == 7 && c.forecasting == 7 {
            break;
        }
        assert!(Instant::now() < deadline, "after 5 minutes only {c:?}");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    println!("every service forecast {:.0} s after start", started.elapsed().as_secs_f64());
    let body = demo.decisions().await.unwrap();
    for s in &body.services {
        let f = s.decision.forecast.as_ref().unwrap();
        assert_eq!(f.p50.len(), 120, "ten minutes of 5 s steps: {s:?}");
        assert!(s.decision.reactive_replicas.is_some() && s.decision.observed_demand.is_some(), "{s:?}");
    }
    let page = reqwest::get(format!("{}/", demo.predictor_url())).await.unwrap().text().await.unwrap();
    assert!(page.contains("Prescale: live predictions"));

    // Queries per step: Prometheus' own count of answered query requests, over a minute in
    // which only the collector and the predictor query it, is at most twice the features
    // (one grouped query per feature each), whatever the number of services.
    let prom = demo.prometheus_url();
    let (q0, s0) = (query_requests(&prom).await, last_step(&demo.predictor_url()).await);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let (q1, s1) = (query_requests(&prom).await, last_step(&demo.predictor_url()).await);
    let steps = ((s1 - s0) / settings.step_secs as f64).round();
    let features = 7.0;
    println!(
        "Prometheus answered {} queries in {steps} steps: {:.2} per step for {features} features and 7 services",
        q1 - q0,
        (q1 - q0) / steps
    );
    assert!(steps >= 10.0, "the predictor stepped {steps} times in a minute");
    assert!(q1 - q0 <= 2.0 * features * (steps + 1.0), "{} queries in {steps} steps", q1 - q0);

    // One horizon later the forecasts are scored; then every dashboard query has data.
    let deadline = Instant::now() + Duration::from_secs(780);
    loop {
        let r = get(&format!("{prom}/api/v1/query?query=count(prescale_predictor_forecast_error_requests_per_second)"))
            .await;
        if r["data"]["result"][0]["value"][1] == "7" {
            break;
        }
        assert!(Instant::now() < deadline, "forecast errors never appeared for every service: {r}");
        demo.decisions().await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    // The recording rules evaluate every scrape interval; let them catch up.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let client = reqwest::Client::new();
    let mut empty = Vec::new();
    let queries = dashboard_queries();
    for (what, q, series) in &queries {
        let (path, key) = if *series { ("series", "match[]") } else { ("query", "query") };
        let url = reqwest::Url::parse_with_params(&format!("{prom}/api/v1/{path}"), &[(key, q)]).unwrap();
        let r: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        assert_eq!(r["status"], "success", "{what}: {q}: {r}");
        let n = if *series {
            r["data"].as_array().map_or(0, Vec::len)
        } else {
            r["data"]["result"].as_array().map_or(0, Vec::len)
        };
        if n == 0 {
            empty.push(format!("{what}: {q}"));
        }
    }
    assert!(empty.is_empty(), "dashboard queries without data:\n{}", empty.join("\n"));
    println!("{} dashboard queries returned data, {:.0} s after start", queries.len(), started.elapsed().as_secs_f64());

    // The shipped alerting rules are loaded, and none fires on a healthy loop.
    let rules = get(&format!("{prom}/api/v1/rules")).await;
    let mut groups: Vec<&str> =
        rules["data"]["groups"].as_array().unwrap().iter().filter_map(|g| g["name"].as_str()).collect();
    groups.sort_unstable();
    assert_eq!(groups, ["prescale-alerts", "prescale-recording"]);
    let alerts = get(&format!("{prom}/api/v1/alerts")).await;
    let firing: Vec<&Value> =
        alerts["data"]["alerts"].as_array().unwrap().iter().filter(|a| a["state"] == "firing").collect();
    assert!(firing.is_empty(), "alerts firing: {firing:?}");

    // The collector has flushed Parquet to the local store.
    let store = dir.path().join("demo/store/metrics");
    let parquet = walk(&store).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).count();
    assert!(parquet > 0, "no Parquet under {}", store.display());

    demo.stop().await;
    for port in
        [settings.ports.gateway, settings.ports.prometheus, settings.ports.predictor_http, settings.ports.collector]
    {
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "port {port} still held after stop");
    }
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
