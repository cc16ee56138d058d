//! The NetworkPolicies of both overlays, evaluated: every connection between the
//! overlay's pods, the cluster's own components (ingress controller, KEDA, DNS,
//! kube-state-metrics), a stranger pod and addresses outside the pod network, on every port
//! the destination listens on, is allowed exactly when it is one of the flows the system
//! needs; and each needed flow is allowed by exactly one policy on each side.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use prescale_checks::kustomize::{build, pod_spec};
use prescale_checks::netpol::{Endpoint, Policies, Port};
use prescale_checks::repo;
use serde_json::Value;

const OUTSIDE: Ipv4Addr = Ipv4Addr::new(52, 216, 8, 1);
const DATABASES: [&str; 5] = ["authen", "booking", "order", "product", "profile"];
const SERVICES: [&str; 6] = ["authen", "booking", "order", "product", "profile", "recommender"];

/// An endpoint by name, and the ports it listens on.
struct Named {
    endpoint: Endpoint,
    ports: Vec<Port>,
    /// Whether it is one of the overlay's pods (the policies are about them).
    ours: bool,
}

fn tcp(n: i32) -> Port {
    Port { protocol: "TCP", number: n }
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

fn ports_of(spec: &Value) -> Vec<Port> {
    let mut out = Vec::new();
    for c in spec["containers"].as_array().into_iter().flatten() {
        for p in c["ports"].as_array().into_iter().flatten() {
            let protocol = if p["protocol"] == "UDP" { "UDP" } else { "TCP" };
            out.push(Port { protocol, number: p["containerPort"].as_i64().unwrap() as i32 });
        }
    }
    out
}

fn endpoints(objects: &[Value]) -> BTreeMap<String, Named> {
    let mut out = BTreeMap::new();
    for o in objects {
        let Some(spec) = pod_spec(o) else { continue };
        let template =
            if o["kind"] == "CronJob" { &o["spec"]["jobTemplate"]["spec"]["template"] } else { &o["spec"]["template"] };
        let labels = labels_of(&template["metadata"]["labels"]);
        let name = labels["app.kubernetes.io/name"].clone();
        let namespace = o["metadata"]["namespace"].as_str().unwrap().to_owned();
        out.insert(name, Named { endpoint: Endpoint::Pod { namespace, labels }, ports: ports_of(spec), ours: true });
    }
    // The trainer's shard pods come from the Job template in a ConfigMap.
    let cm = objects.iter().find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "trainer-evaluate-job");
    let job: Value = serde_yaml_ng::from_str(cm.unwrap()["data"]["job.yaml"].as_str().unwrap()).unwrap();
    let labels = labels_of(&job["spec"]["template"]["metadata"]["labels"]);
    out.insert(
        labels["app.kubernetes.io/name"].clone(),
        Named {
            endpoint: Endpoint::Pod { namespace: "prescale".into(), labels },
            ports: ports_of(&job["spec"]["template"]["spec"]),
            ours: true,
        },
    );
    let theirs = |endpoint, ports: Vec<Port>| Named { endpoint, ports, ours: false };
    out.insert(
        "ingress-nginx".into(),
        theirs(Endpoint::pod("ingress-nginx", "app.kubernetes.io/name", "ingress-nginx"), vec![tcp(80), tcp(10254)]),
    );
    out.insert("keda".into(), theirs(Endpoint::pod("keda", "app", "keda-operator"), vec![tcp(8080)]));
    out.insert(
        "kube-dns".into(),
        theirs(
            Endpoint::pod("kube-system", "k8s-app", "kube-dns"),
            vec![Port { protocol: "UDP", number: 53 }, tcp(53)],
        ),
    );
    out.insert(
        "kube-state-metrics".into(),
        theirs(Endpoint::pod("kube-system", "app.kubernetes.io/name", "kube-state-metrics"), vec![tcp(8080)]),
    );
    // The Prometheus Operator's Prometheus, where the overlay runs none of its own.
    if !out.contains_key("prometheus") {
        out.insert(
            "prometheus".into(),
            theirs(Endpoint::pod("monitoring", "app.kubernetes.io/name", "prometheus"), vec![tcp(9090)]),
        );
    }
    out.insert("stranger".into(), theirs(Endpoint::pod("default", "app", "stranger"), vec![tcp(8080)]));
    out.insert(
        "outside".into(),
        theirs(Endpoint::External(OUTSIDE), vec![tcp(80), tcp(443), tcp(5432), tcp(6443), tcp(9000)]),
    );
    out
}

