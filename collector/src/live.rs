//! Live mode: the step loop and the flusher.
//!
//! The loop owns the spool. At each step boundary (plus `query_delay`) it queries
//! Prometheus for step `t`, appends the rows durably, and only then moves on. A step
//! Prometheus cannot give becomes a gap; after a good step the oldest gap is filled from
//! range queries, one chunk per step, so a long outage catches up without starving live
//! steps. Steps skipped while the collector was not running are gaps too, filled the
//! same way on restart. Every `flush_interval` the loop seals the active spool file and
//! wakes the flusher, which writes sealed files to the store and deletes each only after
//! its objects are in; a store outage just leaves files in the spool until it is back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prescale_core::clock::StepClock;
use prescale_core::store::ObjectStore;
use prescale_core::table::{Layout, write_rows};
use prescale_core::{FeatureRow, ServiceId};
use tokio::sync::{Notify, watch};

use crate::config::CollectorConfig;
use crate::metrics::Metrics;
use crate::spool::{self, Record, Spool, SpoolError};
use prescale_core::prometheus::source::Source;

/// How long a shutdown waits for the last flush.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// A collector ready to run.
#[derive(Debug)]
pub struct Collector {
    config: CollectorConfig,
    source: Source,
    store: Arc<dyn ObjectStore>,
    metrics: Metrics,
}

impl Collector {
    /// A collector over a checked config, a source and a store.
    pub fn new(config: CollectorConfig, source: Source, store: Arc<dyn ObjectStore>, metrics: Metrics) -> Self {
        Self { config, source, store, metrics }
    }

    /// Runs until `shutdown` resolves: recovers the spool, collects every step, flushes.
    /// Returns an error only when the spool itself fails (a full or broken disk), since
    /// then a step could not be made durable.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), SpoolError> {
        let grid = self.config.step;
        let (mut spool, recovery) = Spool::open(&self.config.spool_dir, grid)?;
        if recovery != Default::default() {
            tracing::info!(?recovery, "recovered the spool");
        }
        self.metrics.spool_rows.set(recovery.pending_rows as i64);
        let (stop_tx, stop_rx) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let flusher = Flusher {
            dir: self.config.spool_dir.clone(),
            store: self.store.clone(),
            layout: self.config.layout(),
            metrics: self.metrics.clone(),
            interval: self.config.flush_interval,
            wake: wake.clone(),
            max_bytes: self.config.spool_max_bytes,
            max_age: self.config.spool_max_age,
        };
        let flusher = tokio::spawn(flusher.run(stop_rx));
        self.metrics.set_ready(true);

