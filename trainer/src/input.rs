//! The data the trainer learns from or scores on: a trace CSV, or one service of the
//! collector's feature table (of one cluster's folder when the store holds several), and
//! the services of that table a selector such as `shop/*` names; of the table, the steps
//! of `--from`/`--to` only.

use std::path::PathBuf;

use clap::Args;
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use prescale_core::ServiceId;
use prescale_core::store::{self, ObjectStore, S3Options, StoreError};
use prescale_core::table::{FeatureTable, Scan, cluster_prefix};
use prescale_models::dataset::{self, TimeRange};
use prescale_models::series::{DataError, Series};

/// The data to learn from or score on: a trace CSV, or the collector's Parquet.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// A `timestamp,requests` CSV (counts per step).
    #[arg(long, required_unless_present = "data", conflicts_with = "data")]
    pub trace: Option<PathBuf>,
    /// The collector's data: a location (`s3://bucket/prefix`, `file://...` or a path)
    /// holding its Parquet files.
    #[arg(long, env = "PRESCALE_DATA")]
    pub data: Option<String>,
    /// With --data: the service to learn, as `namespace/name` or `name`.
    #[arg(long)]
    pub service: Option<String>,
    /// With --data: the cluster whose rows to read (its `cluster=` folder), when
    /// collectors of several clusters write the store.
    #[arg(long, requires = "data", value_parser = cluster_name)]
    pub cluster: Option<String>,
    /// With --data: the first step to read, as RFC 3339 (`2026-11-01T00:00:00Z`) or a
    /// duration before now (`28d`); the table's first by default. Bounds what a daily
    /// retraining reads however long the collector has been writing.
    #[arg(long, requires = "data", value_parser = time_bound)]
    pub from: Option<DateTime<Utc>>,
    /// With --data: the last step to read (the same forms); the table's last by default.
    #[arg(long, requires = "data", value_parser = time_bound)]
    pub to: Option<DateTime<Utc>>,
}

/// Why the data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Neither a trace nor a data location with a service was given.
    #[error("give --trace FILE, or --data LOCATION with --service NAME")]
    Missing,
    /// The data location could not be opened.
    #[error("opening {location}: {source}")]
    Store {
        /// The location as given.
        location: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The data is not a usable series.
    #[error(transparent)]
    Data(#[from] DataError),
    /// `--from` is not before `--to`.
    #[error(transparent)]
    Range(#[from] RangeError),
}

/// `--from` is not before `--to`.
#[derive(Debug, thiserror::Error)]
#[error("--from {from} is not before --to {to}")]
pub struct RangeError {
    /// As resolved.
    pub from: String,
    /// As resolved.
    pub to: String,
}

impl DataArgs {
    /// Loads the series these arguments name.
    pub async fn load(&self, s3: &S3Options) -> Result<Series, InputError> {
        match (&self.trace, &self.data, &self.service) {
            (Some(trace), _, _) => Ok(Series::from_trace_csv(trace)?),
            (None, Some(location), Some(service)) => {
                let range = self.range()?;
                let store = self.open(location, s3).await?;
                Ok(dataset::load_service(store.as_ref(), &self.prefix(), service, range).await?)
            }
            _ => Err(InputError::Missing),
        }
    }

    /// The steps to read: `--from` to `--to`, checked.
    pub fn range(&self) -> Result<TimeRange, RangeError> {
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from >= to
        {
            let text = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            return Err(RangeError { from: text(from), to: text(to) });
        }
        Ok(TimeRange { from: self.from, to: self.to })
    }

    /// The services of the data `selector` names (`shop/*`, `*/order`, `shop/order`) with
    /// rows in the range, sorted; only the key columns are read, one object at a time.
    pub async fn services(&self, s3: &S3Options, selector: &str) -> Result<Vec<ServiceId>, InputError> {
        let Some(location) = &self.data else { return Err(InputError::Missing) };
        let range = self.range()?;
        let store = self.open(location, s3).await?;
        let prefix = self.prefix();
        let table = FeatureTable::new(store.as_ref(), &prefix);
        let failed = |e: prescale_core::table::TableError| InputError::Data(DataError::Parquet(e.to_string()));
        let scan = range.narrow(Scan { features: Some(Vec::new()), ..Scan::service(selector) });
        // Object by object: a fleet's table has tens of millions of rows, and only the
        // distinct services are wanted.
        let mut found = BTreeSet::new();
        for object in table.objects(&scan).await.map_err(failed)? {
            for row in table.read_object(&object.key, &scan).await.map_err(failed)? {
                if !found.contains(&row.service) {
                    found.insert(row.service);
                }
            }
        }
        Ok(found.into_iter().collect())
    }

    /// The store holding the collector's table and the table's prefix in it.
    pub async fn table(&self, s3: &S3Options) -> Result<(std::sync::Arc<dyn ObjectStore>, String), InputError> {
        let Some(location) = &self.data else { return Err(InputError::Missing) };
        Ok((self.open(location, s3).await?, self.prefix()))
    }

    /// The same data, for one service.
    pub fn for_service(&self, service: &ServiceId) -> Self {
        Self { trace: None, service: Some(service.to_string()), ..self.clone() }
    }

    /// The table's prefix in the store: its root, or the cluster's folder.
    fn prefix(&self) -> String {
        self.cluster.as_deref().map(|c| cluster_prefix("", c)).unwrap_or_default()
    }

    async fn open(&self, location: &str, s3: &S3Options) -> Result<std::sync::Arc<dyn ObjectStore>, InputError> {
        store::open_str(location, s3)
            .await
            .map_err(|source| InputError::Store { location: location.to_owned(), source })
    }
}

/// A `--from`/`--to` value: RFC 3339, or a duration (`28d`, `12h`) before now.
pub fn time_bound(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!("{text:?} is neither an RFC 3339 time (2026-11-01T00:00:00Z) nor a duration before now (28d)")
    })?;
    let ago = chrono::Duration::from_std(ago).map_err(|_| format!("{text:?} is too long ago"))?;
    Utc::now().checked_sub_signed(ago).ok_or_else(|| format!("{text:?} is too long ago"))
}

/// A `--cluster` value: a DNS-1123 label, as the collector's `cluster` setting.
pub fn cluster_name(text: &str) -> Result<String, String> {
    prescale_core::service::validate_label("cluster", text).map_err(|e| e.to_string())?;
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_is_a_time_or_a_duration_before_now() {
        let t = time_bound("2026-11-01T00:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-01T00:00:00+00:00");
        let ago = Utc::now() - time_bound("28d").unwrap();
        assert!((ago - chrono::Duration::days(28)).num_seconds().abs() < 60, "{ago}");
        let err = time_bound("next week").unwrap_err();
        assert!(err.contains("\"next week\"") && err.contains("RFC 3339"), "{err}");
    }
}
