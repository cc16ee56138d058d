//! The local spool: rows are durable here before a step counts as done, and stay until
//! they are safely in the store.
//!
//! The folder holds:
//! - `active.jsonl`: one line per step (`{"step": ..., "rows": [...]}`), appended and
//!   `fsync`ed before the step counts as collected;
//! - `sealed-<n>.jsonl`: former active files, closed at each flush interval. The flusher
//!   turns each into Parquet objects whose names depend only on its content, puts them,
//!   and only then deletes it; a flush cut short by a crash is redone with the same
//!   names, so the store never holds a row twice;
//! - `state.json`: the last step handled (`cursor`) and the steps still to fill from
//!   Prometheus (`gaps`), replaced atomically;
//! - `spool.lock`: held while a collector uses the folder.
//!
//! Every step lives in exactly one segment: a step is appended once, either live or when
//! its gap is filled. On open, a torn last line (a crash mid-append) is cut off, and any
//! step found in a segment is taken off the gaps and counts for the cursor, so a crash
//! between appending and saving the state neither loses nor repeats a step. A segment
//! with unreadable lines elsewhere (a failed write that was sealed anyway, a damaged disk)
//! keeps its readable records: the file is moved to `quarantine/` for an operator and
//! rewritten with what could be read, and what was dropped is counted; one bad segment
//! never stops the collector or the flushing of the others.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prescale_core::{FeatureRow, StepGrid};
use serde::{Deserialize, Serialize};

/// Why the spool failed; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file of the spool could not be read or written.
    #[error("spool {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another collector holds the folder.
    #[error("spool {0} is in use by another collector (its spool.lock is held)")]
    Locked(PathBuf),
    /// A file of the spool holds something this collector did not write.
    #[error("spool {path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.to_owned(), source }
}

/// One line of a segment: the rows of one step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The step.
    pub step: DateTime<Utc>,
    /// One row per service.
    pub rows: Vec<FeatureRow>,
}

/// An inclusive range of steps still to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// First missing step.
    pub from: DateTime<Utc>,
    /// Last missing step.
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    cursor: Option<DateTime<Utc>>,
    gaps: Vec<Gap>,
}

/// What opening the spool found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of a torn last line cut off the active file.
    pub torn_bytes: u64,
    /// Unreadable lines dropped from segments (kept in `quarantine/`).
    pub dropped_lines: u64,
    /// Segments moved to `quarantine/` (and rewritten with their readable records).
    pub quarantined: usize,
    /// Rows waiting in the active and sealed files.
    pub pending_rows: u64,
    /// Sealed files waiting for the flusher.
    pub sealed: usize,
}

/// The spool, owned by the step loop. The flusher works on sealed files only, through
/// [`sealed_segments`], [`read_segment`] and [`remove_segment`].
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    grid: StepGrid,
    active: File,
    active_rows: u64,
    /// Records (steps) in the active file, rows or not: a step with no service still
    /// moves the cursor and must be sealed away, or the file would only grow.
    active_records: u64,
    state: State,
    _lock: File,
}

const ACTIVE: &str = "active.jsonl";
const STATE: &str = "state.json";

impl Spool {
    /// Opens (creating) the spool in `dir` and recovers from any earlier crash.
    pub fn open(dir: &Path, grid: StepGrid) -> Result<(Self, Recovery), SpoolError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join("spool.lock");
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        lock.try_lock().map_err(|_| SpoolError::Locked(dir.to_owned()))?;

        let state_path = dir.join(STATE);
        let mut state: State = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| SpoolError::Corrupt { path: state_path.clone(), message: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(io(&state_path)(e)),
        };

