//! Chart kinds the reports draw (plotters), each saved as `<name>.png` and `<name>.svg`.

use crate::error::{GrokError, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// One line: legend label (empty: none), colour, `(x, y)` points.
pub type Series = (String, RGBColor, Vec<(f64, f64)>);

/// The i-th of a set of distinguishable line colours.
pub fn palette(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// What a chart draws.
pub enum Chart {
    /// Lines over x, optionally on a log y axis, with labelled vertical markers (phase boundaries).
    Lines {
        /// x axis label.
        x_label: String,
        /// y axis label.
        y_label: String,
        /// Log-scale y axis.
        log_y: bool,
        /// The lines.
        series: Vec<Series>,
        /// `(x, label)` vertical markers.
        markers: Vec<(f64, String)>,
    },
    /// `values[row][col]` as coloured cells (viridis), rows bottom to top; cell `col` spans
    /// `x_edges[col]..x_edges[col + 1]`, row `r` spans `y0 + r .. y0 + r + 1`.
    Heatmap {
        /// x axis label.
        x_label: String,
        /// y axis label.
        y_label: String,
        /// `[cols + 1]` cell edges along x.
        x_edges: Vec<f64>,
        /// y of the first row.
        y0: f64,
        /// `[rows][cols]` values.
        values: Vec<Vec<f64>>,
    },
    /// Square signed matrices side by side, `columns` per row, each titled and coloured on its
    /// own diverging scale (blue −max|v| … white 0 … red +max|v|), row 0 at the top.
    Matrices {
        /// Panels per row.
        columns: usize,
        /// `(title, n, [n·n] row-major values)`.
        panels: Vec<(String, usize, Vec<f64>)>,
    },
    /// A grid of labelled cells: categorical x and y ticks, each cell its colour and text
    /// (a phase diagram), with a legend of colours.
    Cells {
        /// x axis label.
        x_label: String,
        /// y axis label.
        y_label: String,
        /// Tick label of each column.
        x_ticks: Vec<String>,
        /// Tick label of each row, bottom to top.
        y_ticks: Vec<String>,
        /// `(column, row, colour, text)`.
        cells: Vec<(usize, usize, RGBColor, String)>,
        /// `(label, colour)` entries of the legend.
        legend: Vec<(String, RGBColor)>,
    },
    /// Bars at integer x (`(x, height)`).
    Bars {
        /// x axis label.
        x_label: String,
        /// y axis label.
        y_label: String,
        /// `(x, height)` bars.
        bars: Vec<(i64, f64)>,
    },
}

impl Chart {
    /// Lines over the training step (x axis "step") with `markers`.
    pub fn over_steps(
        y_label: &str,
        log_y: bool,
        series: Vec<Series>,
        markers: &[(f64, String)],
    ) -> Self {
        Chart::Lines {
            x_label: "step".into(),
            y_label: y_label.into(),
            log_y,
            series,
            markers: markers.to_vec(),
        }
    }

    /// The chart with its non-finite numbers made drawable: points of lines and markers
    /// dropped, cells of matrices and heights of bars set to 0, heatmap edges replaced by their
    /// index (a heatmap's non-finite cells are drawn grey). A NaN checkpoint's measures must
    /// give a plot with a gap, never a panic in the plotting library.
    pub fn finite(&self) -> Chart {
        let zero = |v: &f64| if v.is_finite() { *v } else { 0.0 };
        match self {
            Chart::Lines {
                x_label,
                y_label,
                log_y,
                series,
                markers,
            } => Chart::Lines {
                x_label: x_label.clone(),
                y_label: y_label.clone(),
                log_y: *log_y,
                series: (series.iter())
                    .map(|(l, c, pts)| {
                        let ok = |&&(x, y): &&(f64, f64)| {
                            x.is_finite() && y.is_finite() && (!*log_y || y > 0.0)
                        };
                        (l.clone(), *c, pts.iter().filter(ok).copied().collect())
                    })
                    .collect(),
                markers: markers
                    .iter()
                    .filter(|m| m.0.is_finite())
                    .cloned()
                    .collect(),
            },
            Chart::Heatmap {
                x_label,
                y_label,
                x_edges,
                y0,
                values,
            } => {
                let edges_ok = x_edges.iter().all(|x| x.is_finite())
                    && x_edges.windows(2).all(|w| w[0] < w[1]);
                Chart::Heatmap {
                    x_label: x_label.clone(),
                    y_label: y_label.clone(),
                    x_edges: if edges_ok {
                        x_edges.clone()
                    } else {
                        (0..x_edges.len()).map(|i| i as f64).collect()
                    },
                    y0: zero(y0),
                    values: values.clone(),
                }
            }
            Chart::Matrices { columns, panels } => Chart::Matrices {
                columns: *columns,
                panels: (panels.iter())
                    .map(|(t, n, v)| (t.clone(), *n, v.iter().map(zero).collect()))
                    .collect(),
            },
            Chart::Cells {
                x_label,
                y_label,
                x_ticks,
                y_ticks,
                cells,
                legend,
            } => Chart::Cells {
                x_label: x_label.clone(),
                y_label: y_label.clone(),
                x_ticks: x_ticks.clone(),
                y_ticks: y_ticks.clone(),
                cells: cells.clone(),
                legend: legend.clone(),
            },
            Chart::Bars {
                x_label,
                y_label,
                bars,
            } => Chart::Bars {
                x_label: x_label.clone(),
                y_label: y_label.clone(),
                bars: bars.iter().map(|(x, y)| (*x, zero(y))).collect(),
            },
        }
    }

    /// Draws `dir/<name>.png` (900×500) and `dir/<name>.svg` with `title` on top; non-finite
    /// numbers are left out ([`Chart::finite`]).
    ///
    /// # Errors
    /// [`GrokError::Io`] when a file cannot be written.
    pub fn save(&self, dir: &Path, name: &str, title: &str) -> Result<()> {
        let png = dir.join(format!("{name}.png"));
        let svg = dir.join(format!("{name}.svg"));
        let err = |p: &Path, e: String| GrokError::io(p, std::io::Error::other(e));
        let chart = self.finite();
        chart
            .draw(
                BitMapBackend::new(&png, (900, 500)).into_drawing_area(),
                title,
            )
            .map_err(|e| err(&png, e))?;
        chart
            .draw(SVGBackend::new(&svg, (900, 500)).into_drawing_area(), title)
            .map_err(|e| err(&svg, e))
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: DrawingArea<DB, Shift>,
        title: &str,
    ) -> std::result::Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        area.fill(&WHITE).map_err(e)?;
        if let Chart::Matrices { columns, panels } = self {
            return draw_matrices(area, title, *columns, panels);
        }
        if let Chart::Cells { .. } = self {
            return draw_cells(area, title, self);
        }
        let mut builder = ChartBuilder::on(&area);
        builder
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70);
        match self {
            Chart::Lines {
                x_label,
                y_label,
                log_y,
                series,
                markers,
            } => {
                let pts = || series.iter().flat_map(|s| s.2.iter());
                let x_max = pts().map(|p| p.0).fold(1.0, f64::max);
                // scales and fractions (x ≤ 10) need decimals, steps do not
                let x_decimals = if x_max <= 10.0 { 2 } else { 0 };
                let (mut lo, mut hi) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
                    (a.0.min(p.1), a.1.max(p.1))
                });
                if !lo.is_finite() {
                    (lo, hi) = (0.0, 1.0);
                }
                macro_rules! lines {
                    ($c:expr, $y_fmt:expr, $y_span:expr) => {{
                        let mut c = $c;
                        c.configure_mesh()
                            .x_desc(x_label.as_str())
                            .y_desc(y_label.as_str())
                            .x_label_formatter(&|x| format!("{x:.x_decimals$}"))
                            .y_label_formatter(&$y_fmt)
                            .draw()
                            .map_err(e)?;
                        for (x, label) in markers {
                            let grey = RGBColor(120, 120, 120);
                            let span = $y_span;
                            c.draw_series(LineSeries::new(
                                [(*x, span.0), (*x, span.1)],
                                grey.stroke_width(1),
                            ))
                            .map_err(e)?;
                            c.draw_series(std::iter::once(Text::new(
                                label.clone(),
                                (*x, span.1),
                                ("sans-serif", 13).into_font().color(&grey),
                            )))
                            .map_err(e)?;
                        }
                        for (label, color, pts) in series {
                            let color = *color;
                            let drawn = c
                                .draw_series(LineSeries::new(
                                    pts.iter().copied(),
                                    color.stroke_width(2),
                                ))
                                .map_err(e)?;
                            // an unlabelled line (a band's second edge) stays out of the legend
                            if !label.is_empty() {
                                drawn.label(label.as_str()).legend(move |(x, y)| {
                                    PathElement::new(
                                        vec![(x, y), (x + 20, y)],
                                        color.stroke_width(2),
                                    )
                                });
                            }
                        }
                        c.configure_series_labels()
                            .background_style(WHITE.mix(0.8))
                            .border_style(BLACK)
                            .draw()
                            .map_err(e)?;
                    }};
                }
                if *log_y {
                    let lo = lo.max(1e-12) * 0.5;
                    let hi = hi.max(lo * 10.0) * 2.0;
                    lines!(
                        builder
                            .build_cartesian_2d(0.0..x_max, (lo..hi).log_scale())
                            .map_err(e)?,
                        |y: &f64| format!("{y:.0e}"),
                        (lo, hi)
                    );
                } else {
                    let pad = ((hi - lo) * 0.05).max(1e-9);
                    // enough decimals to tell the ~10 ticks apart, no more
                    let decimals =
                        (2.0 - (hi - lo).max(1e-9).log10().floor()).clamp(0.0, 6.0) as usize;
                    lines!(
                        builder
                            .build_cartesian_2d(0.0..x_max, (lo - pad)..(hi + pad))
                            .map_err(e)?,
                        |y: &f64| format!("{y:.decimals$}"),
                        (lo - pad, hi + pad)
                    );
                }
            }
            Chart::Heatmap {
                x_label,
                y_label,
                x_edges,
                y0,
                values,
            } => {
                let max = (values.iter().flatten().copied()).fold(f64::MIN_POSITIVE, f64::max);
                let (x_lo, x_hi) = (x_edges[0], *x_edges.last().unwrap());
                let y1 = y0 + values.len() as f64;
                let mut c = builder.build_cartesian_2d(x_lo..x_hi, *y0..y1).map_err(e)?;
                c.configure_mesh()
                    .disable_mesh()
                    .x_desc(x_label.as_str())
                    .y_desc(y_label.as_str())
                    .x_label_formatter(&|x| format!("{x:.0}"))
                    .y_label_formatter(&|y| format!("{y:.0}"))
                    .draw()
                    .map_err(e)?;
                let cells = values.iter().enumerate().flat_map(|(r, row)| {
                    row.iter().enumerate().map(move |(col, v)| {
                        let y = y0 + r as f64;
                        let color = if v.is_finite() {
                            ViridisRGB::get_color((v / max).clamp(0.0, 1.0))
                        } else {
                            RGBColor(200, 200, 200)
                        };
                        Rectangle::new(
                            [(x_edges[col], y), (x_edges[col + 1], y + 1.0)],
                            color.filled(),
                        )
                    })
                });
                c.draw_series(cells).map_err(e)?;
            }
            Chart::Matrices { .. } | Chart::Cells { .. } => unreachable!("drawn above"),
            Chart::Bars {
                x_label,
                y_label,
                bars,
            } => {
                let x_max = bars.iter().map(|b| b.0).max().unwrap_or(1) + 1;
                let y_max = bars.iter().map(|b| b.1).fold(1e-12, f64::max) * 1.05;
                let mut c = builder
                    .build_cartesian_2d(-1i64..x_max, 0.0..y_max)
                    .map_err(e)?;
                c.configure_mesh()
                    .x_desc(x_label.as_str())
                    .y_desc(y_label.as_str())
                    .draw()
                    .map_err(e)?;
                c.draw_series(
                    bars.iter().map(|&(x, h)| {
                        Rectangle::new([(x, 0.0), (x + 1, h)], BLUE.mix(0.7).filled())
                    }),
                )
                .map_err(e)?;
            }
        }
        area.present().map_err(e)
    }
}

