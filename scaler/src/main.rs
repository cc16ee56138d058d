//! `prescale-scaler`: apply the predictor's decisions to Kubernetes, estimate capacity.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use prescale_core::config::{self, EXIT_CONFIG, TelemetryConfig};
use prescale_core::store::{self, S3Options};
use prescale_core::table::{FeatureTable, Scan};
use prescale_scaler::capacity;
use prescale_scaler::run::RunConfig;

#[derive(Debug, Parser)]
#[command(
    name = "prescale-scaler",
    version,
    about = "Apply the predictor's decisions to Deployments, and estimate capacity per replica"
)]
struct Cli {
    #[command(flatten)]
    args: config::Args,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Poll the predictor's decisions and apply them to Deployments through the scale
    /// subresource; in shadow mode (the default) only log and export what it would do.
    /// Its settings file (`--config`): predictor_url, interval, shadow, listen, [[targets]].
    Run,
    /// Print the RBAC the configured targets need (`--config`, as for `run`): per namespace
    /// a Role granting get and update on exactly those Deployments' scale subresource
    /// (`resourceNames`), bound to the scaler's ServiceAccount. Pipe to `kubectl apply -f -`.
    Rbac {
        /// The namespace of the scaler's ServiceAccount (`prescale-scaler`).
        #[arg(long, default_value = "prescale")]
        service_account_namespace: String,
    },
    /// Estimate requests/s per replica from the collector's data: what one ready replica
    /// served while p95 latency met the objective; one line per service the selector
    /// names.
    EstimateCapacity {
        /// The collector's data location (`s3://...`, `file://...` or a path).
        #[arg(long, env = "PRESCALE_DATA")]
        data: String,
        /// The services: `namespace/name`, `name`, or a selector such as `shop/*`.
        #[arg(long, alias = "service")]
        services: String,
        /// The cluster whose rows to read (its `cluster=` folder), when collectors of
        /// several clusters write the store.
        #[arg(long)]
        cluster: Option<String>,
        /// p95 latency objective, seconds.
        #[arg(long, default_value_t = 0.25)]
        latency_objective: f64,
        /// Quantile of per-replica load over healthy steps.
        #[arg(long, default_value_t = 0.95)]
        quantile: f64,
    },
}

/// What `estimate-capacity` reads: where, which services, which cluster.
struct CapacityQuery<'a> {
    data: &'a str,
    services: &'a str,
    cluster: Option<&'a str>,
    objective: f64,
    quantile: f64,
}

fn estimate_capacity(s3: &S3Options, q: &CapacityQuery<'_>) -> anyhow::Result<()> {
    let prefix = match q.cluster {
        Some(c) => {
            prescale_core::service::validate_label("cluster", c).context("--cluster")?;
            prescale_core::table::cluster_prefix("", c)
        }
        None => String::new(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let rows = runtime.block_on(async {
        let store = store::open_str(q.data, s3).await.with_context(|| format!("opening {}", q.data))?;
        let scan = Scan { features: Some(capacity::FEATURES.to_vec()), ..Scan::service(q.services) };
        anyhow::Ok(FeatureTable::new(store.as_ref(), &prefix).read(&scan).await?)
    })?;
    if rows.is_empty() {
        anyhow::bail!("no rows for services {:?} in {}", q.services, q.data);
    }
    let mut by_service: std::collections::BTreeMap<String, Vec<_>> = std::collections::BTreeMap::new();
    for row in &rows {
        by_service.entry(row.service.to_string()).or_default().push(row);
    }
    let mut failed = 0;
    for (service, ours) in &by_service {
        match capacity::estimate(ours, q.objective, q.quantile) {
            Ok(e) => println!(
                "{service}: {:.3} requests/s per replica (p{:.0} of {} steps within {} s p95 latency; {} steps over it, {} in all)",
                e.capacity,
                100.0 * q.quantile,
                e.steps_used,
                q.objective,
                e.steps_over_objective,
                e.steps_total
            ),
            Err(e) => {
                failed += 1;
                eprintln!("{service}: {e}");
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} of {} services could not be estimated", by_service.len());
    Ok(())
}

fn run(config: RunConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let client = kube::Client::try_default().await.context("connecting to Kubernetes")?;
        prescale_scaler::run::run(config, client, prescale_core::telemetry::shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = prescale_core::telemetry::init(&TelemetryConfig::default());
    let result = match &cli.command {
        Command::Run => match config::load::<RunConfig>(cli.args.config.as_deref())
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate().map(|()| c).map_err(|e| e.to_string()))
        {
            Ok(config) => run(config),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        Command::Rbac { service_account_namespace } => {
            match config::load::<RunConfig>(cli.args.config.as_deref())
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map(|()| c).map_err(|e| e.to_string()))
            {
                Ok(config) => {
                    let list = prescale_scaler::rbac::for_targets(&config.targets, service_account_namespace);
                    println!("{}", serde_json::to_string_pretty(&list).expect("RBAC serialises"));
                    Ok(())
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
        }
        Command::EstimateCapacity { data, services, cluster, latency_objective, quantile } => estimate_capacity(
            &cli.args.s3,
            &CapacityQuery {
                data,
                services,
                cluster: cluster.as_deref(),
                objective: *latency_objective,
                quantile: *quantile,
            },
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
