//! Measures of one checkpoint trained anywhere (TransformerLens layout, safetensors).

use super::run::check_key_freqs;
use super::snapshot::{Analyzer, KeyFreqRule, Measures};
use crate::error::{GrokError, Result};
use crate::models::{read_safetensors, Activation, ParamStore, TransformerConfig};
use crate::tasks::{split_indices, ModularDataset, Operation, SplitMode};
use std::path::Path;

/// The task a foreign checkpoint was trained on.
#[derive(Clone, Debug)]
pub struct CheckpointTask {
    /// The operation.
    pub op: Operation,
    /// Modulus; `None`: `d_vocab − 1` of the checkpoint.
    pub p: Option<usize>,
    /// Split as `(mode, seed)`; `None`: every input counts as training, no test split.
    pub split: Option<(SplitMode, u64)>,
    /// Training fraction of the split.
    pub frac: f64,
    /// MLP activation (cannot be read off the weights).
    pub act_fn: Activation,
    /// Attention rate α of the checkpoint's model (Zhong et al. 2023; cannot be read off the
    /// weights): 1 for standard attention.
    pub attn_rate: f64,
}

/// Parses `--split MODE:SEED` (`python:0`, `native:3`).
///
/// # Errors
/// [`GrokError::InvalidValue`] naming `--split`.
pub fn parse_split(text: &str) -> Result<(SplitMode, u64)> {
    let bad = || {
        GrokError::invalid(
            "--split",
            text,
            "python:SEED or native:SEED (SEED an integer)",
        )
    };
    let (mode, seed) = text.split_once(':').ok_or_else(bad)?;
    let mode = match mode {
        "python" => SplitMode::Python,
        "native" => SplitMode::Native,
        _ => return Err(bad()),
    };
    Ok((mode, seed.parse().map_err(|_| bad())?))
}

/// Loads `path`, infers the model shape, and measures it (key frequencies by `rule`).
///
/// # Errors
/// Unreadable or non-TransformerLens checkpoint, one with NaN or infinite weights, or one that
/// is not a binary-operation model (n_ctx 3, `[a, b, =]`, or 2, `[a, b]`)
/// ([`GrokError::Checkpoint`]); a `p` its vocabulary does not fit (`--p`); an attention rate
/// outside [0, 1] (`--attn-rate`); invalid split fraction or key frequencies.
pub fn analyze_checkpoint(
    path: &Path,
    task: &CheckpointTask,
    rule: &KeyFreqRule,
) -> Result<Measures> {
    let bytes = std::fs::read(path).map_err(|e| GrokError::Checkpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let tensors = read_safetensors(path, &bytes)?;
    let cfg =
        TransformerConfig::infer(&tensors, task.act_fn).map_err(|e| GrokError::Checkpoint {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let bad = |reason: String| GrokError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(name) = crate::models::first_non_finite_tensor(&tensors) {
        return Err(bad(format!(
            "tensor `{name}` holds NaN or infinity; nothing to measure"
        )));
    }
    // a binary-operation model: [a, b, =] in over p + 1 tokens (0..p and `=`), or [a, b] over
    // p tokens (Zhong et al.'s inputs); p or p + 1 classes out
    let p_model = match cfg.n_ctx {
        3 => cfg.d_vocab.saturating_sub(1),
        2 => cfg.d_vocab,
        n => {
            return Err(bad(format!(
                "W_pos has n_ctx {n}, but a binary-operation model reads 3 positions ([a, b, =]) or 2 ([a, b]); for a sequence-task checkpoint analyze its run directory"
            )))
        }
    };
    let p = task.p.unwrap_or(p_model);
    if p != p_model || !(cfg.d_vocab_out == p || cfg.d_vocab_out == p + 1) {
        return Err(GrokError::invalid(
            "--p",
            p,
            format!(
                "{p_model}: the checkpoint's W_E has d_vocab {} and n_ctx {} and W_U d_vocab_out {}",
                cfg.d_vocab, cfg.n_ctx, cfg.d_vocab_out
            ),
        ));
    }
    let cfg = TransformerConfig {
        attn_rate: task.attn_rate,
        ..cfg
    };
    if !(0.0..=1.0).contains(&task.attn_rate) {
        return Err(GrokError::invalid(
            "--attn-rate",
            task.attn_rate,
            "a number in [0, 1]",
        ));
    }
    let mut data = ModularDataset::new(task.op, p as u64, task.split.map_or(0, |s| s.1))?;
    if cfg.n_ctx == 2 {
        data = data.without_equals();
    }
    let split = match task.split {
        Some((mode, seed)) => Some(split_indices(&data, task.frac, mode, seed, false)?),
        None => None,
    };
    let store = ParamStore::from_tensors(path, &tensors, &cfg)?;
    let analyzer = Analyzer::new(&cfg, &data, split.as_ref())?;
    let key_freqs = analyzer.key_freqs(&store, rule);
    check_key_freqs(&key_freqs, p)?;
    Ok(analyzer.measure(&store, 0, &key_freqs))
}
