//! `prescale-trainer`: train, backtest, simulate, evaluate, publish and list forecasting
//! models.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use prescale_core::store::{self, ObjectStore, S3Options};
use prescale_models::artifact::{self, Manifest};
use prescale_models::backtest::{self, Backtest};
use prescale_models::fleet;
use prescale_models::series::Series;
use prescale_models::train::TrainConfig;
use prescale_trainer::input::DataArgs;
use prescale_trainer::simulate::{self, files};
use prescale_trainer::{fleet as fleet_cmd, import, indexed_job, output, plot, progress, report};
use tch::Device;

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
    #[command(flatten)]
    s3: S3Options,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train on the first 80% of the data, score every model on the last 20%, and write
    /// forecasts.csv, report.json and plot.svg to --out.
    Backtest {
        #[command(flatten)]
        data: DataArgs,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Backtest, then store the transformer as a new model version (and optionally
    /// publish it through the quality gate). With --services, one fleet model for every
    /// service of the data the selector names: fitted on all of them, then each service's
    /// own work (calibration, baselines, the choice of its forecaster on its validation
    /// part, backtest, burst profile) in --shards parts, here or (--no-evaluate) by
    /// `evaluate --shard i/N` elsewhere.
    Train {
        #[command(flatten)]
        data: DataArgs,
        /// With --data instead of --service: a selector such as `shop/*`, `*/order` or
        /// `*` (every service in the data). One service is a fleet of one.
        #[arg(long, requires = "data", conflicts_with_all = ["service", "trace"])]
        services: Option<String>,
        /// With --services: how many shards the per-service work is split into.
        #[arg(long, requires = "services", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        shards: u32,
        /// With --services: store the fitted model and stop; the shards are evaluated by
        /// `evaluate --shard i/N --version V` (a Kubernetes Indexed Job), then `publish`.
        #[arg(long, requires = "services", conflicts_with = "publish")]
        no_evaluate: bool,
        /// Where models are kept (`s3://bucket/prefix`, `file://...` or a path).
        #[arg(long, env = "PRESCALE_MODELS")]
        models: String,
        /// Also write the backtest files here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Move `latest` to the new version if it passes the quality gate.
        #[arg(long)]
        publish: bool,
        /// With --publish: publish even if the gate refuses.
        #[arg(long, requires = "publish")]
        force: bool,
    },
    /// The scaling benchmark: replay the test part (last 20%) of a trace, or of a
    /// service's collected demand, through the benchmark's cluster model with the `hpa`,
    /// `predictive` (tuned on validation for --objective) and `oracle` policies, and the
    /// HPA's and the predictive policy's frontiers; write decisions.csv, frontier.csv,
    /// summary.json, plot.svg and frontier.svg to --out.
    Simulate {
        #[command(flatten)]
        data: DataArgs,
        /// The largest share of under-provisioned steps accepted (0.001: 0.1%); the
        /// cheapest setting meeting it on validation is chosen. Default: the default
        /// HPA's own share on validation.
        #[arg(long)]
        objective: Option<f64>,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Requests/s per replica; default: the 99th percentile of test demand over 20.
        #[arg(long)]
        capacity: Option<f64>,
        /// Use the model `train` stored here (trained on this trace's training part)
        /// instead of training one.
        #[arg(long)]
        models: Option<String>,
        /// With --models: the version; `latest` by default.
        #[arg(long, requires = "models")]
        version: Option<String>,
    },
    /// Score a stored model on the test part (last 20%) of some data, beside persistence
    /// and seasonal naive. With --shard i/N: the per-service work of shard i of a fleet
    /// version (its services' calibration, baselines, choice and backtest), written under
    /// the version.
    Evaluate {
        #[command(flatten)]
        data: DataArgs,
        /// Where models are kept.
        #[arg(long, env = "PRESCALE_MODELS")]
        models: String,
        /// The version to score; `latest` by default (with --shard: required).
        #[arg(long)]
        version: Option<String>,
        /// For a fleet version: the shard to evaluate, `INDEX/COUNT` (Kubernetes' Indexed
        /// Job sets `JOB_COMPLETION_INDEX`; pass `$(JOB_COMPLETION_INDEX)/N`).
        #[arg(long, requires = "version")]
        shard: Option<fleet::Shard>,
    },
    /// Move `latest` to a stored version, if it loads and passes the quality gate.
    Publish {
        /// Where models are kept.
        #[arg(long, env = "PRESCALE_MODELS")]
        models: String,
        /// The version (see `list`).
        version: String,
        /// Publish even if the quality gate refuses.
        #[arg(long)]
        force: bool,
    },
    /// One fleet model with its per-service work as a Kubernetes Indexed Job: fits the
    /// model here, creates the Job (from --job-template, in this pod's namespace) with one
    /// index per shard, waits for it, and publishes once every shard finished. A failed
    /// shard is retried once by Kubernetes; if it fails again it is named, and nothing is
    /// published.
    Fleet {
        #[command(flatten)]
        data: DataArgs,
        /// The services: a selector such as `shop/*`.
        #[arg(long)]
        services: String,
        /// Where models are kept.
        #[arg(long, env = "PRESCALE_MODELS")]
        models: String,
        /// Shards of the per-service work (pods of the Job).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        shards: u32,
        /// Most shards running at once; all of them by default.
        #[arg(long)]
        parallelism: Option<u32>,
        /// A `batch/v1` Job in YAML whose first container runs `prescale-trainer` with the
        /// data and model locations in its environment; the driver adds the rest.
        #[arg(long, env = "PRESCALE_JOB_TEMPLATE")]
        job_template: PathBuf,
        /// The Job's namespace; by default the client's (this pod's).
        #[arg(long, env = "POD_NAMESPACE")]
        namespace: Option<String>,
        /// Seconds between two looks at the Job.
        #[arg(long, default_value_t = 10.0)]
        poll_seconds: f64,
    },
    /// Write request-rate traces as the collector's rows (`requests_per_second` only), to
    /// train a fleet model on traces or start from history kept elsewhere.
    Import {
        /// The collector's data location (`s3://bucket/prefix`, `file://...` or a path).
        #[arg(long, env = "PRESCALE_DATA")]
        data: String,
        /// The cluster folder to write in.
        #[arg(long, value_parser = prescale_trainer::input::cluster_name)]
        cluster: Option<String>,
        /// `SERVICE=PATH`: a `timestamp,requests` CSV and the service (`namespace/name`)
        /// it becomes; repeat for several.
        #[arg(long = "trace", required = true, value_parser = import::trace_of)]
        traces: Vec<(prescale_core::ServiceId, PathBuf)>,
        /// Move each trace so that its last step is this time's step: `now` or RFC 3339.
        #[arg(long, value_parser = import::end_of)]
        end: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// List stored versions with their scores; `*` marks `latest`.
    List {
        /// Where models are kept.
        #[arg(long, env = "PRESCALE_MODELS")]
        models: String,
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
    config.validate()?;
    Ok(config)
}

/// Loads the data and runs the backtest, printing progress and the score table.
async fn run_backtest(cli: &Cli, data: &DataArgs, out: Option<&Path>) -> anyhow::Result<(Series, Backtest)> {
    let started = Instant::now();
    let config = train_config(cli)?;
    let series = data.load(&cli.s3).await?;
    eprintln!(
        "data: {} steps of {} s from {}, {} missing{}",
        series.len(),
        series.grid.seconds(),
        series.name,
        series.values.iter().filter(|v| v.is_none()).count(),
        series.covariates.as_ref().map(|c| format!(", {} covariates", c.names.len())).unwrap_or_default()
    );
    let mut bars = progress::Bars::new();
    let bt = tokio::task::block_in_place(|| backtest::run(&series, &config, &mut bars))?;
    drop(bars);
    let rep = report::Report::new(&series.name, &series, &bt, started.elapsed().as_secs_f64());
    if let Some(pre) = &rep.preprocessing {
        println!(
            "covariates: {} of {} components of [{}] explain {:.1}% of their variance",
            pre.dims(),
            pre.explained_variance_ratio.len(),
            pre.columns.join(", "),
            100.0 * pre.explained()
        );
    }
    println!("{}", rep.table());
    println!(
        "transformer 10-min MAE / best baseline ({}) = {:.3}; trained {} epochs in {:.0} s; backtest took {:.0} s",
        rep.best_baseline, rep.transformer_mae_ratio, rep.training.epochs, rep.training.seconds, rep.total_seconds
    );
    if let Some(out) = out {
        output::create_dir(out)?;
        report::write_forecasts(&out.join("forecasts.csv"), &series, &bt)?;
        report::write_report(&out.join("report.json"), &rep)?;
        plot::write_plot(
            &out.join("plot.svg"),
            &series,
            &bt,
            &format!("{}: actual vs transformer, 10 min ahead", series.name),
        )?;
        println!("wrote {}/forecasts.csv, report.json, plot.svg", out.display());
    }
    Ok((series, bt))
}

async fn train(
    cli: &Cli,
    data: &DataArgs,
    models: &str,
    out: Option<&Path>,
    publish: bool,
    force: bool,
) -> anyhow::Result<()> {
    let store = open(cli, models).await?;
    let (series, bt) = run_backtest(cli, data, out).await?;
    let now = chrono::Utc::now();
    let version = artifact::new_version(now);
    let manifest = Manifest::from_backtest(&version, now, &series, &bt);
    let manifest = artifact::write_version(store.as_ref(), &bt.transformer, manifest).await?;
    println!("stored model {version} in {}", store.location());
    match &manifest.burst {
        Some(profile) => {
            if let Some((ratio, lead, second)) = profile.largest_jump(0.9) {
                println!(
                    "burst profile: the largest 90th-percentile jump is {ratio:.2}x within {lead} steps, into :{:02}:{:02} \
                     past the hour",
                    second / 60,
                    second % 60
                );
            }
        }
        None => println!("no burst profile: a {} s step does not divide the hour", series.grid.seconds()),
    }
    if publish {
        artifact::publish(store.as_ref(), &version, force).await?;
        println!("published {version}: `latest` points to it");
    }
    Ok(())
}

/// One fleet model for every service of the data `selector` names: fitted, then each
/// shard's per-service work here (unless `no_evaluate`), then published if asked.
#[allow(clippy::too_many_arguments)]
async fn train_fleet(
    cli: &Cli,
    data: &DataArgs,
    selector: &str,
    models: &str,
    shards: u32,
    no_evaluate: bool,
    publish: bool,
    force: bool,
) -> anyhow::Result<()> {
    let config = train_config(cli)?;
    let store = open(cli, models).await?;
    let mut bars = progress::Bars::new();
    let manifest = fleet_cmd::fit(data, &cli.s3, selector, &config, store.as_ref(), shards, &mut bars).await?;
    drop(bars);
    let version = &manifest.version;
    if no_evaluate {
        println!(
            "next: prescale-trainer evaluate --data ... --models {models} --version {version} --shard <i>/{shards} for i \
             in 0..{shards}, then prescale-trainer publish --models {models} {version}"
        );
        return Ok(());
    }
    let mut all = std::collections::BTreeMap::new();
    for shard in fleet::Shard::all(shards) {
        all.extend(fleet_cmd::evaluate_shard(data, &cli.s3, store.as_ref(), version, shard).await?);
    }
    println!("{}", fleet_cmd::table(&all));
    if publish {
        artifact::publish(store.as_ref(), version, force).await?;
        println!("published {version}: `latest` points to it");
    }
    Ok(())
}

/// Opens the store at a location flag's value.
async fn open(cli: &Cli, location: &str) -> anyhow::Result<std::sync::Arc<dyn ObjectStore>> {
    store::open_str(location, &cli.s3).await.with_context(|| format!("opening {location}"))
}

async fn evaluate(cli: &Cli, data: &DataArgs, models: &str, version: Option<&str>) -> anyhow::Result<()> {
    let store = open(cli, models).await?;
    let (manifest, model) = artifact::load(store.as_ref(), version, Device::Cpu).await?;
    let series = data.load(&cli.s3).await?;
    let scored = tokio::task::block_in_place(|| backtest::evaluate(&model, &manifest, &series))?;
    println!("model {} on the last 20% of {} ({} origins):", manifest.version, series.name, scored.test_origins);
    println!("{}", report::table(scored.models.iter().map(|m| (m.name, &m.scores))));
    Ok(())
}

/// The scaling benchmark on a trace, with a stored model or one trained now.
#[allow(clippy::too_many_arguments)] // the command's flags, each used once
async fn simulate_cmd(
    cli: &Cli,
    data: &DataArgs,
    out: &Path,
    capacity: Option<f64>,
    objective: Option<f64>,
    models: Option<&str>,
    version: Option<&str>,
) -> anyhow::Result<()> {
    if models.is_some() && (cli.train_config.is_some() || cli.max_seconds.is_some()) {
        anyhow::bail!("--train-config and --max-seconds shape training; with --models nothing is trained");
    }
    if let Some(o) = objective
        && !(0.0..1.0).contains(&o)
    {
        anyhow::bail!("--objective {o} is not a share of under-provisioned steps in [0, 1) (0.001 is 0.1%)");
    }

    let config = train_config(cli)?;
    let series = data.load(&cli.s3).await?;
    eprintln!("simulate: {} steps of {} s from {}", series.len(), series.grid.seconds(), series.name);
    let mut bars = progress::Bars::new();
    let source = match models {
        Some(models) => {
            let store = open(cli, models).await?;
            let (manifest, model) = artifact::load(store.as_ref(), version, Device::Cpu).await?;
            eprintln!("simulate: using model {} from {models}", manifest.version);
            simulate::ModelSource::Trained(Box::new(model), Box::new(manifest))
        }
        None => simulate::ModelSource::Train(&config, &mut bars),
    };
    let sim = tokio::task::block_in_place(|| simulate::run(&series, source, capacity, objective))?;
    drop(bars);
    output::create_dir(out)?;
    files::write_decisions(&out.join("decisions.csv"), &series, &sim)?;
    files::write_frontier(&out.join("frontier.csv"), &sim)?;
    files::write_summary(&out.join("summary.json"), &series, &sim)?;
    files::write_plot(&out.join("plot.svg"), &series, &sim)?;
    files::write_frontier_plot(&out.join("frontier.svg"), &series, &sim)?;
    println!("{}", files::tuning(&sim, series.grid));
    println!("{}", files::table(&sim.outcomes));
    println!("{}", files::headline(&sim));
    println!("{}", files::table(&sim.mechanics));
    println!("{}", files::mechanics(&sim));
    println!("wrote {}/decisions.csv, frontier.csv, summary.json, plot.svg, frontier.svg", out.display());
    Ok(())
}

async fn list(cli: &Cli, models: &str) -> anyhow::Result<()> {
    let store = open(cli, models).await?;
    let latest = artifact::latest(store.as_ref()).await?.map(|l| l.version);
    let versions = artifact::list(store.as_ref()).await?;
    if versions.is_empty() {
        println!("no models in {}", store.location());
    }
    for (version, manifest) in versions {
        let mark = if latest.as_deref() == Some(version.as_str()) { "*" } else { " " };
        match manifest {
            Ok(m) if m.fleet.is_some() => {
                let fleet = m.fleet.as_ref().expect("a fleet model");
                println!(
                    "{mark} {version}  fleet of {} services ({}) trained to {}  {} shards  {}",
                    fleet.services.len(),
                    fleet.selector,
                    m.training.to.to_rfc3339(),
                    fleet.shards,
                    if artifact::gate(&m).is_ok() { "published or ready" } else { "shards not merged yet" }
                );
            }
            Ok(m) => {
                let scores = m.backtest.as_ref();
                let ours = scores.and_then(|b| b.models.get("transformer")).map(|s| s.horizon.mae);
                let best = scores.and_then(|b| b.best_baseline());
                println!(
                    "{mark} {version}  trained on {} ({} steps to {})  MAE {}  best baseline {}  gate {}",
                    m.training.source,
                    m.training.steps,
                    m.training.to.to_rfc3339(),
                    ours.map_or("-".into(), |v| format!("{v:.4}")),
                    best.map_or("-".into(), |(n, v)| format!("{n} {v:.4}")),
                    if artifact::gate(&m).is_ok() { "passes" } else { "fails" }
                );
            }
            Err(e) => println!("{mark} {version}  unreadable: {e}"),
        }
    }
    Ok(())
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Backtest { data, out } => run_backtest(cli, data, Some(out)).await.map(drop),
        Command::Train { data, services: None, models, out, publish, force, .. } => {
            train(cli, data, models, out.as_deref(), *publish, *force).await
        }
        Command::Train { data, services: Some(selector), models, shards, no_evaluate, publish, force, .. } => {
            train_fleet(cli, data, selector, models, *shards, *no_evaluate, *publish, *force).await
        }
        Command::Simulate { data, objective, out, capacity, models, version } => {
            simulate_cmd(cli, data, out, *capacity, *objective, models.as_deref(), version.as_deref()).await
        }
        Command::Evaluate { data, models, version: Some(version), shard: Some(shard) } => {
            let store = open(cli, models).await?;
            let entries = fleet_cmd::evaluate_shard(data, &cli.s3, store.as_ref(), version, *shard).await?;
            println!("{}", fleet_cmd::table(&entries));
            Ok(())
        }
        Command::Evaluate { data, models, version, .. } => evaluate(cli, data, models, version.as_deref()).await,
        Command::Publish { models, version, force } => {
            let store = open(cli, models).await?;
            artifact::publish(store.as_ref(), version, *force).await?;
            println!("published {version}: `latest` points to it");
            Ok(())
        }
        Command::List { models } => list(cli, models).await,
        Command::Fleet { data, services, models, shards, parallelism, job_template, namespace, poll_seconds } => {
            let yaml = std::fs::read_to_string(job_template)
                .with_context(|| format!("reading the job template {}", job_template.display()))?;
            let template = indexed_job::template(&yaml)?;
            prescale_core::inventory::watch::install_tls_provider();
            let client = kube::Client::try_default().await.context("connecting to Kubernetes")?;
            let namespace = namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
            let config = train_config(cli)?;
            let store = open(cli, models).await?;
            let mut bars = progress::Bars::new();
            let manifest = fleet_cmd::fit(data, &cli.s3, services, &config, store.as_ref(), *shards, &mut bars).await?;
            drop(bars);
            let version = &manifest.version;
            let job = indexed_job::shards_job(&template, version, *shards, parallelism.unwrap_or(*shards));
            let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> = kube::Api::namespaced(client, &namespace);
            let poll = std::time::Duration::from_secs_f64(poll_seconds.max(0.05));
            indexed_job::run(&jobs, &job, version, *shards, poll).await?;
            artifact::publish(store.as_ref(), version, false).await?;
            println!("published {version}: `latest` points to it");
            Ok(())
        }
        Command::Import { data, cluster, traces, end } => {
            let store = open(cli, data).await?;
            for (id, rows) in import::import(store.as_ref(), cluster.as_deref(), traces, *end).await? {
                println!("imported {rows} rows of {id}");
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = prescale_core::telemetry::init(&prescale_core::config::TelemetryConfig::default());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build();
    let result = runtime.map_err(anyhow::Error::from).and_then(|rt| rt.block_on(run(&cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
