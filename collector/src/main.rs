//! `prescale-collector`: collect live, backfill a past range, check a config, or
//! inspect what a store holds.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use prescale_collector::backfill::backfill;
use prescale_collector::live::Collector;
use prescale_collector::metrics::{self, Metrics};
use prescale_collector::{CollectorConfig, Source, inspect};
use prescale_core::config::{self, EXIT_CONFIG};
use prescale_core::store::{self, S3Options};
use prescale_core::{Location, telemetry};

#[derive(Debug, Parser)]
#[command(name = "prescale-collector", version, about = "Prometheus to Parquet, one row per service per step")]
struct Cli {
    /// Settings (TOML); `PRESCALE__SECTION__FIELD` variables override it.
    #[arg(long, global = true, env = "PRESCALE_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    s3: S3Options,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Collect every step until SIGTERM or Ctrl-C, serving /metrics.
    Run,
    /// Fill a past range from Prometheus with range queries; rows already stored are kept.
    Backfill {
        /// Start, RFC 3339 (`2024-03-04T00:00:00Z`).
        #[arg(long)]
        from: DateTime<Utc>,
        /// End, RFC 3339; not in the future.
        #[arg(long)]
        to: DateTime<Utc>,
    },
    /// Check the settings and print the catalog's queries.
    Check,
    /// Print what a store holds: time range, services, rows, gaps.
    Inspect {
        /// `s3://bucket/prefix`, `file://...` or a path.
        location: String,
        /// The table prefix inside the location.
        #[arg(long, default_value = "metrics")]
        table: String,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Inspect { location, table, json } = &cli.command {
        let _ = telemetry::init(&Default::default());
        return report(runtime.block_on(run_inspect(&cli.s3, location, table, *json)));
    }
    let (mut config, catalog) = match config::load::<CollectorConfig>(cli.config.as_deref())
        .map_err(|e| e.to_string())
        .and_then(|c| c.validate().map(|cat| (c, cat)))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // The `--s3-*` flags (and their variables) win over `[store.s3]`.
    let s3 = &mut config.store.s3;
    s3.endpoint = cli.s3.endpoint.clone().or(s3.endpoint.take());
    s3.region = cli.s3.region.clone().or(s3.region.take());
    s3.path_style |= cli.s3.path_style;
    if let Err(e) = telemetry::init(&config.telemetry) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let metrics = Metrics::new();
    let source =
        match Source::new(config.prometheus.clone(), catalog, config.services.clone(), metrics.query_errors.clone()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
    match cli.command {
        Command::Check => {
            println!(
                "config OK: step {:?}, {} → {}/{}",
                config.step.duration(),
                config.prometheus.url,
                config.store.location,
                config.table
            );
            print!("{}", source.catalog());
            ExitCode::SUCCESS
        }
        Command::Run => report(runtime.block_on(run(config, source, metrics))),
        Command::Backfill { from, to } => report(runtime.block_on(run_backfill(config, source, from, to))),
        Command::Inspect { .. } => unreachable!("handled above"),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: CollectorConfig, source: Source, metrics: Metrics) -> anyhow::Result<()> {
    let store = store::open(&config.store.location, &config.store.s3).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen: binding {}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
    let app = metrics::app(metrics.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    tracing::info!(
        step = ?config.step.duration(),
        prometheus = %config.prometheus.url,
        store = %config.store.location,
        spool = %config.spool_dir.display(),
        "collecting"
    );
    let result = Collector::new(config, source, store, metrics).run(telemetry::shutdown_signal()).await;
    server.abort();
    result.context("the spool failed; stopping so that no step is counted without being durable")
}

async fn run_backfill(
    config: CollectorConfig,
    source: Source,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<()> {
    let store = store::open(&config.store.location, &config.store.s3).await?;
    let started = std::time::Instant::now();
    let report = backfill(
        &source,
        store.as_ref(),
        &config.layout(),
        config.step,
        (from, to),
        config.chunk_steps,
        |through, r| tracing::info!(through = %through.to_rfc3339(), rows = r.rows_written, skipped = r.rows_skipped, "chunk done"),
    )
    .await?;
    println!(
        "backfilled {} steps of {} services in {:.1} s: {} rows written in {} objects ({} bytes), {} already stored",
        report.steps,
        report.services,
        started.elapsed().as_secs_f64(),
        report.rows_written,
        report.objects,
        report.bytes,
        report.rows_skipped
    );
    Ok(())
}

async fn run_inspect(s3: &S3Options, location: &str, table: &str, json: bool) -> anyhow::Result<()> {
    let location: Location = location.parse().with_context(|| format!("location {location:?}"))?;
    let store = store::open(&location, s3).await?;
    let inventory = inspect::inspect(store.as_ref(), &format!("{}/", table.trim_end_matches('/'))).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&inventory)?);
    } else {
        print!("{inventory}");
    }
    Ok(())
}