/// The flows the system needs, as (from, to, port).
fn needed(names: &BTreeSet<String>) -> BTreeSet<(String, String, Port)> {
    let mut flows = BTreeSet::new();
    let mut add = |from: &str, to: &str, port: Port| {
        if names.contains(from) && names.contains(to) {
            flows.insert((from.to_owned(), to.to_owned(), port));
        }
    };
    let ours = ["gateway", "postgres", "prometheus", "collector", "predictor", "trainer", "trainer-evaluate"]
        .into_iter()
        .chain(["prescale-scaler", "minio", "minio-buckets"])
        .chain(SERVICES);
    for p in ours {
        add(p, "kube-dns", Port { protocol: "UDP", number: 53 });
        add(p, "kube-dns", tcp(53));
    }
    // Ingress -> gateway -> services; the services' own calls.
    add("ingress-nginx", "gateway", tcp(8080));
    for s in SERVICES {
        add("gateway", s, tcp(8080));
    }
    add("order", "product", tcp(8080));
    add("recommender", "order", tcp(8080));
    // Services -> database: the dev overlay's PostgreSQL, or a managed one outside.
    for s in DATABASES {
        add(s, "postgres", tcp(5432));
        add(s, "outside", tcp(5432));
    }
    // Prometheus -> every /metrics.
    for s in ["gateway"].into_iter().chain(SERVICES) {
        add("prometheus", s, tcp(8080));
    }
    add("prometheus", "collector", tcp(9101));
    add("prometheus", "predictor", tcp(9100));
    add("prometheus", "prescale-scaler", tcp(9102));
    add("prometheus", "kube-state-metrics", tcp(8080));
    add("prometheus", "ingress-nginx", tcp(10254));
    // Queries of Prometheus.
    for q in ["collector", "predictor", "keda"] {
        add(q, "prometheus", tcp(9090));
    }
    // KEDA -> predictor (gRPC external scaler, HTTP metrics-api); scaler -> predictor.
    add("keda", "predictor", tcp(9500));
    add("keda", "predictor", tcp(9100));
    add("prescale-scaler", "predictor", tcp(9100));
    // Components -> S3 (and the API server), outside the pod network.
    for c in ["collector", "predictor", "trainer", "prescale-scaler"] {
        add(c, "outside", tcp(443));
        add(c, "outside", tcp(6443));
    }
    add("trainer-evaluate", "outside", tcp(443));
    // The dev overlay's S3.
    for c in ["collector", "predictor", "trainer", "trainer-evaluate", "minio-buckets"] {
        add(c, "minio", tcp(9000));
    }
    flows
}

#[test]
fn exactly_the_needed_flows_are_open_each_by_exactly_one_policy() {
    for overlay in ["dev", "prod", "operator"] {
        let objects = build(&repo().join("deploy/overlays").join(overlay)).unwrap();
        let policies: Vec<NetworkPolicy> = objects
            .iter()
            .filter(|o| o["kind"] == "NetworkPolicy")
            .map(|o| serde_json::from_value(o.clone()).unwrap())
            .collect();
        assert!(policies.len() >= 10, "{overlay}: {} policies", policies.len());
        let policies = Policies::new(policies).unwrap();
        let all = endpoints(&objects);
        let names: BTreeSet<String> = all.keys().cloned().collect();
        let mut needed = needed(&names);
        // Flows between the cluster's own components are not ours to allow.
        needed.retain(|(from, to, _)| all[from].ours || all[to].ours);
        let mut open = BTreeSet::new();
        for (from, a) in &all {
            for (to, b) in &all {
                if from == to || !(a.ours || b.ours) {
                    continue;
                }
                for &port in &b.ports {
                    let verdict = policies.verdict(&a.endpoint, &b.endpoint, port);
                    if verdict.allowed() {
                        open.insert((from.clone(), to.clone(), port));
                        if needed.contains(&(from.clone(), to.clone(), port)) {
                            for (side, by) in [("egress", &verdict.egress), ("ingress", &verdict.ingress)] {
                                if let Some(by) = by {
                                    assert_eq!(by.len(), 1, "{overlay}: {from} -> {to} {port:?}: {side} by {by:?}");
                                }
                            }
                        }
                    }
                }
            }
        }
        let missing: Vec<_> = needed.difference(&open).collect();
        let extra: Vec<_> = open.difference(&needed).collect();
        assert!(missing.is_empty(), "{overlay}: needed but blocked: {missing:?}");
        assert!(extra.is_empty(), "{overlay}: open but not needed: {extra:?}");
        // Both namespaces deny by default, and every pod of ours is isolated both ways.
        for (name, e) in all.iter().filter(|(_, e)| e.ours) {
            let stranger = &all["stranger"].endpoint;
            let v = policies.verdict(&e.endpoint, stranger, tcp(8080));
            assert!(v.egress.is_some(), "{overlay}: {name} is not isolated for egress");
            let v = policies.verdict(stranger, &e.endpoint, tcp(8080));
            assert!(v.ingress.is_some(), "{overlay}: {name} is not isolated for ingress");
        }
    }
}
