//! The feature table: the collector's rows on an object store, written and read in one
//! Hive-style layout,
//! `<table>[/cluster=<cluster>]/date=YYYY-MM-DD/hour=HH/<collector-id>-<first step>.parquet`.
//!
//! Several clusters (or Prometheus tenants) share one store through the `cluster=` level:
//! each cluster's collector writes below its own folder, so two collectors with the same
//! id and the same service names never write the same object, and a reader picks a
//! cluster by its folder ([`cluster_prefix`]). A collector without a cluster identity
//! writes directly below the table, as single-cluster stores always have. Each file also
//! holds the cluster in a `cluster` column, so a file copied elsewhere still says where
//! its rows come from.
//!
//! - [`codec`]: one Parquet file: `timestamp` (UTC, milliseconds), `namespace`,
//!   `service`, then one nullable `Float64` column per [`Feature`] in schema order.
//!   Missing values are nulls, never zeros; a file missing a feature column (an older
//!   schema) reads that feature as missing.
//! - [`Layout`] and [`write_rows`]: where rows go. Rows are grouped by the UTC hour of
//!   their step, and an object is named by the collector's id and its first step. Each
//!   step is written by exactly one batch (a spool segment, a backfill chunk), so two
//!   batches never produce the same name, while a batch written again after a crash
//!   overwrites its own objects instead of duplicating rows.
//! - [`FeatureTable`] and [`Scan`]: reading by time range, service and feature. Only the
//!   `date=` folders of the range are listed, objects whose `hour=` lies outside it are
//!   not fetched, and only the key columns and the asked-for features are decoded, so no
//!   reader loads the whole store. Objects come through the [`ObjectStore`] trait (local
//!   or S3, with its own credentials and retries), and each is decoded by polars'
//!   Parquet reader with column projection; polars' lazy engine would add a query
//!   planner to every binary's build to do the same on files it cannot reach by itself.

pub mod codec;

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeDelta, Utc};
pub use codec::{from_parquet, to_parquet};
use polars::prelude::PolarsError;

use crate::schema::{Feature, FeatureRow};
use crate::service::{ServiceIdError, selects, validate_label};
use crate::store::{ObjectMeta, ObjectStore, StoreError};

/// Why rows could not be encoded, decoded, written or read.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Polars or the Parquet codec failed.
    #[error("parquet: {0}")]
    Parquet(#[from] PolarsError),
    /// A file lacks a required column or holds a bad value.
    #[error("{0}")]
    Invalid(String),
    /// An object could not be decoded.
    #[error("{key}: {source}")]
    Object {
        /// The object.
        key: String,
        /// What was wrong with it.
        #[source]
        source: Box<TableError>,
    },
    /// The store refused or was unreachable.
    #[error("{operation} {key}: {source}")]
    Store {
        /// `listing`, `reading` or `writing`.
        operation: &'static str,
        /// The object or prefix.
        key: String,
        /// The store's error (boxed: it is large, and rare).
        #[source]
        source: Box<StoreError>,
    },
}

/// The folder of one cluster's rows below a table prefix (`""`: the store's root is the
/// table): `<prefix>/cluster=<cluster>`.
pub fn cluster_prefix(prefix: &str, cluster: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() { format!("cluster={cluster}") } else { format!("{prefix}/cluster={cluster}") }
}

/// The cluster an object key's `cluster=` folder names, if any.
pub fn cluster_of(key: &str) -> Option<&str> {
    key.split('/').find_map(|part| part.strip_prefix("cluster="))
}

/// The table prefix, the writing collector's cluster and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Key prefix of the table, such as `metrics`.
    pub table: String,
    /// The writing collector's id, part of every object name.
    pub collector_id: String,
    /// The cluster (or tenant) the rows come from: a `cluster=` folder and column.
    pub cluster: Option<String>,
}

impl Layout {
    /// A layout with a checked collector id: it becomes part of object names, so it is
    /// held to the same DNS-1123 label rule as service names.
    pub fn new(table: impl Into<String>, collector_id: impl Into<String>) -> Result<Self, ServiceIdError> {
        let collector_id = collector_id.into();
        validate_label("id", &collector_id)?;
        Ok(Self { table: table.into(), collector_id, cluster: None })
    }

    /// Below a cluster's folder; the name is held to the DNS-1123 label rule too.
    pub fn in_cluster(self, cluster: impl Into<String>) -> Result<Self, ServiceIdError> {
        let cluster = cluster.into();
        validate_label("cluster", &cluster)?;
        Ok(Self { cluster: Some(cluster), ..self })
    }

