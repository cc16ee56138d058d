//! The Prometheus Operator path (`deploy/components/prometheus-operator`, built by
//! `deploy/overlays/operator`): its ServiceMonitors and PrometheusRule parse after the
//! Operator's schemas, select real Services and ports, the PrometheusRule carries exactly
//! the rules of `deploy/prometheus`, and the collector and predictor query the Operator's
//! Prometheus. Then a real Prometheus, configured as the Operator renders the predictor's
//! ServiceMonitor (and the storefront's, as shipped), scrapes the predictor's and the
//! storefront's real metrics expositions: with `honorLabels` (as shipped) every recording
//! rule fed by the predictor or the storefront keeps the service it is about, every rule,
//! alert and dashboard query runs; without it, the labels become
//! `exported_namespace`/`exported_service` and the rules lose the service, which is why
//! the ServiceMonitor sets it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use prescale_checks::dashboards::{Query, queries};
use prescale_checks::kustomize::build;
use prescale_checks::monitoring::{PrometheusRule, RuleGroup, ServiceMonitor, scrape_config};
use prescale_checks::repo;
use prescale_checks::typed::check;
use prescale_testkit::prometheus::Prometheus;
use serde_json::Value;

fn operator() -> Vec<Value> {
    build(&repo().join("deploy/overlays/operator")).unwrap_or_else(|e| panic!("overlay operator: {e}"))
}

fn rule_file_groups() -> Vec<RuleGroup> {
    #[derive(serde::Deserialize)]
    struct File {
        groups: Vec<RuleGroup>,
    }
    let text = std::fs::read_to_string(repo().join("deploy/prometheus/rules/prescale.yml")).unwrap();
    serde_yaml_ng::from_str::<File>(&text).unwrap().groups
}

fn monitors(objects: &[Value]) -> Vec<ServiceMonitor> {
    objects
        .iter()
        .filter(|o| o["kind"] == "ServiceMonitor")
        .map(|o| serde_json::from_value(o.clone()).unwrap())
        .collect()
}

#[test]
fn the_operator_overlay_monitors_every_component_with_the_same_rules() {
    let objects = operator();
    for o in &objects {
        check(o).unwrap_or_else(|e| panic!("overlay operator: {e}"));
    }
    assert!(
        !objects.iter().any(|o| o["metadata"]["name"] == "prometheus" && o["kind"] == "Deployment"),
        "the operator path runs no Prometheus of its own"
    );
    // The PrometheusRule is the rule file, group for group.
    let rule: PrometheusRule =
        serde_json::from_value(objects.iter().find(|o| o["kind"] == "PrometheusRule").unwrap().clone()).unwrap();
    assert_eq!(rule.spec.groups, rule_file_groups(), "the PrometheusRule and rules/prescale.yml differ");
    // Every ServiceMonitor selects Services that name its endpoint's port, and every
    // component with a /metrics is selected.
    let mut monitored = BTreeSet::new();
    for m in monitors(&objects) {
        let ns = m.metadata.namespace.clone().unwrap();
        let selected: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "Service" && o["metadata"]["namespace"] == ns.as_str())
            .filter(|o| {
                let labels = serde_json::from_value(o["metadata"]["labels"].clone()).unwrap_or_default();
                prescale_checks::netpol::selects(&m.spec.selector, &labels)
            })
            .collect();
        assert!(!selected.is_empty(), "ServiceMonitor {ns}/{:?} selects no Service", m.metadata.name);
        for s in selected {
            for e in &m.spec.endpoints {
                assert!(
                    s["spec"]["ports"].as_array().unwrap().iter().any(|p| p["name"] == e.port.as_str()),
                    "Service {} has no port {}",
                    s["metadata"]["name"],
                    e.port
                );
            }
            monitored.insert(s["metadata"]["name"].as_str().unwrap().to_owned());
        }
        let honors = m.spec.endpoints.iter().all(|e| e.honor_labels == Some(true));
        // Only the predictor exports series about other workloads.
        assert_eq!(honors, m.metadata.name.as_deref() == Some("predictor"), "{:?}: honorLabels", m.metadata.name);
    }
    for c in ["gateway", "authen", "booking", "order", "product", "profile", "recommender"] {
        assert!(monitored.contains(c), "{c} is not scraped");
    }
    for c in ["collector", "predictor", "prescale-scaler"] {
        assert!(monitored.contains(c), "{c} is not scraped");
    }
    // The collector and the predictor query the Operator's Prometheus.
    for (kind, name) in [("StatefulSet", "collector"), ("Deployment", "predictor")] {
        let o = objects.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name).unwrap();
        let env = o["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
        assert!(env.contains("PRESCALE__PROMETHEUS__URL") && env.contains("prometheus-operated.monitoring"), "{env}");
    }
}

/// The predictor's exposition, as its `/metrics` writes it, for one service.
fn predictor_metrics() -> String {
    use prescale_predictor::metrics::{ForecastLabels, ServiceLabels};
    let m = prescale_predictor::metrics::Metrics::new();
    let s = ServiceLabels { namespace: "shop".into(), service: "order".into() };
    for g in [&m.predicted_replicas, &m.decided_replicas, &m.observed, &m.ready_replicas, &m.reactive_replicas] {
        g.get_or_create(&s).set(4.0);
    }
    m.forecast_error.get_or_create(&s).set(1.0);
    for quantile in prescale_predictor::metrics::QUANTILES {
        m.forecast
            .get_or_create(&ForecastLabels {
                namespace: "shop".into(),
                service: "order".into(),
                quantile,
                horizon_seconds: 600,
            })
            .set(40.0);
    }
    m.encode()
}

