//! Several clusters, one lake: two collector binaries with the same id and the same
//! service names but different `cluster` identities (each reading its own Prometheus, as
//! one collector per cluster or tenant does) write into one S3 store without clashing,
//! and each cluster's rows read back on their own; `inspect` tells them apart.

mod common;

use chrono::DateTime;
use common::{collector, ok, output, write_config};
use prescale_core::Feature;
use prescale_core::store::S3Store;
use prescale_core::table::{FeatureTable, Scan, cluster_prefix};
use prescale_testkit::prometheus::{Prometheus, load_openmetrics};
use prescale_testkit::s3::S3Server;

const START: i64 = 1_699_999_200;

/// A Prometheus whose `shop/order` reports `value` in flight throughout.
fn prometheus(dir: &std::path::Path, value: f64) -> Prometheus {
    let history: String = (0..=40)
        .map(|j| format!("inflight{{namespace=\"shop\",service=\"order\"}} {value} {}\n", START + j * 15))
        .chain(std::iter::once("# EOF\n".to_owned()))
        .collect();
    load_openmetrics(&Prometheus::data_dir(dir), &history);
    Prometheus::start(dir, "15s", "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_write_one_store_and_read_back_apart() {
    let dir = tempfile::tempdir().unwrap();
    let east = tokio::task::block_in_place(|| prometheus(&dir.path().join("east-prometheus"), 3.0));
    let west = tokio::task::block_in_place(|| prometheus(&dir.path().join("west-prometheus"), 7.0));
    std::fs::create_dir_all(dir.path().join("s3")).unwrap();
    let server = S3Server::start(&dir.path().join("s3")).await.unwrap();
    server.create_bucket("data").unwrap();
    let ts = |s: i64| DateTime::from_timestamp(s, 0).unwrap().to_rfc3339();
    for (cluster, prometheus) in [("east", &east), ("west", &west)] {
        let folder = dir.path().join(cluster);
        std::fs::create_dir_all(&folder).unwrap();
        let body = format!(
            r#"id = "collector-0"
cluster = "{cluster}"
step = "15s"
[catalog]
base = "none"
window = "60s"
[catalog.features]
in_flight = 'sum by (namespace, service) (inflight{{namespace=~"{{namespaces}}"}})'
[services]
list = ["shop/order"]
"#
        );
        let (config, _) = write_config(&folder, &prometheus.url(), &body);
        let mut cmd = collector(&server, &config);
        cmd.args(["backfill", "--from", &ts(START + 60), "--to", &ts(START + 600)]);
        let out = ok(&output(cmd).await);
        assert!(out.contains("backfilled 37 steps of 1 services"), "{out}");
    }

    let store = S3Store::new(server.client(), "data", "");
    for (cluster, value) in [("east", 3.0), ("west", 7.0)] {
        let prefix = cluster_prefix("metrics", cluster);
        let rows = FeatureTable::new(&store, &prefix).read(&Scan::default()).await.unwrap();
        assert_eq!(rows.len(), 37, "{cluster}");
        assert!(rows.iter().all(|r| r.get(Feature::InFlight) == Some(value)), "{cluster}: {value}");
    }
    let mut cmd = collector(&server, &dir.path().join("east/collector.toml"));
    cmd.args(["inspect", "s3://data"]);
    let text = ok(&output(cmd).await);
    assert!(text.contains("clusters   east, west"), "{text}");
    for cluster in ["east", "west"] {
        let line =
            text.lines().find(|l| l.starts_with(&format!("shop/order@{cluster} "))).unwrap_or_else(|| panic!("{text}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[1..5], &["37", "0", "0", "0"], "no duplicates within a cluster: {line}");
    }
    // A rerun of one cluster's backfill finds its own rows, not the other's.
    let mut cmd = collector(&server, &dir.path().join("west/collector.toml"));
    cmd.args(["backfill", "--from", &ts(START + 60), "--to", &ts(START + 600)]);
    let again = ok(&output(cmd).await);
    assert!(again.contains("0 rows written in 0 objects (0 bytes), 37 already stored"), "{again}");
}
