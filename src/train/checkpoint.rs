//! Checkpoints: `checkpoints/step_XXXXXX.safetensors` (TransformerLens names and layouts, every
//! bias included) and, for the latest one only, `step_XXXXXX.optim.safetensors` (the optimiser's
//! state in f64: Adam moments or SGD momentum buffers, Grokfast's EMA or window; step, wall
//! time). Every file is written atomically (temp file + rename).

use super::grad_filter::Grads;
use super::optim::Optimizer;
use crate::config::GrokfastKind;
use crate::error::{GrokError, Result};
use crate::models::{
    encode_safetensors, read_safetensors, read_safetensors_metadata, Model, ParamStore, RawTensor,
};
use crate::rundir::{
    atomic_write, checkpoint_dir, list_steps, model_path, optim_path, resumable_step,
};
use safetensors::Dtype;
use std::collections::HashMap;
use std::path::Path;

/// Saves the model (in `dtype`, with the model's non-parameter `buffers`, e.g.
/// [`Model::buffers`]) and the optimiser state at `step` (with the loop's own state as
/// `extra` metadata, returned in [`Resumed::meta`]). [`prune_optim_states`] then deletes the
/// earlier optimiser files, which resuming does not need. No wall-clock time goes in (it belongs in
/// `metrics.jsonl`), so identical runs write identical bytes.
///
/// # Errors
/// [`GrokError::Checkpoint`] when a weight is not finite (nothing is written: every checkpoint
/// on disk is one a run can go on from); [`GrokError::Io`].
pub fn save(
    run_dir: &Path,
    step: u64,
    params: &ParamStore,
    buffers: &[RawTensor],
    optim: &Optimizer,
    dtype: Dtype,
    extra: &[(String, String)],
) -> Result<()> {
    let dir = checkpoint_dir(run_dir);
    std::fs::create_dir_all(&dir).map_err(|e| GrokError::io(&dir, e))?;
    if let Some(name) = params.first_non_finite() {
        return Err(GrokError::Checkpoint {
            path: model_path(run_dir, step),
            reason: format!("not written: tensor `{name}` holds NaN or infinity"),
        });
    }
    // the optimiser state first: a model file then always has its state beside it
    // (`rundir::resumable_step`), however the process is killed
    let tensors = state_tensors(params, optim);
    let tensors = (tensors.iter()).map(|(name, shape, data)| (name.as_str(), *shape, *data));
    let mut meta = HashMap::from([
        ("step".to_string(), optim.step.to_string()),
        ("grokfast_seen".to_string(), optim.grokfast.seen.to_string()),
    ]);
    meta.extend(extra.iter().cloned());
    let bytes = encode_safetensors(tensors, Dtype::F64, &[], meta);
    atomic_write(&optim_path(run_dir, step), &bytes)?;

    let meta = HashMap::from([
        ("format".to_string(), "TransformerLens".to_string()),
        ("step".to_string(), step.to_string()),
    ]);
    atomic_write(
        &model_path(run_dir, step),
        &params.to_safetensors(dtype, buffers, meta),
    )?;
    Ok(())
}

/// Deletes the optimiser files of the checkpoints before `step` (only the latest is needed to
/// resume; a run with `train.keep_optim_state` keeps them all and does not call this).
pub fn prune_optim_states(run_dir: &Path, step: u64) {
    for old in list_steps(run_dir).into_iter().filter(|&s| s < step) {
        let _ = std::fs::remove_file(optim_path(run_dir, old));
    }
}

/// A checkpoint read back for resuming.
pub struct Resumed {
    /// Step of the checkpoint (updates already taken).
    pub step: u64,
    /// Model weights.
    pub params: ParamStore,
    /// Optimiser state.
    pub optim: Optimizer,
    /// Wall-clock seconds the run had used, where the checkpoint records it (runs written before
    /// checkpoints stopped carrying it); 0 otherwise.
    pub wall_s: f64,
    /// The optimiser file's metadata (the `extra` of [`save`] among it).
    pub meta: HashMap<String, String>,
}

