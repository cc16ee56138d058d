//! Backfill: rows for a past range from Prometheus' retention, by chunked range queries.
//!
//! This is how a user bootstraps training data. Rows already in the store (from live
//! collection or an earlier, possibly interrupted, backfill) are kept and not written
//! again, so a backfill can be rerun or resumed and never duplicates a row. Nor does it
//! write what a live collector beside it answers for ([`crate::spool::Owned`]: rows still
//! in its spool, the gaps it will fill, the steps after its cursor), which would end up in
//! the store twice under different object names.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use prescale_core::store::ObjectStore;
use prescale_core::table::{FeatureTable, Layout, Scan, TableError, write_rows};
use prescale_core::{ServiceId, StepGrid};

use prescale_core::prometheus::source::{QueryError, Source};

/// Why a backfill stopped. What was written before stays and is skipped on a rerun.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// The range is empty, reversed or in the future.
    #[error("backfill range: {0}")]
    BadRange(String),
    /// Prometheus failed after retries.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// Listing or reading the existing rows failed (the store, or an object that is not
    /// Parquet of the schema).
    #[error("reading existing rows: {0}")]
    Existing(#[source] TableError),
    /// Writing new objects failed.
    #[error(transparent)]
    Write(TableError),
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
    /// Rows left to the live collector (its spool holds or will hold them).
    pub rows_left_to_live: u64,
    /// Objects written.
    pub objects: usize,
    /// Parquet bytes written.
    pub bytes: u64,
}

/// What to backfill.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    /// The step grid.
    pub grid: StepGrid,
    /// First and last step (rounded inward to the grid).
    pub range: (DateTime<Utc>, DateTime<Utc>),
    /// Steps per range query.
    pub chunk_steps: u32,
    /// What a live collector beside the backfill answers for.
    pub live: &'a crate::spool::Owned,
}

/// Fills the plan's range with rows from Prometheus, chunk by chunk; `on_chunk` hears each
/// chunk's last step and the running report.
pub async fn backfill(
    source: &Source,
    store: &dyn ObjectStore,
    layout: &Layout,
    plan: &Plan<'_>,
    mut on_chunk: impl FnMut(DateTime<Utc>, &BackfillReport),
) -> Result<BackfillReport, BackfillError> {
    let Plan { grid, range: (from, to), chunk_steps, live } = *plan;
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
        let before = rows.len() as u64;
        let rows: Vec<_> = rows.into_iter().filter(|r| !live.owns(r.timestamp)).collect();
        report.rows_left_to_live += before - rows.len() as u64;
        report.rows_written += rows.len() as u64;
        if !rows.is_empty() {
            let (objects, bytes) = write_rows(store, layout, rows).await.map_err(BackfillError::Write)?;
            report.objects += objects;
            report.bytes += bytes;
        }
        report.services = seen_services.len();
        on_chunk(end, &report);
        start = end + grid.delta();
    }
    Ok(report)
}

/// (step in ms, service) of every stored row within `[from, to]`: only the hours of the
/// range are read, and only their key columns.
async fn existing_rows(
    store: &dyn ObjectStore,
    layout: &Layout,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<HashSet<(i64, ServiceId)>, BackfillError> {
    let scan = Scan { features: Some(Vec::new()), ..Scan::default() }.between(from, to);
    let root = layout.root();
    let rows = FeatureTable::new(store, &root).read(&scan).await.map_err(BackfillError::Existing)?;
    Ok(rows.into_iter().map(|r| (r.timestamp.timestamp_millis(), r.service)).collect())
}
