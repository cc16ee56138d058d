//! Feature rows to and from Parquet, one file at a time.
//!
//! One file holds rows of any services and steps, one column per schema field:
//! `timestamp` (milliseconds, tagged UTC: Parquet's `isAdjustedToUTC`, so Spark, DuckDB
//! and pandas read instants, not naive local times), `namespace`, `service`, then one
//! nullable `Float64` column per [`Feature`] in schema order. Missing values are Parquet
//! nulls, never zeros. Reading is by column name, so a file with extra columns reads, and
//! one missing a feature column reads that feature as missing (older schema versions).
//! Files written before the UTC tag (naive timestamps, which were UTC) read the same.

use std::io::Cursor;

use chrono::{DateTime, Utc};
use polars::prelude::*;

use super::{Scan, TableError};
use crate::schema::{Feature, FeatureRow, NAMESPACE_COLUMN, SERVICE_COLUMN, TIMESTAMP_COLUMN};
use crate::service::ServiceId;

/// The rows as a data frame with the schema's columns.
pub fn to_frame(rows: &[FeatureRow]) -> Result<DataFrame, TableError> {
    let ts: Vec<i64> = rows.iter().map(|r| r.timestamp.timestamp_millis()).collect();
    let ts =
        Int64Chunked::from_vec(TIMESTAMP_COLUMN.into(), ts).into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC));
    let mut columns = vec![
        ts.into_column(),
        Column::new(NAMESPACE_COLUMN.into(), rows.iter().map(|r| r.service.namespace()).collect::<Vec<_>>()),
        Column::new(SERVICE_COLUMN.into(), rows.iter().map(|r| r.service.name()).collect::<Vec<_>>()),
    ];
    for f in Feature::ALL {
        columns.push(Column::new(f.name().into(), rows.iter().map(|r| r.get(f)).collect::<Vec<Option<f64>>>()));
    }
    Ok(DataFrame::new(rows.len(), columns)?)
}

/// Encodes rows as one Parquet file (zstd-compressed).
pub fn to_parquet(rows: &[FeatureRow]) -> Result<Vec<u8>, TableError> {
    to_parquet_in(rows, None)
}

/// The column naming the cluster the rows of a file come from, when it has one.
pub const CLUSTER_COLUMN: &str = "cluster";

/// Encodes rows as one Parquet file, with a `cluster` column when `cluster` is given.
pub fn to_parquet_in(rows: &[FeatureRow], cluster: Option<&str>) -> Result<Vec<u8>, TableError> {
    let mut frame = to_frame(rows)?;
    if let Some(c) = cluster {
        frame.with_column(Column::new(CLUSTER_COLUMN.into(), vec![c; rows.len()]))?;
    }
    let mut out = Vec::new();
    ParquetWriter::new(&mut out).with_compression(ParquetCompression::Zstd(None)).finish(&mut frame)?;
    Ok(out)
}

/// The cluster a file's `cluster` column names (its first row's), if it has the column.
pub fn cluster_column(bytes: &[u8]) -> Result<Option<String>, TableError> {
    let frame = ParquetReader::new(Cursor::new(bytes)).finish()?;
    let Ok(column) = frame.column(CLUSTER_COLUMN) else { return Ok(None) };
    Ok(column.str()?.get(0).map(str::to_owned))
}

/// Decodes a Parquet file written by [`to_parquet`] (or any file with the same columns).
pub fn from_parquet(bytes: &[u8]) -> Result<Vec<FeatureRow>, TableError> {
    read_scan(bytes, &Scan::default())
}

/// Decodes the rows of a Parquet file that a scan asks for, reading only the columns it
/// needs (the key columns and its features; a feature the file lacks reads as missing).
pub fn read_scan(bytes: &[u8], scan: &Scan) -> Result<Vec<FeatureRow>, TableError> {
    let mut reader = ParquetReader::new(Cursor::new(bytes));
    let present = reader.schema()?;
    let mut columns = vec![TIMESTAMP_COLUMN.to_owned(), NAMESPACE_COLUMN.to_owned(), SERVICE_COLUMN.to_owned()];
    columns.extend(scan.features().map(|f| f.name().to_owned()).filter(|c| present.contains(c.as_str())));
    if let Some(c) = columns[..3].iter().find(|c| !present.contains(c.as_str())) {
        return Err(TableError::Invalid(format!("the file has no `{c}` column")));
    }
    let frame = reader.with_columns(Some(columns)).finish()?;
    decode(&frame, scan)
}

/// Rows from a data frame with the schema's columns.
pub fn from_frame(frame: &DataFrame) -> Result<Vec<FeatureRow>, TableError> {
    decode(frame, &Scan::default())
}

/// The rows of a frame the scan keeps; the others are skipped before they are built (a
/// file holds every service of its hour, a scan usually wants one).
fn decode(frame: &DataFrame, scan: &Scan) -> Result<Vec<FeatureRow>, TableError> {
    let column =
        |name: &str| frame.column(name).map_err(|_| TableError::Invalid(format!("the file has no `{name}` column")));
    // Milliseconds since the epoch whatever the unit and tag (a naive timestamp is UTC:
    // files written before the tag, and other writers).
    let raw = column(TIMESTAMP_COLUMN)?;
    let per_ms = match raw.dtype() {
        DataType::Datetime(TimeUnit::Nanoseconds, _) => 1_000_000,
        DataType::Datetime(TimeUnit::Microseconds, _) => 1_000,
        _ => 1,
    };
    let ts = raw.cast(&DataType::Int64)?;
    let ts = ts.i64()?.apply_values(|v| v.div_euclid(per_ms));
    let ts = &ts;
    let ns = column(NAMESPACE_COLUMN)?.str()?.clone();
    let svc = column(SERVICE_COLUMN)?.str()?.clone();
    let mut features = Vec::new();
    for f in Feature::ALL {
        features.push(match frame.column(f.name()) {
            Ok(c) => Some(c.cast(&DataType::Float64)?.f64()?.clone()),
            Err(_) => None,
        });
    }
    let mut rows = Vec::new();
    for i in 0..frame.height() {
        let millis = ts.get(i).ok_or_else(|| TableError::Invalid(format!("row {i}: timestamp is null")))?;
        let timestamp = DateTime::<Utc>::from_timestamp_millis(millis)
            .ok_or_else(|| TableError::Invalid(format!("row {i}: timestamp {millis} ms is out of range")))?;
        let (Some(n), Some(s)) = (ns.get(i), svc.get(i)) else {
            return Err(TableError::Invalid(format!("row {i}: namespace or service is null")));
        };
        if !scan.keeps_key(timestamp, n, s) {
            continue;
        }
        let service = ServiceId::new(n, s).map_err(|e| TableError::Invalid(format!("row {i}: {e}")))?;
        let mut row = FeatureRow::empty(timestamp, service);
        for (f, col) in Feature::ALL.into_iter().zip(&features) {
            row.set(f, col.as_ref().and_then(|c| c.get(i)));
        }
        rows.push(row);
    }
    Ok(rows)
}