/// The storefront's `order` exposition, as its `/metrics` writes it after one request
/// (its series carry `service="order"`, as the target label the Operator adds does).
fn storefront_metrics(runtime: &tokio::runtime::Runtime) -> String {
    use storefront::common::metrics::{Metrics, track};
    use tower::ServiceExt;
    let metrics = Metrics::new("order", true, |_| {});
    let app = axum::Router::new()
        .route("/orders", axum::routing::get(|| async { "[]" }))
        .layer(axum::middleware::from_fn_with_state(metrics.clone(), track));
    let request = axum::http::Request::builder().uri("/orders").body(axum::body::Body::empty()).unwrap();
    let response = runtime.block_on(app.oneshot(request)).unwrap();
    assert!(response.status().is_success());
    metrics.render()
}

/// Serves `text` as `/metrics` on loopback; its address.
fn serve_metrics(runtime: &tokio::runtime::Runtime, text: String) -> String {
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().route("/metrics", axum::routing::get(move || async move { text.clone() }));
    runtime.spawn(async move { axum::serve(listener, app).await });
    address
}

fn query(prometheus: &Prometheus, q: &str) -> Value {
    let url = format!("{}/api/v1/query", prometheus.url());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let body: Value = runtime.block_on(async {
        reqwest::Client::new().get(url).query(&[("query", q)]).send().await.unwrap().json().await.unwrap()
    });
    assert_eq!(body["status"], "success", "{q}: {body}");
    body["data"]["result"].clone()
}

fn wait_for(prometheus: &Prometheus, q: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = query(prometheus, q);
        if r.as_array().is_some_and(|a| !a.is_empty()) || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_predictor_scraped_as_the_operator_would_keeps_its_labels_only_with_honor_labels() {
    let objects = operator();
    let predictor = monitors(&objects).into_iter().find(|m| m.metadata.name.as_deref() == Some("predictor")).unwrap();
    let rule: PrometheusRule =
        serde_json::from_value(objects.iter().find(|o| o["kind"] == "PrometheusRule").unwrap().clone()).unwrap();
    let rules = serde_yaml_ng::to_string(&serde_json::json!({"groups": rule.spec.groups})).unwrap();
    // The predictor's and the storefront's `order` expositions on loopback.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let targets = [(serve_metrics(&runtime, predictor_metrics()), "predictor-0".to_owned())];
    let shop = monitors(&objects).into_iter().find(|m| m.metadata.name.as_deref() == Some("storefront")).unwrap();
    let shop_targets = [(serve_metrics(&runtime, storefront_metrics(&runtime)), "order-5f7d8c9b4-abcde".to_owned())];
    // Which recording rules the storefront feeds.
    let shop_fed: Vec<String> = rule
        .spec
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| r.expr.contains("http_request"))
        .filter_map(|r| r.record.clone())
        .collect();
    assert!(shop_fed.len() >= 3, "{shop_fed:?}");
    // Which recording rules the predictor alone feeds.
    let fed: Vec<String> = rule
        .spec
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| r.expr.contains("prescale_predictor_") || r.expr.contains("ml_predicted_replicas"))
        .filter_map(|r| r.record.clone())
        .collect();
    assert!(fed.len() >= 5, "{fed:?}");

    for honor in [true, false] {
        let mut monitor = predictor.clone();
        monitor.spec.endpoints[0].honor_labels = Some(honor);
        let dir = tempfile::tempdir().unwrap();
        // The storefront's ServiceMonitor as shipped (its series' `service` is the
        // Service's name anyway, so it needs no honorLabels).
        let scrape =
            scrape_config(&monitor, 0, "predictor", &targets) + &scrape_config(&shop, 0, "order", &shop_targets);
        let prometheus = Prometheus::start_with_rules(dir.path(), "1s", &scrape, &rules);
        prometheus.wait_for_targets("predictor", 1);
        prometheus.wait_for_targets("order", 1);
        if honor {
            for record in &fed {
                let r = wait_for(&prometheus, &format!("{record}{{namespace=\"shop\",service=\"order\"}}"));
                assert!(r.as_array().is_some_and(|a| a.len() == 1), "{record}: {r}");
            }
            for record in &shop_fed {
                let r = wait_for(&prometheus, &format!("{record}{{namespace=\"storefront\",service=\"order\"}}"));
                assert!(r.as_array().is_some_and(|a| a.len() == 1), "{record}: {r}");
            }
            // Every alert and every dashboard query runs against it.
            for g in &rule.spec.groups {
                for r in g.rules.iter().filter(|r| r.alert.is_some()) {
                    query(&prometheus, &r.expr);
                }
            }
            let mut answered = 0;
            for f in ["prescale.json", "storefront.json"] {
                for q in queries(&repo().join("deploy/grafana").join(f)).unwrap() {
                    let expr = match q {
                        Query::Panel { expr, .. } => expr,
                        Query::Variable { selector, .. } => selector,
                    };
                    if query(&prometheus, &expr).as_array().is_some_and(|a| !a.is_empty()) {
                        answered += 1;
                    }
                }
            }
            assert!(answered >= 8, "only {answered} dashboard queries have data from the predictor and storefront");
            eprintln!("{answered} dashboard queries answered");
        } else {
            // The target's labels win: the series now say the predictor's own Service.
            let raw = wait_for(&prometheus, "ml_predicted_replicas");
            let labels = &raw[0]["metric"];
            assert_eq!(labels["exported_service"], "order", "{raw}");
            assert_eq!(labels["service"], "predictor", "{raw}");
            let r = wait_for(&prometheus, "prescale:predicted_replicas");
            assert!(r[0]["metric"]["service"] == "predictor", "{r}");
            assert!(
                query(&prometheus, "prescale:predicted_replicas{service=\"order\"}").as_array().unwrap().is_empty()
            );
        }
    }
}
