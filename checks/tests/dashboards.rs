//! The Grafana dashboards of `deploy/grafana`: valid JSON models whose every query is valid
//! PromQL and reads only series that exist: the predictor's, the collector's and the
//! storefront's metric families, and the recording rules of `deploy/prometheus`. (That
//! each query returns data is checked against a live Prometheus by the demo's end-to-end
//! test, `demo/tests/demo_loop.rs`.)

use std::collections::BTreeSet;

use prescale_checks::dashboards::{Query, queries};
use prescale_checks::repo;
use promql_parser::parser::{self, Expr};

fn names(e: &Expr, out: &mut BTreeSet<String>) {
    match e {
        Expr::VectorSelector(v) => out.extend(v.name.clone()),
        Expr::MatrixSelector(m) => out.extend(m.vs.name.clone()),
        Expr::Aggregate(a) => names(&a.expr, out),
        Expr::Unary(u) => names(&u.expr, out),
        Expr::Binary(b) => {
            names(&b.lhs, out);
            names(&b.rhs, out);
        }
        Expr::Paren(p) => names(&p.expr, out),
        Expr::Subquery(s) => names(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| names(a, out)),
        _ => {}
    }
}

/// Every series a dashboard may read: recorded by the rules, or exported by a component.
fn known() -> BTreeSet<String> {
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/rules/prescale.yml")).unwrap();
    let mut known: BTreeSet<String> =
        rules.lines().filter_map(|l| l.trim().strip_prefix("- record: ")).map(str::to_owned).collect();
    // Families without a sample are not exposed: give each labelled family one.
    let collector = prescale_collector::metrics::Metrics::new();
    collector.steps.get_or_create(&prescale_collector::metrics::OutcomeLabels { outcome: "collected" }).inc();
    let predictor = prescale_predictor::metrics::Metrics::new();
    {
        use prescale_predictor::metrics::{ForecastLabels, ModelLabels, ReasonLabels, ServiceLabels};
        let (namespace, service) = ("shop".to_owned(), "order".to_owned());
        let s = ServiceLabels { namespace: namespace.clone(), service: service.clone() };
        let m = &predictor;
        for g in [
            &m.predicted_replicas,
            &m.decided_replicas,
            &m.observed,
            &m.ready_replicas,
            &m.reactive_replicas,
            &m.forecast_error,
            &m.model_age,
        ] {
            g.get_or_create(&s).set(1.0);
        }
        m.forecast
            .get_or_create(&ForecastLabels {
                namespace: namespace.clone(),
                service: service.clone(),
                quantile: "0.5",
                horizon_seconds: 600,
            })
            .set(1.0);
        m.model_info
            .get_or_create(&ModelLabels {
                namespace: namespace.clone(),
                service: service.clone(),
                version: "v".into(),
                forecaster: "transformer".into(),
            })
            .set(1);
        m.reason.get_or_create(&ReasonLabels { namespace, service, reason: "forecast" }).set(1);
        m.fallback("no_model");
        m.reloads.get_or_create(&prescale_predictor::metrics::KindLabels { kind: "swapped" }).inc();
    }
    for text in [collector.encode(), predictor.encode()] {
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let mut w = line.split_whitespace();
            let (name, kind) = (w.next().unwrap(), w.next().unwrap());
            match kind {
                "counter" => known.insert(format!("{name}_total")),
                "histogram" => known.insert(format!("{name}_bucket")),
                _ => known.insert(name.to_owned()),
            };
        }
    }
    // KEDA's operator metrics and kube-state-metrics' HPA series (the KEDA/HPA panels).
    for n in [
        "keda_scaler_metrics_value",
        "keda_scaler_errors_total",
        "kube_horizontalpodautoscaler_status_desired_replicas",
        "kube_horizontalpodautoscaler_status_current_replicas",
    ] {
        known.insert(n.to_owned());
    }
    // The storefront's families (services/src/common), and the gateway's.
    for n in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_requests_in_flight",
        "gateway_requests_total",
    ] {
        known.insert(n.to_owned());
    }
    known
}

#[test]
fn every_query_parses_and_reads_existing_series() {
    let known = known();
    let mut files: Vec<_> = std::fs::read_dir(repo().join("deploy/grafana"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 2);
    let mut count = 0;
    for f in &files {
        for q in queries(f).unwrap_or_else(|e| panic!("{e}")) {
            let (what, expr) = match &q {
                Query::Panel { panel, expr } => (panel.clone(), expr.clone()),
                Query::Variable { name, selector, .. } => (format!("variable {name}"), selector.clone()),
            };
            let parsed = parser::parse(&expr).unwrap_or_else(|e| panic!("{}: {what}: {expr}: {e}", f.display()));
            let mut used = BTreeSet::new();
            names(&parsed, &mut used);
            assert!(!used.is_empty(), "{what}: reads no series");
            for n in used {
                assert!(known.contains(&n), "{}: {what} reads {n}, which nothing exports or records", f.display());
            }
            count += 1;
        }
    }
    assert!(count > 20, "{count} queries");
}

#[test]
fn grafana_loads_the_dashboards_from_labelled_config_maps() {
    for overlay in ["dev", "prod", "operator"] {
        let objects = prescale_checks::kustomize::build(&repo().join("deploy/overlays").join(overlay)).unwrap();
        for file in ["prescale.json", "storefront.json"] {
            let cm = objects
                .iter()
                .find(|o| o["kind"] == "ConfigMap" && o["data"][file].is_string())
                .unwrap_or_else(|| panic!("{overlay}: no ConfigMap carries {file}"));
            assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1", "{overlay}: the sidecar's label");
            let shipped = std::fs::read_to_string(repo().join("deploy/grafana").join(file)).unwrap();
            assert_eq!(cm["data"][file].as_str().unwrap().trim_end(), shipped.trim_end(), "{overlay}: {file}");
        }
    }
    // The panels of what KEDA and the HPA did, and the model-published annotation.
    let text = std::fs::read_to_string(repo().join("deploy/grafana/prescale.json")).unwrap();
    for series in [
        "keda_scaler_metrics_value",
        "keda_scaler_errors_total",
        "kube_horizontalpodautoscaler_status_desired_replicas",
    ] {
        assert!(text.contains(series), "no panel reads {series}");
    }
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        d["annotations"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["expr"].as_str().is_some_and(|e| e.contains("model_info"))),
        "no annotation when a model is published"
    );
}
