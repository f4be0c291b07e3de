//! Every measure at every checkpoint of a run: `measures.jsonl`, `measures.csv`, `analysis.json`.

use super::analyze::{analyze_checkpoints, CheckpointAnalysis};
use super::neurons::{KeyFreqVotes, NeuronViews};
use super::phases::{detect_phases, Phases};
use super::snapshot::{Analyzer, KeyFreqRule, Measures};
use crate::error::{GrokError, Result};
use crate::models::{ParamSpec, ParamStore};
use crate::rundir::{atomic_write, list_steps, model_path, RunDir};
use crate::train::{RunConfig, RunData};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;
use std::time::Instant;

/// What `analyze` writes beside the per-checkpoint rows (`analysis.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunAnalysis {
    /// Key frequencies used for every checkpoint (taken from the final one unless fixed).
    pub key_freqs: Vec<usize>,
    /// The rule that chose them.
    pub key_freq_rule: String,
    /// Step of the checkpoint the key frequencies were read from.
    pub key_freq_step: u64,
    /// What each rule finds on that checkpoint, and whether the neuron clusters and the
    /// embedding norms disagree (absent in analyses written before it existed).
    #[serde(default)]
    pub key_freq_votes: KeyFreqVotes,
    /// Detected phase boundaries.
    pub phases: Phases,
    /// Number of checkpoints measured.
    pub checkpoints: usize,
    /// Wall-clock seconds the measures took.
    pub seconds: f64,
    /// Checkpoints left out: non-finite weights or measures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedCheckpoint>,
}

/// A checkpoint `analyze` left out, and why (`analysis.json`'s `skipped`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkippedCheckpoint {
    /// Its step.
    pub step: u64,
    /// Why: the tensor holding NaN or infinity, or the measure that came out non-finite.
    pub reason: String,
}

/// The checkpoints of `run_dir` whose weights are all finite, and the others as
/// [`SkippedCheckpoint`]s, each announced by a `warning:` line on stderr. A run can hold such
/// checkpoints only from before groklab refused to write them, or from outside.
///
/// # Errors
/// No checkpoints, or none finite ([`GrokError::Checkpoint`]); an unreadable checkpoint.
pub fn finite_checkpoints(run_dir: &Path) -> Result<(Vec<u64>, Vec<SkippedCheckpoint>)> {
    let steps = list_steps(run_dir);
    if steps.is_empty() {
        return Err(GrokError::Checkpoint {
            path: run_dir.join("checkpoints"),
            reason: "no checkpoints to analyze".into(),
        });
    }
    let verdicts = (steps.par_iter())
        .map(|&step| {
            let path = model_path(run_dir, step);
            let bytes = std::fs::read(&path).map_err(|e| GrokError::io(&path, e))?;
            let tensors = crate::models::read_safetensors(&path, &bytes)?;
            let bad = crate::models::first_non_finite_tensor(&tensors);
            Ok(bad.map(|n| format!("tensor `{n}` holds NaN or infinity")))
        })
        .collect::<Result<Vec<_>>>()?;
    let (mut kept, mut skipped) = (Vec::new(), Vec::new());
    for (step, bad) in steps.into_iter().zip(verdicts) {
        match bad {
            None => kept.push(step),
            Some(reason) => skipped.push(SkippedCheckpoint { step, reason }),
        }
    }
    warn_skipped(&skipped);
    if kept.is_empty() {
        return Err(GrokError::Checkpoint {
            path: run_dir.join("checkpoints"),
            reason: "every checkpoint holds NaN or infinity; nothing to analyze".into(),
        });
    }
    Ok((kept, skipped))
}

/// One `warning:` line per skipped checkpoint, on stderr.
pub(super) fn warn_skipped(skipped: &[SkippedCheckpoint]) {
    for s in skipped {
        eprintln!("warning: checkpoint step {} skipped: {}", s.step, s.reason);
    }
}

/// The first non-finite number of a serialised row (serde writes NaN as `null`), by key.
pub(super) fn non_finite_key(row: &impl Serialize) -> Option<String> {
    let value = serde_json::to_value(row).ok()?;
    let mut flat = Map::new();
    flatten("", &value, &mut flat);
    (flat.into_iter()).find_map(|(k, v)| v.is_null().then_some(k))
}

