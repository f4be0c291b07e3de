//! Checkpoints: `checkpoints/step_XXXXXX.safetensors` (TransformerLens names and layouts, every
//! bias included) and, for the latest one only, `step_XXXXXX.optim.safetensors` (Adam moments in
//! f64, step, wall time). Every file is written atomically (temp file + rename).

use super::optim::AdamW;
use crate::error::{GrokError, Result};
use crate::models::{
    encode_safetensors, read_safetensors, read_safetensors_metadata, ModelSpec, ParamStore,
    RawTensor,
};
use crate::rundir::{atomic_write, checkpoint_dir, list_steps, model_path, optim_path};
use safetensors::Dtype;
use std::collections::HashMap;
use std::path::Path;

/// Saves the model (in `dtype`, with the model's non-parameter `buffers`, e.g.
/// [`ModelSpec::buffers`]) and the optimiser state at `step`, then deletes the
/// previous optimiser file (only the latest is needed to resume).
///
/// # Errors
/// [`GrokError::Io`].
pub fn save(
    run_dir: &Path,
    step: u64,
    params: &ParamStore,
    buffers: &[RawTensor],
    optim: &AdamW,
    dtype: Dtype,
    wall_s: f64,
) -> Result<()> {
    let dir = checkpoint_dir(run_dir);
    std::fs::create_dir_all(&dir).map_err(|e| GrokError::io(&dir, e))?;
    let meta = HashMap::from([
        ("format".to_string(), "TransformerLens".to_string()),
        ("step".to_string(), step.to_string()),
    ]);
    atomic_write(
        &model_path(run_dir, step),
        &params.to_safetensors(dtype, buffers, meta),
    )?;

    let names: Vec<(String, String)> = params
        .entries
        .iter()
        .map(|e| {
            (
                format!("exp_avg.{}", e.name),
                format!("exp_avg_sq.{}", e.name),
            )
        })
        .collect();
    let mut tensors = Vec::new();
    for (i, e) in params.entries.iter().enumerate() {
        if e.trainable {
            tensors.push((names[i].0.as_str(), &e.shape[..], &optim.exp_avg[i][..]));
            tensors.push((names[i].1.as_str(), &e.shape[..], &optim.exp_avg_sq[i][..]));
        }
    }
    let meta = HashMap::from([
        ("step".to_string(), optim.step.to_string()),
        ("wall_s".to_string(), format!("{wall_s:e}")),
    ]);
    let bytes = encode_safetensors(tensors.into_iter(), Dtype::F64, &[], meta);
    atomic_write(&optim_path(run_dir, step), &bytes)?;
    for old in list_steps(run_dir).into_iter().filter(|&s| s < step) {
        let _ = std::fs::remove_file(optim_path(run_dir, old));
    }
    Ok(())
}

/// A checkpoint read back for resuming.
pub struct Resumed {
    /// Step of the checkpoint (updates already taken).
    pub step: u64,
    /// Model weights.
    pub params: ParamStore,
    /// Optimiser state.
    pub optim: AdamW,
    /// Wall-clock seconds the run had used.
    pub wall_s: f64,
}

/// Loads the latest checkpoint that has an optimiser state.
///
/// # Errors
/// [`GrokError::Checkpoint`] when there is none, or it is corrupt or does not match `cfg`.
pub fn load_latest(run_dir: &Path, model: &ModelSpec, template: &AdamW) -> Result<Resumed> {
    let step = list_steps(run_dir)
        .into_iter()
        .rev()
        .find(|&s| optim_path(run_dir, s).exists())
        .ok_or_else(|| GrokError::Checkpoint {
            path: checkpoint_dir(run_dir),
            reason: "no checkpoint with optimiser state to resume from".into(),
        })?;
    let params =
        ParamStore::from_safetensors_specs(&model_path(run_dir, step), model.param_specs())?;
    let path = optim_path(run_dir, step);
    let bytes = std::fs::read(&path).map_err(|e| GrokError::Checkpoint {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let tensors = read_safetensors(&path, &bytes)?;
    let meta = read_safetensors_metadata(&path, &bytes)?;
    let bad = |reason: String| GrokError::Checkpoint {
        path: path.clone(),
        reason,
    };
    let mut optim = template.clone();
    optim.step = meta
        .get("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("missing `step` metadata".into()))?;
    let wall_s = meta
        .get("wall_s")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    for (i, e) in params.entries.iter().enumerate() {
        if !e.trainable {
            continue;
        }
        for (prefix, slot) in [
            ("exp_avg", &mut optim.exp_avg[i]),
            ("exp_avg_sq", &mut optim.exp_avg_sq[i]),
        ] {
            let name = format!("{prefix}.{}", e.name);
            let (shape, data) = tensors
                .get(&name)
                .ok_or_else(|| bad(format!("missing tensor `{name}`")))?;
            if *shape != e.shape {
                return Err(bad(format!(
                    "tensor `{name}` has shape {shape:?}, expected {:?}",
                    e.shape
                )));
            }
            *slot = data.clone();
        }
    }
    Ok(Resumed {
        step,
        params,
        optim,
        wall_s,
    })
}
