//! The backtest plot: actual demand against the transformer's 10-minute p50 and p90,
//! over the last day of the test part (or all of it when shorter).

use std::path::Path;

use plotters::prelude::*;
use prescale_models::backtest::Backtest;
use prescale_models::series::Series;

use crate::output::{OutputError, plot_error};

/// Draws `plot.svg`.
pub fn write_plot(path: &Path, series: &Series, bt: &Backtest, title: &str) -> Result<(), OutputError> {
    let err = plot_error(path);
    let model = bt.models.iter().find(|m| m.name == "transformer").ok_or_else(|| err(&"no transformer result"))?;
    let f = &model.forecasts;
    let h = bt.horizon;
    let shown = bt.period.min(f.origins.len());
    let first = f.origins.len() - shown;
    let points: Vec<(f64, Option<f64>, f64, f64)> = (first..f.origins.len())
        .map(|r| {
            let x = (f.origins[r] - f.origins[first]) as f64 * series.grid.seconds() / 3600.0;
            (x, series.at((f.origins[r] + h) as isize), f.p50[[r, h - 1]], f.p90[[r, h - 1]])
        })
        .collect();
    let y_max = points.iter().map(|p| p.1.unwrap_or(0.0).max(p.3)).fold(1.0, f64::max) * 1.05;
    let x_max = points.last().map_or(1.0, |p| p.0.max(1e-9));

    let root = SVGBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("hours into the plotted test window (target time)")
        .y_desc("requests per second")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(AreaSeries::new(points.iter().map(|p| (p.0, p.3)), 0.0, BLUE.mix(0.12)))
        .map_err(|e| err(&e))?
        .label("p90 (10 min ahead)")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], BLUE.mix(0.3).filled()));
    // Actuals in segments, so missing steps show as gaps rather than as zero.
    for segment in points.split(|p| p.1.is_none()).filter(|s| !s.is_empty()) {
        chart
            .draw_series(LineSeries::new(segment.iter().map(|p| (p.0, p.1.unwrap_or_default())), BLACK))
            .map_err(|e| err(&e))?;
    }
    chart
        .draw_series(LineSeries::new(points.iter().map(|p| (p.0, p.2)), RED.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("p50 (10 min ahead)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .draw_series(std::iter::once(PathElement::new(vec![(0.0, 0.0), (0.0, 0.0)], BLACK)))
        .map_err(|e| err(&e))?
        .label("actual")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
