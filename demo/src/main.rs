//! `prescale-demo`: flags, then the loop of `prescale_demo::Demo` with a live table in the
//! terminal until Ctrl-C (or `--duration`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use prescale_demo::{Demo, Ports, Settings, view};

/// Runs the whole Prescale loop locally: storefront, Prometheus, k6, collector, trainer
/// and predictor, with live predictions in the terminal and on a page.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Working folder, cleared at start: logs, configs, Prometheus data, the collector's
    /// Parquet, models.
    #[arg(long, default_value = "target-demo")]
    dir: PathBuf,
    /// The project's root (for loadtest/ and deploy/).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Where the built binaries are; defaults to this program's folder.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The step: one collected row and one decision per service per step. A compressed
    /// day lasts 360 steps.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    step: Duration,
    /// Requests/s through the gateway at the busiest minute of the synthetic day.
    #[arg(long, default_value_t = 40.0)]
    peak: f64,
    /// The fleet model's training budget, seconds.
    #[arg(long, default_value_t = 120)]
    train_seconds: u64,
    /// Stop by itself after this long (default: run until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Prometheus' port.
    #[arg(long, default_value_t = 9090)]
    prometheus_port: u16,
    /// The predictor's HTTP port (API, /metrics, live page).
    #[arg(long, default_value_t = 9100)]
    predictor_port: u16,
    /// The predictor's gRPC port (KEDA's external scaler).
    #[arg(long, default_value_t = 9500)]
    grpc_port: u16,
    /// The collector's /metrics port.
    #[arg(long, default_value_t = 9101)]
    collector_port: u16,
    /// The storefront gateway's port.
    #[arg(long, default_value_t = 8080)]
    gateway_port: u16,
    /// The first of six ports for the storefront's other services.
    #[arg(long, default_value_t = 4000)]
    backend_ports: u16,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if cli.step.as_secs() == 0 || cli.step.subsec_nanos() != 0 {
        eprintln!("demo: --step must be a whole number of seconds, at least 1 s (got {:?})", cli.step);
        return std::process::ExitCode::from(64);
    }
    let bin_dir = cli.bin_dir.clone().unwrap_or_else(|| {
        std::env::current_exe().ok().and_then(|p| p.parent().map(ToOwned::to_owned)).unwrap_or_default()
    });
    let settings = Settings {
        dir: cli.dir,
        repo: cli.repo,
        bin_dir,
        step_secs: cli.step.as_secs(),
        peak: cli.peak,
        train_seconds: cli.train_seconds,
        ports: Ports {
            gateway: cli.gateway_port,
            backends: cli.backend_ports,
            prometheus: cli.prometheus_port,
            collector: cli.collector_port,
            predictor_http: cli.predictor_port,
            predictor_grpc: cli.grpc_port,
        },
        ..Settings::default()
    };
    let started = Instant::now();
    // Ctrl-C while starting drops the half-started demo, which kills what it started.
    let start = tokio::select! {
        r = Demo::start(settings) => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("demo: interrupted while starting; everything started is stopped");
            return std::process::ExitCode::from(130);
        }
    };
    let mut demo = match start {
        Ok(d) => d,
        Err(e) => {
            eprintln!("demo: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = watch(&mut demo, started, cli.duration).await;
    println!("demo: stopping");
    demo.stop().await;
    println!("demo: stopped; logs, data and models are in {}", demo.settings().dir.display());
    code
}

/// Redraws the table every step until Ctrl-C, SIGTERM, `--duration`, or a part dies.
async fn watch(demo: &mut Demo, started: Instant, duration: Option<Duration>) -> std::process::ExitCode {
    let tty = std::io::stdout().is_terminal();
    let banner = format!(
        "live page: {}/   Prometheus: {}   storefront: {}   logs: {}/logs   Ctrl-C stops everything",
        demo.predictor_url(),
        demo.prometheus_url(),
        demo.gateway_url(),
        demo.settings().dir.display()
    );
    println!("demo: {banner}");
    let step = Duration::from_secs(demo.settings().step_secs);
    let mut sigterm = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo: cannot listen for SIGTERM: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut all_forecasting = false;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return std::process::ExitCode::SUCCESS,
            _ = sigterm.recv() => return std::process::ExitCode::SUCCESS,
            _ = tokio::time::sleep(step) => {}
        }
        if duration.is_some_and(|d| started.elapsed() >= d) {
            return std::process::ExitCode::SUCCESS;
        }
        match demo.decisions().await {
            Ok(body) => {
                let c = view::coverage(&body);
                if tty {
                    print!("\x1b[H\x1b[2J{banner}\n\n");
                }
                print!("{}", view::table(&body));
                if !all_forecasting && c.services > 0 && c.forecasting == c.services {
                    all_forecasting = true;
                    println!("demo: every service has a forecast, {} s after start", started.elapsed().as_secs());
                } else if !all_forecasting {
                    println!(
                        "demo: {}/{} services forecast so far (a forecast needs the model's context of history in Prometheus)",
                        c.forecasting, c.services
                    );
                }
            }
            Err(e) => {
                // A part that died ends the demo; a slow answer is only reported.
                if e.downcast_ref::<prescale_demo::procs::ProcError>().is_some() {
                    eprintln!("demo: {e:#}");
                    return std::process::ExitCode::FAILURE;
                }
                eprintln!("demo: the predictor did not answer: {e:#}");
            }
        }
    }
}
