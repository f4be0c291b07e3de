//! `groklab compare RUN_DIR...`: several runs' metrics overlaid, one chart per metric, each
//! run labelled by the config keys in which it differs from the others; PNG and SVG per chart
//! and one self-contained `compare.html` (inline SVG, no script).

use super::charts::{palette, Chart, Series};
use super::html::STYLE;
use crate::error::{GrokError, Result};
use crate::measures::outcome::{Censored, Outcome, SettingSummary};
use crate::rundir::{atomic_write, MetricsLog, MetricsRow};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The metrics `compare` draws when none are asked for.
pub const DEFAULT_METRICS: [&str; 4] = ["train_acc", "test_acc", "train_loss", "test_loss"];

/// Checks that every metric asked for is logged by at least one of the runs.
///
/// # Errors
/// [`GrokError::InvalidValue`] naming `--metrics`, the metric, and the keys the runs log.
pub fn check_metrics(runs: &[ComparedRun], metrics: &[String]) -> Result<()> {
    let logs = |m: &str| {
        runs.iter()
            .any(|r| r.rows.iter().any(|row| row.get(m).is_some()))
    };
    match metrics.iter().find(|m| !logs(m)) {
        None => Ok(()),
        Some(m) => {
            // the common metrics first, the per-parameter norms as one pattern
            let mut keys: Vec<String> = Vec::new();
            for k in (runs.iter())
                .filter_map(|r| r.rows.last())
                .flat_map(|row| row.keys())
                .filter(|k| !k.starts_with("sum_sq."))
                .chain(std::iter::once("sum_sq.<parameter>".to_string()))
            {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
            Err(GrokError::invalid(
                "--metrics",
                crate::error::clip(m),
                crate::error::clip(&keys.join(", ")),
            ))
        }
    }
}

/// One run of a comparison.
#[derive(Clone, Debug)]
pub struct ComparedRun {
    /// Its directory.
    pub dir: PathBuf,
    /// Its legend: `key=value` for each config key that differs between the runs (the
    /// directory name when none does).
    pub label: String,
    /// Its colour: runs that differ only in `model.init_seed` share one.
    pub group: usize,
    /// Its metrics rows.
    pub rows: Vec<MetricsRow>,
}

/// The run directories among `dirs`: each given directory that has `metrics.jsonl`, or else its
/// `seed_<i>` subdirectories (the output of `train --seeds`), in order.
///
/// # Errors
/// [`GrokError::Config`] naming a directory that is neither.
pub fn expand_run_dirs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for d in dirs {
        if d.join("metrics.jsonl").exists() {
            out.push(d.clone());
            continue;
        }
        let mut seeds: Vec<(u64, PathBuf)> = std::fs::read_dir(d)
            .map_err(|e| GrokError::io(d, e))?
            .filter_map(|e| {
                let path = e.ok()?.path();
                let i = path
                    .file_name()?
                    .to_str()?
                    .strip_prefix("seed_")?
                    .parse()
                    .ok()?;
                path.join("metrics.jsonl").exists().then_some((i, path))
            })
            .collect();
        if seeds.is_empty() {
            return Err(GrokError::data_file(
                d.display(),
                "not a run directory (no metrics.jsonl) nor a `train --seeds` one (no seed_<i>/)",
            ));
        }
        seeds.sort();
        out.extend(seeds.into_iter().map(|(_, p)| p));
    }
    Ok(out)
}

/// Loads each run's metrics and labels it by its differing config keys.
///
/// # Errors
/// A missing or unreadable `config.toml` or `metrics.jsonl`.
pub fn load_runs(dirs: &[PathBuf]) -> Result<Vec<ComparedRun>> {
    let configs: Vec<BTreeMap<String, String>> = (dirs.iter())
        .map(|d| {
            let path = d.join("config.toml");
            let text = std::fs::read_to_string(&path).map_err(|e| GrokError::io(&path, e))?;
            let table: toml::Table = toml::from_str(&text)
                .map_err(|e| GrokError::data_file(path.display(), e.message()))?;
            let mut flat = BTreeMap::new();
            let mut leaves = Vec::new();
            crate::train::flatten_table("", &toml::Value::Table(table), &mut leaves);
            flat.extend(leaves);
            // the record of resumes is history, not a setting
            flat.retain(|k, _| !k.starts_with("resumed_with"));
            Ok(flat)
        })
        .collect::<Result<_>>()?;
    let labels = differing_labels(&configs);
    let unseeded: Vec<BTreeMap<String, String>> = (configs.iter().cloned())
        .map(|mut c| {
            c.remove("model.init_seed");
            c
        })
        .collect();
    let mut groups: Vec<Option<String>> = Vec::new();
    (dirs.iter().zip(labels).zip(differing_labels(&unseeded)))
        .map(|((d, label), key)| {
            let group = groups.iter().position(|g| *g == key).unwrap_or_else(|| {
                groups.push(key);
                groups.len() - 1
            });
            Ok(ComparedRun {
                label: label.unwrap_or_else(|| d.display().to_string()),
                group,
                rows: MetricsLog::load(d)?.rows,
                dir: d.clone(),
            })
        })
        .collect()
}

