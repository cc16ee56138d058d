//! `prescale-scaler`: the scaling benchmark and capacity estimation.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use prescale_models::forecaster::TrainConfig;
use prescale_models::series::Series;
use prescale_scaler::{report, simulate};

#[derive(Debug, Parser)]
#[command(
    name = "prescale-scaler",
    version,
    about = "Prescale's replica policy: simulate it against the HPA and an oracle"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay the test part (last 20%) of a trace through the benchmark's cluster model
    /// with the `hpa`, `predictive` and `oracle` policies; write decisions.csv,
    /// summary.json and plot.svg to --out.
    Simulate {
        /// A `timestamp,requests` CSV.
        #[arg(long)]
        trace: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Requests/s per replica; default: the 99th percentile of test demand over 20.
        #[arg(long)]
        capacity: Option<f64>,
        /// Training settings (TOML with the fields of the trainer's `TrainConfig`).
        #[arg(long, env = "PRESCALE_TRAIN_CONFIG")]
        train_config: Option<PathBuf>,
        /// Override the training time budget, seconds.
        #[arg(long)]
        max_seconds: Option<f64>,
    },
}

fn simulate_cmd(
    trace: &Path,
    out: &Path,
    capacity: Option<f64>,
    train_config: Option<&Path>,
    max_seconds: Option<f64>,
) -> anyhow::Result<()> {
    let mut config: TrainConfig = match train_config {
        Some(path) => prescale_core::config::load_file(path)?,
        None => TrainConfig::default(),
    };
    if let Some(s) = max_seconds {
        config.max_seconds = s;
    }
    let series = Series::from_trace_csv(trace)?;
    eprintln!("simulate: {} steps of {} s from {}", series.len(), series.grid.seconds(), series.name);
    let mut bars = prescale_trainer::progress::Bars::new();
    let sim = simulate::run(&series, &config, capacity, &mut bars)?;
    drop(bars);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    report::write_decisions(&out.join("decisions.csv"), &series, &sim)?;
    report::write_summary(&out.join("summary.json"), &series, &sim)?;
    report::write_plot(&out.join("plot.svg"), &series, &sim)?;
    let t = &sim.tuning;
    println!(
        "capacity {:.3} requests/s per replica; predictive tuned on validation: {:?} quantile, headroom {:.0}% \
         (validation: {} under-provisioned steps vs hpa {}, {:.1} vs {:.1} replica-hours)",
        sim.capacity,
        t.policy.quantile,
        100.0 * t.policy.headroom,
        t.validation.under_steps,
        t.validation_hpa.under_steps,
        t.validation.replica_hours,
        t.validation_hpa.replica_hours
    );
    println!("{}", report::table(&sim.outcomes));
    println!("wrote {}/decisions.csv, summary.json, plot.svg", out.display());
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = prescale_core::telemetry::init(&prescale_core::config::TelemetryConfig::default());
    let result = match &cli.command {
        Command::Simulate { trace, out, capacity, train_config, max_seconds } => {
            simulate_cmd(trace, out, *capacity, train_config.as_deref(), *max_seconds)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