/// Reads a run's `config.toml` and rebuilds its dataset and split.
///
/// # Errors
/// Missing or invalid config ([`GrokError::Io`] / [`GrokError::Config`]).
pub fn load_run(run_dir: &Path) -> Result<(RunConfig, RunData)> {
    let cfg = RunDir::new(run_dir).config()?;
    cfg.modular("analyze")?;
    let data = RunData::new(&cfg)?;
    Ok((cfg, data))
}

/// What [`analyze_run`] returns: the rows (step order), the summary, and the final checkpoint's
/// neuron pictures (`None` without MLP).
pub type RunMeasures = (Vec<Measures>, RunAnalysis, Option<NeuronViews>);

/// Neurons shown in the final-checkpoint pictures.
const VIEW_NEURONS: usize = 4;

/// Measures every checkpoint of `run_dir` (one checkpoint per rayon thread), writes
/// `measures.jsonl`, `measures.csv`, `analysis.json` and `final_neurons.json` atomically.
///
/// Key frequencies come from the final checkpoint by `rule` and are reused for all earlier
/// ones, as Nanda et al. 2023 do (§5.1), unless the rule fixes them.
///
/// # Errors
/// A run directory without config or checkpoints; an unreadable checkpoint; key frequencies
/// outside 1..=p/2 (`key_freqs`); I/O errors.
pub fn analyze_run(run_dir: &Path, rule: &KeyFreqRule) -> Result<RunMeasures> {
    let start = Instant::now();
    let (cfg, RunData { dataset, split }) = load_run(run_dir)?;
    let model = (cfg.transformer()).ok_or_else(|| {
        GrokError::invalid(
            "model.arch",
            "mlp",
            "transformer (analyze supports it only so far)",
        )
    })?;
    let (steps, skipped) = finite_checkpoints(run_dir)?;
    let last = *steps.last().expect("finite_checkpoints returns some");
    let analyzer = Analyzer::new(&model, &dataset, Some(&split))?;
    let final_store = ParamStore::from_safetensors(&model_path(run_dir, last), &model)?;
    let (key_freqs, key_freq_votes) = analyzer.choose_key_freqs(&final_store, rule);
    check_key_freqs(&key_freqs, analyzer.p)?;
    let views = analyzer.neuron_views(&final_store, VIEW_NEURONS);
    let measures = ProgressMeasures {
        analyzer,
        key_freqs,
        key_freq_votes,
        rule: rule.describe(),
        last,
    };
    let (rows, analysis) = analyze_checkpoints(run_dir, &steps, skipped, &measures, start)?;
    let json = serde_json::to_string(&views).expect("views serialise");
    atomic_write(&run_dir.join("final_neurons.json"), json.as_bytes())?;
    Ok((rows, analysis, views))
}

/// Nanda et al.'s progress measures of every checkpoint, with the key frequencies the final
/// checkpoint fixed ([`analyze_run`]).
struct ProgressMeasures {
    analyzer: Analyzer,
    key_freqs: Vec<usize>,
    key_freq_votes: KeyFreqVotes,
    rule: String,
    last: u64,
}

impl CheckpointAnalysis for ProgressMeasures {
    type Row = Measures;
    type Summary = RunAnalysis;

    fn param_specs(&self) -> Vec<ParamSpec> {
        self.analyzer.cfg.param_specs()
    }

    fn row(&self, step: u64, params: &ParamStore) -> Result<Measures> {
        Ok(self.analyzer.measure(params, step, &self.key_freqs))
    }

    fn non_finite(&self, row: &Measures) -> Option<String> {
        non_finite_key(row)
    }

    fn jsonl_only(&self) -> &'static [&'static str] {
        &["neuron_freq."]
    }

    fn summary(
        &self,
        rows: &[Measures],
        skipped: Vec<SkippedCheckpoint>,
        seconds: f64,
    ) -> Result<RunAnalysis> {
        Ok(RunAnalysis {
            skipped,
            key_freqs: self.key_freqs.clone(),
            key_freq_rule: self.rule.clone(),
            key_freq_step: self.last,
            key_freq_votes: self.key_freq_votes.clone(),
            phases: detect_phases(rows),
            checkpoints: rows.len(),
            seconds,
        })
    }
}

