//! `make bench`: training a fleet model for 1,000 services across processes.
//!
//! `BENCH_FLEET_SERVICES` synthetic services (default 1,000) of varied shapes and sizes
//! (levels from 0.1 to 1,000 requests/s; daily and weekly seasons of their own phases and
//! depths; noise; some with bursts at fixed minutes, some trending, some flat, some
//! shifting level halfway), `BENCH_FLEET_DAYS` days (default 14) of 30 s steps, written
//! hour by hour in the collector's layout to a real S3 protocol server. Then, as the
//! CronJob's driver and its Indexed Job run them, each a process of its own:
//! `prescale-trainer train --services '*' --shards 4 --no-evaluate` (the fleet model),
//! four `evaluate --shard i/4` at once, and `publish`. Printed: wall time and peak
//! resident memory (`VmHWM`) per process, and for every service whether the served
//! forecaster's test MAE is at most the best baseline's.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prescale_core::schema::{Feature, FeatureRow};
use prescale_core::store::S3Store;
use prescale_core::{ServiceId, table};
use prescale_testkit::s3::{ACCESS_KEY, S3Server, SECRET_KEY};

#[path = "synthetic/mod.rs"]
mod synthetic;

use synthetic::{Lcg, Shape};

const STEP: i64 = 30;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Writes the services' history hour by hour, as one collector would (every service's
/// rows of an hour in one object).
async fn write_history(store: &S3Store, services: usize, days: usize, start: DateTime<Utc>) {
    let mut rng = Lcg(17);
    let shapes: Vec<Shape> = (0..services).map(|_| Shape::new(&mut rng)).collect();
    let ids: Vec<ServiceId> =
        (0..services).map(|i| ServiceId::new(format!("team-{}", i % 20), format!("svc-{i:05}")).unwrap()).collect();
    let mut noise: Vec<Lcg> = (0..services).map(|i| Lcg(1000 + i as u64)).collect();
    let layout = table::Layout::new("metrics", "collector-0").unwrap();
    let per_hour = (3600 / STEP) as usize;
    let n = days * 24 * per_hour;
    for hour in 0..days * 24 {
        let mut rows = Vec::with_capacity(services * per_hour);
        for k in 0..per_hour {
            let i = hour * per_hour + k;
            let t = start + chrono::Duration::seconds(i as i64 * STEP);
            for (s, shape) in shapes.iter().enumerate() {
                let mut r = FeatureRow::empty(t, ids[s].clone());
                r.set(Feature::RequestsPerSecond, Some(shape.at(i, n, t, &mut noise[s])));
                rows.push(r);
            }
        }
        table::write_rows(store, &layout, rows).await.unwrap();
    }
}

/// A finished process: its output, wall time and peak resident memory.
struct Run {
    what: String,
    out: std::process::Output,
    seconds: f64,
    peak_mib: f64,
}