    /// Where this collector's rows are: the table, or its cluster's folder in it; what a
    /// reader of the same rows opens with [`FeatureTable::new`].
    pub fn root(&self) -> String {
        match &self.cluster {
            Some(c) => cluster_prefix(&self.table, c),
            None => self.table.clone(),
        }
    }

    /// The partition folder of a step: `<root>/date=.../hour=...`.
    pub fn partition(&self, step: DateTime<Utc>) -> String {
        let part = format!("date={}/hour={}", step.format("%Y-%m-%d"), step.format("%H"));
        match self.root().trim_matches('/') {
            // The store's root is the table (a store opened at the table's location).
            "" => part,
            root => format!("{root}/{part}"),
        }
    }

    /// The rows as objects: key and rows, rows sorted by step and service.
    pub fn objects(&self, mut rows: Vec<FeatureRow>) -> Vec<(String, Vec<FeatureRow>)> {
        rows.sort_by(|a, b| (a.timestamp, &a.service).cmp(&(b.timestamp, &b.service)));
        let mut by_partition: BTreeMap<String, Vec<FeatureRow>> = BTreeMap::new();
        for row in rows {
            by_partition.entry(self.partition(row.timestamp)).or_default().push(row);
        }
        by_partition
            .into_iter()
            .map(|(partition, rows)| {
                let first = rows[0].timestamp;
                (format!("{partition}/{}-{}.parquet", self.collector_id, first.format("%Y%m%dT%H%M%S%.3fZ")), rows)
            })
            .collect()
    }
}

/// Writes rows as Parquet objects; returns the number of objects and their bytes.
pub async fn write_rows(
    store: &dyn ObjectStore,
    layout: &Layout,
    rows: Vec<FeatureRow>,
) -> Result<(usize, u64), TableError> {
    let mut bytes_total = 0;
    let objects = layout.objects(rows);
    for (key, rows) in &objects {
        let bytes = codec::to_parquet_in(rows, layout.cluster.as_deref())
            .map_err(|e| TableError::Object { key: key.clone(), source: Box::new(e) })?;
        bytes_total += bytes.len() as u64;
        store.put(key, Bytes::from(bytes)).await.map_err(|source| TableError::Store {
            operation: "writing",
            key: key.clone(),
            source: Box::new(source),
        })?;
    }
    Ok((objects.len(), bytes_total))
}

/// What to read: a time range, services and features; every field narrows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scan {
    /// First step (included).
    pub from: Option<DateTime<Utc>>,
    /// Last step (included).
    pub to: Option<DateTime<Utc>>,
    /// Service selectors (`namespace/name`, or `name` in any namespace); empty: all.
    pub services: Vec<String>,
    /// Features to decode; `None`: all of them.
    pub features: Option<Vec<Feature>>,
}

impl Scan {
    /// Every row of one service (a selector: `namespace/name` or `name`).
    pub fn service(selector: impl Into<String>) -> Self {
        Self { services: vec![selector.into()], ..Self::default() }
    }

    /// Narrowed to steps in `[from, to]`.
    pub fn between(self, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        Self { from: Some(from), to: Some(to), ..self }
    }

    /// The features decoded.
    pub fn features(&self) -> impl Iterator<Item = Feature> + '_ {
        Feature::ALL.into_iter().filter(|f| self.features.as_ref().is_none_or(|only| only.contains(f)))
    }

    /// Whether the row of a step and a service (as stored) is in the scan.
    pub fn keeps_key(&self, step: DateTime<Utc>, namespace: &str, name: &str) -> bool {
        self.from.is_none_or(|f| step >= f)
            && self.to.is_none_or(|t| step <= t)
            && (self.services.is_empty() || self.services.iter().any(|s| selects(s, namespace, name)))
    }

    /// Whether an object may hold rows of the scan, judged by its `date=`/`hour=`
    /// folders; an object outside the layout may hold anything.
    pub fn may_hold(&self, key: &str) -> bool {
        let Some((start, end)) = hour_of(key) else { return true };
        self.from.is_none_or(|f| end > f) && self.to.is_none_or(|t| start <= t)
    }
}

/// The hour `[start, end)` an object's `date=`/`hour=` folders name.
fn hour_of(key: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let mut date = None;
    let mut hour = None;
    for part in key.split('/') {
        if let Some(d) = part.strip_prefix("date=") {
            date = NaiveDate::parse_from_str(d, "%Y-%m-%d").ok();
        } else if let Some(h) = part.strip_prefix("hour=") {
            hour = h.parse::<u32>().ok().and_then(|h| NaiveTime::from_hms_opt(h, 0, 0));
        }
    }
    let start = date?.and_time(hour?).and_utc();
    Some((start, start + TimeDelta::hours(1)))
}

