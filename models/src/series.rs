//! A demand series: requests per second on a regular step grid, with missing steps.
//!
//! Everything the models learn from and are judged on is a [`Series`]: a trace CSV
//! (`timestamp,requests`, counts per step) or the `requests_per_second` column of the
//! collector's Parquet for one service. Missing steps stay `None` end to end: they are
//! masked in training and never scored.

use std::path::Path;

use chrono::{DateTime, Utc};
use prescale_core::StepGrid;

use crate::preprocess::Covariates;

/// Why a series could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The CSV header is not `timestamp,requests`.
    #[error("{source_name}: expected the header `timestamp,requests`, found {found:?}")]
    Header {
        /// Which input.
        source_name: String,
        /// The first line.
        found: String,
    },
    /// A row that cannot be parsed.
    #[error("{source_name} line {line}: {reason}")]
    Row {
        /// Which input.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A value that is NaN, infinite or negative.
    #[error("{source_name} line {line}: value {value} is not a finite, non-negative number")]
    BadValue {
        /// Which input.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// The value.
        value: String,
    },
    /// Timestamps that are not on one regular grid.
    #[error(
        "{source_name} line {line}: timestamp {timestamp} is not on the {step_secs} s grid starting at {start}, or not after the previous row"
    )]
    Irregular {
        /// Which input.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// The offending timestamp.
        timestamp: String,
        /// The inferred step.
        step_secs: f64,
        /// The first timestamp.
        start: String,
    },
    /// Too few rows to infer anything.
    #[error("{source_name}: {reason}")]
    TooShort {
        /// Which input.
        source_name: String,
        /// What is missing.
        reason: String,
    },
    /// Every value is missing.
    #[error("{source_name}: every value is missing")]
    AllMissing {
        /// Which input.
        source_name: String,
    },
    /// The collector's Parquet could not be read or lacks what is needed.
    #[error("collector data: {0}")]
    Parquet(String),
}

/// Requests per second on a regular grid; `None` where the value is missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Where it came from (a file name or `namespace/service`).
    pub name: String,
    /// The step grid.
    pub grid: StepGrid,
    /// Timestamp of `values[0]`.
    pub start: DateTime<Utc>,
    /// One value per step.
    pub values: Vec<Option<f64>>,
    /// The other features on the same steps (collector data); `None` for a trace.
    pub covariates: Option<Covariates>,
}

/// Chronological split of a series into training, validation and test steps
/// (`../shared/specs/evaluation.md`): the first 80% train, of which the last eighth
/// validates; the last 20% test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Split {
    /// First validation step (end of the fitting part).
    pub valid_start: usize,
    /// First test step (end of the training part, validation included).
    pub test_start: usize,
    /// Number of steps.
    pub len: usize,
}

impl Split {
    /// The 80/20 split, with the last eighth of training for validation.
    pub fn of(len: usize) -> Self {
        let test_start = len * 4 / 5;
        Self { valid_start: test_start - test_start / 8, test_start, len }
    }
}

