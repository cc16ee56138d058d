//! `inspect`: what a store holds: time range, services, rows, gaps and duplicates.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use prescale_core::store::ObjectStore;
use prescale_core::table::{FeatureTable, Scan, TableError, cluster_of};
use prescale_core::{Feature, FeatureRow};
use serde::Serialize;

/// A stretch of missing steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// First missing step.
    pub from: DateTime<Utc>,
    /// Last missing step.
    pub to: DateTime<Utc>,
    /// Steps missing.
    pub steps: i64,
}

/// One service's rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceInventory {
    /// `namespace/name`, and `@cluster` for rows below a `cluster=` folder.
    pub service: String,
    /// Rows stored.
    pub rows: usize,
    /// First step.
    pub first: DateTime<Utc>,
    /// Last step.
    pub last: DateTime<Utc>,
    /// Steps between first and last without a row.
    pub missing_steps: i64,
    /// The missing stretches, oldest first.
    pub gaps: Vec<Gap>,
    /// Rows of a step already seen (should be 0).
    pub duplicate_rows: usize,
    /// Share of missing values per feature, 0 to 1.
    pub missing_share: BTreeMap<String, f64>,
}

/// What a store holds below a table prefix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inventory {
    /// Parquet objects read.
    pub objects: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Rows in them.
    pub rows: usize,
    /// The clusters of `cluster=` folders, by name (none for a single-cluster table).
    pub clusters: Vec<String>,
    /// The step, inferred as the most common spacing of a service's steps.
    pub step_seconds: Option<f64>,
    /// First step of any service.
    pub first: Option<DateTime<Utc>>,
    /// Last step of any service.
    pub last: Option<DateTime<Utc>>,
    /// Per service, by name.
    pub services: Vec<ServiceInventory>,
}

/// Reads every Parquet object of the feature table below `table` and summarises it; the
/// rows of each cluster's folder are told apart (`shop/order@east`).
pub async fn inspect(store: &dyn ObjectStore, table: &str) -> Result<Inventory, TableError> {
    let table = FeatureTable::new(store, table);
    let scan = Scan::default();
    let mut rows: Vec<(Option<String>, FeatureRow)> = Vec::new();
    let (mut objects, mut bytes) = (0, 0);
    for object in table.objects(&scan).await? {
        let cluster = cluster_of(&object.key).map(str::to_owned);
        rows.extend(table.read_object(&object.key, &scan).await?.into_iter().map(|r| (cluster.clone(), r)));
        objects += 1;
        bytes += object.size;
    }
    Ok(summarise_clusters(objects, bytes, rows))
}

/// The inventory of rows already read, all of one table without clusters.
pub fn summarise(objects: usize, bytes: u64, rows: Vec<FeatureRow>) -> Inventory {
    summarise_clusters(objects, bytes, rows.into_iter().map(|r| (None, r)).collect())
}

/// The inventory of rows already read, each with its cluster.
pub fn summarise_clusters(objects: usize, bytes: u64, rows: Vec<(Option<String>, FeatureRow)>) -> Inventory {
    let total = rows.len();
    let clusters: BTreeSet<String> = rows.iter().filter_map(|(c, _)| c.clone()).collect();
    let mut by_service: BTreeMap<String, Vec<FeatureRow>> = BTreeMap::new();
    for (cluster, row) in rows {
        let key = match cluster {
            Some(c) => format!("{}@{c}", row.service),
            None => row.service.to_string(),
        };
        by_service.entry(key).or_default().push(row);
    }
    // The step is what most consecutive distinct steps are apart, over all services.
    let mut spacings: HashMap<i64, usize> = HashMap::new();
    for rows in by_service.values_mut() {
        rows.sort_by_key(|r| r.timestamp);
        for w in rows.windows(2) {
            let d = (w[1].timestamp - w[0].timestamp).num_milliseconds();
            if d > 0 {
                *spacings.entry(d).or_default() += 1;
            }
        }
    }
    let step_ms = spacings.into_iter().max_by_key(|(d, n)| (*n, -*d)).map(|(d, _)| d);
    let services: Vec<ServiceInventory> =
        by_service.into_iter().map(|(service, rows)| service_inventory(service, &rows, step_ms)).collect();
    Inventory {
        objects,
        bytes,
        rows: total,
        clusters: clusters.into_iter().collect(),
        step_seconds: step_ms.map(|ms| ms as f64 / 1000.0),
        first: services.iter().map(|s| s.first).min(),
        last: services.iter().map(|s| s.last).max(),
        services,
    }
}

