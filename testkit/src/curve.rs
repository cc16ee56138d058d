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
    redraw(dir)
}

/// Draws the plot again from the CSV in `dir` (`BENCH_REDRAW=1 cargo bench --bench
/// predictor` does only this); returns the plot's path.
pub fn redraw(dir: &Path) -> Result<PathBuf, String> {
    let all = read(&dir.join("fleet-scale.csv"));
    let svg = dir.join("fleet-scale.svg");
    plot(&all, &svg).map_err(|e| format!("drawing {}: {e}", svg.display()))?;
    Ok(svg)
}

fn services(x: &f64) -> String {
    let n = x.round() as u64;
    if n >= 1000 { format!("{},{:03}", n / 1000, n % 1000) } else { n.to_string() }
}

/// One panel of the plot: what it shows of each point, and its targets.
struct Panel {
    caption: &'static str,
    unit: &'static str,
    value: fn(&Point) -> f64,
    /// The label of a component's curve.
    label: fn(&str) -> String,
    /// (component whose colour it takes, value, label) of each dashed target line.
    targets: Vec<(&'static str, f64, String)>,
}

fn plot(points: &[Point], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let steps = Panel {
        caption: "Seconds per step",
        unit: "seconds",
        value: |p| p.step_seconds,
        label: |c| format!("{c} step"),
        targets: TARGETS.iter().map(|(c, t)| (*c, *t, format!("{c} target ({t} s at 10,000)"))).collect(),
    };
    let memory = Panel {
        caption: "Memory (MiB)",
        unit: "MiB",
        value: |p| p.memory_mib,
        label: |c| format!("{c} {}", if c == "collector" { "peak resident" } else { "resident growth" }),
        targets: vec![("collector", 300.0, "collector target (300 MiB)".into())],
    };
    panel(&left, points, &steps)?;
    panel(&right, points, &memory)?;
    root.present()?;
    Ok(())
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    points: &[Point],
    panel: &Panel,
) -> Result<(), Box<dyn std::error::Error>> {
    let max_services = points.iter().map(|p| p.services).max().unwrap_or(10_000).max(10_000) as f64 * 2.0;
    let values = points.iter().map(panel.value).chain(panel.targets.iter().map(|t| t.1));
    let (lo, hi) = values.fold((f64::MAX, 1e-3f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let mut chart = ChartBuilder::on(area)
        .caption(panel.caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d((50.0..max_services).log_scale(), (lo.min(hi) / 2.0..hi * 2.0).log_scale())?;
    chart.configure_mesh().x_desc("services").x_label_formatter(&services).y_desc(panel.unit).draw()?;
    for (component, color) in ["collector", "predictor"].into_iter().zip([BLUE, RED]) {
        let line: Vec<(f64, f64)> =
            points.iter().filter(|p| p.component == component).map(|p| (p.services as f64, (panel.value)(p))).collect();
        if !line.is_empty() {
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
                .label((panel.label)(component))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(line.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
        }
        for (_, target, label) in panel.targets.iter().filter(|t| t.0 == component) {
            let dashes = vec![(50.0, *target), (max_services, *target)];
            chart
                .draw_series(DashedLineSeries::new(dashes, 6, 4, color.mix(0.6).stroke_width(1)))?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.mix(0.6)));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
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
