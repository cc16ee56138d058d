//! The data the trainer learns from or scores on: a trace CSV, or one service of the
//! collector's feature table.

use std::path::PathBuf;

use clap::Args;
use prescale_core::store::{self, S3Options, StoreError};
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
    #[arg(long, requires = "service", env = "PRESCALE_DATA")]
    pub data: Option<String>,
    /// With --data: the service to learn, as `namespace/name` or `name`.
    #[arg(long)]
    pub service: Option<String>,
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
                let store = store::open_str(location, s3)
                    .await
                    .map_err(|source| InputError::Store { location: location.clone(), source })?;
                Ok(dataset::load_service(store.as_ref(), "", service).await?)
            }
            _ => Err(InputError::Missing),
        }
    }
}
