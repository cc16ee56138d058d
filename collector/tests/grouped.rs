//! The catalog's grouped queries against a real Prometheus holding a known history:
//! one query per feature and step whatever the number of services (counted by
//! Prometheus itself), services that never or no longer report stored as missing (never
//! zero), two series for one service stored as missing, and range queries cut into
//! chunks giving the same rows as the instant queries of each step.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use prescale_core::prometheus::catalog::{Catalog, CatalogConfig, CatalogName};
use prescale_core::prometheus::source::{PrometheusConfig, ServicesConfig, Source};
use prescale_core::{Feature, FeatureRow, ServiceId, StepGrid};
use prescale_testkit::prometheus::{Prometheus, load_openmetrics};
use prometheus_client::metrics::counter::Counter;

/// On the minute, so the 15 s grid's steps fall on the samples.
const START: i64 = 1_699_999_200;
const MINUTES: i64 = 30;

/// `shop/a` reports throughout from one instance; `shop/b` from two instances (so a
/// template grouping by instance gives it two series) and stops after ten minutes;
/// `tools/c` reports nothing; `other/d` reports but is never asked for.
fn history() -> String {
    let mut out = String::new();
    for j in 0..=(MINUTES * 4) {
        let t = START + j * 15;
        out.push_str(&format!("inflight{{namespace=\"shop\",service=\"a\",instance=\"1\"}} {} {t}\n", j % 7));
        out.push_str(&format!("inflight{{namespace=\"other\",service=\"d\",instance=\"1\"}} 5 {t}\n"));
        if t < START + 600 {
            for i in 1..=2 {
                out.push_str(&format!("inflight{{namespace=\"shop\",service=\"b\",instance=\"{i}\"}} {i} {t}\n"));
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

fn source(url: &str, max_points: usize) -> Source {
    let catalog = Catalog::from_config(&CatalogConfig {
        base: CatalogName::None,
        window: Duration::from_secs(60),
        features: [
            ("in_flight", r#"sum by (namespace, service) (inflight{namespace=~"{namespaces}"})"#),
            // One series per instance: `shop/b` has two, so its value is unknown.
            ("replicas_ready", r#"max by (namespace, service, instance) (inflight{namespace=~"{namespaces}"})"#),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    })
    .unwrap();
    let config = PrometheusConfig { url: url.to_owned(), max_points, ..Default::default() };
    let services = ServicesConfig { list: vec!["shop/a".into()], ..Default::default() };
    Source::new(config, catalog, services, Counter::default()).unwrap()
}

/// Prometheus' own count of answered queries on `handler`. Prometheus counts a request
/// after its answer is sent, so the count is read after a pause.
fn answered(rt: &tokio::runtime::Runtime, prometheus: &Prometheus, handler: &str) -> f64 {
    std::thread::sleep(Duration::from_millis(500));
    let url = format!("{}/metrics", prometheus.url());
    let text = rt.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() });
    let needle = format!("prometheus_http_requests_total{{code=\"200\",handler=\"{handler}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&needle)).map_or(0.0, |v| v.trim().parse().unwrap())
}

fn id(s: &str) -> ServiceId {
    s.parse().unwrap()
}

fn value(rows: &[FeatureRow], t: DateTime<Utc>, service: &str, feature: Feature) -> Option<f64> {
    rows.iter().find(|r| r.timestamp == t && r.service == id(service)).unwrap().get(feature)
}

#[test]
fn one_query_per_feature_missing_is_missing_and_ranges_match_instants() {
    let dir = tempfile::tempdir().unwrap();
    let prom_dir = dir.path().join("prometheus");
    load_openmetrics(&Prometheus::data_dir(&prom_dir), &history());
    let prometheus = Prometheus::start(&prom_dir, "15s", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let src = source(&prometheus.url(), 250_000);
    let t = Utc.timestamp_opt(START + 300, 0).unwrap();

    // Three services, then 2,000 (most of them unknown to Prometheus): two queries each time.
    let few = vec![id("shop/a"), id("shop/b"), id("tools/c")];
    let mut many = few.clone();
    many.extend((0..1997).map(|i| id(&format!("ns-{}/svc-{i}", i % 40))));
    for services in [&few, &many] {
        let before = answered(&rt, &prometheus, "/api/v1/query");
        let rows = rt.block_on(src.rows_at(t, services)).unwrap();
        assert_eq!(answered(&rt, &prometheus, "/api/v1/query") - before, 2.0, "{} services", services.len());
        assert_eq!(rows.len(), services.len());
        assert_eq!(value(&rows, t, "shop/a", Feature::InFlight), Some((20 % 7) as f64));
        assert_eq!(value(&rows, t, "shop/b", Feature::InFlight), Some(3.0));
        // Never reported: missing, not zero; a service not asked for gets no row.
        assert_eq!(value(&rows, t, "tools/c", Feature::InFlight), None);
        assert!(rows.iter().all(|r| r.service.namespace() != "other"));
        // Two series for `shop/b`: missing; one for `shop/a`: its value.
        assert_eq!(value(&rows, t, "shop/b", Feature::ReplicasReady), None);
        assert_eq!(value(&rows, t, "shop/a", Feature::ReplicasReady), Some((20 % 7) as f64));
    }

    // Stopped reporting at ten minutes: missing once Prometheus' lookback (5 min) is past.
    let late = Utc.timestamp_opt(START + 1200, 0).unwrap();
    let rows = rt.block_on(src.rows_at(late, &few)).unwrap();
    assert_eq!(value(&rows, late, "shop/b", Feature::InFlight), None);
    assert_eq!(value(&rows, late, "shop/a", Feature::InFlight), Some((80 % 7) as f64));

    // A range of 61 steps at 3 services with 30 points per query: chunks of 10 steps, so
    // 7 chunks × 2 features, and every step as the instant query gave it.
    let grid = StepGrid::from_secs(15).unwrap();
    let (from, to) = (Utc.timestamp_opt(START + 300, 0).unwrap(), Utc.timestamp_opt(START + 1200, 0).unwrap());
    let chunked = source(&prometheus.url(), 30);
    let before = answered(&rt, &prometheus, "/api/v1/query_range");
    let ranged = rt.block_on(chunked.rows_between(from, to, grid, &few)).unwrap();
    assert_eq!(answered(&rt, &prometheus, "/api/v1/query_range") - before, 14.0);
    assert_eq!(ranged.len(), 61 * 3);
    for step in grid.range(from, to) {
        let instant = rt.block_on(src.rows_at(step, &few)).unwrap();
        for service in ["shop/a", "shop/b", "tools/c"] {
            for feature in [Feature::InFlight, Feature::ReplicasReady] {
                assert_eq!(
                    value(&ranged, step, service, feature),
                    value(&instant, step, service, feature),
                    "{service} {feature} at {step}"
                );
            }
        }
    }
}