        let active_path = dir.join(ACTIVE);
        let mut recovery = Recovery::default();
        if let Some(dropped) = repair_segment(&active_path)? {
            recovery.dropped_lines += dropped;
            recovery.quarantined += 1;
        }
        let (active_records, torn) = read_records(&active_path, true)?;
        recovery.torn_bytes = torn;
        let mut seen: Vec<DateTime<Utc>> = active_records.iter().map(|r| r.step).collect();
        let active_rows: u64 = active_records.iter().map(|r| r.rows.len() as u64).sum();
        recovery.pending_rows = active_rows;
        let sealed = sealed_segments(dir)?;
        recovery.sealed = sealed.len();
        for path in &sealed {
            if let Some(dropped) = repair_segment(path)? {
                recovery.dropped_lines += dropped;
                recovery.quarantined += 1;
            }
            let (records, _) = read_records(path, false)?;
            recovery.pending_rows += records.iter().map(|r| r.rows.len() as u64).sum::<u64>();
            seen.extend(records.iter().map(|r| r.step));
        }
        for step in seen {
            state.cursor = state.cursor.max(Some(step));
            state.gaps = subtract(&state.gaps, step, step, grid);
        }
        let active = OpenOptions::new().create(true).append(true).open(&active_path).map_err(io(&active_path))?;
        let active_records = active_records.len() as u64;
        let spool = Self { dir: dir.to_owned(), grid, active, active_rows, active_records, state, _lock: lock };
        spool.save_state()?;
        sync_dir(dir)?;
        Ok((spool, recovery))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last step handled (collected, or given up as a gap).
    pub fn cursor(&self) -> Option<DateTime<Utc>> {
        self.state.cursor
    }

    /// Steps still to fill, oldest first.
    pub fn gaps(&self) -> &[Gap] {
        &self.state.gaps
    }

    /// Number of steps still to fill.
    pub fn gap_steps(&self) -> u64 {
        self.state.gaps.iter().map(|g| (self.grid.steps_between(g.from, g.to) + 1) as u64).sum()
    }

    /// Rows in the active file.
    pub fn active_rows(&self) -> u64 {
        self.active_rows
    }

    /// Appends the rows of some steps and makes them durable; then takes the steps off
    /// the gaps and moves the cursor.
    pub fn append(&mut self, records: &[Record]) -> Result<(), SpoolError> {
        if records.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(ACTIVE);
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r)
                .map_err(|e| SpoolError::Corrupt { path: path.clone(), message: e.to_string() })?;
            buf.push(b'\n');
        }
        let before = self.active.metadata().map_err(io(&path))?.len();
        if let Err(e) = self.active.write_all(&buf).and_then(|()| self.active.sync_data()) {
            // A partial write must not stay: later appends would follow a torn line.
            if let Err(undo) = self.active.set_len(before) {
                tracing::error!(path = %path.display(), "could not undo a partial append: {undo}; the next open repairs it");
            }
            return Err(io(&path)(e));
        }
        self.active_rows += records.iter().map(|r| r.rows.len() as u64).sum::<u64>();
        self.active_records += records.len() as u64;
        let gaps_before = self.state.gaps.clone();
        for r in records {
            self.state.cursor = self.state.cursor.max(Some(r.step));
            self.state.gaps = subtract(&self.state.gaps, r.step, r.step, self.grid);
        }
        // The cursor alone can be recovered from the active file; the gaps cannot.
        if self.state.gaps != gaps_before {
            self.save_state()?;
        }
        Ok(())
    }

    /// Records steps `[from, to]` as missed: to be filled from Prometheus later.
    pub fn mark_missed(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), SpoolError> {
        if to < from {
            return Ok(());
        }
        let mut gaps = subtract(&self.state.gaps, from, to, self.grid);
        gaps.push(Gap { from, to });
        gaps.sort_by_key(|g| g.from);
        self.state.gaps = merge(gaps, self.grid);
        self.state.cursor = self.state.cursor.max(Some(to));
        self.save_state()
    }

    /// Takes steps `[from, to]` off the gaps without rows: for steps no service existed
    /// at, which have nothing to write.
    pub fn forget(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), SpoolError> {
        self.state.gaps = subtract(&self.state.gaps, from, to, self.grid);
        self.save_state()
    }

    /// Closes the active file as the next sealed segment, for the flusher. Returns the
    /// sealed file, or `None` when there was nothing to seal.
    pub fn seal(&mut self) -> Result<Option<PathBuf>, SpoolError> {
        if self.active_records == 0 {
            return Ok(None);
        }
        // The cursor must outlive the rows that prove it once the flusher deletes them.
        self.save_state()?;
        let active = self.dir.join(ACTIVE);
        let next = sealed_segments(&self.dir)?.last().and_then(|p| segment_number(p)).map_or(1, |n| n + 1);
        let sealed = self.dir.join(format!("sealed-{next:012}.jsonl"));
        std::fs::rename(&active, &sealed).map_err(io(&sealed))?;
        self.active = OpenOptions::new().create(true).append(true).open(&active).map_err(io(&active))?;
        sync_dir(&self.dir)?;
        self.active_rows = 0;
        self.active_records = 0;
        Ok(Some(sealed))
    }

    fn save_state(&self) -> Result<(), SpoolError> {
        let path = self.dir.join(STATE);
        let tmp = self.dir.join(".state.json.tmp");
        let bytes = serde_json::to_vec(&self.state)
            .map_err(|e| SpoolError::Corrupt { path: path.clone(), message: e.to_string() })?;
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_data().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        sync_dir(&self.dir)
    }
}

