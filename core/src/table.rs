//! Feature rows to and from Parquet: the collector's storage format, the trainer's input.
//!
//! One file holds rows of any services and steps, one column per schema field:
//! `timestamp` (UTC, milliseconds, no time-zone tag), `namespace`, `service`, then one
//! nullable `Float64` column per [`Feature`] in schema order. Missing values are Parquet
//! nulls, never zeros. Reading is by column name, so a file with extra columns reads, and
//! one missing a feature column reads that feature as missing (older schema versions).

use std::io::Cursor;

use chrono::{DateTime, Utc};
use polars::prelude::*;

use crate::schema::{Feature, FeatureRow, NAMESPACE_COLUMN, SERVICE_COLUMN, TIMESTAMP_COLUMN};
use crate::service::ServiceId;

/// Why rows could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Polars or the Parquet codec failed.
    #[error("parquet: {0}")]
    Parquet(#[from] PolarsError),
    /// A file lacks a required column or holds a bad value.
    #[error("{0}")]
    Invalid(String),
}

/// The rows as a data frame with the schema's columns.
pub fn to_frame(rows: &[FeatureRow]) -> Result<DataFrame, TableError> {
    let ts: Vec<i64> = rows.iter().map(|r| r.timestamp.timestamp_millis()).collect();
    let mut columns = vec![
        Column::new(TIMESTAMP_COLUMN.into(), ts).cast(&DataType::Datetime(TimeUnit::Milliseconds, None))?,
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
    let mut frame = to_frame(rows)?;
    let mut out = Vec::new();
    ParquetWriter::new(&mut out).with_compression(ParquetCompression::Zstd(None)).finish(&mut frame)?;
    Ok(out)
}

/// Decodes a Parquet file written by [`to_parquet`] (or any file with the same columns).
pub fn from_parquet(bytes: &[u8]) -> Result<Vec<FeatureRow>, TableError> {
    let frame = ParquetReader::new(Cursor::new(bytes)).finish()?;
    from_frame(&frame)
}

/// Rows from a data frame with the schema's columns.
pub fn from_frame(frame: &DataFrame) -> Result<Vec<FeatureRow>, TableError> {
    let column =
        |name: &str| frame.column(name).map_err(|_| TableError::Invalid(format!("the file has no `{name}` column")));
    let ts =
        column(TIMESTAMP_COLUMN)?.cast(&DataType::Datetime(TimeUnit::Milliseconds, None))?.cast(&DataType::Int64)?;
    let ts = ts.i64()?;
    let ns = column(NAMESPACE_COLUMN)?.str()?.clone();
    let svc = column(SERVICE_COLUMN)?.str()?.clone();
    let mut features = Vec::new();
    for f in Feature::ALL {
        features.push(match frame.column(f.name()) {
            Ok(c) => Some(c.cast(&DataType::Float64)?.f64()?.clone()),
            Err(_) => None,
        });
    }
    let mut rows = Vec::with_capacity(frame.height());
    for i in 0..frame.height() {
        let millis = ts.get(i).ok_or_else(|| TableError::Invalid(format!("row {i}: timestamp is null")))?;
        let timestamp = DateTime::<Utc>::from_timestamp_millis(millis)
            .ok_or_else(|| TableError::Invalid(format!("row {i}: timestamp {millis} ms is out of range")))?;
        let (Some(n), Some(s)) = (ns.get(i), svc.get(i)) else {
            return Err(TableError::Invalid(format!("row {i}: namespace or service is null")));
        };
        let service = ServiceId::new(n, s).map_err(|e| TableError::Invalid(format!("row {i}: {e}")))?;
        let mut row = FeatureRow::empty(timestamp, service);
        for (f, col) in Feature::ALL.into_iter().zip(&features) {
            row.set(f, col.as_ref().and_then(|c| c.get(i)));
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_with_nulls() {
        let t0 = DateTime::parse_from_rfc3339("2024-05-01T10:00:30Z").unwrap().with_timezone(&Utc);
        let svc = ServiceId::new("shop", "order").unwrap();
        let mut a = FeatureRow::empty(t0, svc.clone());
        a.set(Feature::RequestsPerSecond, Some(12.5));
        a.set(Feature::ReplicasReady, Some(3.0));
        let b = FeatureRow::empty(t0 + chrono::Duration::seconds(30), svc);
        let bytes = to_parquet(&[a.clone(), b.clone()]).unwrap();
        let back = from_parquet(&bytes).unwrap();
        assert_eq!(back, vec![a, b]);
        assert_eq!(back[1].get(Feature::CpuCores), None, "nulls stay missing");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(from_parquet(b"not parquet").is_err());
    }
}
