//! `analyze` for the sequence tasks (digit addition, induction, max of a sequence, sparse
//! parity): every checkpoint's test metrics — loss and accuracy, per scored position, per class,
//! per-head induction and previous-token scores, as the run logs them (`train::TaskData`) — in
//! `measures.jsonl` / `measures.csv`, the run's phase changes in `analysis.json`, and the
//! attention views of the report's explorer in `attention.json`.

use super::analyze::{analyze_checkpoints, CheckpointAnalysis};
use super::attention_views::{
    checkpoint_views, explorer_steps, AttentionViews, CheckpointViews, PROBE,
};
use super::phases::{grokking_phases, PhaseChange, Phases};
use super::run::SkippedCheckpoint;
use crate::config::{RunConfig, SeqTaskSection};
use crate::error::{GrokError, Result};
use crate::models::{ParamSpec, ParamStore, TransformerConfig};
use crate::rundir::RunDir;
use crate::rundir::{atomic_write, MetricsLog};
use crate::tasks::SeqBatch;
use crate::train::{checkpoint_test_metrics, RegimeName, RunSummary};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Mutex;
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
    // the explorer's views: a transformer's attention on the first test sequences
    let explorer = match cfg.transformer() {
        Some(tc) => {
            let data = task.data()?;
            let n = data.test.len().min(PROBE);
            let probe = data.test.select(&(0..n).collect::<Vec<_>>());
            let induction = data.task().scores_induction();
            let signal = data.task().signal_tokens();
            Some(Explorer {
                shown: explorer_steps(&steps),
                cfg: tc,
                probe,
                induction,
                signal,
            })
        }
        None => None,
    };
    let measures = SequenceMeasures {
        specs: cfg.model_spec().param_specs(),
        cfg: &cfg,
        run_dir,
        finite,
        explorer,
        views: Mutex::new(Vec::new()),
    };
    let (rows, analysis) = analyze_checkpoints(run_dir, &steps, skipped, &measures, start)?;
    if let Some(x) = &measures.explorer {
        let mut all = AttentionViews::new(&x.cfg, &x.probe, x.signal.clone());
        all.checkpoints = measures.views.into_inner().expect("no thread panicked");
        all.checkpoints.sort_by_key(|v| v.step);
        let json = serde_json::to_string(&all).expect("views serialise");
        atomic_write(&run_dir.join("attention.json"), json.as_bytes())?;
    }
    Ok((rows, analysis))
}

/// The explorer's inputs: the checkpoints it shows and the probe sequences.
struct Explorer {
    shown: Vec<u64>,
    cfg: TransformerConfig,
    probe: SeqBatch,
    induction: bool,
    signal: Option<std::ops::Range<i64>>,
}

/// A sequence run's test metrics per checkpoint, as the run logs them, and the explorer's
/// attention views of the checkpoints it shows (collected beside the rows).
struct SequenceMeasures<'a> {
    specs: Vec<ParamSpec>,
    cfg: &'a RunConfig,
    run_dir: &'a Path,
    finite: bool,
    explorer: Option<Explorer>,
    views: Mutex<Vec<CheckpointViews>>,
}

impl CheckpointAnalysis for SequenceMeasures<'_> {
    type Row = Map<String, Value>;
    type Summary = SequenceAnalysis;

    fn param_specs(&self) -> Vec<ParamSpec> {
        self.specs.clone()
    }

    fn row(&self, step: u64, store: &ParamStore) -> Result<Map<String, Value>> {
        if let Some(x) = self.explorer.as_ref().filter(|x| x.shown.contains(&step)) {
            let views = checkpoint_views(&x.cfg, store, &x.probe, step, x.induction);
            self.views.lock().expect("no thread panicked").push(views);
        }
        let mut row = Map::new();
        row.insert("step".into(), step.into());
        for (k, v) in checkpoint_test_metrics(self.cfg, store)? {
            row.insert(
                k,
                serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
            );
        }
        Ok(row)
    }

    /// The phases and phase changes of the logged metrics (`metrics.jsonl`).
    fn summary(
        &self,
        rows: &[Map<String, Value>],
        skipped: Vec<SkippedCheckpoint>,
        seconds: f64,
    ) -> Result<SequenceAnalysis> {
        let log = MetricsLog::load(self.run_dir)?;
        let summary = RunSummary::of_rows(&log.rows);
        let s: Vec<u64> = log.rows.iter().map(|r| r.step).collect();
        let tr: Vec<f64> = log.rows.iter().map(|r| r.train_loss).collect();
        let te: Vec<f64> = log.rows.iter().map(|r| r.test_loss).collect();
        Ok(SequenceAnalysis {
            train_99_step: summary.as_ref().and_then(|s| s.train_99_step),
            test_99_step: summary.as_ref().and_then(|s| s.test_99_step),
            phase_changes: super::phases::phase_changes_of_rows(&log.rows),
            phases: self.finite.then(|| grokking_phases(&s, &tr, &te)),
            checkpoints: rows.len(),
            seconds,
            skipped,
        })
    }
}

/// Reads what [`analyze_sequence_run`] wrote.
///
/// # Errors
/// [`GrokError::Io`] when absent (run `groklab analyze` first), [`GrokError::Config`] when
/// malformed.
pub fn load_sequence_analysis(run_dir: &Path) -> Result<SequenceAnalysis> {
    super::run::read_json(run_dir, "analysis.json")
}
