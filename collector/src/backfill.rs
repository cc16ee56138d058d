//! Backfill: rows for a past range from Prometheus' retention, by chunked range queries.
//!
//! This is how a user bootstraps training data. Rows already in the store (from live
//! collection or an earlier, possibly interrupted, backfill) are kept and not written
//! again, so a backfill can be rerun or resumed and never duplicates a row.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use prescale_core::store::{ObjectStore, StoreError};
use prescale_core::table::{self, TableError};
use prescale_core::{ServiceId, StepGrid};

use crate::layout::{Layout, WriteError, write_rows};
use crate::source::{QueryError, Source};

/// Why a backfill stopped. What was written before stays and is skipped on a rerun.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// The range is empty, reversed or in the future.
    #[error("backfill range: {0}")]
    BadRange(String),
    /// Prometheus failed after retries.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// Listing or reading existing objects failed.
    #[error("reading existing rows: {0}")]
    Store(#[from] StoreError),
    /// An existing object is not readable Parquet.
    #[error("reading existing rows from {key}: {source}")]
    Table {
        /// The object.
        key: String,
        /// The codec's error.
        source: TableError,
    },
    /// Writing new objects failed.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// What a backfill did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackfillReport {
    /// Steps in the range.
    pub steps: u64,
    /// Distinct services seen.
    pub services: usize,
    /// Rows written.
    pub rows_written: u64,
    /// Rows already in the store, left alone.
    pub rows_skipped: u64,
    /// Objects written.
    pub objects: usize,
    /// Parquet bytes written.
    pub bytes: u64,
}

/// Fills `[from, to]` (rounded inward to the grid) with rows from Prometheus, chunk by
/// chunk; `on_chunk` hears each chunk's last step and the running report.
pub async fn backfill(
    source: &Source,
    store: &dyn ObjectStore,
    layout: &Layout,
    grid: StepGrid,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    chunk_steps: u32,
    mut on_chunk: impl FnMut(DateTime<Utc>, &BackfillReport),
) -> Result<BackfillReport, BackfillError> {
    let (from, to) = (grid.ceil(from), grid.floor(to));
    if to < from {
        return Err(BackfillError::BadRange(format!(
            "--from {} is after --to {} (after rounding to the {:?} grid)",
            from.to_rfc3339(),
            to.to_rfc3339(),
            grid.duration()
        )));
    }
    if to > Utc::now() {
        return Err(BackfillError::BadRange(format!("--to {} is in the future", to.to_rfc3339())));
    }
    let existing = existing_rows(store, layout, from, to).await?;
    let mut report = BackfillReport::default();
    let mut seen_services: HashSet<ServiceId> = HashSet::new();
    let mut start = from;
    while start <= to {
        let end = to.min(start + grid.delta() * (chunk_steps.max(1) as i32 - 1));
        let services = source.services_between(start, end, grid).await?;
        let rows = source.rows_between(start, end, grid, &services).await?;
        report.steps += grid.range(start, end).count() as u64;
        seen_services.extend(services);
        let before = rows.len() as u64;
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|r| !existing.contains(&(r.timestamp.timestamp_millis(), r.service.clone())))
            .collect();
        report.rows_skipped += before - rows.len() as u64;
        report.rows_written += rows.len() as u64;
        if !rows.is_empty() {
            let (objects, bytes) = write_rows(store, layout, rows).await?;
            report.objects += objects;
            report.bytes += bytes;
        }
        report.services = seen_services.len();
        on_chunk(end, &report);
        start = end + grid.delta();
    }
    Ok(report)
}

/// (step in ms, service) of every stored row within `[from, to]`.
async fn existing_rows(
    store: &dyn ObjectStore,
    layout: &Layout,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<HashSet<(i64, ServiceId)>, BackfillError> {
    let mut out = HashSet::new();
    for day in from.date_naive().iter_days().take_while(|d| *d <= to.date_naive()) {
        let prefix = layout.day_prefix(day.and_time(chrono::NaiveTime::MIN).and_utc());
        for object in store.list(&prefix).await? {
            if !object.key.ends_with(".parquet") || !hour_overlaps(&object.key, from, to) {
                continue;
            }
            let bytes = store.get(&object.key).await?;
            let rows = table::from_parquet(&bytes)
                .map_err(|source| BackfillError::Table { key: object.key.clone(), source })?;
            out.extend(
                rows.into_iter()
                    .filter(|r| r.timestamp >= from && r.timestamp <= to)
                    .map(|r| (r.timestamp.timestamp_millis(), r.service)),
            );
        }
    }
    Ok(out)
}

/// Whether the `hour=HH` partition of `key` (on its `date=`) can hold steps of the range.
fn hour_overlaps(key: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    let part = |name: &str| key.split('/').find_map(|seg| seg.strip_prefix(name));
    let (Some(date), Some(hour)) = (part("date="), part("hour=")) else { return true };
    let Ok(start) = DateTime::parse_from_rfc3339(&format!("{date}T{hour}:00:00Z")) else { return true };
    let start = start.with_timezone(&Utc);
    start <= to && start + chrono::TimeDelta::hours(1) > from
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_partitions_outside_the_range_are_skipped() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let (from, to) = (t("2024-03-04T10:30:00Z"), t("2024-03-04T11:10:00Z"));
        assert!(hour_overlaps("m/date=2024-03-04/hour=10/c-1.parquet", from, to));
        assert!(hour_overlaps("m/date=2024-03-04/hour=11/c-1.parquet", from, to));
        assert!(!hour_overlaps("m/date=2024-03-04/hour=09/c-1.parquet", from, to));
        assert!(!hour_overlaps("m/date=2024-03-04/hour=12/c-1.parquet", from, to));
        assert!(hour_overlaps("m/other.parquet", from, to), "unknown layouts are read, not skipped");
    }
}