/// Total bytes of the spool's segment files.
pub fn spool_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Sealed segments waiting in `dir`, oldest first.
pub fn sealed_segments(dir: &Path) -> Result<Vec<PathBuf>, SpoolError> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| segment_number(p).is_some())
        .collect();
    out.sort();
    Ok(out)
}

fn segment_number(path: &Path) -> Option<u64> {
    path.file_name()?.to_str()?.strip_prefix("sealed-")?.strip_suffix(".jsonl")?.parse().ok()
}

/// The rows of a sealed segment.
pub fn read_segment(path: &Path) -> Result<Vec<FeatureRow>, SpoolError> {
    Ok(read_records(path, false)?.0.into_iter().flat_map(|r| r.rows).collect())
}

/// Moves a segment into the spool's `quarantine/` folder, out of the flusher's way, for an
/// operator to inspect. Returns its new path.
pub fn quarantine(path: &Path) -> Result<PathBuf, SpoolError> {
    let dir = path.parent().unwrap_or(Path::new(".")).join("quarantine");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3f");
    let to = dir.join(format!("{name}.{stamp}"));
    std::fs::rename(path, &to).map_err(io(&to))?;
    sync_dir(&dir)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(to)
}

/// Keeps the readable records of a segment whose unreadable lines are not just a torn
/// tail (which [`Spool::open`] cuts off): the file goes to `quarantine/` and is replaced,
/// atomically, by its readable records. Returns how many lines were dropped, or `None`
/// when the segment was sound (or only torn at its end).
pub fn repair_segment(path: &Path) -> Result<Option<u64>, SpoolError> {
    let Ok(bytes) = std::fs::read(path) else { return Ok(None) };
    let mut good = Vec::new();
    let mut dropped = 0u64;
    let mut bad_before_good = false;
    let lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
    for line in &lines {
        let complete = line.last() == Some(&b'\n');
        if complete && serde_json::from_slice::<Record>(line).is_ok() {
            if dropped > 0 {
                bad_before_good = true;
            }
            good.extend_from_slice(line);
        } else {
            dropped += 1;
        }
    }
    // Nothing lost, or only a torn last line: the tail repair handles it.
    let torn_tail_only = dropped == 1 && !bad_before_good && lines.last().is_some_and(|l| l.last() != Some(&b'\n'));
    if dropped == 0 || (torn_tail_only && segment_number(path).is_none()) {
        return Ok(None);
    }
    let kept = quarantine(path)?;
    let tmp = path.with_extension("jsonl.tmp");
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&good).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    tracing::error!(
        segment = %path.display(),
        dropped_lines = dropped,
        quarantined = %kept.display(),
        "a spool segment had unreadable lines; its readable records are kept, the original is quarantined"
    );
    Ok(Some(dropped))
}

/// The steps a live collector's spool answers for, as a backfill beside it must see them:
/// a backfill that wrote them too would store rows the live collector also flushes, under
/// other object names.
#[derive(Debug, Clone, Default)]
pub struct Owned {
    /// Steps in the spool's segments, waiting to be flushed (ms since the epoch).
    spooled: std::collections::HashSet<i64>,
    /// While a live collector holds the spool: the gaps it will fill, and every step after
    /// its cursor, which it will collect.
    live: Option<(Vec<Gap>, Option<DateTime<Utc>>)>,
}