/// Per config, `k=v, ...` over the keys whose values are not all equal (a key a config lacks
/// counts as `-`); `None` when every config is the same.
pub fn differing_labels(configs: &[BTreeMap<String, String>]) -> Vec<Option<String>> {
    let keys: std::collections::BTreeSet<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    let value = |c: &BTreeMap<String, String>, k: &str| c.get(k).cloned().unwrap_or("-".into());
    let differing: Vec<&String> = (keys.into_iter())
        .filter(|k| configs.iter().any(|c| value(c, k) != value(&configs[0], k)))
        .collect();
    (configs.iter())
        .map(|c| {
            (!differing.is_empty()).then(|| {
                (differing.iter())
                    .map(|k| format!("{k}={}", value(c, k)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
        })
        .collect()
}

/// Draws one chart per metric into `out` (`<metric>.png`, `.svg`; log y for losses) and writes
/// `out/compare.html`; returns the page's path. Runs without a metric are left out of its chart.
///
/// # Errors
/// [`GrokError::Io`] when `out` or a file cannot be written.
pub fn write_comparison(runs: &[ComparedRun], metrics: &[String], out: &Path) -> Result<PathBuf> {
    check_metrics(runs, metrics)?;
    std::fs::create_dir_all(out).map_err(|e| GrokError::io(out, e))?;
    let mut sections = String::new();
    for metric in metrics {
        let series: Vec<Series> = (runs.iter())
            .map(|r| {
                let points: Vec<(f64, f64)> = (r.rows.iter())
                    .filter_map(|row| Some((row.step as f64, row.get(metric)?)))
                    .filter(|(_, y)| y.is_finite() && (!is_loss(metric) || *y > 0.0))
                    .collect();
                (r.label.clone(), palette(r.group), points)
            })
            .filter(|(_, _, p)| !p.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let name = metric.replace(['/', ' '], "_");
        Chart::Lines {
            x_label: "step".into(),
            y_label: if is_loss(metric) {
                format!("{metric} (log scale)")
            } else {
                metric.clone()
            },
            log_y: is_loss(metric),
            series,
            markers: Vec::new(),
        }
        .save(out, &name, metric)?;
        let svg_path = out.join(format!("{name}.svg"));
        let svg = std::fs::read_to_string(&svg_path).map_err(|e| GrokError::io(&svg_path, e))?;
        sections.push_str(&format!(
            "<h2>{}</h2>\n<div class=\"plot\">{svg}</div>\n",
            esc(metric)
        ));
    }
    let summaries = group_summaries(runs);
    atomic_write(
        &out.join("summary.csv"),
        summaries_csv(&summaries).as_bytes(),
    )?;
    let groups = summaries_table(&summaries);
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>groklab compare</title>\
         <style>{STYLE}</style></head><body>\n<h1>Comparison of {} runs</h1>\n{groups}\n{}\n{sections}</body></html>\n",
        runs.len(),
        runs_table(runs)
    );
    let path = out.join("compare.html");
    atomic_write(&path, page.as_bytes())?;
    Ok(path)
}

/// The runs grouped by [`ComparedRun::group`] (runs that differ only in their seed), in
/// first-appearance order, each summarised over its seeds ([`SettingSummary`]: steps to 90 / 95
/// / 99% test accuracy with censoring and bootstrap intervals, best test accuracy, grokking
/// stage, Liu et al.'s phases). Runs without metrics rows are left out.
pub fn group_summaries(runs: &[ComparedRun]) -> Vec<SettingSummary> {
    let groups = runs.iter().map(|r| r.group).max().map_or(0, |g| g + 1);
    (0..groups)
        .filter_map(|g| {
            let members: Vec<&ComparedRun> = runs.iter().filter(|r| r.group == g).collect();
            let label = (members.first()?.label.split(", "))
                .filter(|part| !part.starts_with("model.init_seed="))
                .collect::<Vec<_>>()
                .join(", ");
            let outcomes: Vec<Outcome> = members
                .iter()
                .filter_map(|r| Outcome::of(&r.rows))
                .collect();
            if outcomes.is_empty() {
                return None;
            }
            let label = if label.is_empty() {
                "all".into()
            } else {
                label
            };
            Some(SettingSummary::of(&label, &outcomes))
        })
        .collect()
}

/// The summaries as CSV: `setting`, then [`SettingSummary::CSV_HEADER`]'s columns.
pub fn summaries_csv(summaries: &[SettingSummary]) -> String {
    let mut out = format!("setting,{}\n", SettingSummary::CSV_HEADER);
    for s in summaries {
        out.push_str(&format!(
            "\"{}\",{}\n",
            s.label.replace('"', "\"\""),
            s.csv_row()
        ));
    }
    out
}

/// The summaries as an HTML table.
fn summaries_table(summaries: &[SettingSummary]) -> String {
    let mut html = String::from(
        "<table><tr><th>setting</th><th>runs</th><th>90% test</th><th>95% test</th>\
         <th>99% test</th><th>best test acc</th><th>stage 10→95%</th><th>phases</th></tr>\n",
    );
    for s in summaries {
        let steps = |c: &Censored| {
            format!(
                "{} ({}/{})<br><small>{}</small>",
                esc(&c.describe()),
                c.reached(),
                s.runs,
                esc(&c.per_run_text())
            )
        };
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}% [{:.1}, {:.1}]</td><td>{}</td><td>{}</td></tr>\n",
            esc(&s.label),
            s.runs,
            steps(&s.test[0]),
            steps(&s.test[1]),
            steps(&s.test[2]),
            100.0 * s.best_test_acc.mean,
            100.0 * s.best_test_acc.lo,
            100.0 * s.best_test_acc.hi,
            esc(&s.grok_stage.describe()),
            esc(&s.phases_text()),
        ));
    }
    html + "</table>\n<p>Steps are first logged steps; mean [bootstrap 95% interval over seeds]. \
            A run cut off before a threshold counts at its last step (<code>&gt;N</code>), so the \
            figure is then a lower bound (≥).</p>"
}

/// The runs as an HTML table: label, directory, final losses and accuracies, best test
/// accuracy, first steps at 99% train and 95% / 99% test accuracy.
fn runs_table(runs: &[ComparedRun]) -> String {
    let first = |r: &ComparedRun, key: &str, at: f64| {
        (r.rows.iter())
            .find(|row| row.get(key).is_some_and(|v| v >= at))
            .map_or("never".to_string(), |row| row.step.to_string())
    };
    let mut html = String::from(
        "<table><tr><th>run</th><th>directory</th><th>steps</th><th>train acc</th>\
         <th>test acc</th><th>best test acc</th><th>test loss</th><th>train 99%</th><th>test 95%</th><th>test 99%</th></tr>\n",
    );
    for r in runs {
        let last = r.rows.last();
        let v = |f: fn(&MetricsRow) -> f64| last.map_or("-".into(), |l| format!("{:.4}", f(l)));
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&r.label),
            esc(&r.dir.display().to_string()),
            last.map_or(0, |l| l.step),
            v(|l| l.train_acc),
            v(|l| l.test_acc),
            r.rows.iter().map(|l| l.test_acc).fold(0.0, f64::max),
            v(|l| l.test_loss),
            first(r, "train_acc", 0.99),
            first(r, "test_acc", 0.95),
            first(r, "test_acc", 0.99),
        ));
    }
    html + "</table>"
}

