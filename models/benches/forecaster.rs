//! `make bench`: the forecaster's training throughput and forecast latency on this CPU.
//!
//! A synthetic 14-day series at 30 s steps (a daily wave with noise) stands in for a
//! service; the model has the default training configuration. Prints windows per second
//! of training (optimisation plus the per-epoch validation pass), the latency of one
//! forecast for one origin (what the predictor does per service and step), and the time
//! to forecast a batch of 1,000 origins.

use std::time::Instant;

use chrono::{DateTime, Utc};
use prescale_core::StepGrid;
use prescale_models::backtest::HORIZON;
use prescale_models::forecaster::TransformerModel;
use prescale_models::series::{Series, Split};
use prescale_models::train::{Quiet, TrainConfig};

fn series() -> Series {
    let start = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
    let grid = StepGrid::from_secs(30).unwrap();
    let per_day = grid.per_day();
    let values = (0..14 * per_day)
        .map(|i| {
            let day = (i % per_day) as f64 / per_day as f64;
            let noise = ((i * 7919) % 101) as f64 / 101.0 - 0.5;
            Some(200.0 + 150.0 * (std::f64::consts::TAU * day).sin() + 20.0 * noise)
        })
        .collect();
    Series::new("synthetic-14d-30s", grid, start, values).unwrap()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    tch::set_num_threads(std::thread::available_parallelism().map_or(1, |n| n.get() as i32));
    let series = series();
    let split = Split::of(series.len());
    let horizon = series.grid.steps_in(HORIZON);
    let config = TrainConfig { max_epochs: 2, samples_per_epoch: 8192, patience: 10, ..TrainConfig::default() };
    let (model, summary) = TransformerModel::train(&series, split, horizon, &config, &mut Quiet).unwrap();
    println!(
        "training: {} windows in {:.1} s = {:.0} windows/s (context {}, d_model {}, {} layers, batch {}, {} threads)",
        summary.windows_seen,
        summary.seconds,
        summary.windows_seen as f64 / summary.seconds,
        config.context,
        config.d_model,
        config.layers,
        config.batch,
        tch::get_num_threads()
    );

    let last = series.len() - 1;
    for _ in 0..10 {
        model.forecast(&series, &[last]).unwrap();
    }
    let mut times: Vec<f64> = (0..300)
        .map(|_| {
            let t = Instant::now();
            model.forecast(&series, &[last]).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "single forecast (1 origin, {horizon} steps, p50 and p90): p50 {:.2} ms, p99 {:.2} ms over {} calls",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.len()
    );

    let origins: Vec<usize> = (last - 999..=last).collect();
    let t = Instant::now();
    model.forecast(&series, &origins).unwrap();
    let s = t.elapsed().as_secs_f64();
    println!("batch forecast: 1000 origins in {:.1} ms ({:.0} forecasts/s)", s * 1e3, 1000.0 / s);
}