impl Owned {
    /// Reads `dir` without taking it over (a live collector may hold it); a missing or
    /// empty folder owns nothing. Unreadable lines are skipped, as the live collector
    /// will repair them.
    pub fn read(dir: &Path) -> Result<Self, SpoolError> {
        let mut owned = Owned::default();
        if !dir.is_dir() {
            return Ok(owned);
        }
        let mut paths = sealed_segments(dir)?;
        paths.push(dir.join(ACTIVE));
        for path in paths {
            let Ok(bytes) = std::fs::read(&path) else { continue };
            for line in bytes.split(|b| *b == b'\n') {
                if let Ok(r) = serde_json::from_slice::<Record>(line) {
                    owned.spooled.insert(r.step.timestamp_millis());
                }
            }
        }
        let lock_path = dir.join("spool.lock");
        let held = OpenOptions::new().write(true).open(&lock_path).is_ok_and(|f| f.try_lock().is_err());
        if held {
            let state: State =
                std::fs::read(dir.join(STATE)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
            owned.live = Some((state.gaps, state.cursor));
        }
        Ok(owned)
    }

    /// Whether the live collector answers for `step`.
    pub fn owns(&self, step: DateTime<Utc>) -> bool {
        if self.spooled.contains(&step.timestamp_millis()) {
            return true;
        }
        match &self.live {
            Some((gaps, cursor)) => {
                gaps.iter().any(|g| g.from <= step && step <= g.to) || cursor.is_none_or(|c| step > c)
            }
            None => false,
        }
    }
}

/// What [`enforce_bound`] dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Segments deleted unflushed.
    pub segments: usize,
    /// Their rows.
    pub rows: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The first and last step they held, for a `backfill` to refill them.
    pub steps: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// The first step of a segment, from its first line.
fn first_step(path: &Path) -> Option<DateTime<Utc>> {
    let file = File::open(path).ok()?;
    let mut line = Vec::new();
    BufReader::new(file).read_until(b'\n', &mut line).ok()?;
    serde_json::from_slice::<Record>(&line).ok().map(|r| r.step)
}

/// Deletes the oldest sealed segments while the spool's segments take more than
/// `max_bytes`, or while the oldest holds steps older than `max_age` before `now`: the
/// bound that keeps a long store outage from filling the disk. The newest segment and the
/// active file are never dropped.
pub fn enforce_bound(dir: &Path, max_bytes: u64, max_age: Duration, now: DateTime<Utc>) -> Result<Dropped, SpoolError> {
    let mut dropped = Dropped::default();
    let mut total = spool_bytes(dir);
    let segments = sealed_segments(dir)?;
    let Some((_, older)) = segments.split_last() else { return Ok(dropped) };
    for path in older {
        let too_big = total > max_bytes;
        let too_old = first_step(path).is_some_and(|t| (now - t).to_std().is_ok_and(|age| age > max_age));
        if !too_big && !too_old {
            break;
        }
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let records = read_records(path, false).map(|(r, _)| r).unwrap_or_default();
        dropped.rows += records.iter().map(|r| r.rows.len() as u64).sum::<u64>();
        if let (Some(first), Some(last)) = (records.first(), records.last()) {
            let (from, to) = dropped.steps.unwrap_or((first.step, last.step));
            dropped.steps = Some((from.min(first.step), to.max(last.step)));
        }
        remove_segment(path)?;
        dropped.segments += 1;
        dropped.bytes += bytes;
        total = total.saturating_sub(bytes);
    }
    Ok(dropped)
}

/// Deletes a flushed segment.
pub fn remove_segment(path: &Path) -> Result<(), SpoolError> {
    std::fs::remove_file(path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// The records of a segment. With `repair`, a torn or unparsable tail is cut off the
/// file (returning its length); otherwise it is an error, because sealed files were
/// complete when sealed.
fn read_records(path: &Path, repair: bool) -> Result<(Vec<Record>, u64), SpoolError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io(path)(e)),
    };
    let total = file.metadata().map_err(io(path))?.len();
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut good: u64 = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io(path))?;
        if n == 0 {
            break;
        }
        let complete = line.last() == Some(&b'\n');
        match serde_json::from_slice::<Record>(&line) {
            Ok(r) if complete => {
                records.push(r);
                good += n as u64;
            }
            _ => break,
        }
    }
    let torn = total - good;
    if torn > 0 {
        if !repair {
            return Err(SpoolError::Corrupt {
                path: path.to_owned(),
                message: format!("unreadable after byte {good} of {total}"),
            });
        }
        tracing::warn!(path = %path.display(), torn, "cutting a torn tail off the spool (a crash mid-append); its step will be filled from Prometheus");
        let f = OpenOptions::new().write(true).open(path).map_err(io(path))?;
        f.set_len(good).map_err(io(path))?;
        f.sync_all().map_err(io(path))?;
    }
    Ok((records, torn))
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// `gaps` without the steps `[from, to]`.
fn subtract(gaps: &[Gap], from: DateTime<Utc>, to: DateTime<Utc>, grid: StepGrid) -> Vec<Gap> {
    let step = grid.delta();
    let mut out = Vec::with_capacity(gaps.len() + 1);
    for g in gaps {
        if g.to < from || g.from > to {
            out.push(*g);
            continue;
        }
        if g.from < from {
            out.push(Gap { from: g.from, to: from - step });
        }
        if g.to > to {
            out.push(Gap { from: to + step, to: g.to });
        }
    }
    out
}

