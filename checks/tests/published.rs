//! Every KEDA and Prometheus Operator resource Prescale ships, validated against the
//! projects' published schemas (`prescale_checks::published`): the `keda/` folder and the
//! dev, prod and operator overlays as `kubectl kustomize` builds them. And the schemas do
//! refuse what the API server would: a wrong type, a value outside an enum, a missing
//! required field, a kind that does not exist.

use std::collections::BTreeSet;

use prescale_checks::kustomize::build;
use prescale_checks::published::{covers, validate};
use prescale_checks::repo;
use prescale_checks::typed::describe;
use serde_json::{Value, json};

fn shipped() -> Vec<(String, Value)> {
    let mut all = Vec::new();
    for dir in ["keda", "deploy/overlays/dev", "deploy/overlays/prod", "deploy/overlays/operator"] {
        let objects = build(&repo().join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
        all.extend(objects.into_iter().filter(covers).map(|o| (dir.to_owned(), o)));
    }
    all
}

#[test]
fn every_shipped_custom_resource_meets_its_published_schema() {
    let shipped = shipped();
    let objects: Vec<Value> = shipped.iter().map(|(_, o)| o.clone()).collect();
    let results = validate(&objects).unwrap();
    let failures: Vec<String> = shipped
        .iter()
        .zip(&results)
        .filter_map(|((dir, o), r)| r.as_ref().map(|e| format!("{dir}: {}: {e}", describe(o))))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    // What was checked: every kind shipped, so a resource dropped from a build is noticed.
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["PrometheusRule", "ScaledObject", "ServiceMonitor", "TriggerAuthentication"]),
        "the kinds shipped changed: check they are covered"
    );
    let monitors = shipped.iter().filter(|(d, o)| d.ends_with("operator") && o["kind"] == "ServiceMonitor").count();
    assert_eq!(monitors, 4, "the operator overlay's ServiceMonitors");
    eprintln!("{} custom resources meet their published schemas", objects.len());
}

#[test]
fn the_published_schemas_refuse_what_the_api_server_would() {
    let scaled = json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "order", "namespace": "storefront"},
        "spec": {
            "scaleTargetRef": {"name": "order"},
            "minReplicaCount": 2,
            "fallback": {"failureThreshold": 3, "replicas": 4},
            "triggers": [{"type": "metrics-api", "metadata": {"url": "http://predictor/", "valueLocation": "v"}}]
        }
    });
    let monitor = json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "predictor", "namespace": "prescale"},
        "spec": {"selector": {"matchLabels": {"app": "predictor"}}, "endpoints": [{"port": "http", "honorLabels": true}]}
    });
    let rule = json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "prescale"},
        "spec": {"groups": [{"name": "prescale", "rules": [{"record": "a:b", "expr": "up"}]}]}
    });
    // Sets (or adds) the field at `path`.
    let mutate = |base: &Value, path: &str, value: Value| {
        let mut o = base.clone();
        let (parent, key) = path.rsplit_once('/').unwrap();
        o.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("{path}"))
            .insert(key.into(), value);
        o
    };
    let mut no_name = rule.clone();
    no_name["spec"]["groups"][0].as_object_mut().unwrap().remove("name");
    let cases = [
        (scaled.clone(), None),
        (monitor.clone(), None),
        (rule.clone(), None),
        (mutate(&scaled, "/spec/minReplicaCount", json!("2")), Some("minReplicaCount")),
        (mutate(&scaled, "/spec/fallback/replicas", json!("four")), Some("replicas")),
        (mutate(&scaled, "/spec/triggers", json!("metrics-api")), Some("triggers")),
        (mutate(&monitor, "/spec/endpoints/0/honorLabels", json!("yes")), Some("honorLabels")),
        (mutate(&monitor, "/spec/endpoints/0/scheme", json!("gopher")), Some("scheme")),
        (no_name, Some("name")),
        (
            mutate(&scaled, "/kind", json!("ScaledWidget")),
            Some("no published schema for keda.sh/v1alpha1/ScaledWidget"),
        ),
    ];
    let objects: Vec<Value> = cases.iter().map(|(o, _)| o.clone()).collect();
    let results = validate(&objects).unwrap();
    for ((o, want), got) in cases.iter().zip(results) {
        match (want, got) {
            (None, None) => {}
            (Some(word), Some(message)) => {
                assert!(message.contains(word), "{}: {message} (wanted {word})", describe(o))
            }
            (want, got) => panic!("{}: wanted {want:?}, got {got:?}: {o}", describe(o)),
        }
    }
}
