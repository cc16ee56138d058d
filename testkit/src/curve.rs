//! The fleet-scale curve `make bench` draws: each benchmark records its figures per
//! service count in `target-bench/fleet-scale.csv` (its own rows replaced, the other
//! benchmark's kept), then the plot is drawn again from every row there, so after the
//! collector's and the predictor's benchmarks it shows both.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

/// One measured size.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// `collector` or `predictor`.
    pub component: String,
    /// Services measured.
    pub services: usize,
    /// Seconds per step (steady).
    pub step_seconds: f64,
    /// Memory, MiB (the collector's peak resident; the predictor's resident growth).
    pub memory_mib: f64,
}

/// The targets drawn as dashed lines: (component, seconds per step at 10,000 services).
const TARGETS: [(&str, f64); 2] = [("collector", 2.0), ("predictor", 3.0)];

/// Where the curve's files go: `target-bench/` in the repository.
pub fn folder() -> PathBuf {
    crate::repo_root().join("target-bench")
}

fn read(csv: &Path) -> Vec<Point> {
    let text = std::fs::read_to_string(csv).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some(Point {
                component: f.first()?.to_string(),
                services: f.get(1)?.parse().ok()?,
                step_seconds: f.get(2)?.parse().ok()?,
                memory_mib: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// Replaces `component`'s rows of the CSV in `dir` with `points` and draws the plot again;
/// returns the plot's path.
pub fn record(dir: &Path, component: &str, points: &[Point]) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let csv = dir.join("fleet-scale.csv");
    let mut all: Vec<Point> = read(&csv).into_iter().filter(|p| p.component != component).collect();
    all.extend(points.iter().cloned());
    all.sort_by(|a, b| (&a.component, a.services).cmp(&(&b.component, b.services)));
    let mut text = String::from("component,services,step_seconds,memory_mib\n");
    for p in &all {
        text.push_str(&format!("{},{},{},{}\n", p.component, p.services, p.step_seconds, p.memory_mib));
    }
    std::fs::write(&csv, text).map_err(|e| format!("writing {}: {e}", csv.display()))?;
    let svg = dir.join("fleet-scale.svg");
    plot(&all, &svg).map_err(|e| format!("drawing {}: {e}", svg.display()))?;
    Ok(svg)
}

fn plot(points: &[Point], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let components = ["collector", "predictor"];
    let colors = [BLUE, RED];
    let max_services = points.iter().map(|p| p.services).max().unwrap_or(10_000).max(10_000) as f64;
    let x = (50.0..max_services * 2.0).log_scale();
    let y_max = points.iter().map(|p| p.step_seconds).fold(5.0, f64::max) * 1.5;
    let mut chart = ChartBuilder::on(&left)
        .caption("Seconds per step", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x.clone(), (0.005..y_max).log_scale())?;
    chart.configure_mesh().x_desc("services").y_desc("seconds").draw()?;
    for (component, color) in components.iter().zip(colors) {
        let line: Vec<(f64, f64)> =
            points.iter().filter(|p| p.component == *component).map(|p| (p.services as f64, p.step_seconds)).collect();
        if line.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
            .label(format!("{component} step"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(line.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
        if let Some((_, target)) = TARGETS.iter().find(|(c, _)| c == component) {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(50.0, *target), (max_services * 2.0, *target)],
                    6,
                    4,
                    color.mix(0.6).stroke_width(1),
                ))?
                .label(format!("{component} target ({target} s at 10,000)"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.mix(0.6)));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let m_max = points.iter().map(|p| p.memory_mib).fold(100.0, f64::max) * 1.5;
    let mut chart = ChartBuilder::on(&right)
        .caption("Memory (MiB)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x, (1.0..m_max).log_scale())?;
    chart.configure_mesh().x_desc("services").y_desc("MiB").draw()?;
    for (component, color) in components.iter().zip(colors) {
        let line: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.component == *component)
            .map(|p| (p.services as f64, p.memory_mib.max(1.0)))
            .collect();
        if line.is_empty() {
            continue;
        }
        let what = if *component == "collector" { "peak resident" } else { "resident growth" };
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
            .label(format!("{component} {what}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(line.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
    }
    chart
        .draw_series(DashedLineSeries::new(
            vec![(50.0, 300.0), (max_services * 2.0, 300.0)],
            6,
            4,
            BLUE.mix(0.6).stroke_width(1),
        ))?
        .label("collector target (300 MiB)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.mix(0.6)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_component_replaces_its_own_rows_and_the_plot_has_both() {
        let dir = std::env::temp_dir().join(format!("prescale-curve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p =
            |c: &str, n: usize, s: f64| Point { component: c.into(), services: n, step_seconds: s, memory_mib: 40.0 };
        record(&dir, "collector", &[p("collector", 100, 0.02), p("collector", 10_000, 1.9)]).unwrap();
        record(&dir, "predictor", &[p("predictor", 100, 0.05)]).unwrap();
        let svg = record(&dir, "collector", &[p("collector", 1000, 0.2)]).unwrap();
        let rows = read(&dir.join("fleet-scale.csv"));
        assert_eq!(rows, vec![p("collector", 1000, 0.2), p("predictor", 100, 0.05)]);
        let drawn = std::fs::read_to_string(svg).unwrap();
        assert!(drawn.contains("collector step") && drawn.contains("predictor step"), "both curves labelled");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
