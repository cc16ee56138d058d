//! `prescale-scaler`'s command line: a bad `run` config, and `estimate-capacity` over the
//! collector's Parquet.

use std::process::Command;

fn scaler() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prescale-scaler"))
}

#[test]
fn run_refuses_a_bad_config_with_the_config_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scaler.toml");
    std::fs::write(&config, "predictor_url = \"http://127.0.0.1:1\"\nshadoww = false\n").unwrap();
    let run = scaler().args(["run", "--config"]).arg(&config).output().unwrap();
    assert_eq!(run.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&run.stderr).contains("shadoww"));
}

#[test]
fn estimate_capacity_reads_collector_parquet() {
    use prescale_core::schema::{Feature, FeatureRow};
    let dir = tempfile::tempdir().unwrap();
    let start = chrono::DateTime::parse_from_rfc3339("2024-03-04T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let rows: Vec<FeatureRow> = (0..100)
        .map(|i| {
            let mut r = FeatureRow::empty(
                start + chrono::Duration::seconds(30 * i),
                prescale_core::ServiceId::new("shop", "order").unwrap(),
            );
            let busy = i >= 80;
            r.set(Feature::RequestsPerSecond, Some(if busy { 90.0 } else { 20.0 + i as f64 / 4.0 }));
            r.set(Feature::ReplicasReady, Some(2.0));
            r.set(Feature::LatencyP95Seconds, Some(if busy { 1.5 } else { 0.1 }));
            r
        })
        .collect();
    let folder = dir.path().join("metrics/date=2024-03-04/hour=00");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("c-1.parquet"), prescale_core::table::to_parquet(&rows).unwrap()).unwrap();
    let run = scaler()
        .args(["estimate-capacity", "--service", "order", "--quantile", "1", "--data"])
        .arg(dir.path().join("metrics"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{out}{}", String::from_utf8_lossy(&run.stderr));
    // The busiest healthy step: 20 + 79/4 = 39.75 rps on 2 replicas.
    assert!(out.contains("19.875 requests/s per replica") && out.contains("20 steps over it"), "{out}");
}

/// A selector over two clusters' folders: each cluster's services, one line each.
#[tokio::test]
async fn estimate_capacity_takes_a_selector_and_a_cluster() {
    use prescale_core::schema::{Feature, FeatureRow};
    use prescale_core::table::{Layout, write_rows};
    let dir = tempfile::tempdir().unwrap();
    let store = prescale_core::store::LocalStore::new(dir.path().join("metrics"));
    let start = chrono::DateTime::parse_from_rfc3339("2024-03-04T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let rows = |name: &str, per_replica: f64| -> Vec<FeatureRow> {
        (0..50)
            .map(|i| {
                let mut r = FeatureRow::empty(
                    start + chrono::Duration::seconds(30 * i),
                    prescale_core::ServiceId::new("shop", name).unwrap(),
                );
                r.set(Feature::RequestsPerSecond, Some(per_replica * 2.0 * (i + 1) as f64 / 50.0));
                r.set(Feature::ReplicasReady, Some(2.0));
                r.set(Feature::LatencyP95Seconds, Some(0.1));
                r
            })
            .collect()
    };
    for (cluster, scale) in [("east", 1.0), ("west", 10.0)] {
        let layout = Layout::new("", "c0").unwrap().in_cluster(cluster).unwrap();
        let mut all = rows("order", 8.0 * scale);
        all.extend(rows("cart", 3.0 * scale));
        all.extend(rows("other", 1.0));
        write_rows(&store, &layout, all).await.unwrap();
    }
    let run = |cluster: &str| {
        scaler()
            .args(["estimate-capacity", "--services", "shop/*r*", "--quantile", "1", "--cluster", cluster, "--data"])
            .arg(dir.path().join("metrics"))
            .output()
            .unwrap()
    };
    let east = run("east");
    let out = String::from_utf8_lossy(&east.stdout);
    assert!(east.status.success(), "{out}{}", String::from_utf8_lossy(&east.stderr));
    assert!(out.contains("shop/cart: 3.000 requests/s") && out.contains("shop/order: 8.000 requests/s"), "{out}");
    assert!(out.contains("shop/other: 1.000 requests/s"), "`other` has an r too: {out}");
    let west = String::from_utf8_lossy(&run("west").stdout).into_owned();
    assert!(west.contains("shop/order: 80.000 requests/s"), "{west}");
    let bad = run("../east");
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("cluster"));
}

#[test]
fn run_refuses_inverted_or_oversized_bounds_naming_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scaler.toml");
    let target = |min: u64, max: u64| {
        format!(
            "predictor_url = \"http://127.0.0.1:1\"\n[[targets]]\nnamespace = \"shop\"\ndeployment = \"order\"\nmin_replicas = {min}\nmax_replicas = {max}\n"
        )
    };
    for (text, field) in [
        (target(5, 2), "targets[0].min_replicas"),
        (target(1, 3_000_000_000), "targets[0].max_replicas"),
        ("predictor_url = \"not a url\"\n".to_owned(), "predictor_url"),
        (
            format!(
                "{}[[targets]]\nnamespace = \"shop\"\ndeployment = \"order\"\nmin_replicas = 1\nmax_replicas = 2\n",
                target(1, 2)
            ),
            "targets[1].name",
        ),
        (format!("{}kind = \"Gadget\"\n", target(1, 2)), "targets[0].kind"),
        (format!("{}kind = \"Gadget\"\napi_version = \"a/b/c\"\n", target(1, 2)), "targets[0].api_version"),
    ] {
        std::fs::write(&config, text).unwrap();
        let run = scaler().args(["run", "--config"]).arg(&config).output().unwrap();
        assert_eq!(run.status.code(), Some(64));
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(err.contains(field), "expected {field} in {err}");
    }
}

