//! `storefront`: run one service, or all of them in one process for local use.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use storefront::authen::LoginSettings;
use storefront::common::app::Limits;
use storefront::common::auth::{DEV_SECRET, Keys};
use storefront::common::db::{Database, PoolSettings};
use storefront::{Service, Settings, spawn_all};

#[derive(Debug, Parser)]
#[command(name = "storefront", version, about = "The storefront microservices Prescale scales")]
struct Cli {
    /// The shared database: `postgres://user:password@host/db` (every replica of every
    /// service, each service in its own schema). Without it, SQLite files in --data-dir.
    #[arg(long, global = true, env = "STOREFRONT_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Folder of the services' SQLite files, when no --database-url is given.
    #[arg(long, global = true, env = "STOREFRONT_DATA_DIR", default_value = "data/storefront")]
    data_dir: PathBuf,
    /// Most database connections one service instance opens (PostgreSQL).
    #[arg(long, global = true, env = "STOREFRONT_DB_MAX_CONNECTIONS", default_value_t = 8)]
    db_max_connections: u32,
    /// How long a request waits for a database connection before it is answered 503.
    #[arg(long, global = true, default_value = "5s", value_parser = humantime::parse_duration)]
    db_acquire_timeout: Duration,
    /// Requests one instance serves at once; more wait in line.
    #[arg(long, global = true, env = "STOREFRONT_CONCURRENCY", default_value_t = 64)]
    concurrency: usize,
    /// How long a request may wait in line before it is answered 503 with Retry-After.
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    queue_timeout: Duration,
    /// How long a client may take to send a request's body once its headers arrived.
    #[arg(long, global = true, default_value = "5s", value_parser = humantime::parse_duration)]
    body_timeout: Duration,
    /// How long a client may take to send a request's headers (also the idle time after
    /// which a keep-alive connection is closed).
    #[arg(long, global = true, default_value = "30s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// Password hashes computed at once (authen); default: half the container's memory
    /// limit in 19 MiB hashes.
    #[arg(long, global = true, env = "STOREFRONT_HASH_CONCURRENCY")]
    hash_concurrency: Option<usize>,
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
    Service::named(name).ok_or_else(|| anyhow::anyhow!("no service named {name:?}"))
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
    let keys = Keys::new(&secret).map_err(|e| anyhow::anyhow!("STOREFRONT_JWT_SECRET (--jwt-secret): {e}"))?;
    let mut login = LoginSettings::default();
    if let Some(n) = cli.hash_concurrency {
        anyhow::ensure!(n > 0, "--hash-concurrency must be at least 1");
        login.hash_permits = n;
    }
    let settings = Settings {
        database: match cli.database_url {
            Some(url) => Database::Url(url),
            None => Database::Embedded(cli.data_dir.clone()),
        },
        pool: PoolSettings { max_connections: cli.db_max_connections, acquire_timeout: cli.db_acquire_timeout },
        limits: Limits {
            concurrency: cli.concurrency,
            queue_timeout: cli.queue_timeout,
            body_timeout: cli.body_timeout,
            header_timeout: cli.header_timeout,
        },
        keys,
        urls,
        recommender_work: cli.recommender_work,
        login,
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