/// [`Chart::Matrices`]: a grid of titled panels, each cell coloured on its panel's own
/// diverging scale.
fn draw_matrices<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    title: &str,
    columns: usize,
    panels: &[(String, usize, Vec<f64>)],
) -> std::result::Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let body = area.titled(title, ("sans-serif", 20)).map_err(e)?;
    let columns = columns.max(1);
    let rows = panels.len().div_ceil(columns).max(1);
    for (cell, (name, n, values)) in body.split_evenly((rows, columns)).iter().zip(panels) {
        let max = values
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()))
            .max(1e-300);
        let mut c = ChartBuilder::on(cell)
            .caption(format!("{name} (|max| {max:.3})"), ("sans-serif", 14))
            .margin(8)
            .build_cartesian_2d(0..*n as i32, 0..*n as i32)
            .map_err(e)?;
        c.configure_mesh()
            .disable_mesh()
            .disable_axes()
            .draw()
            .map_err(e)?;
        let cells = values.iter().enumerate().map(|(k, v)| {
            let (i, j) = ((k / n) as i32, (k % n) as i32);
            let t = (v / max).clamp(-1.0, 1.0);
            // white at 0, red for positive, blue for negative
            let fade = |x: f64| (255.0 * (1.0 - x.abs())) as u8;
            let color = if t >= 0.0 {
                RGBColor(255, fade(t), fade(t))
            } else {
                RGBColor(fade(t), fade(t), 255)
            };
            let row = *n as i32 - 1 - i;
            Rectangle::new([(j, row), (j + 1, row + 1)], color.filled())
        });
        c.draw_series(cells).map_err(e)?;
    }
    area.present().map_err(e)
}

