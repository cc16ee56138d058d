//! `storefront`: run one service, or all of them in one process for local use.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use storefront::common::app::Limits;
use storefront::common::auth::{DEV_SECRET, Keys};
use storefront::{Service, Settings, spawn_all};

#[derive(Debug, Parser)]
#[command(name = "storefront", version, about = "The storefront microservices Prescale scales")]
struct Cli {
    /// Folder of the services' SQLite files.
    #[arg(long, global = true, env = "STOREFRONT_DATA_DIR", default_value = "data/storefront")]
    data_dir: PathBuf,
    /// Requests one instance serves at once; more wait in line.
    #[arg(long, global = true, env = "STOREFRONT_CONCURRENCY", default_value_t = 64)]
    concurrency: usize,
    /// The JWT signing secret shared by every service.
    #[arg(long, global = true, env = "STOREFRONT_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Development only: use a fixed, public JWT secret when none is given.
    #[arg(long, global = true)]
    dev: bool,
    /// Address to listen on.
    #[arg(long, global = true, default_value = "127.0.0.1")]
    host: String,
    /// Re-ranking rounds per candidate in the recommender (its CPU cost per request).
    #[arg(long, global = true, default_value_t = 20_000)]
    recommender_work: u32,
    /// A service's base URL, as `name=url` (repeatable); default `http://127.0.0.1:<port>`.
    #[arg(long = "upstream", global = true, value_parser = parse_upstream)]
    upstreams: Vec<(String, String)>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one service.
    Run {
        /// Which.
        service: Service,
        /// Port (default: the service's own).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Run every service in this process, each on its default port (or `--port name=N`).
    All {
        /// Port overrides, `name=N` (repeatable).
        #[arg(long = "port", value_parser = parse_port)]
        ports: Vec<(String, u16)>,
    },
}

fn parse_upstream(s: &str) -> Result<(String, String), String> {
    let (name, url) = s.split_once('=').ok_or_else(|| format!("expected name=url, got {s:?}"))?;
    Ok((name.to_owned(), url.trim_end_matches('/').to_owned()))
}

fn parse_port(s: &str) -> Result<(String, u16), String> {
    let (name, port) = s.split_once('=').ok_or_else(|| format!("expected name=port, got {s:?}"))?;
    Ok((name.to_owned(), port.parse().map_err(|_| format!("bad port in {s:?}"))?))
}

fn service_named(name: &str) -> anyhow::Result<Service> {
    Service::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| anyhow::anyhow!("no service named {name:?}"))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let secret = match (&cli.jwt_secret, cli.dev) {
        (Some(s), _) => s.clone(),
        (None, true) => {
            tracing::warn!("--dev: using the public development JWT secret; never do this in production");
            DEV_SECRET.to_owned()
        }
        (None, false) => anyhow::bail!(
            "no JWT signing secret: set STOREFRONT_JWT_SECRET (or --jwt-secret), or pass --dev for local development"
        ),
    };
    let mut ports: BTreeMap<Service, u16> = Service::ALL.iter().map(|s| (*s, s.default_port())).collect();
    match &cli.command {
        Command::All { ports: overrides } => {
            for (name, port) in overrides {
                ports.insert(service_named(name)?, *port);
            }
        }
        Command::Run { service, port } => {
            ports = BTreeMap::from([(*service, port.unwrap_or(service.default_port()))]);
        }
    }
    let mut urls = Settings::local_urls("127.0.0.1", &ports);
    for (name, url) in &cli.upstreams {
        urls.insert(service_named(name)?.name(), url.clone());
    }
    let settings = Settings {
        data_dir: cli.data_dir.clone(),
        limits: Limits { concurrency: cli.concurrency },
        keys: Keys::new(&secret)?,
        urls,
        recommender_work: cli.recommender_work,
    };
    for server in spawn_all(&settings, &cli.host, &ports, prescale_core::telemetry::shutdown_signal()).await? {
        server.await??;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = prescale_core::telemetry::init(&prescale_core::config::TelemetryConfig::default());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