        let mut shutdown = std::pin::pin!(shutdown);
        let mut last_seal = Instant::now();
        let mut services: Vec<ServiceId> = Vec::new();
        let clock = StepClock::new(grid, self.config.query_delay);
        let result = loop {
            // A fresh spool starts with the step after the newest due one: that one began
            // before the collector did.
            let last = spool.cursor().or_else(|| Some(clock.latest(Utc::now())));
            let next = clock.next(last, Utc::now());
            if let Some((from, to)) = next.skipped {
                // Behind (a restart, or a slow step): the skipped steps are filled from
                // range queries; collect the newest one live now.
                if let Err(e) = spool.mark_missed(from, to) {
                    break Err(e);
                }
            }
            let next = next.step;
            tokio::select! {
                () = &mut shutdown => break Ok(()),
                () = clock.wait_for(next) => {}
            }
            if let Err(e) = self.step(&mut spool, next, &mut services).await {
                break Err(e);
            }
            if last_seal.elapsed() >= self.config.flush_interval {
                match spool.seal() {
                    Ok(Some(_)) => wake.notify_one(),
                    Ok(None) => {}
                    Err(e) => break Err(e),
                }
                last_seal = Instant::now();
            }
            self.metrics.gap_steps.set(spool.gap_steps() as i64);
            self.metrics.spool_bytes.set(spool::spool_bytes(spool.dir()) as i64);
        };
        self.metrics.set_ready(false);
        // Seal what is left so the final flush takes it; if the store is down it stays
        // in the spool for the next start.
        let sealed = spool.seal();
        let _ = stop_tx.send(true);
        wake.notify_one();
        if tokio::time::timeout(FINAL_FLUSH_TIMEOUT, flusher).await.is_err() {
            tracing::warn!("the final flush did not finish in time; the rows stay in the spool");
        }
        sealed?;
        result
    }

    /// Collects step `t` live, then fills or gives up old gaps.
    async fn step(&self, spool: &mut Spool, t: DateTime<Utc>, services: &mut Vec<ServiceId>) -> Result<(), SpoolError> {
        let started = Instant::now();
        let rows = match self.source.inventory_at(t).await {
            Ok(inventory) => {
                self.metrics.services.set(inventory.entries.len() as i64);
                self.metrics.services_refused.set((inventory.refused.len() + inventory.invalid) as i64);
                if !inventory.refused.is_empty() {
                    tracing::warn!(
                        refused = inventory.refused.len(),
                        max = self.config.services.max,
                        "more services than services.max; the last ones by name are not collected"
                    );
                }
                *services = inventory.ids();
                self.source.rows_at(t, services).await
            }
            Err(e) => Err(e),
        };
        match rows {
            Ok(rows) => {
                let n = rows.len() as u64;
                spool.append(&[Record { step: t, rows }])?;
                self.spooled(n, t, "collected");
                self.metrics.step_seconds.observe(started.elapsed().as_secs_f64());
                self.fill_gap(spool).await?;
            }
            Err(e) => {
                tracing::warn!(step = %t, error = %e, "Prometheus did not answer; the step will be filled later");
                spool.mark_missed(t, t)?;
                self.metrics.step("missed");
                self.give_up_old(spool, services).await?;
            }
        }
        Ok(())
    }

    fn spooled(&self, rows: u64, step: DateTime<Utc>, outcome: &'static str) {
        self.metrics.rows_spooled.inc_by(rows);
        self.metrics.spool_rows.inc_by(rows as i64);
        self.metrics.step(outcome);
        let last = self.metrics.last_step.get();
        self.metrics.last_step.set(last.max(step.timestamp_millis() as f64 / 1000.0));
    }

    /// Fills the first chunk of the oldest gap from range queries.
    async fn fill_gap(&self, spool: &mut Spool) -> Result<(), SpoolError> {
        let Some(gap) = spool.gaps().first().copied() else { return Ok(()) };
        let grid = self.config.step;
        let to = gap.to.min(gap.from + grid.delta() * (self.config.chunk_steps as i32 - 1));
        let filled = async {
            let services = self.source.services_between(gap.from, to, grid).await?;
            let rows = self.source.rows_between(gap.from, to, grid, &services).await?;
            Ok::<_, prescale_core::prometheus::source::QueryError>((services, rows))
        }
        .await;
        match filled {
            Ok((services, _)) if services.is_empty() => spool.forget(gap.from, to),
            Ok((_, rows)) => {
                let records = records_by_step(rows);
                spool.append(&records)?;
                for r in &records {
                    self.spooled(r.rows.len() as u64, r.step, "filled");
                }
                // Steps of the chunk with no service at all have nothing to write.
                spool.forget(gap.from, to)?;
                tracing::info!(from = %gap.from, %to, steps = records.len(), "filled a gap from Prometheus");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(from = %gap.from, %to, error = %e, "could not fill a gap yet");
                Ok(())
            }
        }
    }

    /// Writes gap steps older than `give_up_after` as missing values.
    async fn give_up_old(&self, spool: &mut Spool, services: &[ServiceId]) -> Result<(), SpoolError> {
        let cutoff = Utc::now() - self.config.give_up_after;
        let grid = self.config.step;
        let Some(gap) = spool.gaps().first().copied().filter(|g| g.from < cutoff) else { return Ok(()) };
        let to = gap.to.min(grid.floor(cutoff)).min(gap.from + grid.delta() * (self.config.chunk_steps as i32 - 1));
        let records: Vec<Record> = grid
            .range(gap.from, to)
            .map(|step| Record { step, rows: services.iter().map(|s| FeatureRow::empty(step, s.clone())).collect() })
            .collect();
        tracing::warn!(from = %gap.from, %to, "Prometheus never gave these steps; writing them as missing values");
        spool.append(&records)?;
        for r in &records {
            self.spooled(r.rows.len() as u64, r.step, "given_up");
        }
        spool.forget(gap.from, to)
    }
}

