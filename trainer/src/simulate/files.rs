//! The scaling benchmark's files: `decisions.csv`, `frontier.csv`, `summary.json`,
//! `plot.svg` and `frontier.svg`.

use std::io::Write;
use std::path::Path;

use plotters::prelude::*;
use prescale_core::StepGrid;
use prescale_models::series::Series;
use serde::Serialize;

use prescale_models::tuning::STARTUP;
use prescale_policy::cluster::{self, Outcome};
use prescale_policy::frontier::{self, Point};

use super::{Headline, Simulation, Tuning};
use crate::output::{self, OutputError, plot_error};

/// Writes `decisions.csv`: `timestamp,policy,desired_replicas`, one row per policy and step.
pub fn write_decisions(path: &Path, series: &Series, sim: &Simulation) -> Result<(), OutputError> {
    output::write_lines(path, |w| {
        writeln!(w, "timestamp,policy,desired_replicas")?;
        for (policy, desired) in &sim.decisions {
            for (i, d) in desired.iter().enumerate() {
                writeln!(w, "{},{policy},{d}", series.time(sim.test_start + i).to_rfc3339())?;
            }
        }
        Ok(())
    })
}

/// Writes `frontier.csv`: `policy,setting,under_provisioned_steps,replica_hours`, every
/// HPA and predictive setting scored on the test part, and the oracle.
pub fn write_frontier(path: &Path, sim: &Simulation) -> Result<(), OutputError> {
    output::write_lines(path, |w| {
        writeln!(w, "policy,setting,under_provisioned_steps,replica_hours")?;
        for p in &sim.points {
            writeln!(w, "{},{},{},{:.3}", p.policy, p.setting, p.under_provisioned_steps, p.replica_hours)?;
        }
        Ok(())
    })
}

/// `summary.json`.
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    /// The trace.
    pub trace: &'a str,
    /// Step length, seconds.
    pub step_seconds: f64,
    /// Requests/s per replica.
    pub capacity: f64,
    /// Pod startup, seconds.
    pub startup_seconds: u64,
    /// First test step's time.
    pub test_start: String,
    /// Per policy on the test part.
    pub policies: &'a [Outcome],
    /// How the predictive policy was tuned (on validation).
    pub tuning: &'a Tuning,
    /// The chosen setting against the HPA frontier on the test part.
    pub headline: &'a Headline,
    /// The decisions through KEDA's and the HPA's mechanics.
    pub mechanics: &'a [Outcome],
    /// Each of those against the HPA frontier.
    pub mechanics_headlines: &'a [Headline],
    /// Training time, seconds.
    pub training_seconds: f64,
}

/// Writes `summary.json`.
pub fn write_summary(path: &Path, series: &Series, sim: &Simulation) -> Result<(), OutputError> {
    let summary = Summary {
        trace: &series.name,
        step_seconds: series.grid.seconds(),
        capacity: sim.capacity,
        startup_seconds: STARTUP.as_secs(),
        test_start: series.time(sim.test_start).to_rfc3339(),
        policies: &sim.outcomes,
        tuning: &sim.tuning,
        headline: &sim.headline,
        mechanics: &sim.mechanics,
        mechanics_headlines: &sim.mechanics_headlines,
        training_seconds: sim.training_seconds,
    };
    output::write_json(path, &summary)
}

