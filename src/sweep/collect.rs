//! `sweep collect`: one summary row per finished run of a sweep directory, with the phase of
//! Liu et al. 2022 (REFERENCES.md §4): with the first logged steps reaching 90% train and
//! test accuracy within the run's budget, **comprehension** when test follows train within
//! [`COMPREHENSION_WINDOW`] steps, **grokking** when later, **memorisation** when test never
//! does, **confusion** when train never does.

use crate::error::{GrokError, Result};
use crate::rundir::MetricsLog;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Steps within which test accuracy must follow train accuracy to 90% for comprehension.
pub const COMPREHENSION_WINDOW: u64 = 1000;

/// Liu et al. 2022's four phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Train and test accuracy reach 90% within the window of each other.
    Comprehension,
    /// Test accuracy reaches 90% more than the window after train.
    Grokking,
    /// Train accuracy reaches 90%, test never does.
    Memorisation,
    /// Train accuracy never reaches 90%.
    Confusion,
}

impl Phase {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Comprehension => "comprehension",
            Phase::Grokking => "grokking",
            Phase::Memorisation => "memorisation",
            Phase::Confusion => "confusion",
        }
    }

    /// The rule, from the first steps at ≥ 90% train and test accuracy.
    pub fn of(train_90: Option<u64>, test_90: Option<u64>) -> Self {
        match (train_90, test_90) {
            (None, _) => Phase::Confusion,
            (Some(_), None) => Phase::Memorisation,
            (Some(a), Some(b)) if b <= a + COMPREHENSION_WINDOW => Phase::Comprehension,
            _ => Phase::Grokking,
        }
    }
}

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
    let first = |f: &dyn Fn(&crate::rundir::MetricsRow) -> bool| {
        log.rows.iter().find(|r| f(r)).map(|r| r.step)
    };
    let last = log.rows.last().ok_or_else(|| GrokError::Checkpoint {
        path: dir.join("metrics.jsonl"),
        reason: "no metrics rows".into(),
    })?;
    let (train_90, test_90) = (
        first(&|r| r.train_acc >= 0.9),
        first(&|r| r.test_acc >= 0.9),
    );
    Ok(RunRow {
        id: meta["id"].as_str().unwrap_or_default().to_string(),
        swept,
        steps: last.step,
        train_90,
        test_90,
        train_99: first(&|r| r.train_acc >= 0.99),
        test_99: first(&|r| r.test_acc >= 0.99),
        test_loss_below_1: first(&|r| r.test_loss < 1.0),
        final_train_loss: last.train_loss,
        final_test_loss: last.test_loss,
        final_train_acc: last.train_acc,
        final_test_acc: last.test_acc,
        phase: Phase::of(train_90, test_90),
    })
}

/// Every finished run under `runs_dir` (directories with `DONE`), sorted by their swept values
/// then id; also how many run directories are not finished.
///
/// # Errors
/// An unreadable directory or finished run.
pub fn collect(runs_dir: &Path) -> Result<(Vec<RunRow>, usize)> {
    let entries = std::fs::read_dir(runs_dir).map_err(|e| GrokError::io(runs_dir, e))?;
    let (mut rows, mut unfinished) = (Vec::new(), 0);
    for entry in entries {
        let dir = entry.map_err(|e| GrokError::io(runs_dir, e))?.path();
        if !dir.join("config.toml").exists() {
            continue;
        }
        if dir.join("DONE").exists() {
            rows.push(collect_run(&dir)?);
        } else {
            unfinished += 1;
        }
    }
    rows.sort_by(|a, b| {
        let key = |r: &RunRow| serde_json::to_string(&r.swept).unwrap_or_default();
        key(a).cmp(&key(b)).then(a.id.cmp(&b.id))
    });
    Ok((rows, unfinished))
}

/// `rows` as CSV: `id`, the swept keys (their union, sorted), then the summary columns.
pub fn to_csv(rows: &[RunRow]) -> String {
    let mut keys: Vec<&String> = rows.iter().flat_map(|r| r.swept.keys()).collect();
    keys.sort();
    keys.dedup();
    let opt = |x: Option<u64>| x.map_or(String::new(), |s| s.to_string());
    let mut out = format!(
        "id,{}{}steps,train_90_step,test_90_step,train_99_step,test_99_step,test_loss_below_1_step,final_train_loss,final_test_loss,final_train_acc,final_test_acc,grok_delay,phase\n",
        keys.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(","),
        if keys.is_empty() { "" } else { "," }
    );
    for r in rows {
        let swept: Vec<String> = (keys.iter())
            .map(|k| match r.swept.get(*k) {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            })
            .collect();
        out.push_str(&format!(
            "{},{}{}{},{},{},{},{},{},{:e},{:e},{},{},{},{}\n",
            r.id,
            swept.join(","),
            if keys.is_empty() { "" } else { "," },
            r.steps,
            opt(r.train_90),
            opt(r.test_90),
            opt(r.train_99),
            opt(r.test_99),
            opt(r.test_loss_below_1),
            r.final_train_loss,
            r.final_test_loss,
            r.final_train_acc,
            r.final_test_acc,
            opt(r.grok_delay()),
            r.phase.name()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule's four cases and its window's edge.
    #[test]
    fn liu_phases() {
        assert_eq!(Phase::of(None, None), Phase::Confusion);
        assert_eq!(Phase::of(None, Some(10)), Phase::Confusion);
        assert_eq!(Phase::of(Some(100), None), Phase::Memorisation);
        assert_eq!(Phase::of(Some(100), Some(1100)), Phase::Comprehension);
        assert_eq!(Phase::of(Some(100), Some(1101)), Phase::Grokking);
        assert_eq!(Phase::of(Some(500), Some(300)), Phase::Comprehension);
    }
}
