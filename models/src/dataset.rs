//! The collector's Parquet as training data: one [`Series`] per service.
//!
//! The service's rows are read from the feature table below a prefix of a store (core's
//! [`FeatureTable`]: the collector's Hive layout, only this service's rows decoded), put
//! on their step grid, and `requests_per_second` becomes the target while every other
//! feature of the schema becomes a covariate. Steps with no row stay missing. Two rows of
//! one step must agree (a retried flush rewrites the same rows); otherwise the data is
//! refused, since it cannot say which is true.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ndarray::Array2;
use prescale_core::schema::{Feature, FeatureRow};
use prescale_core::store::ObjectStore;
use prescale_core::table::{FeatureTable, Scan};

use crate::preprocess::Covariates;
use crate::series::{DataError, Series, infer_grid};

/// The series of one service (`namespace/name`, or just `name` when only one namespace
/// has it) from collector rows, with the other features as covariates.
pub fn service_series(rows: &[FeatureRow], service: &str) -> Result<Series, DataError> {
    let mut by_time: BTreeMap<DateTime<Utc>, &FeatureRow> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.service.matches(service)) {
        if let Some(prev) = by_time.insert(row.timestamp, row) {
            if prev.service != row.service {
                return Err(DataError::Parquet(format!(
                    "service {service:?} is ambiguous: {} and {}; name it as namespace/name",
                    prev.service, row.service
                )));
            }
            if prev.values != row.values {
                return Err(DataError::Parquet(format!(
                    "{}: two different rows for step {}",
                    row.service,
                    row.timestamp.to_rfc3339()
                )));
            }
        }
    }
    if by_time.is_empty() {
        let mut known: Vec<String> = rows.iter().map(|r| r.service.to_string()).collect();
        known.sort();
        known.dedup();
        return Err(DataError::Parquet(format!("no rows for service {service:?}; the data has {}", known.join(", "))));
    }
    let name = by_time.values().next().map(|r| r.service.to_string()).unwrap_or_default();
    if by_time.len() < 2 {
        return Err(DataError::TooShort { source_name: name, reason: "fewer than two steps".into() });
    }
    let times: Vec<DateTime<Utc>> = by_time.keys().copied().collect();
    let grid = infer_grid(&name, &times)?;
    let start = times[0];
    let step_ms = grid.delta().num_milliseconds();
    let len = ((*times.last().unwrap_or(&start) - start).num_milliseconds() / step_ms) as usize + 1;
    let covariate_features: Vec<Feature> =
        Feature::ALL.into_iter().filter(|f| *f != Feature::RequestsPerSecond).collect();
    let mut values = vec![None; len];
    let mut cov = Array2::from_elem((len, covariate_features.len()), f64::NAN);
    for (line, (ts, row)) in by_time.iter().enumerate() {
        let offset = (*ts - start).num_milliseconds();
        if offset % step_ms != 0 {
            return Err(DataError::Irregular {
                source_name: name.clone(),
                line: line + 1,
                timestamp: ts.to_rfc3339(),
                step_secs: grid.seconds(),
                start: start.to_rfc3339(),
            });
        }
        let i = (offset / step_ms) as usize;
        values[i] = row.get(Feature::RequestsPerSecond);
        for (j, f) in covariate_features.iter().enumerate() {
            if let Some(v) = row.get(*f) {
                cov[[i, j]] = v;
            }
        }
    }
    let names = covariate_features.iter().map(|f| f.name().to_owned()).collect();
    Series::new(name, grid, start, values)?.with_covariates(Covariates { names, values: cov })
}

/// Steps to read: from and to (both included), either open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimeRange {
    /// First step read; unset: the table's first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    /// Last step read; unset: the table's last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
}