/// How the predictive policy was tuned, in a sentence: the chosen settings (durations
/// in steps of `grid`) and their validation figures against the HPA's.
pub fn tuning(sim: &Simulation, grid: StepGrid) -> String {
    let t = &sim.tuning;
    let steps = t.policy.in_steps(grid);
    let objective = format!(
        "objective at most {:.3}% under-provisioned{}",
        100.0 * t.objective,
        if t.objective_is_hpas { " (the default HPA's share on validation)" } else { "" }
    );
    let objective = format!(
        "{objective}, short steps counted above {:.1}% of ready capacity on validation (the margin chosen there{})",
        100.0 * (1.0 - t.margin),
        if t.margin_held { "" } else { ": NONE held on its second half, the largest is used" }
    );
    let met = if t.met {
        format!("the cheapest of {} settings meeting it", t.candidates)
    } else {
        format!("NO setting of {} meets it on validation: the safest is used", t.candidates)
    };
    format!(
        "capacity {:.3} requests/s per replica; {objective}; predictive tuned on validation, {met}: {} quantile, \
         headroom {:.0}%, lookahead {} steps, scale-down window {} steps{}, reactive floor at {:.0}% utilisation, {} \
         (validation at {:.3} requests/s per replica: {} under-provisioned steps vs hpa {}, {:.1} vs {:.1} \
         replica-hours)",
        sim.capacity,
        t.policy
            .shortfall_penalty
            .map_or(format!("{:?}", t.policy.quantile), |p| format!("the newsvendor rule's {:.2}", p / (p + 1.0))),
        100.0 * t.policy.headroom,
        steps.lookahead,
        steps.scale_down_window,
        if t.policy.forecast_scale_down { " and down by the forecast" } else { "" },
        100.0 * t.policy.floor_utilisation,
        t.policy.burst_quantile.map_or("no burst term".to_owned(), |q| format!(
            "burst term at the profile's {:.0}th percentile spanning {} steps after startup",
            100.0 * q,
            steps.burst_span
        )),
        t.validation_capacity,
        t.validation.under_steps,
        t.validation_hpa.under_steps,
        t.validation.replica_hours,
        t.validation_hpa.replica_hours
    )
}

/// The mechanics rows against the HPA frontier, one line each.
pub fn mechanics(sim: &Simulation) -> String {
    sim.mechanics
        .iter()
        .zip(&sim.mechanics_headlines)
        .map(|(o, h)| {
            format!(
                "{}: {:.3} x the HPA frontier's replica-hours at its {} under-provisioned steps ({})\n",
                o.policy, h.ratio_to_hpa_frontier, h.under_provisioned_steps, h.position
            )
        })
        .collect()
}

/// The headline in a sentence: the chosen setting against the HPA frontier.
pub fn headline(sim: &Simulation) -> String {
    let h = &sim.headline;
    let position = match h.position {
        "safer_than_all" => " (safer than every HPA setting: compared with the safest)",
        "less_safe_than_all" => " (less safe than every HPA setting: compared with the cheapest)",
        _ => "",
    };
    format!(
        "predictive: {} under-provisioned steps, {:.1} replica-hours = {:.3} x the HPA frontier's {:.1} at as many \
         steps{position}; {:.3} x the cheapest HPA setting at most as short ({}); {:.3} x the oracle",
        h.under_provisioned_steps,
        h.replica_hours,
        h.ratio_to_hpa_frontier,
        h.hpa_frontier_replica_hours,
        h.ratio_to_cheapest_as_safe_hpa,
        h.cheapest_as_safe_hpa,
        h.ratio_to_oracle
    )
}

/// The summary table, Markdown.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "| policy | under-provisioned steps | replica-hours | vs oracle | changes |\n|---|---|---|---|---|\n",
    );
    for o in outcomes {
        out += &format!(
            "| {} | {:.2}% ({}) | {:.1} | {:.2} | {} |\n",
            o.policy,
            100.0 * o.under_provisioned,
            o.under_steps,
            o.replica_hours,
            o.relative_to_oracle,
            o.changes
        );
    }
    out
}