#[test]
fn rbac_grants_exactly_the_listed_workloads_scale() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scaler.toml");
    let targets = [
        ("shop", "order", "Deployment"),
        ("shop", "cart", "Deployment"),
        ("storefront", "gateway", "Deployment"),
    ]
    .iter()
    .chain(&[("shop", "ledger", "StatefulSet"), ("shop", "checkout", "Rollout")])
    .map(|(ns, d, kind)| {
        format!(
            "[[targets]]\nnamespace = \"{ns}\"\nkind = \"{kind}\"\nname = \"{d}\"\nmin_replicas = 1\nmax_replicas = 9\n"
        )
    })
    .collect::<String>();
    std::fs::write(&config, format!("predictor_url = \"http://127.0.0.1:1\"\n{targets}")).unwrap();
    let out = scaler().args(["rbac", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "a Role and a RoleBinding per namespace");
    let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(items[0].clone()).unwrap();
    assert_eq!(role.metadata.namespace.as_deref(), Some("shop"));
    let rules = role.rules.unwrap();
    let rule = |group: &str| rules.iter().find(|r| r.api_groups.as_deref() == Some(&[group.to_owned()][..])).unwrap();
    assert_eq!(rules.len(), 3, "{rules:?}");
    let deployments = rules.iter().find(|r| r.resources.as_deref() == Some(&["deployments/scale".to_owned()][..]));
    assert_eq!(deployments.unwrap().resource_names.as_deref(), Some(&["cart".to_owned(), "order".to_owned()][..]));
    let stateful = rules.iter().find(|r| r.resources.as_deref() == Some(&["statefulsets/scale".to_owned()][..]));
    assert_eq!(stateful.unwrap().resource_names.as_deref(), Some(&["ledger".to_owned()][..]));
    let argo = rule("argoproj.io");
    assert_eq!(argo.resources.as_deref(), Some(&["rollouts/scale".to_owned()][..]));
    assert_eq!(argo.resource_names.as_deref(), Some(&["checkout".to_owned()][..]));
    assert!(rules.iter().all(|r| r.verbs == ["get", "update"]));
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(items[1].clone()).unwrap();
    assert_eq!(binding.subjects.unwrap()[0].namespace.as_deref(), Some("prescale"));
    assert_eq!(items[2]["metadata"]["namespace"], "storefront");
}
