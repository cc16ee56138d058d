//! `prescale-predictor`: serve live forecasts to KEDA.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prescale_core::config::{self, EXIT_CONFIG};
use prescale_core::telemetry;
use prescale_predictor::config::PredictorConfig;
use prescale_predictor::run::Listeners;

#[derive(Debug, Parser)]
#[command(name = "prescale-predictor", version, about = "Live ten-minute forecasts served to KEDA")]
struct Cli {
    #[command(flatten)]
    args: config::Args,
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
    let started =
        config::start(cli.args.config.as_deref(), |c: PredictorConfig| c.build(&cli.args.s3), |p| &p.config.telemetry);
    let predictor = match started {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Command::Check => {
            for p in &predictor.plans {
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
                let listeners = Listeners::bind(&predictor.config).await?;
                let c = &predictor.config;
                tracing::info!(http = %c.listen, grpc = %c.grpc_listen, services = predictor.plans.len(), "predictor starting");
                predictor.run(listeners, telemetry::shutdown_signal()).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