/// Loads the latest checkpoint that has an optimiser state.
///
/// # Errors
/// [`GrokError::Checkpoint`] when there is none, or it is corrupt or does not match `cfg`.
pub fn load_latest(run_dir: &Path, model: &dyn Model, template: &Optimizer) -> Result<Resumed> {
    crate::rundir::check_checkpoint_dir(run_dir)?;
    let step = resumable_step(run_dir).ok_or_else(|| GrokError::Checkpoint {
        path: checkpoint_dir(run_dir),
        reason: "no checkpoint with optimiser state to resume from".into(),
    })?;
    let params =
        ParamStore::from_safetensors_specs(&model_path(run_dir, step), model.param_specs())?;
    if let Some(name) = params.first_non_finite() {
        return Err(GrokError::Checkpoint {
            path: model_path(run_dir, step),
            reason: format!("tensor `{name}` holds NaN or infinity; cannot resume from it"),
        });
    }
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
    optim.grokfast.seen = meta
        .get("grokfast_seen")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let fetch = |name: &str, e: &crate::models::ParamEntry| -> Result<Vec<f64>> {
        let (shape, data) = tensors
            .get(name)
            .ok_or_else(|| bad(format!("missing tensor `{name}`")))?;
        if *shape != e.shape {
            return Err(bad(format!(
                "tensor `{name}` has shape {shape:?}, expected {:?}",
                e.shape
            )));
        }
        Ok(data.clone())
    };
    for (i, e) in params.entries.iter().enumerate() {
        for (prefix, slot) in [
            ("exp_avg", &mut optim.exp_avg[i]),
            ("exp_avg_sq", &mut optim.exp_avg_sq[i]),
        ] {
            if !slot.is_empty() {
                *slot = fetch(&format!("{prefix}.{}", e.name), e)?;
            }
        }
    }
    // Grokfast: the EMA (or the window's sum) and the window, as many as were saved.
    let read_grads = |prefix: &str| -> Result<Grads> {
        (params.entries.iter())
            .map(|e| {
                (e.trainable)
                    .then(|| fetch(&format!("{prefix}.{}", e.name), e))
                    .transpose()
            })
            .collect()
    };
    let g = &mut optim.grokfast;
    if g.seen > 0 && g.kind != GrokfastKind::None {
        g.slow = read_grads("grokfast.slow")?;
        if g.kind == GrokfastKind::Ma {
            let kept = (g.seen as usize).min(g.window);
            g.history = (0..kept)
                .map(|k| read_grads(&format!("grokfast.history.{k}")))
                .collect::<Result<_>>()?;
        }
    }
    Ok(Resumed {
        step,
        params,
        optim,
        wall_s,
        meta,
    })
}

/// The optimiser's state as named f64 tensors, borrowed: `exp_avg.<param>`, `exp_avg_sq.<param>`
/// (where the rule keeps them), `grokfast.slow.<param>` and `grokfast.history.<k>.<param>`.
fn state_tensors<'a>(
    params: &'a ParamStore,
    optim: &'a Optimizer,
) -> Vec<(String, &'a [usize], &'a [f64])> {
    let mut out = Vec::new();
    let mut push = |prefix: &str, state: Vec<&'a [f64]>| {
        for (e, v) in params.entries.iter().zip(state) {
            if e.trainable && !v.is_empty() {
                out.push((format!("{prefix}.{}", e.name), &e.shape[..], v));
            }
        }
    };
    let slices = |s: &'a [Vec<f64>]| s.iter().map(|v| &v[..]).collect();
    let grads = |g: &'a Grads| g.iter().map(|v| v.as_deref().unwrap_or(&[])).collect();
    push("exp_avg", slices(&optim.exp_avg));
    push("exp_avg_sq", slices(&optim.exp_avg_sq));
    push("grokfast.slow", grads(&optim.grokfast.slow));
    for (k, h) in optim.grokfast.history.iter().enumerate() {
        push(&format!("grokfast.history.{k}"), grads(h));
    }
    out
}
