//! The feature table's Parquet files say their timestamps are UTC instants: read back
//! through a second Parquet reader (arrow-rs' `parquet`, as Spark, DuckDB or pandas would
//! read them), the `timestamp` column is a millisecond TIMESTAMP with `isAdjustedToUTC`
//! set; and files written before the tag (naive timestamps) still read the same rows.

use chrono::{TimeZone, Utc};
use parquet::basic::{LogicalType, TimeUnit};
use parquet::file::reader::{FileReader, SerializedFileReader};
use polars::prelude::*;
use prescale_core::schema::{Feature, FeatureRow};
use prescale_core::service::ServiceId;
use prescale_core::table::{from_parquet, to_parquet};

fn rows() -> Vec<FeatureRow> {
    let service = ServiceId::new("shop", "order").unwrap();
    (0..3)
        .map(|i| {
            let mut r = FeatureRow::empty(Utc.with_ymd_and_hms(2026, 12, 2, 10, i, 0).unwrap(), service.clone());
            r.set(Feature::RequestsPerSecond, Some(10.0 + f64::from(i)));
            r
        })
        .collect()
}

#[test]
fn timestamps_are_tagged_utc_for_every_reader() {
    let rows = rows();
    let bytes = to_parquet(&rows).unwrap();
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes.clone())).unwrap();
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let column = (0..schema.num_columns()).map(|i| schema.column(i)).find(|c| c.name() == "timestamp").unwrap();
    match column.logical_type_ref() {
        Some(LogicalType::Timestamp { is_adjusted_to_u_t_c, unit }) => {
            assert!(*is_adjusted_to_u_t_c, "the timestamps are naive");
            assert!(matches!(unit, TimeUnit::MILLIS), "{unit:?}");
        }
        other => panic!("timestamp is {other:?}"),
    }
    assert_eq!(from_parquet(&bytes).unwrap(), rows);
}

#[test]
fn files_with_naive_timestamps_read_the_same() {
    let rows = rows();
    let ts: Vec<i64> = rows.iter().map(|r| r.timestamp.timestamp_millis()).collect();
    let mut frame = prescale_core::table::codec::to_frame(&rows).unwrap();
    frame
        .with_column(
            Column::new("timestamp".into(), ts)
                .cast(&DataType::Datetime(polars::prelude::TimeUnit::Milliseconds, None))
                .unwrap(),
        )
        .unwrap();
    let mut out = Vec::new();
    ParquetWriter::new(&mut out).finish(&mut frame).unwrap();
    let reader = SerializedFileReader::new(bytes::Bytes::from(out.clone())).unwrap();
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    assert!(
        matches!(schema.column(0).logical_type_ref(), Some(LogicalType::Timestamp { is_adjusted_to_u_t_c: false, .. })),
        "the old form"
    );
    assert_eq!(from_parquet(&out).unwrap(), rows);
}
