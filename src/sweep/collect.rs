//! `sweep collect`: one summary row per finished run of a sweep directory, with the phase of
//! Liu et al. 2022 (REFERENCES.md §4; [`Phase`]), and one row per setting over its seeds
//! ([`by_setting`]): steps to 90 / 95 / 99% test accuracy with censoring and bootstrap intervals
//! ([`crate::measures::outcome`]).

use crate::error::{GrokError, Result};
use crate::measures::outcome::{Outcome, SettingSummary};
pub use crate::measures::outcome::{Phase, COMPREHENSION_WINDOW};
use crate::rundir::MetricsLog;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// One finished run's summary.
#[derive(Clone, Debug)]
pub struct RunRow {
    /// Run id.
    pub id: String,
    /// The swept keys' values (`sweep.json`).
    pub swept: BTreeMap<String, Value>,
    /// Last logged step.
    pub steps: u64,
    /// First logged step with train / test accuracy ≥ 90%, ≥ 99%.
    pub train_90: Option<u64>,
    /// See `train_90`.
    pub test_90: Option<u64>,
    /// See `train_90`.
    pub train_99: Option<u64>,
    /// See `train_90`.
    pub test_99: Option<u64>,
    /// First logged step with test accuracy ≥ 95%.
    pub test_95: Option<u64>,
    /// Highest logged test accuracy.
    pub best_test_acc: f64,
    /// The whole outcome (censoring, grokking stage).
    pub outcome: Outcome,
    /// First logged step with test loss < 1 (Nanda et al. 2023's time to grok).
    pub test_loss_below_1: Option<u64>,
    /// Final train and test loss and accuracy.
    pub final_train_loss: f64,
    /// See `final_train_loss`.
    pub final_test_loss: f64,
    /// See `final_train_loss`.
    pub final_train_acc: f64,
    /// See `final_train_loss`.
    pub final_test_acc: f64,
    /// [`Phase::of`] the 90% steps.
    pub phase: Phase,
}

impl RunRow {
    /// The row of run `id` with swept values `swept` and outcome `o`.
    pub fn of(id: String, swept: BTreeMap<String, Value>, o: Outcome) -> Self {
        let (final_train_loss, final_test_loss, final_train_acc, final_test_acc) = o.last;
        RunRow {
            id,
            swept,
            steps: o.steps,
            train_90: o.train_90,
            test_90: o.test[0],
            train_99: o.train_99,
            test_99: o.test[2],
            test_95: o.test[1],
            best_test_acc: o.best_test_acc,
            test_loss_below_1: o.test_loss_below_1,
            final_train_loss,
            final_test_loss,
            final_train_acc,
            final_test_acc,
            phase: o.phase,
            outcome: o,
        }
    }

    /// `test_90 − train_90`, where both exist.
    pub fn grok_delay(&self) -> Option<u64> {
        Some(self.test_90?.saturating_sub(self.train_90?))
    }