/// Mean of the observed values; `None` when every value is missing.
pub fn mean_observed(values: &[Option<f64>]) -> Option<f64> {
    let (sum, n) = values.iter().flatten().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// The step of sorted timestamps: their most common spacing among the first rows. A
/// timestamp off that grid is refused by the caller rather than silently making the
/// grid finer.
pub fn infer_grid(name: &str, times: &[DateTime<Utc>]) -> Result<StepGrid, DataError> {
    let mut spacings: Vec<chrono::TimeDelta> =
        times.windows(2).take(1000).map(|w| w[1] - w[0]).filter(|d| d.num_milliseconds() > 0).collect();
    spacings.sort();
    let step = spacings
        .chunk_by(|a, b| a == b)
        .rev() // on a tie, the smallest spacing wins (max_by_key keeps the last maximum)
        .max_by_key(|run| run.len())
        .map(|run| run[0])
        .ok_or_else(|| DataError::TooShort {
            source_name: name.to_owned(),
            reason: "no two distinct timestamps".into(),
        })?;
    StepGrid::new(step.to_std().unwrap_or_default()).map_err(|e| DataError::Row {
        source_name: name.to_owned(),
        line: 2,
        reason: e.to_string(),
    })
}

/// Most steps a trace may span (58 days at 1 s, almost five years at 30 s).
pub const MAX_TRACE_STEPS: usize = 5_000_000;

impl Series {
    /// Builds a series, refusing non-finite or negative values and all-missing input.
    pub fn new(
        name: impl Into<String>,
        grid: StepGrid,
        start: DateTime<Utc>,
        values: Vec<Option<f64>>,
    ) -> Result<Self, DataError> {
        let name = name.into();
        if let Some(i) = values.iter().position(|v| v.is_some_and(|x| !x.is_finite() || x < 0.0)) {
            return Err(DataError::BadValue {
                source_name: name,
                line: i + 1,
                value: format!("{}", values[i].unwrap_or_default()),
            });
        }
        if values.iter().all(Option::is_none) {
            return Err(DataError::AllMissing { source_name: name });
        }
        Ok(Self { name, grid, start, values, covariates: None })
    }

    /// Attaches covariates, one row per step.
    pub fn with_covariates(mut self, covariates: Covariates) -> Result<Self, DataError> {
        if covariates.values.nrows() != self.len() || covariates.values.ncols() != covariates.names.len() {
            return Err(DataError::Parquet(format!(
                "{}: covariates of shape {:?} for {} steps and {} names",
                self.name,
                covariates.values.dim(),
                self.len(),
                covariates.names.len()
            )));
        }
        self.covariates = Some(covariates);
        Ok(self)
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Timestamp of step `i`.
    pub fn time(&self, i: usize) -> DateTime<Utc> {
        self.start + self.grid.delta() * i as i32
    }

    /// The value at a signed index: `None` when missing or outside the series.
    pub fn at(&self, i: isize) -> Option<f64> {
        if i < 0 { None } else { self.values.get(i as usize).copied().flatten() }
    }

    /// The last observed value at or before `i`.
    pub fn last_observed(&self, i: usize) -> Option<f64> {
        self.values[..=i.min(self.len().saturating_sub(1))].iter().rev().find_map(|v| *v)
    }

    /// Steps `[from, to)` as a new series.
    pub fn slice(&self, from: usize, to: usize) -> Series {
        Series {
            name: self.name.clone(),
            grid: self.grid,
            start: self.time(from),
            values: self.values[from..to].to_vec(),
            covariates: self.covariates.as_ref().map(|c| Covariates {
                names: c.names.clone(),
                values: c.values.slice(ndarray::s![from..to, ..]).to_owned(),
            }),
        }
    }

    /// Reads a `timestamp,requests` CSV file (counts per step; empty = missing).
    pub fn from_trace_csv(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| DataError::Read { path: path.display().to_string(), source })?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Self::parse_trace_csv(&name, &text)
    }

    /// Parses a `timestamp,requests` CSV: RFC 3339 times on a regular grid (gaps in the
    /// timestamps become missing steps), counts per step turned into requests/s.
    pub fn parse_trace_csv(name: &str, text: &str) -> Result<Self, DataError> {
        let mut lines = text.lines().enumerate();
        let header = lines.next().map(|(_, l)| l.trim()).unwrap_or("");
        if header.replace(' ', "") != "timestamp,requests" {
            return Err(DataError::Header { source_name: name.to_owned(), found: header.to_owned() });
        }
        let mut rows: Vec<(usize, DateTime<Utc>, Option<f64>)> = Vec::new();
        for (i, line) in lines {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let row_err = |reason: String| DataError::Row { source_name: name.to_owned(), line: line_no, reason };
            let (ts, value) = line.split_once(',').ok_or_else(|| row_err("expected two fields".into()))?;
            let ts = DateTime::parse_from_rfc3339(ts.trim())
                .map_err(|e| row_err(format!("timestamp {ts:?} is not RFC 3339: {e}")))?
                .with_timezone(&Utc);
            let value = value.trim();
            let value = if value.is_empty() {
                None
            } else {
                let v: f64 = value.parse().map_err(|_| row_err(format!("requests {value:?} is not a number")))?;
                if !v.is_finite() || v < 0.0 {
                    return Err(DataError::BadValue {
                        source_name: name.to_owned(),
                        line: line_no,
                        value: value.into(),
                    });
                }
                Some(v)
            };
            rows.push((line_no, ts, value));
        }
        if rows.len() < 2 {
            return Err(DataError::TooShort { source_name: name.to_owned(), reason: "fewer than two rows".into() });
        }
        let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.1).collect();
        let grid = infer_grid(name, &times)?;
        let step = grid.delta();
        let start = rows[0].1;
        let step_ms = step.num_milliseconds();
        let mut values: Vec<Option<f64>> = Vec::with_capacity(rows.len());
        for &(line, ts, value) in &rows {
            let offset = (ts - start).num_milliseconds();
            let index = offset / step_ms;
            if offset < 0 || offset % step_ms != 0 || (index as usize) < values.len() {
                return Err(DataError::Irregular {
                    source_name: name.to_owned(),
                    line,
                    timestamp: ts.to_rfc3339(),
                    step_secs: grid.seconds(),
                    start: start.to_rfc3339(),
                });
            }
            // Steps are allocated up to this row: a row far off the others would ask for
            // billions of them.
            if index as usize >= MAX_TRACE_STEPS {
                return Err(DataError::Row {
                    source_name: name.to_owned(),
                    line,
                    reason: format!(
                        "{} is {index} steps of {}s after the first row; a trace holds at most {MAX_TRACE_STEPS}",
                        ts.to_rfc3339(),
                        grid.seconds()
                    ),
                });
            }
            values.resize(index as usize, None);
            values.push(value.map(|v| v / grid.seconds()));
        }
        Series::new(name, grid, start, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_into_rates_with_gaps_and_missing() {
        let csv = "timestamp,requests\n\
                   2024-01-01T00:00:00-04:00,30\n\
                   2024-01-01T00:00:30-04:00,\n\
                   2024-01-01T00:01:30-04:00,60\n";
        let s = Series::parse_trace_csv("t", csv).unwrap();
        assert_eq!(s.grid.seconds(), 30.0);
        assert_eq!(s.start.to_rfc3339(), "2024-01-01T04:00:00+00:00");
        assert_eq!(s.values, vec![Some(1.0), None, None, Some(2.0)]);
        assert_eq!(s.last_observed(2), Some(1.0));
        assert_eq!(s.at(-1), None);
    }

    #[test]
    fn refuses_bad_input_naming_the_line() {
        let err = |csv: &str| Series::parse_trace_csv("t.csv", csv).unwrap_err().to_string();
        assert!(err("time,value\n").contains("header"));
        assert!(err("timestamp,requests\n2024-01-01T00:00:00Z,1\n2024-01-01T00:00:30Z,NaN\n").contains("line 3"));
        assert!(err("timestamp,requests\n2024-01-01T00:00:00Z,1\n2024-01-01T00:00:30Z,inf\n").contains("inf"));
        assert!(err("timestamp,requests\n2024-01-01T00:00:00Z,1\n2024-01-01T00:00:30Z,-2\n").contains("-2"));
        assert!(
            err("timestamp,requests\n2024-01-01T00:00:00Z,\n2024-01-01T00:00:30Z,\n")
                .contains("every value is missing")
        );
        assert!(err("timestamp,requests\nyesterday,1\n").contains("RFC 3339"));
        let irregular = "timestamp,requests\n2024-01-01T00:00:00Z,1\n2024-01-01T00:00:30Z,1\n2024-01-01T00:01:00Z,1\n2024-01-01T00:01:15Z,1\n";
        assert!(err(irregular).contains("line 5"), "{}", err(irregular));
        assert!(err("timestamp,requests\n2024-01-01T00:00:00Z,1\n").contains("fewer than two rows"));
    }

    #[test]
    fn out_of_order_or_far_off_timestamps_are_refused_not_allocated() {
        let err = |csv: &str| Series::parse_trace_csv("t.csv", csv).unwrap_err().to_string();
        // A step back in time: its offset is negative.
        let back = "timestamp,requests\n2024-01-01T00:00:30Z,1\n2024-01-01T00:01:00Z,1\n2024-01-01T00:00:00Z,1\n";
        assert!(err(back).contains("line 4"), "{}", err(back));
        // A row centuries later on a 1 s grid: billions of steps.
        let far = "timestamp,requests\n2024-01-01T00:00:00Z,1\n2024-01-01T00:00:01Z,1\n2024-01-01T00:00:02Z,1\n9999-01-01T00:00:00Z,1\n";
        assert!(err(far).contains("line 5"), "{}", err(far));
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, failure_persistence: None, ..Default::default() })]

        /// Any rows of plausible and implausible timestamps and values: parsing answers
        /// (a series or an error naming a line), never panics or allocates without bound.
        #[test]
        fn any_trace_text_parses_or_is_refused(
            rows in proptest::collection::vec(
                (proptest::prop_oneof![
                    (0i64..4_000).prop_map(|s| s * 30),
                    (-4_000_000_000i64..250_000_000_000i64),
                ], proptest::prop_oneof![
                    proptest::strategy::Just(String::new()),
                    (0.0f64..1e6).prop_map(|v| v.to_string()),
                    "[-a-z0-9.,]{0,8}",
                ]),
                0..40,
            ),
        ) {
            let mut csv = String::from("timestamp,requests\n");
            for (secs, value) in rows {
                let ts = DateTime::from_timestamp(1_700_000_000 + secs, 0).map_or("bad".into(), |t| t.to_rfc3339());
                csv.push_str(&format!("{ts},{value}\n"));
            }
            if let Ok(s) = Series::parse_trace_csv("t", &csv) {
                proptest::prop_assert!(s.values.len() <= MAX_TRACE_STEPS);
            }
        }
    }

    #[test]
    fn split_follows_the_evaluation_spec() {
        let s = Split::of(1000);
        assert_eq!((s.valid_start, s.test_start), (700, 800));
    }
}
