//! The one `analyze` pipeline: a family's [`CheckpointAnalysis`] measures every finite
//! checkpoint of a run (one checkpoint per rayon thread); a row with a non-finite measure is left
//! out with a warning, never written as `null`; the rows go to `measures.jsonl` and
//! `measures.csv`, the run's summary to `analysis.json`, each written atomically.

use super::run::{warn_skipped, write_rows, SkippedCheckpoint};
use crate::error::Result;
use crate::models::{ParamSpec, ParamStore};
use crate::rundir::{atomic_write, model_path};
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// One family's measures of a run's checkpoints, prepared from the run (its data, and what the
/// final checkpoint fixes, such as the key frequencies) before [`analyze_checkpoints`] runs it.
pub trait CheckpointAnalysis: Sync {
    /// One checkpoint's measures (a line of `measures.jsonl`).
    type Row: Serialize + Send;
    /// The run's summary (`analysis.json`).
    type Summary: Serialize;

    /// The parameters a checkpoint holds (names, shapes).
    fn param_specs(&self) -> Vec<ParamSpec>;

    /// The measures of the checkpoint at `step` with weights `params`.
    ///
    /// # Errors
    /// As the family's measures (a checkpoint its analysis cannot read).
    fn row(&self, step: u64, params: &ParamStore) -> Result<Self::Row>;

    /// The name of a measure of `row` that is not finite (the row is then skipped); none by
    /// default.
    fn non_finite(&self, _row: &Self::Row) -> Option<String> {
        None
    }

    /// Column prefixes kept out of `measures.csv` (per-neuron values, matrices).
    fn jsonl_only(&self) -> &'static [&'static str] {
        &[]
    }

    /// The run's summary from its rows (step order), the checkpoints skipped, and the seconds
    /// the analysis took.
    ///
    /// # Errors
    /// As the family's summary (a final checkpoint it rereads).
    fn summary(
        &self,
        rows: &[Self::Row],
        skipped: Vec<SkippedCheckpoint>,
        seconds: f64,
    ) -> Result<Self::Summary>;
}

/// Measures the checkpoints `steps` of `run_dir` with `analysis` (in parallel), then writes
/// `measures.jsonl`, `measures.csv` and `analysis.json`; `skipped` (checkpoints already left
/// out) gains the rows with a non-finite measure; `start` is when the analysis began.
///
/// # Errors
/// An unreadable checkpoint; the family's [`CheckpointAnalysis::row`] or
/// [`CheckpointAnalysis::summary`] errors; I/O errors.
pub fn analyze_checkpoints<A: CheckpointAnalysis>(
    run_dir: &Path,
    steps: &[u64],
    mut skipped: Vec<SkippedCheckpoint>,
    analysis: &A,
    start: Instant,
) -> Result<(Vec<A::Row>, A::Summary)> {
    let specs = analysis.param_specs();
    let measured = (steps.par_iter())
        .map(|&step| {
            let store =
                ParamStore::from_safetensors_specs(&model_path(run_dir, step), specs.clone())?;
            Ok((step, analysis.row(step, &store)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut rows = Vec::with_capacity(measured.len());
    for (step, row) in measured {
        match analysis.non_finite(&row) {
            None => rows.push(row),
            Some(key) => {
                let s = SkippedCheckpoint {
                    step,
                    reason: format!("measure `{key}` is not finite"),
                };
                warn_skipped(std::slice::from_ref(&s));
                skipped.push(s);
            }
        }
    }
    skipped.sort_by_key(|s| s.step);
    let summary = analysis.summary(&rows, skipped, start.elapsed().as_secs_f64())?;
    write_rows(run_dir, "measures", &rows, analysis.jsonl_only())?;
    let json = serde_json::to_string_pretty(&summary).expect("analysis serialises");
    atomic_write(&run_dir.join("analysis.json"), json.as_bytes())?;
    Ok((rows, summary))
}
