//! `prescale-predictor`: serve live forecasts to KEDA.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prescale_core::config::{self, EXIT_CONFIG};
use prescale_core::store::S3Options;
use prescale_core::telemetry;
use prescale_predictor::config::PredictorConfig;
use prescale_predictor::run::{Listeners, run};

#[derive(Debug, Parser)]
#[command(name = "prescale-predictor", version, about = "Live ten-minute forecasts served to KEDA")]
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
    /// Forecast every step and serve KEDA (gRPC), HTTP and /metrics until SIGTERM.
    Run,
    /// Check the settings and print the services with their models and policies.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = config::load::<PredictorConfig>(cli.config.as_deref())
        .map_err(|e| e.to_string())
        .and_then(|c| c.validate().map(|(_, plans)| (c, plans)));
    let (config, plans) = match loaded {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = telemetry::init(&config.telemetry) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match cli.command {
        Command::Check => {
            for p in &plans {
                println!(
                    "{}: models {}, capacity {} req/s, replicas {}..{}",
                    p.id, p.models, p.policy.capacity, p.policy.min_replicas, p.policy.max_replicas
                );
            }
            ExitCode::SUCCESS
        }
        Command::Run => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(async {
                let listeners = Listeners::bind(&config).await?;
                tracing::info!(http = %config.listen, grpc = %config.grpc_listen, services = plans.len(), "predictor starting");
                run(config, cli.s3, listeners, telemetry::shutdown_signal()).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
