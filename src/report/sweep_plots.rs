//! A sweep's pictures (`<runs>/plots/`) and page (`<runs>/sweep.html`): the phase diagram over
//! two swept keys coloured by Liu et al.'s phase, the same grid coloured by the grokking delay,
//! and, when the training fraction is swept, the time to grok against it (Nanda et al. 2023's
//! test loss < 1, Power et al. 2022's 99% validation accuracy).

use super::charts::{palette, Chart, Series};
use super::html::{escape, inline_plot, page};
use crate::error::{GrokError, Result};
use crate::rundir::atomic_write;
use crate::sweep::collect::{to_csv, Phase, RunRow};
use plotters::prelude::RGBColor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The colour of each phase in the diagrams.
pub fn phase_color(p: Phase) -> RGBColor {
    match p {
        Phase::Comprehension => RGBColor(44, 160, 44),
        Phase::Grokking => RGBColor(255, 165, 60),
        Phase::Memorisation => RGBColor(100, 140, 230),
        Phase::Confusion => RGBColor(190, 190, 190),
    }
}

/// The two keys a diagram spans: `x` and `y` when given, else the two swept numeric keys with
/// the most distinct values (seeds last).
pub fn diagram_axes(rows: &[RunRow], x: Option<&str>, y: Option<&str>) -> Option<(String, String)> {
    let mut keys: Vec<(usize, String)> = Vec::new();
    let all: std::collections::BTreeSet<&String> =
        rows.iter().flat_map(|r| r.swept.keys()).collect();
    for k in all {
        let mut vals: Vec<String> = rows
            .iter()
            .filter_map(|r| r.number(k))
            .map(|v| v.to_string())
            .collect();
        vals.sort();
        vals.dedup();
        let seed = k.ends_with("seed");
        if vals.len() > 1 {
            keys.push((if seed { 0 } else { vals.len() }, k.clone()));
        }
    }
    keys.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let pick = |given: Option<&str>, skip: Option<&str>| -> Option<String> {
        given.map(String::from).or_else(|| {
            keys.iter()
                .map(|k| k.1.clone())
                .find(|k| Some(k.as_str()) != skip)
        })
    };
    let xk = pick(x, y)?;
    let yk = pick(y, Some(&xk))?;
    Some((xk, yk))
}

