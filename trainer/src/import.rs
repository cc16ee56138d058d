//! `import`: request-rate traces written as the collector's rows, so that a fleet model
//! can be trained on traces, or a new installation started from history kept elsewhere
//! (the demo's synthetic days). Only `requests_per_second` is written; the other
//! features stay missing, as they do for a service whose metrics lack them.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use prescale_core::ServiceId;
use prescale_core::schema::{Feature, FeatureRow};
use prescale_core::store::ObjectStore;
use prescale_core::table::{self, Layout};
use prescale_models::series::Series;

/// A `--trace SERVICE=PATH` value.
pub fn trace_of(text: &str) -> Result<(ServiceId, PathBuf), String> {
    let (service, path) =
        text.split_once('=').ok_or_else(|| format!("{text:?} is not SERVICE=PATH (such as shop/order=order.csv)"))?;
    let id: ServiceId = service.parse().map_err(|e| format!("{service:?}: {e}"))?;
    Ok((id, PathBuf::from(path)))
}

/// An `--end` value: `now` or an RFC 3339 time.
pub fn end_of(text: &str) -> Result<DateTime<Utc>, String> {
    if text == "now" {
        return Ok(Utc::now());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is neither `now` nor an RFC 3339 time: {e}"))
}

/// Writes each trace as `service`'s rows below the table `store` holds (in `cluster`'s
/// folder when given), moved so that its last step falls on the step of `end` when
/// given; returns the rows written per service. Every trace is read and checked before
/// anything is written.
pub async fn import(
    store: &dyn ObjectStore,
    cluster: Option<&str>,
    traces: &[(ServiceId, PathBuf)],
    end: Option<DateTime<Utc>>,
) -> anyhow::Result<Vec<(ServiceId, usize)>> {
    let mut loaded = Vec::with_capacity(traces.len());
    for (id, path) in traces {
        let series = Series::from_trace_csv(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        loaded.push((id.clone(), series));
    }
    let mut written = Vec::new();
    for (id, series) in loaded {
        // Objects are named by their writer and first step: each service is its own
        // writer, so services imported over the same days never overwrite each other,
        // and importing a service again replaces its rows.
        let digest = prescale_models::artifact::sha256(id.to_string().as_bytes());
        let mut layout = Layout::new("", format!("import-{}", &digest[..16]))?;
        if let Some(c) = cluster {
            layout = layout.in_cluster(c)?;
        }
        let last = series.time(series.len() - 1);
        let shift = end.map_or(chrono::Duration::zero(), |e| series.grid.floor(e) - last);
        let rows: Vec<FeatureRow> = series
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let mut row = FeatureRow::empty(series.time(i) + shift, id.clone());
                row.set(Feature::RequestsPerSecond, Some((*v)?));
                Some(row)
            })
            .collect();
        let n = rows.len();
        table::write_rows(store, &layout, rows).await?;
        written.push((id, n));
    }
    Ok(written)
}
