//! `prescale-scaler`: the scaling benchmark and capacity estimation.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use prescale_models::artifact::{self, Manifest};
use prescale_models::forecaster::{TrainConfig, TransformerModel};
use prescale_models::series::Series;
use prescale_scaler::{report, simulate};
use prescale_trainer::input::S3Args;

#[derive(Debug, Parser)]
#[command(
    name = "prescale-scaler",
    version,
    about = "Prescale's replica policy: simulate it, estimate capacity, apply decisions to Kubernetes"
)]
struct Cli {
    #[command(flatten)]
    s3: S3Args,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Poll the predictor's decisions and apply them to Deployments through the scale
    /// subresource; in shadow mode (the default) only log and export what it would do.
    Run {
        /// Settings (TOML: predictor_url, interval, shadow, listen, [[targets]]).
        #[arg(long, env = "PRESCALE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Estimate requests/s per replica from the collector's data: what one ready replica
    /// served while p95 latency met the objective.
    EstimateCapacity {
        /// The collector's data location (`s3://...`, `file://...` or a path).
        #[arg(long, env = "PRESCALE_DATA")]
        data: String,
        /// The service, `namespace/name` or `name`.
        #[arg(long)]
        service: String,
        /// p95 latency objective, seconds.
        #[arg(long, default_value_t = 0.25)]
        latency_objective: f64,
        /// Quantile of per-replica load over healthy steps.
        #[arg(long, default_value_t = 0.95)]
        quantile: f64,
    },
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
        /// Use the model `prescale-trainer train` stored here (trained on this trace's
        /// training part) instead of training one.
        #[arg(long, conflicts_with_all = ["train_config", "max_seconds"])]
        models: Option<String>,
        /// With --models: the version; `latest` by default.
        #[arg(long, requires = "models")]
        version: Option<String>,
    },
}

/// A stored model and its manifest.
fn load_model(s3: &S3Args, models: &str, version: Option<&str>) -> anyhow::Result<(TransformerModel, Manifest)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let store = s3.open(models).await?;
        let (manifest, model) = match version {
            Some(v) => artifact::load_version(store.as_ref(), v, tch::Device::Cpu).await?,
            None => artifact::load_latest(store.as_ref(), tch::Device::Cpu).await?,
        };
        Ok((model, manifest))
    })
}

struct SimulateArgs<'a> {
    trace: &'a Path,
    out: &'a Path,
    capacity: Option<f64>,
    train_config: Option<&'a Path>,
    max_seconds: Option<f64>,
    models: Option<&'a str>,
    version: Option<&'a str>,
    s3: &'a S3Args,
}

fn simulate_cmd(args: SimulateArgs<'_>) -> anyhow::Result<()> {
    let SimulateArgs { trace, out, capacity, train_config, max_seconds, models, version, s3 } = args;
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
    let source = match models {
        Some(models) => {
            let (model, manifest) = load_model(s3, models, version)?;
            eprintln!("simulate: using model {} from {models}", manifest.version);
            simulate::ModelSource::Trained(Box::new(model), Box::new(manifest))
        }
        None => simulate::ModelSource::Train(&config, &mut bars),
    };
    let sim = simulate::run(&series, source, capacity)?;
    drop(bars);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    report::write_decisions(&out.join("decisions.csv"), &series, &sim)?;
    report::write_summary(&out.join("summary.json"), &series, &sim)?;
    report::write_plot(&out.join("plot.svg"), &series, &sim)?;
    let t = &sim.tuning;
    println!(
        "capacity {:.3} requests/s per replica; predictive tuned on validation: {:?} quantile, headroom {:.0}%, \
         lookahead {} steps, scale-down window {} steps, reactive floor at {:.0}% utilisation, {} (validation at \
         {:.3} requests/s per replica: {} under-provisioned steps vs hpa {}, {:.1} vs {:.1} replica-hours)",
        sim.capacity,
        t.policy.quantile,
        100.0 * t.policy.headroom,
        t.policy.lookahead_steps,
        t.policy.scale_down_window,
        100.0 * t.policy.floor_utilisation,
        t.policy.burst_quantile.map_or("no burst term".to_owned(), |q| format!(
            "burst term at the profile's {:.0}th percentile spanning {} steps after startup",
            100.0 * q,
            t.policy.burst_span_steps
        )),
        t.validation_capacity,
        t.validation.under_steps,
        t.validation_hpa.under_steps,
        t.validation.replica_hours,
        t.validation_hpa.replica_hours
    );
    println!("{}", report::table(&sim.outcomes));
    println!("wrote {}/decisions.csv, summary.json, plot.svg", out.display());
    Ok(())
}

fn estimate_capacity(s3: &S3Args, data: &str, service: &str, objective: f64, quantile: f64) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let rows = runtime.block_on(async {
        let store = s3.open(data).await?;
        anyhow::Ok(prescale_models::dataset::read_rows(store.as_ref(), "").await?)
    })?;
    let ours: Vec<_> = rows.iter().filter(|r| r.service.matches(service)).collect();
    if ours.is_empty() {
        anyhow::bail!("no rows for service {service:?} in {data}");
    }
    let e = prescale_scaler::capacity::estimate(&ours, objective, quantile).map_err(anyhow::Error::msg)?;
    println!(
        "{service}: {:.3} requests/s per replica (p{:.0} of {} steps within {objective} s p95 latency; {} steps over it, {} in all)",
        e.capacity,
        100.0 * quantile,
        e.steps_used,
        e.steps_over_objective,
        e.steps_total
    );
    Ok(())
}

fn run_cmd(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config: prescale_scaler::run::RunConfig = match prescale_core::config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(prescale_core::config::EXIT_CONFIG));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let client = kube::Client::try_default().await.map_err(|e| anyhow::anyhow!("connecting to Kubernetes: {e}"))?;
        prescale_scaler::run::run(config, client).await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = prescale_core::telemetry::init(&prescale_core::config::TelemetryConfig::default());
    let result = match &cli.command {
        Command::Run { config } => match run_cmd(config.as_deref()) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::EstimateCapacity { data, service, latency_objective, quantile } => {
            estimate_capacity(&cli.s3, data, service, *latency_objective, *quantile)
        }
        Command::Simulate { trace, out, capacity, train_config, max_seconds, models, version } => {
            simulate_cmd(SimulateArgs {
                trace,
                out,
                capacity: *capacity,
                train_config: train_config.as_deref(),
                max_seconds: *max_seconds,
                models: models.as_deref(),
                version: version.as_deref(),
                s3: &cli.s3,
            })
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