/// The peak resident memory (`VmHWM`) of a running process, MiB.
fn peak_of(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs the trainer with `args`, watching its peak memory until it ends.
fn trainer(what: &str, endpoint: &str, args: &[&str]) -> Run {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_prescale-trainer"))
        .args(args)
        .env("PRESCALE_S3_ENDPOINT", endpoint)
        .env("PRESCALE_S3_PATH_STYLE", "true")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Read the pipes on threads so a chatty process never blocks on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut b).ok();
        b
    });
    let err_thread = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut b).ok();
        b
    });
    let mut peak = 0.0f64;
    let status = loop {
        if let Some(p) = peak_of(pid) {
            peak = peak.max(p);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::process::Output { status, stdout: out_thread.join().unwrap(), stderr: err_thread.join().unwrap() };
    let run = Run { what: what.to_owned(), out, seconds: started.elapsed().as_secs_f64(), peak_mib: peak };
    assert!(
        run.out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&run.out.stdout),
        String::from_utf8_lossy(&run.out.stderr)
    );
    run
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let services = env_or("BENCH_FLEET_SERVICES", 1000);
    let days = env_or("BENCH_FLEET_DAYS", 14);
    let shards = env_or("BENCH_FLEET_SHARDS", 4);
    let train_seconds = env_or("BENCH_FLEET_TRAIN_SECONDS", 300);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s3_root = dir.path().join("s3");
    std::fs::create_dir_all(&s3_root).unwrap();
    let server = rt.block_on(S3Server::start(&s3_root)).unwrap();
    server.create_bucket("fleet").unwrap();
    let endpoint = server.endpoint();
    let start = DateTime::parse_from_rfc3339("2026-10-05T00:00:00Z").unwrap().with_timezone(&Utc);
    let started = Instant::now();
    let store = S3Store::new(server.client(), "fleet", "");
    rt.block_on(write_history(&store, services, days, start));
    println!(
        "fleet bench: {services} services x {days} days of 30 s steps ({} rows) written in the collector's layout in {:.0} s",
        services * days * 2880,
        started.elapsed().as_secs_f64()
    );
    let config = dir.path().join("fleet-train.toml");
    // The shipped model's shape, one block narrower: the bench measures the pipeline.
    std::fs::write(
        &config,
        format!(
            "context = 64\nd_model = 32\nheads = 4\nlayers = 1\nff = 64\nbatch = 256\nsamples_per_epoch = 32768\n\
             max_epochs = 20\nmax_seconds = {train_seconds}\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let models = "s3://fleet/models";
    let shards_arg = shards.to_string();
    let fit = trainer(
        "train (fit)",
        &endpoint,
        &[
            "--train-config",
            config,
            "train",
            "--data",
            "s3://fleet/metrics",
            "--services",
            "*",
            "--models",
            models,
            "--shards",
            &shards_arg,
            "--no-evaluate",
        ],
    );
    let text = String::from_utf8_lossy(&fit.out.stdout).into_owned();
    let version = text.lines().find_map(|l| l.strip_prefix("stored fleet model ")).unwrap().split(' ').next().unwrap();
    let mut runs = vec![fit];
    let shard_runs: Vec<Run> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..shards)
            .map(|i| {
                let endpoint = endpoint.clone();
                let shard = format!("{i}/{shards}");
                scope.spawn(move || {
                    trainer(
                        &format!("evaluate --shard {shard}"),
                        &endpoint,
                        &[
                            "evaluate",
                            "--data",
                            "s3://fleet/metrics",
                            "--models",
                            models,
                            "--version",
                            version,
                            "--shard",
                            &shard,
                        ],
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    runs.extend(shard_runs);
    runs.push(trainer("publish", &endpoint, &["publish", "--models", models, version]));
    println!("{:<24} {:>10} {:>14}", "process", "wall, s", "peak RSS, MiB");
    for r in &runs {
        println!("{:<24} {:>10.1} {:>14.0}", r.what, r.seconds, r.peak_mib);
    }
    judge(&s3_root.join("fleet/models").join(version).join("services.json"));
}

/// For every service: the served forecaster's test MAE against the best baseline's.
fn judge(services_json: &Path) {
    let services: serde_json::Value = serde_json::from_slice(&std::fs::read(services_json).unwrap()).unwrap();
    let services = services.as_object().unwrap();
    let (mut at_most, mut worse, mut cold) = (0, Vec::new(), 0);
    let mut served_by = std::collections::BTreeMap::<String, usize>::new();
    let mut ratios = Vec::new();
    for (name, e) in services {
        if e["cold"] == true {
            cold += 1;
            continue;
        }
        let served = if e["served"]["forecaster"] == "transformer" {
            "transformer".to_owned()
        } else {
            e["served"]["model"]["kind"].as_str().unwrap().to_owned()
        };
        *served_by.entry(served.clone()).or_default() += 1;
        let models = e["backtest"]["models"].as_object().unwrap();
        let mae = |m: &serde_json::Value| m["horizon"]["mae"].as_f64().unwrap_or(f64::NAN);
        let ours = mae(&models[&served]);
        let best = models
            .iter()
            .filter(|(n, _)| n.as_str() != "transformer")
            .map(|(_, m)| mae(m))
            .fold(f64::INFINITY, f64::min);
        ratios.push(ours / best);
        if ours <= best + 1e-12 {
            at_most += 1;
        } else {
            worse.push(format!("{name} ({served} {ours:.4} vs {best:.4})"));
        }
    }
    ratios.sort_by(f64::total_cmp);
    let q = |p: f64| ratios[((ratios.len() - 1) as f64 * p).round() as usize];
    println!("served by: {served_by:?}; {cold} cold");
    println!(
        "served forecaster's test MAE at most the best baseline's: {at_most} of {} services; ratio to the best baseline p50 {:.3}, p90 {:.3}, max {:.3}",
        ratios.len(),
        q(0.5),
        q(0.9),
        q(1.0)
    );
    for w in worse.iter().take(10) {
        println!("  worse: {w}");
    }
}