/// Rows grouped into one record per step, in step order.
pub fn records_by_step(rows: Vec<FeatureRow>) -> Vec<Record> {
    let mut by_step: std::collections::BTreeMap<DateTime<Utc>, Vec<FeatureRow>> = Default::default();
    for row in rows {
        by_step.entry(row.timestamp).or_default().push(row);
    }
    by_step.into_iter().map(|(step, rows)| Record { step, rows }).collect()
}

/// Writes sealed spool files to the store, oldest first.
#[derive(Debug)]
struct Flusher {
    dir: PathBuf,
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    metrics: Metrics,
    interval: Duration,
    wake: Arc<Notify>,
    max_bytes: u64,
    max_age: Duration,
}

impl Flusher {
    /// Drops the oldest unflushed segments beyond the spool's bound, loudly.
    fn enforce_bound(&self) {
        match spool::enforce_bound(&self.dir, self.max_bytes, self.max_age, Utc::now()) {
            Ok(d) if d.segments > 0 => {
                self.metrics.spool_dropped_rows.inc_by(d.rows);
                self.metrics.spool_rows.dec_by(d.rows as i64);
                let (from, to) = d.steps.map_or((None, None), |(f, t)| (Some(f), Some(t)));
                tracing::error!(
                    segments = d.segments,
                    rows = d.rows,
                    bytes = d.bytes,
                    ?from,
                    ?to,
                    "the store has been unreachable too long: dropped the oldest spooled rows to bound the spool; \
                     run `prescale-collector backfill` over these steps once it is back"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot bound the spool"),
        }
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = prescale_core::backoff::Backoff::new(
            Duration::from_millis(500),
            self.interval.min(Duration::from_secs(60)),
        );
        loop {
            // Read before flushing: a stop sent during the flush gets one more pass, which
            // takes the file sealed at shutdown.
            let stopping = *stop.borrow_and_update();
            let ok = self.flush_all().await;
            if stopping {
                return;
            }
            // After a failure retry sooner than the next seal, with a growing wait.
            self.metrics.set_store_down(!ok);
            let wait = if ok {
                backoff.reset();
                self.interval
            } else {
                self.enforce_bound();
                backoff.next_delay()
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Flushes every sealed file; stops at the first failure. Returns whether all went.
    async fn flush_all(&self) -> bool {
        let segments = match spool::sealed_segments(&self.dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the spool");
                return false;
            }
        };
        for path in segments {
            let started = Instant::now();
            // A segment damaged since it was sealed keeps its readable records (the
            // original goes to quarantine/); one that still cannot be read is moved aside
            // whole. Either way the segments after it are flushed.
            let rows = match spool::read_segment(&path) {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "a sealed spool file is damaged; keeping what can be read");
                    self.metrics.flush_errors.inc();
                    match spool::repair_segment(&path).and_then(|_| spool::read_segment(&path)) {
                        Ok(rows) => rows,
                        Err(e) => {
                            match spool::quarantine(&path) {
                                Ok(to) => {
                                    tracing::error!(error = %e, quarantined = %to.display(), "unreadable; moved aside")
                                }
                                Err(q) => tracing::error!(error = %q, "could not move an unreadable segment aside"),
                            }
                            continue;
                        }
                    }
                }
            };
            let n = rows.len() as u64;
            let first = rows.first().map(|r| r.timestamp);
            tracing::info!(segment = %path.display(), rows = n, "flushing");
            match write_rows(self.store.as_ref(), &self.layout, rows).await {
                Ok((objects, bytes)) => {
                    if let Err(e) = spool::remove_segment(&path) {
                        tracing::error!(error = %e, "flushed but could not delete the spool file");
                        return false;
                    }
                    self.metrics.rows_flushed.inc_by(n);
                    self.metrics.spool_rows.dec_by(n as i64);
                    self.metrics.flush_seconds.observe(started.elapsed().as_secs_f64());
                    tracing::info!(rows = n, objects, bytes, first = ?first, "flushed");
                }
                Err(e) => {
                    self.metrics.flush_errors.inc();
                    tracing::warn!(error = %e, "flush failed; the rows stay in the spool and are retried");
                    return false;
                }
            }
        }
        true
    }
}
