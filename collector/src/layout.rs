//! Where rows go in the store: a Hive-style layout,
//! `<table>/date=YYYY-MM-DD/hour=HH/<collector-id>-<first step>.parquet`.
//!
//! Rows are grouped by the UTC hour of their step; an object's name is made of the
//! collector's id and the first step it holds. Each step is written by exactly one batch
//! (one spool segment, or one backfill chunk), so two different batches never produce
//! the same name, while a batch written again after a crash produces the same names and
//! overwrites its own objects instead of duplicating rows.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use prescale_core::FeatureRow;
use prescale_core::store::ObjectStore;
use prescale_core::table::{self, TableError};

/// The table prefix and the collector's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Key prefix of the table, such as `metrics`.
    pub table: String,
    /// This collector's id, part of every object name.
    pub collector_id: String,
}

/// Checks a collector id: it becomes part of object names.
pub fn validate_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.starts_with('-');
    if ok { Ok(()) } else { Err(format!("id {id:?} must be 1-63 lower-case letters, digits and '-'")) }
}

impl Layout {
    /// The partition folder of a step: `<table>/date=.../hour=...`.
    pub fn partition(&self, step: DateTime<Utc>) -> String {
        format!("{}/date={}/hour={}", self.table, step.format("%Y-%m-%d"), step.format("%H"))
    }

    /// The key prefix of one day, for listing.
    pub fn day_prefix(&self, day: DateTime<Utc>) -> String {
        format!("{}/date={}/", self.table, day.format("%Y-%m-%d"))
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

/// Why rows did not reach the store.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Encoding Parquet failed.
    #[error("encoding {key}: {source}")]
    Encode {
        /// The object.
        key: String,
        /// The codec's error.
        source: TableError,
    },
    /// The store refused or was unreachable.
    #[error("writing {key}: {source}")]
    Store {
        /// The object.
        key: String,
        /// The store's error.
        source: prescale_core::store::StoreError,
    },
}

/// Writes rows as Parquet objects; returns the number of objects and their bytes.
pub async fn write_rows(
    store: &dyn ObjectStore,
    layout: &Layout,
    rows: Vec<FeatureRow>,
) -> Result<(usize, u64), WriteError> {
    let mut bytes_total = 0;
    let objects = layout.objects(rows);
    for (key, rows) in &objects {
        let bytes = table::to_parquet(rows).map_err(|source| WriteError::Encode { key: key.clone(), source })?;
        bytes_total += bytes.len() as u64;
        store.put(key, Bytes::from(bytes)).await.map_err(|source| WriteError::Store { key: key.clone(), source })?;
    }
    Ok((objects.len(), bytes_total))
}

#[cfg(test)]
mod tests {
    use prescale_core::ServiceId;

    use super::*;

    #[test]
    fn rows_split_by_hour_with_names_from_their_first_step() {
        let layout = Layout { table: "metrics".into(), collector_id: "c0".into() };
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let row = |ts: &str, name: &str| FeatureRow::empty(t(ts), ServiceId::new("shop", name).unwrap());
        let objects = layout.objects(vec![
            row("2024-03-04T11:00:30Z", "b"),
            row("2024-03-04T10:59:30Z", "a"),
            row("2024-03-04T11:00:00Z", "a"),
            row("2024-03-04T11:00:00Z", "b"),
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
        assert!(validate_id("collector-0").is_ok());
        assert!(validate_id("Collector/0").is_err());
    }
}
