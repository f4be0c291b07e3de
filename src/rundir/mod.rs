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

pub mod lock;
pub mod metrics;
mod rows;

pub use lock::{RunLock, LOCK_FILE};
pub use metrics::{MetricsLog, MetricsRow};
pub use rows::write_row_files;

use crate::config::RunConfig;
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

/// A run directory: where its files are, and its config read in one place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// The run directory at `path` (nothing is read yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `config.toml`'s text.
    ///
    /// # Errors
    /// [`GrokError::Io`] naming the file.
    pub fn config_text(&self) -> Result<String> {
        let path = self.path.join("config.toml");
        std::fs::read_to_string(&path).map_err(|e| GrokError::io(&path, e))
    }

    /// The run's resolved config, parsed and validated.
    ///
    /// # Errors
    /// [`GrokError::Io`] when `config.toml` cannot be read, [`GrokError::Config`] when it is not
    /// a valid config.
    pub fn config(&self) -> Result<RunConfig> {
        RunConfig::from_toml(&self.config_text()?)
    }

    /// Writes `config` to `config.toml`, atomically.
    ///
    /// # Errors
    /// [`GrokError::Io`] naming the file.
    pub fn write_config(&self, config: &RunConfig) -> Result<()> {
        atomic_write(&self.path.join("config.toml"), config.to_toml().as_bytes())
    }

    /// The config when it reads and validates, else `None` (for choosing how to treat a run;
    /// the analysis that follows reports the error).
    pub fn try_config(&self) -> Option<RunConfig> {
        self.config().ok()
    }

    /// Steps of every model checkpoint, ascending ([`list_steps`]).
    pub fn steps(&self) -> Vec<u64> {
        list_steps(&self.path)
    }

    /// Path of the model checkpoint at `step` ([`model_path`]).
    pub fn model_path(&self, step: u64) -> PathBuf {
        model_path(&self.path, step)
    }
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

/// The names a run directory may hold: what `train`, `analyze`, `report`, `saliency` and
/// `sweep run` write there. Anything else is someone else's, and is never deleted.
pub const RUN_FILES: [&str; 17] = [
    "config.toml",
    "split.json",
    "metrics.jsonl",
    "metrics.csv",
    "checkpoints",
    "plots",
    "measures.jsonl",
    "measures.csv",
    "analysis.json",
    "final_neurons.json",
    "attention.json",
    "saliency.jsonl",
    "saliency.csv",
    "report.html",
    "sweep.json",
    "DONE",
    LOCK_FILE,
];

/// Whether a directory entry named `name` is one groklab writes in a run directory (one of
/// [`RUN_FILES`], a temporary file of [`atomic_write`] left by a killed process, or a lock or a
/// lock being taken, `.lock.<pid>`).
pub fn is_run_file(name: &str) -> bool {
    RUN_FILES.contains(&name) || name.ends_with(".tmp") || name.starts_with(LOCK_FILE)
}

/// Makes `dir` an empty run directory: creates it, or, when it holds files, deletes them with
/// `force` — only when each is a run file ([`is_run_file`]) and `checkpoints/` is not a
/// symbolic link, so that nothing outside the run is ever removed. Lock files are kept.
///
/// # Errors
/// [`GrokError::OutputExists`] for a non-empty directory without `force`;
/// [`GrokError::Checkpoint`] naming a foreign entry with `force`; [`GrokError::Io`].
pub fn prepare_dir(dir: &Path, force: bool) -> Result<()> {
    let entries: Vec<std::fs::DirEntry> = match std::fs::read_dir(dir) {
        Ok(d) => d
            .collect::<std::io::Result<_>>()
            .map_err(|e| GrokError::io(dir, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(GrokError::io(dir, e)),
    };
    // the lock, and another process's lock being taken, stay
    let entries: Vec<_> = (entries.into_iter())
        .filter(|e| !e.file_name().to_string_lossy().starts_with(LOCK_FILE))
        .collect();
    if !entries.is_empty() {
        if !force {
            return Err(GrokError::OutputExists(dir.to_path_buf()));
        }
        for e in &entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let link = e.file_type().is_ok_and(|t| t.is_symlink());
            if !is_run_file(&name) || link {
                return Err(GrokError::Checkpoint {
                    path: e.path(),
                    reason: format!(
                        "not a file groklab writes in a run directory{}; refusing to clear {} (move it away, or choose another --out)",
                        if link { " (a symbolic link)" } else { "" },
                        dir.display()
                    ),
                });
            }
        }
        for e in &entries {
            let path = e.path();
            let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            r.map_err(|err| GrokError::io(&path, err))?;
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| GrokError::io(dir, e))
}

/// The latest checkpoint step a run can resume from: its weights and optimiser state both
/// present (the optimiser file is written first, so a kill between the two leaves no model file
/// without its state).
pub fn resumable_step(run_dir: &Path) -> Option<u64> {
    (list_steps(run_dir).into_iter().rev()).find(|&s| optim_path(run_dir, s).exists())
}

/// Checks that `checkpoints/` is a real directory (or absent), not a symbolic link: resuming
/// deletes old optimiser files in it, which must never reach outside the run.
///
/// # Errors
/// [`GrokError::Checkpoint`] naming the link.
pub fn check_checkpoint_dir(run_dir: &Path) -> Result<()> {
    let dir = checkpoint_dir(run_dir);
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.file_type().is_symlink() => Err(GrokError::Checkpoint {
            path: dir,
            reason: "is a symbolic link; groklab writes and deletes checkpoint files only in a real directory of the run (copy the files in instead)".into(),
        }),
        _ => Ok(()),
    }
}

/// Removes the temporary files (`*.tmp`) a killed writer left in the run directory and its
/// `checkpoints/`.
pub fn remove_stale_temporaries(run_dir: &Path) {
    for d in [run_dir.to_path_buf(), checkpoint_dir(run_dir)] {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