/// Checks hand-given or detected key frequencies against 1..=p/2.
///
/// # Errors
/// [`GrokError::InvalidValue`] naming `key_freqs`.
pub fn check_key_freqs(freqs: &[usize], p: usize) -> Result<()> {
    match freqs.iter().find(|&&k| k == 0 || k > p / 2) {
        Some(k) => Err(GrokError::invalid(
            "key_freqs",
            k,
            format!("frequencies in 1..={}", p / 2),
        )),
        None => Ok(()),
    }
}

/// Reads what [`analyze_run`] wrote.
///
/// # Errors
/// [`GrokError::Io`] when absent (run `groklab analyze` first), [`GrokError::Config`] when malformed.
pub fn load_measures(run_dir: &Path) -> Result<RunMeasures> {
    let (rows, analysis) = read_rows_and_analysis(run_dir)?;
    Ok((rows, analysis, read_json(run_dir, "final_neurons.json")?))
}

/// `run_dir/name` parsed as JSON.
///
/// # Errors
/// [`GrokError::Io`] when absent, [`GrokError::Config`] when malformed.
pub(super) fn read_json<T: serde::de::DeserializeOwned>(run_dir: &Path, name: &str) -> Result<T> {
    let path = run_dir.join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| GrokError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| GrokError::data_file(path.display(), e))
}

/// The rows of `measures.jsonl` and `analysis.json`, as `analyze` wrote them.
///
/// # Errors
/// [`GrokError::Io`] when absent (run `groklab analyze` first), [`GrokError::Config`] naming the
/// malformed file.
pub(super) fn read_rows_and_analysis<R, A>(run_dir: &Path) -> Result<(Vec<R>, A)>
where
    R: serde::de::DeserializeOwned,
    A: serde::de::DeserializeOwned,
{
    let path = run_dir.join("measures.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| GrokError::io(&path, e))?;
    let rows = (text.lines())
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| GrokError::data_file(path.display(), e)))
        .collect::<Result<Vec<R>>>()?;
    Ok((rows, read_json(run_dir, "analysis.json")?))
}

/// Writes `<stem>.jsonl` (one row per line) and `<stem>.csv` (the same, flattened to dotted
/// columns such as `embed_freq_norms.14` or `mean_attention.2.0`; columns starting with one of
/// `jsonl_only`, such as per-neuron values, stay in the JSONL only).
pub(super) fn write_rows<R: Serialize>(
    run_dir: &Path,
    stem: &str,
    rows: &[R],
    jsonl_only: &[&str],
) -> Result<()> {
    let mut json = Vec::new();
    let mut flat_rows = Vec::new();
    for row in rows {
        let value = serde_json::to_value(row).expect("measures serialise");
        let mut flat = Map::new();
        flatten("", &value, &mut flat);
        flat.retain(|k, _| !jsonl_only.iter().any(|p| k.starts_with(p)));
        json.push(value);
        flat_rows.push(flat);
    }
    // Columns: the union over rows (cluster frequencies come and go), `step` first.
    let mut header: Vec<String> = Vec::new();
    for flat in &flat_rows {
        for k in flat.keys() {
            if k != "step" && !header.contains(k) {
                header.push(k.clone());
            }
        }
    }
    header.sort();
    header.insert(0, "step".into());
    let cells: Vec<Vec<String>> = (flat_rows.iter())
        .map(|flat| {
            (header.iter())
                .map(|k| match flat.get(k) {
                    Some(Value::Number(n)) => n.to_string(),
                    _ => String::new(),
                })
                .collect()
        })
        .collect();
    crate::rundir::write_row_files(run_dir, stem, &json, &header, &cells)
}

fn flatten(prefix: &str, value: &Value, out: &mut Map<String, Value>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Object(m) => m.iter().for_each(|(k, v)| flatten(&key(k), v, out)),
        Value::Array(a) => {
            (a.iter().enumerate()).for_each(|(i, v)| flatten(&key(&i.to_string()), v, out))
        }
        v => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}
