//! `make bench`: how soon a service the fleet model was not trained on gets forecasts, and
//! how good they are over its first day.
//!
//! A fleet model is trained on `BENCH_COLD_FLEET` synthetic services (default 40) of
//! varied shapes and sizes, seven days of 30 s steps each. Then `BENCH_COLD_NEW` other
//! services (default 20) start: from the first step at which one context of their
//! history is observed, every fifth step of their first day is forecast as the predictor
//! forecasts a service it has no entry for: the fleet transformer, the service's level
//! floor from the history observed so far, the fleet's wider (cold) p90. Printed: when
//! the first forecast comes, the 10-minute MAE beside persistence's and adaptive
//! smoothing's at the same origins, and the p90 coverage.

use chrono::{DateTime, Utc};
use ndarray::Array2;
use prescale_core::StepGrid;
use prescale_models::base::AdaptiveSmoothing;
use prescale_models::baselines::{Persistence, PointForecaster};
use prescale_models::fleet;
use prescale_models::forecaster::Calibration;
use prescale_models::series::Series;
use prescale_models::train::{Quiet, TrainConfig};

#[path = "synthetic/mod.rs"]
mod synthetic;

use synthetic::{Lcg, Shape};

const STEP: i64 = 30;
const HORIZON: usize = 20;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `steps` of a service from `start`.
fn service(name: String, shape: &Shape, start: DateTime<Utc>, steps: usize, noise: &mut Lcg) -> Series {
    let values = (0..steps)
        .map(|i| Some(shape.at(i, steps, start + chrono::Duration::seconds(i as i64 * STEP), noise)))
        .collect();
    Series::new(name, StepGrid::from_secs(STEP as u64).unwrap(), start, values).unwrap()
}

/// MAE at the horizon of `p50` (one row per origin) and the share of actuals at or below
/// `p90`.
fn scores(series: &Series, origins: &[usize], p50: &Array2<f64>, p90: Option<&Array2<f64>>) -> (f64, f64) {
    let (mut err, mut covered, mut n) = (0.0, 0, 0);
    for (row, &o) in origins.iter().enumerate() {
        if let Some(a) = series.at((o + HORIZON) as isize) {
            err += (a - p50[[row, HORIZON - 1]]).abs();
            covered += usize::from(p90.is_some_and(|p| a <= p[[row, HORIZON - 1]]));
            n += 1;
        }
    }
    (err / n.max(1) as f64, covered as f64 / n.max(1) as f64)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (fleet_size, new) = (env_or("BENCH_COLD_FLEET", 40), env_or("BENCH_COLD_NEW", 20));
    let start = DateTime::parse_from_rfc3339("2026-10-05T00:00:00Z").unwrap().with_timezone(&Utc);
    let mut rng = Lcg(23);
    let week = 7 * 2880;
    let trained: Vec<Series> = (0..fleet_size)
        .map(|i| service(format!("fleet/svc-{i}"), &Shape::new(&mut rng), start, week, &mut Lcg(5000 + i as u64)))
        .collect();
    let config = TrainConfig {
        context: 64,
        d_model: 32,
        heads: 4,
        layers: 1,
        ff: 64,
        max_epochs: 20,
        max_seconds: env_or("BENCH_COLD_TRAIN_SECONDS", 180) as f64,
        ..TrainConfig::default()
    };
    let started = std::time::Instant::now();
    let fleet = fleet::train(&trained, HORIZON, &config, &mut Quiet).unwrap();
    println!(
        "cold start: fleet model of {fleet_size} services x 7 days trained in {:.0} s ({} epochs)",
        started.elapsed().as_secs_f64(),
        fleet.summary.epochs
    );
    let context = fleet.model.params.window.context;
    let day_start = start + chrono::Duration::days(7);
    let (mut ratio_p, mut ratio_s, mut coverage) = (Vec::new(), Vec::new(), Vec::new());
    for j in 0..new {
        let shape = Shape::new(&mut rng);
        let s = service(format!("new/svc-{j}"), &shape, day_start, 2880, &mut Lcg(9000 + j as u64));
        let origins: Vec<usize> = (context - 1..s.len() - HORIZON).step_by(5).collect();
        let mut p50 = Array2::zeros((origins.len(), HORIZON));
        let mut p90 = Array2::zeros((origins.len(), HORIZON));
        for (row, &o) in origins.iter().enumerate() {
            // What the predictor knows at `o`: the history so far, no calibration of its own.
            let calibration =
                Calibration { level_floor: fleet::level_floor(&s.values[..=o]), p90_shift: fleet.cold.clone() };
            let f = fleet.model.forecast_calibrated(&s, &[o], Some(&calibration)).unwrap();
            p50.row_mut(row).assign(&f.p50.row(0));
            p90.row_mut(row).assign(&f.p90.row(0));
        }
        let (ours, cov) = scores(&s, &origins, &p50, Some(&p90));
        let (persistence, _) = scores(&s, &origins, &Persistence.p50(&s, &origins, HORIZON), None);
        let (smoothing, _) = scores(&s, &origins, &AdaptiveSmoothing::default().p50(&s, &origins, HORIZON), None);
        ratio_p.push(ours / persistence);
        ratio_s.push(ours / smoothing);
        coverage.push(cov);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "cold start: first forecast after {context} steps ({} min) of history; over the first day of {new} new services, \
         10-min MAE / persistence's: median {:.3}, mean {:.3}; / adaptive smoothing's: median {:.3}; p90 coverage mean {:.3} \
         (min {:.3}, max {:.3})",
        context as i64 * STEP / 60,
        median(&mut ratio_p.clone()),
        mean(&ratio_p),
        median(&mut ratio_s),
        mean(&coverage),
        coverage.iter().copied().fold(f64::INFINITY, f64::min),
        coverage.iter().copied().fold(0.0, f64::max),
    );
}
