//! Where the trainer reads data and keeps models: command-line arguments shared by the
//! subcommands.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use prescale_core::Location;
use prescale_core::store::{self, ObjectStore, S3Options};
use prescale_models::dataset;
use prescale_models::series::Series;

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

/// How to reach S3 for `s3://` locations: the shared `--s3-*` flags.
#[derive(Debug, Clone, Args)]
pub struct S3Args {
    /// The S3 options.
    #[command(flatten)]
    pub options: S3Options,
}

impl S3Args {
    /// Opens a store at a location string.
    pub async fn open(&self, location: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
        let location: Location = location.parse().with_context(|| format!("location {location:?}"))?;
        Ok(store::open(&location, &self.options).await?)
    }

    /// Loads the series `data` names.
    pub async fn load(&self, data: &DataArgs) -> anyhow::Result<Series> {
        match (&data.trace, &data.data, &data.service) {
            (Some(trace), _, _) => Ok(Series::from_trace_csv(trace)?),
            (None, Some(location), Some(service)) => {
                let store = self.open(location).await?;
                Ok(dataset::load_service(store.as_ref(), "", service).await?)
            }
            _ => anyhow::bail!("give --trace FILE, or --data LOCATION with --service NAME"),
        }
    }
}
