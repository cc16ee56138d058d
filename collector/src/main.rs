//! `prescale-collector`: collect live, backfill a past range, check a config, or
//! inspect what a store holds.

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use prescale_collector::{CollectorConfig, inspect};
use prescale_core::config::{self, EXIT_CONFIG};
use prescale_core::store::{self, S3Options};
use prescale_core::telemetry;

#[derive(Debug, Parser)]
#[command(name = "prescale-collector", version, about = "Prometheus to Parquet, one row per service per step")]
struct Cli {
    #[command(flatten)]
    args: config::Args,
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
        return report(runtime.block_on(run_inspect(&cli.args.s3, location, table, *json)));
    }
    let started =
        config::start(cli.args.config.as_deref(), |c: CollectorConfig| c.build(&cli.args.s3), |a| &a.config.telemetry);
    let app = match started {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Command::Check => {
            let c = &app.config;
            println!(
                "config OK: step {:?}, {} → {}/{}",
                c.step.duration(),
                c.prometheus.url,
                c.store.location,
                c.table
            );
            print!("{}", app.source.catalog());
            ExitCode::SUCCESS
        }
        Command::Run => report(runtime.block_on(app.serve()).map_err(Into::into)),
        Command::Backfill { from, to } => {
            let started = std::time::Instant::now();
            report(runtime.block_on(app.backfill(from, to)).map_err(Into::into).map(|r| {
                println!(
                    "backfilled {} steps of {} services in {:.1} s: {} rows written in {} objects ({} bytes), {} already stored, {} left to the live collector",
                    r.steps,
                    r.services,
                    started.elapsed().as_secs_f64(),
                    r.rows_written,
                    r.objects,
                    r.bytes,
                    r.rows_skipped,
                    r.rows_left_to_live
                );
            }))
        }
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

async fn run_inspect(s3: &S3Options, location: &str, table: &str, json: bool) -> anyhow::Result<()> {
    let store = store::open_str(location, s3).await.with_context(|| format!("opening {location}"))?;
    let inventory = inspect::inspect(store.as_ref(), table).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&inventory)?);
    } else {
        print!("{inventory}");
    }
    Ok(())
}
