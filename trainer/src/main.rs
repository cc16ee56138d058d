//! `prescale-trainer`: train, backtest, evaluate, publish and list forecasting models.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use prescale_models::forecaster::TrainConfig;
use prescale_models::series::Series;
use prescale_trainer::{plot, progress, report};

#[derive(Debug, Parser)]
#[command(name = "prescale-trainer", version, about = "Train, backtest and publish Prescale's forecasting models")]
struct Cli {
    /// Training settings (TOML with the fields of `TrainConfig`); defaults otherwise.
    #[arg(long, global = true, env = "PRESCALE_TRAIN_CONFIG")]
    train_config: Option<PathBuf>,
    /// Override the random seed (same seed, same model).
    #[arg(long, global = true)]
    seed: Option<u64>,
    /// Override the training time budget, seconds.
    #[arg(long, global = true)]
    max_seconds: Option<f64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train on the first 80% of a trace, score every model on the last 20%, and write
    /// forecasts.csv, report.json and plot.svg to --out.
    Backtest {
        /// A `timestamp,requests` CSV.
        #[arg(long)]
        trace: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
}

fn train_config(cli: &Cli) -> anyhow::Result<TrainConfig> {
    let mut config: TrainConfig = match &cli.train_config {
        Some(path) => prescale_core::config::load_file(path)?,
        None => TrainConfig::default(),
    };
    if let Some(seed) = cli.seed {
        config.seed = seed;
    }
    if let Some(s) = cli.max_seconds {
        config.max_seconds = s;
    }
    Ok(config)
}

fn backtest(cli: &Cli, trace: &Path, out: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let config = train_config(cli)?;
    let series = Series::from_trace_csv(trace)?;
    eprintln!(
        "backtest: {} steps of {} s from {}, {} missing",
        series.len(),
        series.grid.seconds(),
        series.name,
        series.values.iter().filter(|v| v.is_none()).count()
    );
    let mut bars = progress::Bars::new();
    let bt = prescale_models::backtest::run(&series, &config, &mut bars)?;
    drop(bars);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let rep = report::Report::new(&series.name, &series, &bt, started.elapsed().as_secs_f64());
    report::write_forecasts(&out.join("forecasts.csv"), &series, &bt)?;
    report::write_report(&out.join("report.json"), &rep)?;
    plot::write_plot(
        &out.join("plot.svg"),
        &series,
        &bt,
        &format!("{}: actual vs transformer, 10 min ahead", series.name),
    )?;
    println!("{}", rep.table());
    println!(
        "transformer 10-min MAE / best baseline ({}) = {:.3}; trained {} epochs in {:.0} s; backtest took {:.0} s",
        rep.best_baseline, rep.transformer_mae_ratio, rep.training.epochs, rep.training.seconds, rep.total_seconds
    );
    println!("wrote {}/forecasts.csv, report.json, plot.svg", out.display());
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = prescale_core::telemetry::init(&prescale_core::config::TelemetryConfig::default());
    let result = match &cli.command {
        Command::Backtest { trace, out } => backtest(&cli, trace, out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