fn service_inventory(service: String, rows: &[FeatureRow], step_ms: Option<i64>) -> ServiceInventory {
    let first = rows[0].timestamp;
    let last = rows[rows.len() - 1].timestamp;
    let mut duplicate_rows = 0;
    let mut gaps = Vec::new();
    for w in rows.windows(2) {
        let d = (w[1].timestamp - w[0].timestamp).num_milliseconds();
        if d == 0 {
            duplicate_rows += 1;
        } else if let Some(step) = step_ms.filter(|s| d > *s) {
            let steps = d / step - 1;
            gaps.push(Gap {
                from: w[0].timestamp + TimeDelta::milliseconds(step),
                to: w[1].timestamp - TimeDelta::milliseconds(step),
                steps,
            });
        }
    }
    let missing_share = Feature::ALL
        .into_iter()
        .map(|f| (f.name().to_owned(), rows.iter().filter(|r| r.get(f).is_none()).count() as f64 / rows.len() as f64))
        .collect();
    ServiceInventory {
        service,
        rows: rows.len(),
        first,
        last,
        missing_steps: gaps.iter().map(|g| g.steps).sum(),
        gaps,
        duplicate_rows,
        missing_share,
    }
}

impl fmt::Display for Inventory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return writeln!(f, "no rows ({} objects)", self.objects);
        };
        writeln!(
            f,
            "objects    {} ({} bytes, {:.1} bytes/row)",
            self.objects,
            self.bytes,
            self.bytes as f64 / self.rows.max(1) as f64
        )?;
        writeln!(f, "rows       {}", self.rows)?;
        if !self.clusters.is_empty() {
            writeln!(f, "clusters   {}", self.clusters.join(", "))?;
        }
        writeln!(f, "range      {} .. {}", first.to_rfc3339(), last.to_rfc3339())?;
        if let Some(s) = self.step_seconds {
            writeln!(f, "step       {s} s")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<32} {:>8} {:>9} {:>6} {:>5}  {:<25} {:<25} mostly missing",
            "service", "rows", "missing", "gaps", "dups", "first", "last"
        )?;
        for s in &self.services {
            let mostly_missing: Vec<&str> =
                s.missing_share.iter().filter(|(_, share)| **share > 0.5).map(|(k, _)| k.as_str()).collect();
            writeln!(
                f,
                "{:<32} {:>8} {:>9} {:>6} {:>5}  {:<25} {:<25} {}",
                s.service,
                s.rows,
                s.missing_steps,
                s.gaps.len(),
                s.duplicate_rows,
                s.first.to_rfc3339(),
                s.last.to_rfc3339(),
                if mostly_missing.is_empty() { "-".to_owned() } else { mostly_missing.join(",") }
            )?;
            for g in s.gaps.iter().take(5) {
                writeln!(f, "    gap {} .. {} ({} steps)", g.from.to_rfc3339(), g.to.to_rfc3339(), g.steps)?;
            }
            if s.gaps.len() > 5 {
                writeln!(f, "    ... {} more gaps", s.gaps.len() - 5)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prescale_core::ServiceId;

    use super::*;

    #[test]
    fn gaps_and_duplicates_are_found() {
        let t = |s: i64| DateTime::from_timestamp(1_700_000_000 + 30 * s, 0).unwrap();
        let svc = ServiceId::new("shop", "order").unwrap();
        let mut rows: Vec<FeatureRow> =
            [0, 1, 2, 5, 6, 6, 7].iter().map(|s| FeatureRow::empty(t(*s), svc.clone())).collect();
        rows[0].set(Feature::CpuCores, Some(1.0));
        let inv = summarise(2, 100, rows);
        assert_eq!(inv.step_seconds, Some(30.0));
        let s = &inv.services[0];
        assert_eq!((s.rows, s.missing_steps, s.duplicate_rows), (7, 2, 1));
        assert_eq!(s.gaps, vec![Gap { from: t(3), to: t(4), steps: 2 }]);
        assert!((s.missing_share["cpu_cores"] - 6.0 / 7.0).abs() < 1e-12);
        let text = inv.to_string();
        assert!(text.contains("shop/order") && text.contains("gap "), "{text}");
    }
}
