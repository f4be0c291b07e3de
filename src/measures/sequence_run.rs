//! `analyze` for the sequence tasks (digit addition, induction, max of a sequence, sparse
//! parity): every checkpoint's test metrics — loss and accuracy, per scored position, per class,
//! per-head induction and previous-token scores, as the run logs them (`train::Batches`) — in
//! `measures.jsonl` / `measures.csv`, the run's phase changes in `analysis.json`, and the
//! attention views of the report's explorer in `attention.json`.

use super::attention_views::{checkpoint_views, explorer_steps, AttentionViews, PROBE};
use super::phases::{grokking_phases, PhaseChange, Phases};
use crate::config::SeqTaskSection;
use crate::error::{GrokError, Result};
use crate::models::ParamStore;
use crate::rundir::RunDir;
use crate::rundir::{atomic_write, model_path, MetricsLog};
use crate::train::{checkpoint_test_metrics, RegimeName, RunSummary};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;
use std::time::Instant;

/// What `analyze` writes for a sequence run (`analysis.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SequenceAnalysis {
    /// First logged step with train accuracy ≥ 99% ("memorised at").
    pub train_99_step: Option<u64>,
    /// First logged step with test accuracy ≥ 99% ("generalised at").
    pub test_99_step: Option<u64>,
    /// Phase change (onset, steepest, end; [`super::phases::detect_phase_change`]) of the test
    /// loss and of every per-position and per-class test loss, from the logged metrics; curves
    /// without one are absent.
    pub phase_changes: Vec<(String, PhaseChange)>,
    /// Memorisation / circuit formation / clean-up boundaries from the logged train and test
    /// losses, for a finite training set (`None` for a fresh sample each step, where nothing
    /// is memorised).
    pub phases: Option<Phases>,
    /// Number of checkpoints measured.
    pub checkpoints: usize,
    /// Wall-clock seconds the measures took.
    pub seconds: f64,
    /// Checkpoints left out: non-finite weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<super::run::SkippedCheckpoint>,
}

impl SequenceAnalysis {
    /// One line per finding: "memorised at step …, generalised at step …", the grokking phases,
    /// then each phase change.
    pub fn summary_lines(&self) -> Vec<String> {
        let at = |s: Option<u64>| s.map_or("not within the run".into(), |s| format!("step {s}"));
        let mut lines = vec![format!(
            "memorised (train accuracy ≥ 99%) at {}, generalised (test accuracy ≥ 99%) at {}",
            at(self.train_99_step),
            at(self.test_99_step)
        )];
        if let Some(ph) = &self.phases {
            lines.push(format!(
                "from the train and test losses: memorisation ends {}, circuit formation ends {}, clean-up ends {}",
                at(ph.memorisation_end),
                at(ph.circuit_formation_end),
                at(ph.cleanup_end)
            ));
        }
        lines.extend(self.phase_changes.iter().map(|(curve, pc)| {
            format!(
                "phase change of {curve}: onset step {}, steepest {}, end {}",
                pc.onset,
                pc.steepest,
                pc.end
                    .map_or("not before the last step".into(), |e| e.to_string())
            )
        }));
        lines
    }
}

/// Measures every checkpoint of the sequence run `run_dir` (one checkpoint per rayon thread, each
/// evaluated single-threaded) and writes `measures.jsonl`, `measures.csv`, `analysis.json` and,
/// for a transformer, the explorer's `attention.json` ([`super::attention_views`]) atomically. Returns the rows (`step` and the metric names of `metrics.jsonl`) and the
/// analysis.
///
/// # Errors
/// A run directory without config, metrics or checkpoints; a config that is not a sequence
/// task (`task.name`); an unreadable checkpoint; I/O errors.
pub fn analyze_sequence_run(run_dir: &Path) -> Result<(Vec<Map<String, Value>>, SequenceAnalysis)> {
    let start = Instant::now();
    let cfg = RunDir::new(run_dir).config()?;
    let Some(task) = cfg.task.get::<SeqTaskSection>() else {
        return Err(GrokError::invalid(
            "task.name",
            cfg.task.name(),
            "a sequence task (binary operations have their own analysis)",
        ));
    };
    let finite = task.regime == RegimeName::Finite;
    let (steps, skipped) = super::run::finite_checkpoints(run_dir)?;
    let specs = cfg.model_spec().param_specs();
    // the explorer's views: a transformer's attention on the first test sequences
    let explorer = match cfg.transformer() {
        Some(tc) => {
            let data = task.data()?;
            let n = data.test.len().min(PROBE);
            let probe = data.test.select(&(0..n).collect::<Vec<_>>());
            let induction = data.task().scores_induction();
            let signal = data.task().signal_tokens();
            Some((tc, probe, induction, explorer_steps(&steps), signal))
        }
        _ => None,
    };
    let results = (steps.par_iter())
        .map(|&step| {
            let store =
                ParamStore::from_safetensors_specs(&model_path(run_dir, step), specs.clone())?;
            let views = (explorer.as_ref())
                .filter(|(_, _, _, shown, _)| shown.contains(&step))
                .map(|(tc, probe, induction, _, _)| {
                    checkpoint_views(tc, &store, probe, step, *induction)
                });
            let mut row = Map::new();
            row.insert("step".into(), step.into());
            for (k, v) in checkpoint_test_metrics(&cfg, &store)? {
                row.insert(
                    k,
                    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
                );
            }
            Ok((row, views))
        })
        .collect::<Result<Vec<_>>>()?;
    let (rows, views): (Vec<_>, Vec<_>) = results.into_iter().unzip();
    if let Some((tc, probe, _, _, signal)) = &explorer {
        let mut all = AttentionViews::new(tc, probe, signal.clone());
        all.checkpoints = views.into_iter().flatten().collect();
        let json = serde_json::to_string(&all).expect("views serialise");
        atomic_write(&run_dir.join("attention.json"), json.as_bytes())?;
    }
    let log = MetricsLog::load(run_dir)?;
    let summary = RunSummary::of_rows(&log.rows);
    let (s, tr, te): (Vec<u64>, Vec<f64>, Vec<f64>) = log
        .rows
        .iter()
        .map(|r| (r.step, r.train_loss, r.test_loss))
        .fold(Default::default(), |(mut s, mut a, mut b), (x, y, z)| {
            s.push(x);
            a.push(y);
            b.push(z);
            (s, a, b)
        });
    let analysis = SequenceAnalysis {
        train_99_step: summary.as_ref().and_then(|s| s.train_99_step),
        test_99_step: summary.as_ref().and_then(|s| s.test_99_step),
        phase_changes: super::phases::phase_changes_of_rows(&log.rows),
        phases: finite.then(|| grokking_phases(&s, &tr, &te)),
        checkpoints: rows.len(),
        seconds: start.elapsed().as_secs_f64(),
        skipped,
    };
    super::run::write_rows(run_dir, "measures", &rows, &[])?;
    let json = serde_json::to_string_pretty(&analysis).expect("analysis serialises");
    atomic_write(&run_dir.join("analysis.json"), json.as_bytes())?;
    Ok((rows, analysis))
}

/// Reads what [`analyze_sequence_run`] wrote.
///
/// # Errors
/// [`GrokError::Io`] when absent (run `groklab analyze` first), [`GrokError::Config`] when
/// malformed.
pub fn load_sequence_analysis(run_dir: &Path) -> Result<SequenceAnalysis> {
    super::run::read_json(run_dir, "analysis.json")
}