/// Draws demand against each policy's ready capacity over the test day with the
/// highest peak.
pub fn write_plot(path: &Path, series: &Series, sim: &Simulation) -> Result<(), OutputError> {
    let day = series.grid.per_day();
    let n = series.len() - sim.test_start;
    let shown = day.min(n);
    // The window (of whole days from the test start) holding the highest demand.
    let peak = (0..n).max_by(|&a, &b| {
        let v = |i: usize| series.at((sim.test_start + i) as isize).unwrap_or(0.0);
        v(a).total_cmp(&v(b))
    });
    let first = peak.map_or(0, |p| (p / day * day).min(n - shown));
    let hours = |i: usize| (i - first) as f64 * series.grid.seconds() / 3600.0;
    let startup = series.grid.steps_in(STARTUP);
    let ready: Vec<(&str, Vec<u32>)> = sim.decisions.iter().map(|(p, d)| (*p, cluster::ready(d, startup))).collect();
    let y_max = (first..first + shown)
        .map(|i| {
            let d = series.at((sim.test_start + i) as isize).unwrap_or(0.0);
            ready.iter().map(|(_, r)| f64::from(r[i]) * sim.capacity).fold(d, f64::max)
        })
        .fold(1.0, f64::max)
        * 1.05;
    let err = plot_error(path);
    let root = SVGBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{}: demand and ready capacity per policy", series.name), ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..hours(first + shown).max(1e-9), 0.0..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("hours into the plotted test day")
        .y_desc("requests per second")
        .draw()
        .map_err(|e| err(&e))?;
    let demand: Vec<(f64, Option<f64>)> =
        (first..first + shown).map(|i| (hours(i), series.at((sim.test_start + i) as isize))).collect();
    for segment in demand.split(|p| p.1.is_none()).filter(|s| !s.is_empty()) {
        chart
            .draw_series(LineSeries::new(segment.iter().map(|p| (p.0, p.1.unwrap_or_default())), BLACK))
            .map_err(|e| err(&e))?;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(vec![(0.0, 0.0), (0.0, 0.0)], BLACK)))
        .map_err(|e| err(&e))?
        .label("demand")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    for ((policy, r), color) in ready.iter().zip([RED, BLUE, GREEN]) {
        chart
            .draw_series(LineSeries::new(
                (first..first + shown).map(|i| (hours(i), f64::from(r[i]) * sim.capacity)),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(format!("{policy}: ready replicas x capacity"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Draws replica-hours against under-provisioned steps: each family's frontier as a
/// curve, every setting as a faint dot, the oracle, the default HPA and the chosen
/// predictive setting marked.
pub fn write_frontier_plot(path: &Path, series: &Series, sim: &Simulation) -> Result<(), OutputError> {
    let family = |name: &str| -> Vec<Point> { sim.points.iter().filter(|p| p.policy == name).cloned().collect() };
    let (hpa, predictive) = (family("hpa"), family("predictive"));
    let (hpa_front, predictive_front) = (frontier::pareto(&hpa), frontier::pareto(&predictive));
    let default_hpa = &sim.outcomes[0];
    let chosen = &sim.outcomes[1];
    let oracle = &sim.outcomes[2];
    // The interesting range: up to a little past the default HPA's or the chosen
    // setting's steps, whichever is more, and the costs of the frontiers there.
    let x_max = (default_hpa.under_steps.max(chosen.under_steps) as f64 * 2.0).max(10.0);
    let shown = |p: &&Point| (p.under_provisioned_steps as f64) <= x_max;
    let y_of = |ps: &[Point]| ps.iter().filter(shown).map(|p| p.replica_hours).collect::<Vec<_>>();
    let ys: Vec<f64> =
        [y_of(&hpa_front), y_of(&predictive_front), vec![oracle.replica_hours, default_hpa.replica_hours]].concat();
    let y_min = ys.iter().copied().fold(f64::INFINITY, f64::min) * 0.95;
    let y_max = ys.iter().copied().fold(0.0, f64::max) * 1.05;
    let err = plot_error(path);
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: replica-hours against under-provisioned steps (test part)", series.name),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, y_min..y_max.max(y_min + 1.0))
        .map_err(|e| err(&e))?;
    chart.configure_mesh().x_desc("under-provisioned steps").y_desc("replica-hours").draw().map_err(|e| err(&e))?;
    for (points, front, color, name) in [
        (&hpa, &hpa_front, RED, "hpa (target 30-95%, 3 windows)"),
        (&predictive, &predictive_front, BLUE, "predictive"),
    ] {
        chart
            .draw_series(
                points.iter().filter(shown).map(|p| {
                    Circle::new((p.under_provisioned_steps as f64, p.replica_hours), 2, color.mix(0.25).filled())
                }),
            )
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(
                front.iter().filter(shown).map(|p| (p.under_provisioned_steps as f64, p.replica_hours)),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(format!("{name}: frontier"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    for (o, color, label) in [
        (oracle, GREEN, "oracle"),
        (default_hpa, RED, "default hpa (70%, 300 s)"),
        (chosen, BLUE, "predictive, chosen on validation"),
    ] {
        chart
            .draw_series(std::iter::once(TriangleMarker::new(
                (o.under_steps as f64, o.replica_hours),
                8,
                color.filled(),
            )))
            .map_err(|e| err(&e))?
            .label(label)
            .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 6, color.filled()));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