/// Distinct values of `key` over `rows`, ascending.
fn values(rows: &[RunRow], key: &str) -> Vec<f64> {
    let mut v: Vec<f64> = rows.iter().filter_map(|r| r.number(key)).collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Draws the sweep's charts into `runs_dir/plots/` and returns the stems drawn.
///
/// # Errors
/// [`GrokError::Io`] when a file cannot be written.
pub fn plot_sweep(
    runs_dir: &Path,
    rows: &[RunRow],
    x: Option<&str>,
    y: Option<&str>,
) -> Result<Vec<(String, String)>> {
    let dir = runs_dir.join("plots");
    std::fs::create_dir_all(&dir).map_err(|e| GrokError::io(&dir, e))?;
    let mut drawn = Vec::new();
    if let Some((xk, yk)) = diagram_axes(rows, x, y) {
        let (xs, ys) = (values(rows, &xk), values(rows, &yk));
        let at = |v: f64, all: &[f64]| all.iter().position(|&a| a == v);
        // per cell, the runs there (seeds and other keys pooled)
        let mut cells: BTreeMap<(usize, usize), Vec<&RunRow>> = BTreeMap::new();
        for r in rows {
            if let (Some(i), Some(j)) = (
                r.number(&xk).and_then(|v| at(v, &xs)),
                r.number(&yk).and_then(|v| at(v, &ys)),
            ) {
                cells.entry((i, j)).or_default().push(r);
            }
        }
        let ticks = |v: &[f64]| v.iter().map(|x| format!("{x}")).collect::<Vec<_>>();
        let phase_cells = (cells.iter())
            .map(|(&(i, j), rs)| {
                let mut count: BTreeMap<Phase, usize> = BTreeMap::new();
                rs.iter()
                    .for_each(|r| *count.entry(r.phase).or_default() += 1);
                let top = *count
                    .iter()
                    .max_by_key(|(p, n)| (**n, std::cmp::Reverse(**p)))
                    .expect("a run")
                    .0;
                let text = (count.iter())
                    .map(|(p, n)| {
                        format!(
                            "{}{}",
                            &p.name()[..4],
                            if *n > 1 {
                                format!("×{n}")
                            } else {
                                String::new()
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                (i, j, phase_color(top), text)
            })
            .collect();
        let legend = [
            Phase::Comprehension,
            Phase::Grokking,
            Phase::Memorisation,
            Phase::Confusion,
        ]
        .map(|p| (p.name().to_string(), phase_color(p)))
        .to_vec();
        Chart::Cells {
            x_label: xk.clone(),
            y_label: yk.clone(),
            x_ticks: ticks(&xs),
            y_ticks: ticks(&ys),
            cells: phase_cells,
            legend,
        }
        .save(
            &dir,
            "phase_diagram",
            &format!("Phases (Liu et al. 2022): {yk} × {xk}"),
        )?;
        drawn.push(("phase_diagram".into(), "Phase diagram".into()));
        let delays: Vec<(usize, usize, Option<f64>)> = (cells.iter())
            .map(|(&(i, j), rs)| {
                (
                    i,
                    j,
                    median(
                        rs.iter()
                            .filter_map(|r| r.grok_delay())
                            .map(|d| d as f64)
                            .collect(),
                    ),
                )
            })
            .collect();
        let max = delays.iter().filter_map(|d| d.2).fold(1.0, f64::max);
        let delay_cells = (delays.into_iter())
            .map(|(i, j, d)| match d {
                Some(d) => {
                    let t = (d / max).clamp(0.0, 1.0);
                    let c = (255.0 * (1.0 - 0.8 * t)) as u8;
                    (
                        i,
                        j,
                        RGBColor(255, c, (c as f64 * 0.6) as u8),
                        format!("{d:.0}"),
                    )
                }
                None => (i, j, RGBColor(220, 220, 220), "none".into()),
            })
            .collect();
        Chart::Cells {
            x_label: xk.clone(),
            y_label: yk.clone(),
            x_ticks: ticks(&xs),
            y_ticks: ticks(&ys),
            cells: delay_cells,
            legend: vec![("delay (steps)".into(), RGBColor(255, 51, 30))],
        }
        .save(
            &dir,
            "grok_delay",
            &format!(
                "Grokking delay: steps from 90% train to 90% test accuracy (median): {yk} × {xk}"
            ),
        )?;
        drawn.push(("grok_delay".into(), "Grokking delay".into()));
    }
    if let Some(frac) = rows
        .iter()
        .flat_map(|r| r.swept.keys())
        .find(|k| k.ends_with("frac_train"))
        .cloned()
    {
        let fracs = values(rows, &frac);
        let curve = |f: fn(&RunRow) -> Option<u64>| -> Vec<(f64, f64)> {
            (fracs.iter())
                .filter_map(|&v| {
                    let at: Vec<f64> = (rows.iter())
                        .filter(|r| r.number(&frac) == Some(v))
                        .filter_map(|r| f(r).map(|s| s.max(1) as f64))
                        .collect();
                    Some((v, median(at)?))
                })
                .collect()
        };
        let series: Vec<Series> = vec![
            (
                "test loss < 1 (Nanda et al.)".into(),
                palette(0),
                curve(|r| r.test_loss_below_1),
            ),
            (
                "99% test accuracy (Power et al.)".into(),
                palette(1),
                curve(|r| r.test_99),
            ),
            (
                "99% train accuracy".into(),
                palette(2),
                curve(|r| r.train_99),
            ),
        ];
        Chart::Lines {
            x_label: frac.clone(),
            y_label: "first logged step (median over runs; log scale)".into(),
            log_y: true,
            series,
            markers: Vec::new(),
        }
        .save(
            &dir,
            "time_to_grok",
            "Time to grok against the training fraction",
        )?;
        drawn.push(("time_to_grok".into(), "Time to grok".into()));
    }
    Ok(drawn)
}

/// Writes `runs_dir/sweep.html`: the phase counts, the charts of [`plot_sweep`] and the
/// summary table; returns its path.
///
/// # Errors
/// [`GrokError::Io`] when the page cannot be written.
pub fn write_sweep_report(
    runs_dir: &Path,
    rows: &[RunRow],
    drawn: &[(String, String)],
    unfinished: usize,
) -> Result<PathBuf> {
    let mut counts: BTreeMap<Phase, usize> = BTreeMap::new();
    rows.iter()
        .for_each(|r| *counts.entry(r.phase).or_default() += 1);
    let summary: String = (counts.iter())
        .map(|(p, n)| format!("<li>{}: {n}</li>", p.name()))
        .collect();
    let plots = runs_dir.join("plots");
    let figures: String = (drawn.iter())
        .map(|(stem, title)| {
            format!(
                "<figure><figcaption>{title}</figcaption>{}</figure>\n",
                inline_plot(&plots.join(stem), false)
            )
        })
        .collect();
    let csv = to_csv(rows);
    let table: String = (csv.lines().enumerate())
        .map(|(i, l)| {
            let tag = if i == 0 { "th" } else { "td" };
            let cells: String = l
                .split(',')
                .map(|c| format!("<{tag}>{}</{tag}>", escape(c)))
                .collect();
            format!("<tr>{cells}</tr>\n")
        })
        .collect();
    let name = runs_dir
        .file_name()
        .map_or("sweep".into(), |n| n.to_string_lossy().to_string());
    let html = page(
        &format!("groklab sweep: {name}"),
        &format!(
            r#"<section id="summary">
<p>{n} finished runs{unf}. Phases by Liu et al. 2022's rule (first steps at 90% train and test
accuracy; comprehension when test follows within {w} steps):</p>
<ul>{summary}</ul>
</section>
<section id="curves">
{figures}</section>
<section id="runs">
<h2>Runs</h2>
<table>
{table}</table>
</section>
"#,
            n = rows.len(),
            unf = if unfinished > 0 {
                format!(" ({unfinished} not finished)")
            } else {
                String::new()
            },
            w = crate::sweep::collect::COMPREHENSION_WINDOW,
        ),
    );
    let path = runs_dir.join("sweep.html");
    atomic_write(&path, html.as_bytes())?;
    Ok(path)
}