    /// A swept key's value as a number (booleans 0/1), if it is one.
    pub fn number(&self, key: &str) -> Option<f64> {
        match self.swept.get(key)? {
            Value::Number(n) => n.as_f64(),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
    }
}

/// The summary of one run directory with a `DONE` marker.
///
/// # Errors
/// Unreadable `sweep.json` or `metrics.jsonl`.
pub fn collect_run(dir: &Path) -> Result<RunRow> {
    let path = dir.join("sweep.json");
    let text = std::fs::read_to_string(&path).map_err(|e| GrokError::io(&path, e))?;
    let meta: Value =
        serde_json::from_str(&text).map_err(|e| GrokError::data_file(path.display(), e))?;
    let swept = (meta["swept"].as_object().into_iter().flatten())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let log = MetricsLog::load(dir)?;
    let o = Outcome::of(&log.rows).ok_or_else(|| GrokError::Checkpoint {
        path: dir.join("metrics.jsonl"),
        reason: "no metrics rows".into(),
    })?;
    let id = meta["id"].as_str().unwrap_or_default().to_string();
    Ok(RunRow::of(id, swept, o))
}

/// Every finished run under `runs_dir` (directories with `DONE`), sorted by their swept values
/// then id; also how many run directories are not finished.
///
/// Runs of several sweep files can share a directory, and a key one file sets for all its runs
/// (say `train.jump_decay`) is then not in any run's swept keys, though it tells the runs apart.
/// Such keys, the `config.toml` keys whose values differ between the finished runs, are added
/// to every row's swept values (`(default)` where a run's config leaves the key at its default), so
/// that [`by_setting`] never pools runs of different configurations.
///
/// # Errors
/// An unreadable directory, finished run or `config.toml`.
pub fn collect(runs_dir: &Path) -> Result<(Vec<RunRow>, usize)> {
    let entries = std::fs::read_dir(runs_dir).map_err(|e| GrokError::io(runs_dir, e))?;
    let (mut rows, mut configs, mut unfinished) = (Vec::new(), Vec::new(), 0);
    for entry in entries {
        let dir = entry.map_err(|e| GrokError::io(runs_dir, e))?.path();
        if !dir.join("config.toml").exists() {
            continue;
        }
        if dir.join("DONE").exists() {
            rows.push(collect_run(&dir)?);
            configs.push(flat_config(&dir.join("config.toml"))?);
        } else {
            unfinished += 1;
        }
    }
    let all_keys: std::collections::BTreeSet<&String> =
        configs.iter().flat_map(|c| c.keys()).collect();
    let differing: Vec<String> = (all_keys.into_iter())
        .filter(|k| configs.iter().any(|c| c.get(*k) != configs[0].get(*k)))
        .cloned()
        .collect();
    for (row, config) in rows.iter_mut().zip(&configs) {
        for key in &differing {
            row.swept.entry(key.clone()).or_insert_with(|| {
                config
                    .get(key)
                    .map_or(Value::String("(default)".into()), |v| {
                        Value::String(v.clone())
                    })
            });
        }
    }
    rows.sort_by(|a, b| {
        let key = |r: &RunRow| serde_json::to_string(&r.swept).unwrap_or_default();
        key(a).cmp(&key(b)).then(a.id.cmp(&b.id))
    });
    Ok((rows, unfinished))
}

/// A run's `config.toml` as `dotted key → value` ([`crate::config::flatten_table`]).
fn flat_config(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(|e| GrokError::io(path, e))?;
    let table: toml::Value =
        toml::from_str(&text).map_err(|e| GrokError::data_file(path.display(), e))?;
    let mut flat = Vec::new();
    crate::config::flatten_table("", &table, &mut flat);
    Ok(flat.into_iter().collect())
}

/// `rows` as CSV: `id`, the swept keys (their union, sorted), then the summary columns.
pub fn to_csv(rows: &[RunRow]) -> String {
    let mut keys: Vec<&String> = rows.iter().flat_map(|r| r.swept.keys()).collect();
    keys.sort();
    keys.dedup();
    let opt = |x: Option<u64>| x.map_or(String::new(), |s| s.to_string());
    let mut out = format!(
        "id,{}{}steps,train_90_step,test_90_step,train_99_step,test_95_step,test_99_step,test_loss_below_1_step,final_train_loss,final_test_loss,final_train_acc,final_test_acc,best_test_acc,grok_delay,grok_stage,grok_stage_censored,phase\n",
        keys.iter().map(|k| csv_cell(k)).collect::<Vec<_>>().join(","),
        if keys.is_empty() { "" } else { "," }
    );
    for r in rows {
        let swept: Vec<String> = (keys.iter())
            .map(|k| csv_cell(&r.swept.get(*k).map_or(String::new(), cell)))
            .collect();
        out.push_str(&format!(
            "{},{}{}{},{},{},{},{},{},{},{:e},{:e},{},{},{},{},{},{},{}\n",
            r.id,
            swept.join(","),
            if keys.is_empty() { "" } else { "," },
            r.steps,
            opt(r.train_90),
            opt(r.test_90),
            opt(r.train_99),
            opt(r.test_95),
            opt(r.test_99),
            opt(r.test_loss_below_1),
            r.final_train_loss,
            r.final_test_loss,
            r.final_train_acc,
            r.final_test_acc,
            r.best_test_acc,
            opt(r.grok_delay()),
            opt(r.outcome.grok_stage().map(|g| g.0)),
            r.outcome
                .grok_stage()
                .map_or(String::new(), |g| g.1.to_string()),
            r.phase.name()
        ));
    }
    out
}

/// Whether a swept key is a seed: its name ends in `seed` (`model.init_seed`,
/// `task.split_seed`, ...). [`by_setting`] pools runs over these.
pub fn is_seed_key(key: &str) -> bool {
    key.ends_with("seed")
}

/// The runs grouped by their swept values without the seed keys ([`is_seed_key`]), each group
/// summarised over its seeds; in `rows`' order of first appearance.
pub fn by_setting(rows: &[RunRow]) -> Vec<(BTreeMap<String, Value>, SettingSummary)> {
    let mut groups: Vec<(BTreeMap<String, Value>, Vec<Outcome>)> = Vec::new();
    for r in rows {
        let key: BTreeMap<String, Value> = (r.swept.iter())
            .filter(|(k, _)| !is_seed_key(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, o)) => o.push(r.outcome.clone()),
            None => groups.push((key, vec![r.outcome.clone()])),
        }
    }
    (groups.into_iter())
        .map(|(key, outcomes)| {
            let label = (key.iter())
                .map(|(k, v)| format!("{k}={}", cell(v)))
                .collect::<Vec<_>>()
                .join(" ");
            let label = if label.is_empty() {
                "all".into()
            } else {
                label
            };
            let summary = SettingSummary::of(&label, &outcomes);
            (key, summary)
        })
        .collect()
}