/// [`Chart::Cells`]: the grid, tick labels at cell centres, text in each cell, legend on the
/// right.
fn draw_cells<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    title: &str,
    chart: &Chart,
) -> std::result::Result<(), String> {
    let Chart::Cells {
        x_label,
        y_label,
        x_ticks,
        y_ticks,
        cells,
        legend,
    } = chart
    else {
        unreachable!("called for cells")
    };
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let (nx, ny) = (x_ticks.len().max(1) as f64, y_ticks.len().max(1) as f64);
    let (body, side) = area.split_horizontally(760);
    let mut c = ChartBuilder::on(&body)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..nx, 0.0..ny)
        .map_err(e)?;
    let tick = |labels: &[String], v: f64| -> String {
        let i = v - 0.5;
        if (i - i.round()).abs() < 1e-6 && i >= 0.0 {
            labels.get(i.round() as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    c.configure_mesh()
        .disable_mesh()
        .x_desc(x_label.as_str())
        .y_desc(y_label.as_str())
        .x_labels(2 * x_ticks.len() + 1)
        .y_labels(2 * y_ticks.len() + 1)
        .x_label_formatter(&|v| tick(x_ticks, *v))
        .y_label_formatter(&|v| tick(y_ticks, *v))
        .draw()
        .map_err(e)?;
    c.draw_series(cells.iter().map(|(x, y, color, _)| {
        let (x, y) = (*x as f64, *y as f64);
        Rectangle::new([(x + 0.02, y + 0.02), (x + 0.98, y + 0.98)], color.filled())
    }))
    .map_err(e)?;
    c.draw_series(cells.iter().map(|(x, y, _, text)| {
        Text::new(
            text.clone(),
            (*x as f64 + 0.08, *y as f64 + 0.55),
            ("sans-serif", 14).into_font().color(&BLACK),
        )
    }))
    .map_err(e)?;
    for (i, (label, color)) in legend.iter().enumerate() {
        let y = 60 + 28 * i as i32;
        side.draw(&Rectangle::new([(10, y), (30, y + 18)], color.filled()))
            .map_err(e)?;
        side.draw(&Text::new(
            label.clone(),
            (38, y + 3),
            ("sans-serif", 15).into_font(),
        ))
        .map_err(e)?;
    }
    area.present().map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_with_nan_and_infinity_draw_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let (nan, inf) = (f64::NAN, f64::INFINITY);
        let pts = vec![(0.0, 1.0), (1.0, nan), (2.0, inf), (nan, 2.0), (3.0, -1.0)];
        let charts = [
            Chart::over_steps(
                "loss",
                true,
                vec![("a".into(), BLACK, pts.clone())],
                &[(nan, "m".into())],
            ),
            Chart::over_steps(
                "loss",
                false,
                vec![("a".into(), BLACK, vec![(0.0, nan)])],
                &[],
            ),
            Chart::Heatmap {
                x_label: "x".into(),
                y_label: "y".into(),
                x_edges: vec![0.0, nan, 2.0],
                y0: nan,
                values: vec![vec![nan, 1.0], vec![inf, -inf]],
            },
            Chart::Matrices {
                columns: 2,
                panels: vec![("m".into(), 2, vec![nan, 1.0, inf, 0.0])],
            },
            Chart::Bars {
                x_label: "x".into(),
                y_label: "y".into(),
                bars: vec![(0, nan), (1, inf), (2, 1.0)],
            },
        ];
        for (i, c) in charts.iter().enumerate() {
            c.save(dir.path(), &format!("c{i}"), "nan").unwrap();
            assert!(dir.path().join(format!("c{i}.png")).exists());
        }
    }
}
