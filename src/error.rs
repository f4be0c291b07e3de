//! The errors groklab reports. Each one renders as a single line that names the offending field
//! and, where there is a fixed set, the allowed values.

use std::path::PathBuf;

/// Every failure a groklab command can report.
#[derive(Debug, thiserror::Error)]
pub enum GrokError {
    /// A configuration field holds a value outside its allowed set or range.
    #[error("invalid value for `{field}`: {value} (allowed: {allowed})")]
    InvalidValue {
        /// Dotted config key, e.g. `task.frac_train`.
        field: String,
        /// The value that was given.
        value: String,
        /// The allowed values or range.
        allowed: String,
    },
    /// The config could not be parsed (unknown key, wrong type, bad TOML).
    #[error("invalid config: {0}")]
    Config(String),
    /// The output directory exists and is not empty.
    #[error("output directory {0} is not empty: pass --resume {0} to continue it or --force to overwrite it")]
    OutputExists(PathBuf),
    /// A checkpoint or run directory is missing or unreadable.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file or directory concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Training produced a non-finite loss.
    #[error(
        "train loss is {value} at step {step}; stopped, last good checkpoint (finite weights): {last_checkpoint}"
    )]
    NonFiniteLoss {
        /// The step at which the loss was computed.
        step: u64,
        /// The loss value (NaN or ±inf).
        value: f64,
        /// Path of the last checkpoint written, or `none`.
        last_checkpoint: String,
    },
    /// A run directory is held by another live groklab process ([`crate::rundir::RunLock`]).
    #[error("run directory {dir} is in use by `groklab {holder}` (pid {pid}{elsewhere}): wait for it to finish or stop it")]
    Locked {
        /// The run directory.
        dir: PathBuf,
        /// The holder's process id.
        pid: i32,
        /// The holder's command (`train`, `analyze`, `sweep`).
        holder: String,
        /// Empty for this host; else `, host H; if that process is gone, delete PATH`.
        elsewhere: String,
    },
    /// A data file groklab wrote (metrics, measures, a manifest, a sweep's `sweep.json`) does not
    /// parse.
    #[error("{path}: {reason}")]
    DataFile {
        /// The file, with `line N` appended where a line is meant.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The resolved config needs more memory than allowed (see [`crate::train::resources`]).
    #[error("this run needs about {need} of memory ({detail}), above the limit of {limit}: lower the sizes, or raise the limit with --mem-limit GIB")]
    TooLarge {
        /// The estimate, human-readable.
        need: String,
        /// Its largest parts.
        detail: String,
        /// The limit, human-readable.
        limit: String,
    },
    /// An I/O failure, with the path concerned.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl GrokError {
    /// Shorthand for [`GrokError::InvalidValue`].
    pub fn invalid(field: &str, value: impl ToString, allowed: impl ToString) -> Self {
        Self::InvalidValue {
            field: field.to_string(),
            value: value.to_string(),
            allowed: allowed.to_string(),
        }
    }

    /// Shorthand for [`GrokError::DataFile`].
    pub fn data_file(path: impl std::fmt::Display, reason: impl ToString) -> Self {
        Self::DataFile {
            path: path.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// `text` cut to at most 200 characters (with `…`), for echoing user input in a one-line error.
pub fn clip(text: &str) -> String {
    clip_to(text, 200)
}

/// `text` cut to at most `max` characters (with `…`), its control characters (a newline in a
/// quoted TOML key) escaped so that the error stays on one line.
pub fn clip_to(text: &str, max: usize) -> String {
    let cut = match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    };
    if !cut.chars().any(char::is_control) {
        return cut;
    }
    cut.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Result alias used throughout groklab.
pub type Result<T> = std::result::Result<T, GrokError>;