/// A table in a store: what the trainer, `inspect`, `backfill` and `estimate-capacity`
/// read, and the collector writes through [`write_rows`].
#[derive(Debug, Clone, Copy)]
pub struct FeatureTable<'a> {
    store: &'a dyn ObjectStore,
    prefix: &'a str,
}

impl<'a> FeatureTable<'a> {
    /// The table below `prefix` of a store (`""`: the store's root is the table).
    pub fn new(store: &'a dyn ObjectStore, prefix: &'a str) -> Self {
        Self { store, prefix: prefix.trim_matches('/') }
    }

    fn under(&self, rest: &str) -> String {
        if self.prefix.is_empty() { rest.to_owned() } else { format!("{}/{rest}", self.prefix) }
    }

    /// The Parquet objects that may hold rows of the scan, sorted by key: with a time
    /// range, only the `date=` folders of its days are listed.
    pub async fn objects(&self, scan: &Scan) -> Result<Vec<ObjectMeta>, TableError> {
        let prefixes = match (scan.from, scan.to) {
            (Some(from), Some(to)) if to >= from && (to - from).num_days() < 366 => {
                let (first, last) = (from.date_naive(), to.date_naive());
                let days = (last - first).num_days() as u64;
                (0..=days)
                    .filter_map(|d| first.checked_add_days(Days::new(d)))
                    .map(|day| self.under(&format!("date={}/", day.format("%Y-%m-%d"))))
                    .collect()
            }
            (Some(from), Some(to)) if to < from => Vec::new(),
            _ if self.prefix.is_empty() => vec![String::new()],
            _ => vec![format!("{}/", self.prefix)],
        };
        let mut objects = Vec::new();
        for prefix in prefixes {
            let listed = self.store.list(&prefix).await.map_err(|source| TableError::Store {
                operation: "listing",
                key: format!("{}/{prefix}", self.store.location()),
                source: Box::new(source),
            })?;
            objects.extend(listed.into_iter().filter(|o| o.key.ends_with(".parquet") && scan.may_hold(&o.key)));
        }
        Ok(objects)
    }

    /// The rows of one object that the scan asks for.
    pub async fn read_object(&self, key: &str, scan: &Scan) -> Result<Vec<FeatureRow>, TableError> {
        let bytes = self.store.get(key).await.map_err(|source| TableError::Store {
            operation: "reading",
            key: key.to_owned(),
            source: Box::new(source),
        })?;
        codec::read_scan(&bytes, scan).map_err(|e| TableError::Object { key: key.to_owned(), source: Box::new(e) })
    }

    /// Every row the scan asks for, in the order of the objects.
    pub async fn read(&self, scan: &Scan) -> Result<Vec<FeatureRow>, TableError> {
        let mut rows = Vec::new();
        for object in self.objects(scan).await? {
            rows.extend(self.read_object(&object.key, scan).await?);
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServiceId;
    use crate::store::LocalStore;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn row(ts: &str, name: &str, rps: f64) -> FeatureRow {
        let mut r = FeatureRow::empty(t(ts), ServiceId::new("shop", name).unwrap());
        r.set(Feature::RequestsPerSecond, Some(rps));
        r.set(Feature::CpuCores, Some(rps / 100.0));
        r
    }

    #[test]
    fn rows_split_by_hour_with_names_from_their_first_step() {
        let layout = Layout::new("metrics", "c0").unwrap();
        let objects = layout.objects(vec![
            row("2024-03-04T11:00:30Z", "b", 1.0),
            row("2024-03-04T10:59:30Z", "a", 1.0),
            row("2024-03-04T11:00:00Z", "a", 1.0),
            row("2024-03-04T11:00:00Z", "b", 1.0),
        ]);
        let keys: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "metrics/date=2024-03-04/hour=10/c0-20240304T105930.000Z.parquet",
                "metrics/date=2024-03-04/hour=11/c0-20240304T110000.000Z.parquet"
            ]
        );
        let names: Vec<&str> = objects[1].1.iter().map(|r| r.service.name()).collect();
        assert_eq!(names, vec!["a", "b", "b"]);
        assert!(Layout::new("metrics", "collector-0").is_ok());
        let err = Layout::new("metrics", "Collector/0").unwrap_err().to_string();
        assert!(err.contains("id \"Collector/0\""), "{err}");
    }

