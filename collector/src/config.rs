//! The collector's settings: one TOML file (`--config`), `PRESCALE__*` overrides.
//!
//! ```toml
//! id = "collector-0"
//! step = "30s"
//! flush_interval = "10m"
//! spool_dir = "/var/lib/prescale/spool"
//!
//! [prometheus]
//! url = "http://prometheus:9090"
//!
//! [store]
//! location = "s3://prescale-data/prod"
//!
//! [catalog]
//! base = "kubernetes"
//! window = "2m"
//!
//! [services]
//! list = ["shop/order", "shop/cart"]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use prescale_core::StepGrid;
use prescale_core::config::{FieldError, StoreConfig, TelemetryConfig};
use prescale_core::store::S3Options;
use prescale_core::table::Layout;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::metrics::Metrics;
use prescale_core::prometheus::catalog::{Catalog, CatalogConfig};
use prescale_core::prometheus::source::{PrometheusConfig, ServicesConfig, Source};

/// Everything the collector needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Names this collector's objects; collectors of one cluster sharing a store need
    /// different ids.
    #[serde(default = "default_id")]
    pub id: String,
    /// The cluster (or Prometheus tenant) this collector reads: its rows go below a
    /// `cluster=<name>` folder of the table and carry a `cluster` column, so collectors of
    /// several clusters write one store without clashing. Unset: directly below the table.
    #[serde(default)]
    pub cluster: Option<String>,
    /// The step: one row per service per step.
    #[serde(default)]
    pub step: StepGrid,
    /// How long a step may wait after its boundary before being queried, so that the
    /// scrapes up to the boundary are in Prometheus; the value is the same as a later
    /// range query would give.
    #[serde(default = "default_query_delay", with = "humantime_serde")]
    pub query_delay: Duration,
    /// How often spooled rows are written to the store.
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// The local spool folder; it must survive restarts (a persistent volume).
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    /// Steps Prometheus could not give are retried until they are this old; after that
    /// they are written as missing values.
    #[serde(default = "default_give_up_after", with = "humantime_serde")]
    pub give_up_after: Duration,
    /// Most bytes the spool's segments may take while the store is unreachable; past it
    /// the oldest sealed segments are dropped (loudly: metric and log), so a long outage
    /// cannot fill the disk. `backfill` can refill what was dropped from Prometheus.
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// Oldest rows the spool keeps waiting for the store; older sealed segments are
    /// dropped the same way.
    #[serde(default = "default_spool_max_age", with = "humantime_serde")]
    pub spool_max_age: Duration,
    /// Steps per range query when filling gaps and backfilling (Prometheus answers at
    /// most 11,000 points per series).
    #[serde(default = "default_chunk_steps")]
    pub chunk_steps: u32,
    /// Key prefix of the rows in the store.
    #[serde(default = "default_table")]
    pub table: String,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where Prometheus is and how to query it.
    #[serde(default)]
    pub prometheus: PrometheusConfig,
    /// Where the Parquet goes.
    pub store: StoreConfig,
    /// Which PromQL gives each feature.
    #[serde(default)]
    pub catalog: CatalogConfig,
    /// Which services to sample.
    #[serde(default)]
    pub services: ServicesConfig,
    /// Logging.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

fn default_id() -> String {
    "collector-0".into()
}
fn default_query_delay() -> Duration {
    Duration::from_secs(2)
}
fn default_flush_interval() -> Duration {
    Duration::from_secs(600)
}
fn default_spool_dir() -> PathBuf {
    "data/collector-spool".into()
}
fn default_give_up_after() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn default_spool_max_bytes() -> u64 {
    2 << 30
}
fn default_spool_max_age() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_chunk_steps() -> u32 {
    1000
}
fn default_table() -> String {
    "metrics".into()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9101))
}

