//! PNG and SVG plots of a run (plotters): loss on a log scale, accuracy, sum of squared weights.

use crate::error::{GrokError, Result};
use crate::train::MetricsRow;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// Draws `plots/{loss,accuracy,weights}.{png,svg}` in `run_dir` from the metrics rows.
///
/// # Errors
/// [`GrokError::Io`] when the directory or a file cannot be written.
pub fn plot_run(run_dir: &Path, rows: &[MetricsRow]) -> Result<()> {
    let dir = run_dir.join("plots");
    std::fs::create_dir_all(&dir).map_err(|e| GrokError::io(&dir, e))?;
    let col = |f: fn(&MetricsRow) -> f64| -> Vec<(f64, f64)> {
        rows.iter()
            .map(|r| (r.step as f64, f(r)))
            .filter(|(_, y)| y.is_finite())
            .collect()
    };
    let charts: [(&str, &str, bool, Vec<Series>); 3] = [
        (
            "loss",
            "cross-entropy (nats, log scale)",
            true,
            vec![
                ("train", BLUE, col(|r| r.train_loss)),
                ("test", RED, col(|r| r.test_loss)),
            ],
        ),
        (
            "accuracy",
            "accuracy",
            false,
            vec![
                ("train", BLUE, col(|r| r.train_acc)),
                ("test", RED, col(|r| r.test_acc)),
            ],
        ),
        (
            "weights",
            "sum of squared weights",
            false,
            vec![("total", BLACK, col(|r| r.sum_sq_weights))],
        ),
    ];
    for (name, y_label, log_y, series) in &charts {
        let png = dir.join(format!("{name}.png"));
        let svg = dir.join(format!("{name}.svg"));
        let draw_err = |e: String| GrokError::io(&png, std::io::Error::other(e));
        draw(
            BitMapBackend::new(&png, (900, 500)).into_drawing_area(),
            y_label,
            *log_y,
            series,
        )
        .map_err(draw_err)?;
        draw(
            SVGBackend::new(&svg, (900, 500)).into_drawing_area(),
            y_label,
            *log_y,
            series,
        )
        .map_err(|e| GrokError::io(&svg, std::io::Error::other(e)))?;
    }
    Ok(())
}

fn draw<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    y_label: &str,
    log_y: bool,
    series: &[Series],
) -> std::result::Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(e)?;
    let points = series.iter().flat_map(|s| s.2.iter());
    let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max);
    let (mut y_min, mut y_max) = points.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 1.0);
    }
    let mut chart = ChartBuilder::on(&area);
    chart.margin(15).x_label_area_size(40).y_label_area_size(70);
    macro_rules! finish {
        ($c:expr) => {{
            let mut c = $c;
            c.configure_mesh()
                .x_desc("step")
                .y_desc(y_label)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| {
                    if log_y {
                        format!("{y:.0e}")
                    } else {
                        format!("{y:.2}")
                    }
                })
                .draw()
                .map_err(e)?;
            for (label, color, pts) in series {
                let color = *color;
                c.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                    .map_err(e)?
                    .label(*label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            c.configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(e)?;
        }};
    }
    if log_y {
        let lo = y_min.max(1e-12) * 0.5;
        let hi = y_max.max(lo * 10.0) * 2.0;
        finish!(chart
            .build_cartesian_2d(0.0..x_max, (lo..hi).log_scale())
            .map_err(e)?);
    } else {
        let pad = ((y_max - y_min) * 0.05).max(1e-9);
        finish!(chart
            .build_cartesian_2d(0.0..x_max, (y_min - pad)..(y_max + pad))
            .map_err(e)?);
    }
    area.present().map_err(e)
}
