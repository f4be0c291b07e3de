//! The run directory, the one layout that `train` writes and `measures` and `report` read:
//!
//! ```text
//! config.toml                      the resolved config
//! split.json                       train/test row ids (binary operations)
//! metrics.jsonl, metrics.csv       one row per log step (metrics::MetricsLog)
//! checkpoints/step_XXXXXX.safetensors        model weights (TransformerLens state dict)
//! checkpoints/step_XXXXXX.optim.safetensors  optimiser state, latest checkpoint only
//! measures.jsonl, measures.csv, analysis.json, final_neurons.json, plots/, report.html
//! ```
//!
//! Every file is written atomically ([`atomic_write`]: a temporary file and a rename).

pub mod metrics;

pub use metrics::{MetricsLog, MetricsRow};

use crate::error::{GrokError, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` via a temporary file in the same directory and a rename, so a reader
/// (or a killed run) sees either the old file or the whole new one.
///
/// # Errors
/// [`GrokError::Io`] naming the path.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let io = |e| GrokError::io(path, e);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The checkpoint directory of a run.
pub fn checkpoint_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// Path of the model checkpoint at `step`.
pub fn model_path(run_dir: &Path, step: u64) -> PathBuf {
    checkpoint_dir(run_dir).join(format!("step_{step:06}.safetensors"))
}

/// Path of the optimiser state saved with the checkpoint at `step`.
pub fn optim_path(run_dir: &Path, step: u64) -> PathBuf {
    checkpoint_dir(run_dir).join(format!("step_{step:06}.optim.safetensors"))
}

/// Steps of every model checkpoint in the run, ascending.
pub fn list_steps(run_dir: &Path) -> Vec<u64> {
    let mut steps: Vec<u64> = std::fs::read_dir(checkpoint_dir(run_dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("step_")?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()
        })
        .collect();
    steps.sort_unstable();
    steps
}

/// Makes `dir` an empty run directory: creates it, or, when it holds files, deletes them with
/// `force`.
///
/// # Errors
/// [`GrokError::OutputExists`] for a non-empty directory without `force`; [`GrokError::Io`].
pub fn prepare_dir(dir: &Path, force: bool) -> Result<()> {
    let non_empty = std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if non_empty {
        if !force {
            return Err(GrokError::OutputExists(dir.to_path_buf()));
        }
        std::fs::remove_dir_all(dir).map_err(|e| GrokError::io(dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| GrokError::io(dir, e))
}