fn is_loss(metric: &str) -> bool {
    metric.contains("loss")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Only keys that differ make the legend; a key one run lacks shows as `-`.
    #[test]
    fn labels_name_only_the_differing_keys() {
        let a = config(&[("train.lr", "0.001"), ("model.init_seed", "0")]);
        let b = config(&[
            ("train.lr", "0.001"),
            ("model.init_seed", "1"),
            ("train.lr_jumps", "[[1000, 10.0]]"),
        ]);
        let labels = differing_labels(&[a.clone(), b]);
        assert_eq!(
            labels[0].as_deref(),
            Some("model.init_seed=0, train.lr_jumps=-")
        );
        assert_eq!(
            labels[1].as_deref(),
            Some("model.init_seed=1, train.lr_jumps=[[1000, 10.0]]")
        );
        assert_eq!(differing_labels(&[a.clone(), a]), vec![None, None]);
    }

    /// Seeds of one setting form one group; its summary gives each seed's first step at 99%
    /// test accuracy, and a setting cut off before it is censored.
    #[test]
    fn groups_summarise_their_seeds() {
        use crate::rundir::MetricsRow;
        let run = |label: &str, group, accs: &[f64]| ComparedRun {
            dir: PathBuf::from(label),
            label: label.into(),
            group,
            rows: (accs.iter().enumerate())
                .map(|(i, &a)| {
                    MetricsRow::new(
                        100 * i as u64,
                        0.0,
                        (0.0, 1.0),
                        (0.0, a),
                        (0.0, 0.0),
                        vec![],
                        0.0,
                    )
                })
                .collect(),
        };
        let runs = [
            run("train.lr=1, model.init_seed=0", 0, &[0.1, 0.995, 1.0]),
            run("train.lr=1, model.init_seed=1", 0, &[0.1, 0.5, 0.99]),
            run("train.lr=2, model.init_seed=0", 1, &[0.1, 0.2, 0.3]),
        ];
        let g = group_summaries(&runs);
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].label.as_str(), g[0].runs), ("train.lr=1", 2));
        assert_eq!(g[0].test[2].per_run, vec![Ok(100), Ok(200)]);
        assert!((g[0].final_test_acc.mean - 0.995).abs() < 1e-12);
        // the second setting never reached 99%: censored at its budget, a lower bound
        assert_eq!(g[1].test[2].per_run, vec![Err(200)]);
        assert!(
            g[1].describe()
                .contains("99% test at ≥ 200 [200, 200] (0/1 reached)"),
            "{}",
            g[1].describe()
        );
        let csv = summaries_csv(&g);
        assert!(csv.lines().nth(2).unwrap().contains(",>200,"), "{csv}");
    }
}