impl TimeRange {
    /// Whether it leaves the table whole.
    pub fn is_all(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    /// `scan` narrowed to the range: the table skips the hour partitions outside it.
    pub fn narrow(&self, scan: Scan) -> Scan {
        Scan { from: self.from, to: self.to, ..scan }
    }
}

impl std::fmt::Display for TimeRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = |t: Option<DateTime<Utc>>| {
            t.map_or_else(|| "…".to_owned(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        };
        write!(f, "{} to {}", end(self.from), end(self.to))
    }
}

/// Reads one service's series from the feature table below `prefix` of a store, the steps
/// of `range` only.
pub async fn load_service(
    store: &dyn ObjectStore,
    prefix: &str,
    service: &str,
    range: TimeRange,
) -> Result<Series, DataError> {
    let table = FeatureTable::new(store, prefix);
    let failed = |e: prescale_core::table::TableError| DataError::Parquet(e.to_string());
    let rows = table.read(&range.narrow(Scan::service(service))).await.map_err(failed)?;
    if !rows.is_empty() {
        return service_series(&rows, service);
    }
    // None of its rows: say which services the data has (the key columns only).
    let keys = table.read(&Scan { features: Some(Vec::new()), ..Scan::default() }).await.map_err(failed)?;
    if keys.is_empty() {
        return Err(DataError::Parquet(format!("no Parquet rows below {}/{prefix}", store.location())));
    }
    service_series(&keys, service)
}

/// The demand of every service of `services` (`namespace/name`), in that order, read in
/// one pass over the table: each object is decoded once (the key and
/// `requests_per_second` columns only) and only the named services' values are kept, as
/// compact (time, value) pairs, until each service's series is built. Memory is that of
/// the kept values, not of the rows: a fleet's history is read without materialising
/// every row of it. Only the steps of `range` are read (the hour partitions outside it are
/// not opened). A named service without rows there is an error naming it.
pub async fn load_demands(
    store: &dyn ObjectStore,
    prefix: &str,
    services: &[String],
    range: TimeRange,
) -> Result<Vec<Series>, DataError> {
    let table = FeatureTable::new(store, prefix);
    let failed = |e: prescale_core::table::TableError| DataError::Parquet(e.to_string());
    let wanted: std::collections::HashMap<&str, usize> =
        services.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    let mut points: Vec<Vec<(i64, f64)>> = vec![Vec::new(); services.len()];
    let scan = range.narrow(Scan { features: Some(vec![Feature::RequestsPerSecond]), ..Scan::default() });
    let mut name = String::new();
    for object in table.objects(&scan).await.map_err(failed)? {
        for row in table.read_object(&object.key, &scan).await.map_err(failed)? {
            name.clear();
            name.push_str(row.service.namespace());
            name.push('/');
            name.push_str(row.service.name());
            // A row without demand still marks its step (NaN: missing), as in
            // `service_series`.
            if let Some(&i) = wanted.get(name.as_str()) {
                points[i]
                    .push((row.timestamp.timestamp_millis(), row.get(Feature::RequestsPerSecond).unwrap_or(f64::NAN)));
            }
        }
    }
    services.iter().zip(points).map(|(name, mut p)| demand_series(name, &mut p)).collect()
}

/// A service's demand series from its (time in ms, value) points (NaN: missing), in any
/// order; two points of one step must agree, as in [`service_series`].
fn demand_series(name: &str, points: &mut Vec<(i64, f64)>) -> Result<Series, DataError> {
    if points.is_empty() {
        return Err(DataError::Parquet(format!("no rows for service {name:?}")));
    }
    points.sort_by_key(|p| p.0);
    let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
    if let Some(w) = points.windows(2).find(|w| w[0].0 == w[1].0 && !same(w[0].1, w[1].1)) {
        let t = DateTime::from_timestamp_millis(w[0].0).unwrap_or_default();
        return Err(DataError::Parquet(format!("{name}: two different rows for step {}", t.to_rfc3339())));
    }
    points.dedup_by_key(|p| p.0);
    if points.len() < 2 {
        return Err(DataError::TooShort { source_name: name.to_owned(), reason: "fewer than two steps".into() });
    }
    let times: Vec<DateTime<Utc>> =
        points.iter().map(|p| DateTime::from_timestamp_millis(p.0).unwrap_or_default()).collect();
    let grid = infer_grid(name, &times)?;
    let step_ms = grid.delta().num_milliseconds();
    let start = points[0].0;
    let len = ((points[points.len() - 1].0 - start) / step_ms) as usize + 1;
    let mut values = vec![None; len];
    for &(t, v) in points.iter() {
        values[((t - start) / step_ms) as usize] = (!v.is_nan()).then_some(v);
    }
    Series::new(name, grid, times[0], values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescale_core::ServiceId;

    fn row(t: i64, svc: &str, rps: Option<f64>) -> FeatureRow {
        let mut r = FeatureRow::empty(
            DateTime::from_timestamp(1_700_000_000 + t * 30, 0).unwrap(),
            ServiceId::new("shop", svc).unwrap(),
        );
        r.set(Feature::RequestsPerSecond, rps);
        r.set(Feature::CpuCores, rps.map(|v| v / 100.0));
        r
    }

    #[test]
    fn rows_become_a_series_on_the_grid_with_gaps_missing() {
        let rows = vec![
            row(0, "order", Some(5.0)),
            row(1, "order", Some(6.0)),
            row(3, "order", Some(8.0)),
            row(1, "cart", Some(1.0)),
        ];
        let s = service_series(&rows, "order").unwrap();
        assert_eq!(s.values, vec![Some(5.0), Some(6.0), None, Some(8.0)]);
        assert_eq!(s.grid.seconds(), 30.0);
        let cov = s.covariates.unwrap();
        assert_eq!(cov.values.nrows(), 4);
        let cpu = cov.names.iter().position(|n| n == "cpu_cores").unwrap();
        assert_eq!(cov.values[[3, cpu]], 0.08);
        assert!(cov.values[[2, cpu]].is_nan());
    }

    #[test]
    fn unknown_service_and_conflicting_rows_are_refused() {
        let rows = vec![row(0, "order", Some(5.0)), row(1, "order", Some(6.0))];
        let err = service_series(&rows, "cart").unwrap_err().to_string();
        assert!(err.contains("shop/order"), "{err}");
        let mut dup = rows.clone();
        dup.push(row(1, "order", Some(7.0)));
        assert!(service_series(&dup, "order").unwrap_err().to_string().contains("two different rows"));
        let mut same = rows;
        same.push(row(1, "order", Some(6.0)));
        assert_eq!(service_series(&same, "shop/order").unwrap().len(), 2, "identical rewrites are one step");
    }

    /// One pass over the table gives each named service the demand series its own
    /// rows give, whatever objects they share; a conflict or an absent service is named.
    #[tokio::test]
    async fn demands_of_many_services_in_one_pass_equal_each_service_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = prescale_core::store::LocalStore::new(dir.path());
        let mut rows = Vec::new();
        for t in 0..300 {
            if t % 7 != 3 {
                rows.push(row(t, "order", Some(5.0 + (t % 11) as f64)));
            }
            rows.push(row(t, "cart", (t % 5 != 0).then_some(1.0 + t as f64 / 10.0)));
            rows.push(row(t + 50, "late", Some(2.0)));
        }
        let layout = prescale_core::table::Layout::new("", "c0").unwrap();
        prescale_core::table::write_rows(&store, &layout, rows.clone()).await.unwrap();
        let names = ["shop/order".to_owned(), "shop/late".to_owned(), "shop/cart".to_owned()];
        let all = load_demands(&store, "", &names, TimeRange::default()).await.unwrap();
        for (name, got) in names.iter().zip(&all) {
            let alone = service_series(&rows, name).unwrap();
            assert_eq!((got.start, got.grid, &got.values), (alone.start, alone.grid, &alone.values), "{name}");
            assert!(got.covariates.is_none());
        }
        let err =
            load_demands(&store, "", &["shop/none".to_owned()], TimeRange::default()).await.unwrap_err().to_string();
        assert!(err.contains("shop/none"), "{err}");
        let mut clash = rows;
        clash.push(row(1, "order", Some(99.0)));
        let other = prescale_core::table::Layout::new("", "c1").unwrap();
        prescale_core::table::write_rows(&store, &other, clash).await.unwrap();
        let err = load_demands(&store, "", &names, TimeRange::default()).await.unwrap_err().to_string();
        assert!(err.contains("two different rows"), "{err}");
    }
}
