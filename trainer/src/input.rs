//! The data the trainer learns from or scores on: a trace CSV, or one service of the
//! collector's feature table (of one cluster's folder when the store holds several), and
//! the services of that table a selector such as `shop/*` names.

use std::path::PathBuf;

use clap::Args;
use std::collections::BTreeSet;

use prescale_core::ServiceId;
use prescale_core::store::{self, ObjectStore, S3Options, StoreError};
use prescale_core::table::{FeatureTable, Scan, cluster_prefix};
use prescale_models::dataset;
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
}

impl DataArgs {
    /// Loads the series these arguments name.
    pub async fn load(&self, s3: &S3Options) -> Result<Series, InputError> {
        match (&self.trace, &self.data, &self.service) {
            (Some(trace), _, _) => Ok(Series::from_trace_csv(trace)?),
            (None, Some(location), Some(service)) => {
                let store = self.open(location, s3).await?;
                Ok(dataset::load_service(store.as_ref(), &self.prefix(), service).await?)
            }
            _ => Err(InputError::Missing),
        }
    }

    /// The services of the data `selector` names (`shop/*`, `*/order`, `shop/order`),
    /// sorted; only the key columns are read, one object at a time.
    pub async fn services(&self, s3: &S3Options, selector: &str) -> Result<Vec<ServiceId>, InputError> {
        let Some(location) = &self.data else { return Err(InputError::Missing) };
        let store = self.open(location, s3).await?;
        let prefix = self.prefix();
        let table = FeatureTable::new(store.as_ref(), &prefix);
        let failed = |e: prescale_core::table::TableError| InputError::Data(DataError::Parquet(e.to_string()));
        let scan = Scan { features: Some(Vec::new()), ..Scan::service(selector) };
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

/// A `--cluster` value: a DNS-1123 label, as the collector's `cluster` setting.
pub fn cluster_name(text: &str) -> Result<String, String> {
    prescale_core::service::validate_label("cluster", text).map_err(|e| e.to_string())?;
    Ok(text.to_owned())
}