impl CollectorConfig {
    /// Checks what serde cannot: the catalog's PromQL, the id, the services, the
    /// bounds. The error names the field.
    pub fn validate(&self) -> Result<Catalog, FieldError> {
        let layout = Layout::new(&self.table, &self.id).map_err(|e| FieldError::new("id", e))?;
        if let Some(cluster) = &self.cluster {
            layout.in_cluster(cluster).map_err(|e| FieldError::new("cluster", e))?;
        }
        if self.table.is_empty() || self.table.starts_with('/') || self.table.contains("..") {
            return Err(FieldError::new(
                "table",
                format!("{:?} must be a relative key prefix such as \"metrics\"", self.table),
            ));
        }
        if self.spool_max_bytes < 1 << 20 {
            return Err(FieldError::new("spool_max_bytes", format!("{} is below 1 MiB", self.spool_max_bytes)));
        }
        if self.spool_max_age < self.flush_interval.saturating_mul(2) {
            return Err(FieldError::new(
                "spool_max_age",
                format!("{:?} must cover at least two flush intervals", self.spool_max_age),
            ));
        }
        if !(1..=11_000).contains(&self.chunk_steps) {
            return Err(FieldError::new("chunk_steps", format!("must be 1 to 11000, got {}", self.chunk_steps)));
        }
        if self.flush_interval < self.step.duration() {
            return Err(FieldError::new(
                "flush_interval",
                format!("{:?} must be at least one step ({:?})", self.flush_interval, self.step.duration()),
            ));
        }
        if self.query_delay >= self.step.duration() * 10 {
            return Err(FieldError::new(
                "query_delay",
                format!("{:?} must be shorter than ten steps", self.query_delay),
            ));
        }
        if self.prometheus.concurrency == 0 {
            return Err(FieldError::new("prometheus.concurrency", "must be at least 1"));
        }
        self.services.validate()?;
        Catalog::from_config(&self.catalog).map_err(|e| FieldError::new("catalog", e))
    }

    /// Checks the settings once and builds the collector's parts: the catalog's source
    /// over Prometheus and the metrics it counts in. The `--s3-*` flags win over
    /// `[store.s3]`.
    pub fn build(mut self, s3_flags: &S3Options) -> Result<App, FieldError> {
        let catalog = self.validate()?;
        self.store.s3 = s3_flags.over(&self.store.s3);
        let metrics = Metrics::new();
        let source =
            Source::new(self.prometheus.clone(), catalog, self.services.clone(), metrics.query_errors.clone())?;
        Ok(App { config: self, source, metrics })
    }

    /// The object layout.
    pub fn layout(&self) -> Layout {
        Layout { table: self.table.clone(), collector_id: self.id.clone(), cluster: self.cluster.clone() }
    }
}

#[cfg(test)]
mod tests {
    use prescale_core::config::from_toml_str;

    use super::*;

    const GOOD: &str = r#"
        step = "1s"
        flush_interval = "10s"
        [store]
        location = "/tmp/x"
        [catalog]
        base = "storefront"
        window = "5s"
        [services]
        list = ["storefront/order"]
    "#;

    fn load(toml: &str) -> Result<Catalog, String> {
        let config: CollectorConfig = from_toml_str(toml).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, failure_persistence: None, ..Default::default() })]

        /// A settings file with any of its values (or any extra key) replaced by anything:
        /// loading and checking answer, never panic, and a refusal names what was wrong.
        #[test]
        fn any_edit_of_a_good_config_is_loaded_or_refused(text in prescale_testkit::props::edited_toml(GOOD)) {
            if let Err(e) = load(&text) {
                proptest::prop_assert!(!e.trim().is_empty());
            }
        }
    }

    #[test]
    fn a_good_config_loads_with_defaults() {
        let config: CollectorConfig = from_toml_str(GOOD).unwrap();
        config.validate().unwrap();
        assert_eq!(config.id, "collector-0");
        assert_eq!(config.prometheus.retries, 2);
        assert_eq!(config.layout().table, "metrics");
    }

    #[test]
    fn the_shipped_configs_are_valid() {
        for text in [
            include_str!("../../deploy/config/collector-kubernetes.toml"),
            include_str!("../../deploy/config/collector-storefront.toml"),
        ] {
            let config: CollectorConfig = from_toml_str(text).unwrap();
            config.validate().unwrap();
        }
    }

    #[test]
    fn bad_configs_name_what_is_wrong() {
        let cases = [
            (GOOD.replace("[catalog]", "[catalog.features]\ncpu = \"up\"\n[catalog]"), "cpu"),
            (GOOD.replace("window = \"5s\"", "window = \"5s\"\n[catalog.features]\ncpu_cores = \"sum(\""), "cpu_cores"),
            (GOOD.replace("location = \"/tmp/x\"", "location = \"s3://\""), "location"),
            (GOOD.replace("storefront/order", "Order"), "services.list"),
            (GOOD.replace("flush_interval", "flush_intervall"), "flush_intervall"),
            (GOOD.replace("step = \"1s\"", "step = \"1s\"\nid = \"A/B\""), "id"),
        ];
        for (toml, needle) in cases {
            let err = load(&toml).unwrap_err();
            assert!(err.contains(needle), "expected {needle:?} in: {err}");
        }
    }
}