/// Sorted gaps with touching ranges joined.
fn merge(gaps: Vec<Gap>, grid: StepGrid) -> Vec<Gap> {
    let mut out: Vec<Gap> = Vec::with_capacity(gaps.len());
    for g in gaps {
        match out.last_mut() {
            Some(last) if g.from <= last.to + grid.delta() => last.to = last.to.max(g.to),
            _ => out.push(g),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use prescale_core::{Feature, ServiceId};

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn record(s: i64) -> Record {
        let mut row = FeatureRow::empty(t(s), ServiceId::new("shop", "order").unwrap());
        row.set(Feature::RequestsPerSecond, Some(s as f64 + 0.1));
        Record { step: t(s), rows: vec![row] }
    }

    fn grid() -> StepGrid {
        StepGrid::from_secs(1).unwrap()
    }

    #[test]
    fn gaps_split_and_merge() {
        let g = vec![Gap { from: t(0), to: t(10) }];
        assert_eq!(subtract(&g, t(3), t(4), grid()), vec![Gap { from: t(0), to: t(2) }, Gap { from: t(5), to: t(10) }]);
        assert_eq!(subtract(&g, t(0), t(10), grid()), vec![]);
        let merged = merge(vec![Gap { from: t(0), to: t(2) }, Gap { from: t(3), to: t(5) }], grid());
        assert_eq!(merged, vec![Gap { from: t(0), to: t(5) }]);
    }

    #[test]
    fn rows_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut spool, rec) = Spool::open(dir.path(), grid()).unwrap();
            assert_eq!(rec, Recovery::default());
            spool.append(&[record(0), record(1)]).unwrap();
            spool.mark_missed(t(2), t(4)).unwrap();
            spool.append(&[record(5)]).unwrap();
            assert!(matches!(Spool::open(dir.path(), grid()), Err(SpoolError::Locked(_))));
        }
        // A crash mid-append leaves half a line.
        let mut f = OpenOptions::new().append(true).open(dir.path().join(ACTIVE)).unwrap();
        f.write_all(br#"{"step":"2023-11-14T22:13"#).unwrap();
        drop(f);
        let (mut spool, rec) = Spool::open(dir.path(), grid()).unwrap();
        assert!(rec.torn_bytes > 0);
        assert_eq!(rec.pending_rows, 3);
        assert_eq!(spool.cursor(), Some(t(5)));
        assert_eq!(spool.gaps(), &[Gap { from: t(2), to: t(4) }]);
        assert_eq!(spool.gap_steps(), 3);
        spool.append(&[record(3)]).unwrap();
        assert_eq!(spool.gaps(), &[Gap { from: t(2), to: t(2) }, Gap { from: t(4), to: t(4) }]);
        let sealed = spool.seal().unwrap().unwrap();
        assert_eq!(read_segment(&sealed).unwrap().len(), 4);
        assert_eq!(spool.seal().unwrap(), None, "nothing new to seal");
        spool.append(&[record(6)]).unwrap();
        let second = spool.seal().unwrap().unwrap();
        assert_eq!(sealed_segments(dir.path()).unwrap(), vec![sealed.clone(), second]);
        remove_segment(&sealed).unwrap();
        drop(spool);
        let (spool, rec) = Spool::open(dir.path(), grid()).unwrap();
        assert_eq!((rec.pending_rows, rec.sealed), (1, 1));
        assert_eq!(spool.cursor(), Some(t(6)), "the cursor outlives flushed rows");
    }

    #[test]
    fn a_step_appended_before_a_crash_leaves_the_gaps_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut spool, _) = Spool::open(dir.path(), grid()).unwrap();
            spool.mark_missed(t(0), t(3)).unwrap();
        }
        // The crash came after the append and before the state was saved.
        let mut f = OpenOptions::new().append(true).open(dir.path().join(ACTIVE)).unwrap();
        let mut line = serde_json::to_vec(&record(1)).unwrap();
        line.push(b'\n');
        f.write_all(&line).unwrap();
        drop(f);
        let (spool, _) = Spool::open(dir.path(), grid()).unwrap();
        assert_eq!(spool.gaps(), &[Gap { from: t(0), to: t(0) }, Gap { from: t(2), to: t(3) }]);
    }

    fn line(s: i64) -> Vec<u8> {
        let mut l = serde_json::to_vec(&record(s)).unwrap();
        l.push(b'\n');
        l
    }

    #[test]
    fn a_torn_sealed_segment_keeps_its_readable_records_and_the_rest_opens() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut spool, _) = Spool::open(dir.path(), grid()).unwrap();
            spool.append(&[record(0)]).unwrap();
        }
        // A partial write sealed at shutdown: a good line, then a torn one.
        let torn = dir.path().join("sealed-000000000001.jsonl");
        let mut bytes = line(1);
        bytes.extend_from_slice(br#"{"step":"2023-11-14T22:13:2"#);
        std::fs::write(&torn, &bytes).unwrap();
        // Damage in the middle of another: good, garbage, good.
        let middle = dir.path().join("sealed-000000000002.jsonl");
        let mut bytes = line(2);
        bytes.extend_from_slice(b"\x00\x00garbage\n");
        bytes.extend_from_slice(&line(3));
        std::fs::write(&middle, &bytes).unwrap();

        let (spool, rec) = Spool::open(dir.path(), grid()).expect("a torn segment must not stop the collector");
        assert_eq!((rec.dropped_lines, rec.quarantined, rec.sealed), (2, 2, 2), "{rec:?}");
        assert_eq!(rec.pending_rows, 4, "every readable record is kept: {rec:?}");
        assert_eq!(read_segment(&torn).unwrap().len(), 1);
        assert_eq!(read_segment(&middle).unwrap().len(), 2);
        assert_eq!(spool.cursor(), Some(t(3)));
        let quarantined = std::fs::read_dir(dir.path().join("quarantine")).unwrap().count();
        assert_eq!(quarantined, 2, "the originals are kept for an operator");
        drop(spool);
        let (_, again) = Spool::open(dir.path(), grid()).unwrap();
        assert_eq!((again.dropped_lines, again.quarantined), (0, 0), "repaired once");
    }

    #[test]
    fn the_spool_is_bounded_by_bytes_and_age_dropping_the_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), grid()).unwrap();
        let mut sealed = Vec::new();
        for s in 0..4 {
            spool.append(&[record(s * 100), record(s * 100 + 1)]).unwrap();
            sealed.push(spool.seal().unwrap().unwrap());
        }
        let one = std::fs::metadata(&sealed[0]).unwrap().len();
        // Room for two and a half segments: the two oldest go.
        let dropped = enforce_bound(dir.path(), one * 5 / 2, Duration::from_secs(1 << 30), t(400)).unwrap();
        assert_eq!((dropped.segments, dropped.rows), (2, 4), "{dropped:?}");
        assert_eq!(dropped.steps, Some((t(0), t(101))));
        assert_eq!(sealed_segments(dir.path()).unwrap(), sealed[2..].to_vec());
        // By age: rows older than 150 s at t(400) go; the newest segment always stays.
        let dropped = enforce_bound(dir.path(), u64::MAX, Duration::from_secs(150), t(400)).unwrap();
        assert_eq!(dropped.segments, 1, "{dropped:?}");
        assert_eq!(sealed_segments(dir.path()).unwrap(), sealed[3..].to_vec());
        let dropped = enforce_bound(dir.path(), 0, Duration::ZERO, t(10_000)).unwrap();
        assert_eq!(dropped, Dropped::default(), "the newest segment is never dropped");
    }

    #[test]
    fn a_backfill_sees_what_the_live_spool_answers_for() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!Owned::read(&dir.path().join("none")).unwrap().owns(t(0)), "no spool owns nothing");
        {
            let (mut spool, _) = Spool::open(dir.path(), grid()).unwrap();
            spool.append(&[record(0), record(1)]).unwrap();
            spool.seal().unwrap();
            spool.append(&[record(2)]).unwrap();
            spool.mark_missed(t(3), t(5)).unwrap();
            spool.append(&[record(6)]).unwrap();
            // Held: a live collector runs.
            let owned = Owned::read(dir.path()).unwrap();
            for s in [0, 1, 2, 6] {
                assert!(owned.owns(t(s)), "spooled step {s}");
            }
            assert!(owned.owns(t(4)), "a gap it will fill");
            assert!(owned.owns(t(60)), "a step after its cursor");
            assert!(!owned.owns(t(-10)), "a step before the spool: the backfill's");
        }
        // No live collector: only the rows still spooled.
        let owned = Owned::read(dir.path()).unwrap();
        assert!(owned.owns(t(1)) && owned.owns(t(6)));
        assert!(!owned.owns(t(4)) && !owned.owns(t(60)));
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, failure_persistence: None, ..Default::default() })]

        /// Whatever a segment holds (intact lines mixed with garbage lines, then cut short
        /// anywhere), opening the spool never panics or fails, keeps exactly the intact
        /// lines that survived the cut, and leaves a segment that reads cleanly.
        #[test]
        fn any_damage_keeps_every_intact_record(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    (0i64..50).prop_map(line),
                    proptest::collection::vec(1u8..=255, 0..40).prop_map(|mut g| {
                        g.retain(|b| *b != b'\n');
                        g.push(b'\n');
                        g
                    }),
                ],
                0..12,
            ),
            cut in 0usize..400,
        ) {
            use proptest::prop_assert_eq;
            let dir = tempfile::tempdir().unwrap();
            let bytes: Vec<u8> = lines.concat();
            let keep = bytes.len().saturating_sub(cut);
            let mut expected = 0u64;
            let mut at = 0;
            for l in &lines {
                at += l.len();
                if at <= keep && serde_json::from_slice::<Record>(l).is_ok() {
                    expected += 1;
                }
            }
            let path = dir.path().join("sealed-000000000001.jsonl");
            std::fs::write(&path, &bytes[..keep]).unwrap();
            let (spool, rec) = Spool::open(dir.path(), grid()).unwrap();
            prop_assert_eq!(rec.pending_rows, expected);
            prop_assert_eq!(read_segment(&path).unwrap().len() as u64, expected);
            drop(spool);
        }
    }

    #[test]
    fn steps_without_rows_are_sealed_too() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), grid()).unwrap();
        // No service answered discovery: the step is recorded, with no rows.
        spool.append(&[Record { step: t(0), rows: vec![] }]).unwrap();
        let sealed = spool.seal().unwrap().expect("an empty step still seals, or the file only grows");
        assert!(read_segment(&sealed).unwrap().is_empty());
        assert_eq!(spool.seal().unwrap(), None);
        assert_eq!(spool.cursor(), Some(t(0)));
    }
}