    #[tokio::test]
    async fn two_clusters_with_the_same_collector_id_and_services_never_clash() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_owned());
        let rows = vec![row("2024-03-04T10:00:00Z", "order", 1.0)];
        let east = Layout::new("metrics", "c0").unwrap().in_cluster("east").unwrap();
        let west = Layout::new("metrics", "c0").unwrap().in_cluster("west").unwrap();
        let mut west_rows = rows.clone();
        west_rows[0].set(Feature::RequestsPerSecond, Some(9.0));
        write_rows(&store, &east, rows).await.unwrap();
        write_rows(&store, &west, west_rows).await.unwrap();
        assert_eq!(east.root(), "metrics/cluster=east");
        for (cluster, rps) in [("east", 1.0), ("west", 9.0)] {
            let prefix = cluster_prefix("metrics", cluster);
            let got = FeatureTable::new(&store, &prefix).read(&Scan::default()).await.unwrap();
            assert_eq!(got.len(), 1, "{cluster}");
            assert_eq!(got[0].get(Feature::RequestsPerSecond), Some(rps), "{cluster}");
            let key = &FeatureTable::new(&store, &prefix).objects(&Scan::default()).await.unwrap()[0].key;
            assert_eq!(cluster_of(key), Some(cluster));
            let bytes = store.get(key).await.unwrap();
            assert_eq!(codec::cluster_column(&bytes).unwrap().as_deref(), Some(cluster), "the column says it too");
        }
        let err = Layout::new("metrics", "c0").unwrap().in_cluster("EU 1").unwrap_err().to_string();
        assert!(err.contains("cluster"), "{err}");
    }

    #[test]
    fn hours_outside_the_range_are_pruned_by_their_folders() {
        let scan = Scan::default().between(t("2024-03-04T10:30:00Z"), t("2024-03-04T11:00:00Z"));
        assert!(scan.may_hold("m/date=2024-03-04/hour=10/c-1.parquet"));
        assert!(scan.may_hold("m/date=2024-03-04/hour=11/c-1.parquet"));
        assert!(!scan.may_hold("m/date=2024-03-04/hour=09/c-1.parquet"));
        assert!(!scan.may_hold("m/date=2024-03-04/hour=12/c-1.parquet"));
        assert!(!scan.may_hold("m/date=2024-03-05/hour=10/c-1.parquet"));
        assert!(scan.may_hold("elsewhere/c-1.parquet"), "outside the layout: read and filtered by row");
    }

    #[tokio::test]
    async fn reads_only_the_range_services_and_features_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_owned());
        let layout = Layout::new("metrics", "c0").unwrap();
        let rows = vec![
            row("2024-03-03T23:59:30Z", "order", 1.0),
            row("2024-03-04T10:00:00Z", "order", 2.0),
            row("2024-03-04T10:00:00Z", "cart", 3.0),
            row("2024-03-04T11:00:00Z", "order", 4.0),
        ];
        assert_eq!(write_rows(&store, &layout, rows.clone()).await.unwrap().0, 3);
        // A stray object that is not Parquet of the schema, on a day no scan below asks for.
        store.put("metrics/date=2024-03-05/hour=05/x.parquet", Bytes::from_static(b"junk")).await.unwrap();
        let table = FeatureTable::new(&store, "metrics");

        let scan = Scan { features: Some(vec![Feature::RequestsPerSecond]), ..Scan::service("shop/order") }
            .between(t("2024-03-04T09:00:00Z"), t("2024-03-04T10:30:00Z"));
        let objects = table.objects(&scan).await.unwrap();
        assert_eq!(objects.len(), 1, "one day listed, hour 11 of it pruned: {objects:?}");
        let got = table.read(&scan).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].get(Feature::RequestsPerSecond), Some(2.0));
        assert_eq!(got[0].get(Feature::CpuCores), None, "not projected");

        let days = Scan::service("order").between(t("2024-03-03T00:00:00Z"), t("2024-03-04T23:00:00Z"));
        assert_eq!(table.read(&days).await.unwrap().len(), 3, "both days, order's rows only");
        // An unpruned scan reaches the junk and names it.
        let err = table.read(&Scan::default()).await.unwrap_err().to_string();
        assert!(err.contains("date=2024-03-05/hour=05/x.parquet"), "{err}");
    }

    #[test]
    fn rows_round_trip_with_nulls() {
        let a = row("2024-05-01T10:00:30Z", "order", 12.5);
        let b = FeatureRow::empty(t("2024-05-01T10:01:00Z"), ServiceId::new("shop", "order").unwrap());
        let back = from_parquet(&to_parquet(&[a.clone(), b.clone()]).unwrap()).unwrap();
        assert_eq!(back, vec![a, b]);
        assert_eq!(back[1].get(Feature::CpuCores), None, "nulls stay missing");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(from_parquet(b"not parquet").is_err());
    }
}