/// [`by_setting`] as CSV: the swept keys other than seeds, then
/// [`SettingSummary::CSV_HEADER`]'s columns.
pub fn by_setting_csv(rows: &[RunRow]) -> String {
    let settings = by_setting(rows);
    let mut keys: Vec<&String> = settings.iter().flat_map(|(k, _)| k.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = String::new();
    for k in &keys {
        out.push_str(&csv_cell(k));
        out.push(',');
    }
    out.push_str(SettingSummary::CSV_HEADER);
    out.push('\n');
    for (key, s) in &settings {
        for k in &keys {
            out.push_str(&csv_cell(&key.get(*k).map_or(String::new(), cell)));
            out.push(',');
        }
        out.push_str(&s.csv_row());
        out.push('\n');
    }
    out
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// A CSV field, quoted when it holds a comma or a quote (a swept list such as `lr_jumps`).
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rundir::MetricsRow;

    fn run(id: &str, swept: &[(&str, Value)], test_accs: &[f64]) -> RunRow {
        let rows: Vec<MetricsRow> = (test_accs.iter().enumerate())
            .map(|(i, &a)| {
                MetricsRow::new(
                    100 * i as u64,
                    0.0,
                    (0.0, 1.0),
                    (1.0, a),
                    (0.0, 0.0),
                    vec![],
                    0.0,
                )
            })
            .collect();
        let swept = swept.iter().map(|(k, v)| (k.to_string(), v.clone()));
        RunRow::of(id.into(), swept.collect(), Outcome::of(&rows).unwrap())
    }

    /// Seeds pool into one setting; a run cut off before 99% is censored in the summary and in
    /// the CSV (`>budget`), and a swept list with commas is quoted.
    #[test]
    fn settings_pool_seeds_and_mark_censored_runs() {
        let jump = Value::String("[[1000, 10.0]]".into());
        let rows = [
            run(
                "a",
                &[
                    ("model.init_seed", 0.into()),
                    ("train.lr_jumps", jump.clone()),
                ],
                &[0.0, 0.5, 0.995],
            ),
            run(
                "b",
                &[
                    ("model.init_seed", 1.into()),
                    ("train.lr_jumps", jump.clone()),
                ],
                &[0.0, 0.2, 0.96],
            ),
            run(
                "c",
                &[
                    ("model.init_seed", 0.into()),
                    ("train.lr_jumps", "[]".into()),
                ],
                &[0.0, 1.0],
            ),
        ];
        let s = by_setting(&rows);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].1.runs, 2);
        assert_eq!(s[0].1.test[2].per_run, vec![Ok(200), Err(200)]);
        assert_eq!(s[1].1.test[2].per_run, vec![Ok(100)]);
        let csv = by_setting_csv(&rows);
        let lines: Vec<&str> = csv.lines().collect();
        assert!(
            lines[0].starts_with("train.lr_jumps,runs,test_90_mean"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("\"[[1000, 10.0]]\",2,"),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains(",200;>200,"), "{}", lines[1]);
        assert!(is_seed_key("task.split_seed") && !is_seed_key("train.lr"));
    }
}
