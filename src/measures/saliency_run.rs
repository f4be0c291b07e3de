//! `groklab saliency RUN_DIR`: the general-circuits test over a run's checkpoints — neuron
//! and head saliency and ablations ([`super::saliency`], [`super::head_saliency`]) and the gradient's key-frequency split
//! ([`super::grad_split`]) — written to `saliency.jsonl`.

use super::activations::run_all_inputs;
use super::grad_split::{adam_direction, split_gradient, GradShares, KeySubspace};
use super::head_saliency::{head_saliency, HeadSaliency};
use super::neurons::neuron_freqs;
use super::run::{analyze_run, load_measures, load_run, write_rows, RunAnalysis};
use super::saliency::{check_saliency_model, neuron_saliency, NeuronSaliency, SaliencyOptions};
use super::snapshot::{Analyzer, KeyFreqRule, DEFAULT_EMBED_THRESHOLD};
use crate::error::{GrokError, Result};
use crate::models::ParamStore;
use crate::rundir::{model_path, optim_path};
use crate::train::Step;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Training examples whose own gradients are split at every checkpoint.
pub const EXAMPLE_SAMPLE: usize = 32;

/// One checkpoint's row of `saliency.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaliencyRow {
    /// Saliency and ablations.
    #[serde(flatten)]
    pub saliency: NeuronSaliency,
    /// Per-head saliency and head ablations.
    pub heads: HeadSaliency,
    /// The full-batch training gradient's split.
    pub grad: GradShares,
    /// The same split of the weights themselves (for `W_L`, of `W_out W_U`).
    pub weights: GradShares,
    /// The same split of Adam's last update direction `m̂ / (√v̂ + ε)`, where the run kept this
    /// checkpoint's optimiser state (`train.keep_optim_state`; the latest checkpoint always has
    /// it); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adam_update: Option<GradShares>,
    /// `[EXAMPLE_SAMPLE]` each sampled example's gradient share in the key subspace (W_E, W_U,
    /// W_in and W_out together).
    pub example_key_share: Vec<f64>,
    /// The full-batch gradient's share over the same four weights.
    pub key_share: f64,
}

/// Warns when more than half of the `(p − 1) / 2` frequencies are key: a flat spectrum (a
/// memorising model, a random table) makes every key-subspace share near 1, so the shares say
/// nothing until the subspace is fixed by hand (`analyze --key-freqs`).
fn warn_flat_spectrum(n_key: usize, p: usize) {
    let n_freqs = (p - 1) / 2;
    if 2 * n_key > n_freqs {
        eprintln!(
            "warning: {n_key} of {n_freqs} frequencies are key (a flat spectrum), so every key \
             share is near 1; fix the subspace first with `groklab analyze RUN --key-freqs K,...`"
        );
    }
}

/// Measures every `every`-th checkpoint of `run_dir` (the last always), one checkpoint per rayon
/// thread; the key frequencies and phases come from the run's analysis (computed first if it has
/// none). Writes `saliency.jsonl` and `saliency.csv`.
///
/// # Errors
/// A run that is not a 1-block LayerNorm-free transformer with an MLP on a binary operation
/// (named field), no checkpoints, unreadable files.
pub fn saliency_run(
    run_dir: &Path,
    opts: &SaliencyOptions,
    every: usize,
) -> Result<(Vec<SaliencyRow>, RunAnalysis)> {
    opts.validate()?;
    let (cfg, data) = load_run(run_dir)?;
    let model = cfg.transformer().ok_or_else(|| {
        GrokError::invalid(
            "model.arch",
            "mlp",
            "transformer (saliency supports it only so far)",
        )
    })?;
    let analyzer = Analyzer::new(&model, &data.dataset, Some(&data.split))?;
    check_saliency_model(&analyzer)?;
    let analysis = if run_dir.join("analysis.json").exists() {
        load_measures(run_dir)?.1
    } else {
        let rule = KeyFreqRule::Consensus(DEFAULT_EMBED_THRESHOLD);
        analyze_run(run_dir, &rule)?.1
    };
    warn_flat_spectrum(analysis.key_freqs.len(), analyzer.p);
    let (steps, _) = super::run::finite_checkpoints(run_dir)?;
    let last = *steps.last().expect("finite_checkpoints returns some");
    let chosen: Vec<u64> = (steps.iter().enumerate())
        .filter(|(i, &s)| i % every.max(1) == 0 || s == last)
        .map(|(_, &s)| s)
        .collect();
    let load = |step| ParamStore::from_safetensors(&model_path(run_dir, step), &model);
    let final_post = run_all_inputs(&model, &load(last)?, analyzer.p).mlp_post;
    let neurons = neuron_freqs(
        analyzer.p,
        &final_post.expect("checked: the model has an MLP"),
    );
    let subspace = KeySubspace::new(&analyzer.basis, &analysis.key_freqs, &neurons);
    let (tokens, labels) = data.dataset.gather(&data.split.train);
    let mut sample: Vec<usize> = (0..labels.len()).collect();
    sample.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed));
    sample.truncate(EXAMPLE_SAMPLE);
    let spec = model.clone();
    let rows = chosen
        .par_iter()
        .map(|&step| {
            let store = load(step)?;
            let saliency = neuron_saliency(&analyzer, &store, step, opts);
            let heads = head_saliency(&analyzer, &store, opts);
            let device = burn::tensor::Device::flex().autodiff();
            let mut step_fn = Step::for_run(&spec, &store, &device, &cfg.train);
            step_fn.threads = 1;
            let full = step_fn.train_host(&tokens, &labels);
            let (grad, (key, rest)) = split_gradient(&model, &store, &full.grads, &subspace);
            let own: Vec<Option<Vec<f64>>> =
                store.entries.iter().map(|e| Some(e.data.clone())).collect();
            let weights = split_gradient(&model, &store, &own, &subspace).0;
            let adam_update = adam_state(run_dir, step, &store, &cfg.train)?
                .map(|dir| split_gradient(&model, &store, &dir, &subspace).0);
            let example_key_share = (sample.iter())
                .map(|&i| {
                    let t = tokens.len() / labels.len(); // [a, b, =] or [a, b]
                    let r = step_fn.train_host(&tokens[t * i..t * i + t], &labels[i..i + 1]);
                    let (_, (k, rest)) = split_gradient(&model, &store, &r.grads, &subspace);
                    k / (k + rest)
                })
                .collect();
            Ok(SaliencyRow {
                saliency,
                heads,
                grad,
                weights,
                adam_update,
                example_key_share,
                key_share: key / (key + rest),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    write_rows(
        run_dir,
        "saliency",
        &rows,
        &["medians.", "means.", "example_key_share."],
    )?;
    Ok((rows, analysis))
}

/// Adam's last update direction at checkpoint `step` ([`adam_direction`]), when the run is
/// trained by AdamW and the checkpoint's optimiser file exists.
///
/// # Errors
/// An unreadable or corrupt optimiser file.
fn adam_state(
    run_dir: &Path,
    step: u64,
    store: &ParamStore,
    train: &crate::config::TrainSection,
) -> Result<Option<Vec<Option<Vec<f64>>>>> {
    let path = optim_path(run_dir, step);
    if train.optimizer != crate::config::OptimizerKind::Adamw || !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).map_err(|e| GrokError::io(&path, e))?;
    let state = crate::models::read_safetensors(&path, &bytes)?;
    let t = crate::models::read_safetensors_metadata(&path, &bytes)?
        .get("step")
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| GrokError::Checkpoint {
            path: path.clone(),
            reason: "missing `step` metadata".into(),
        })?;
    if t == 0 {
        return Ok(None); // no update taken yet: the moments are zero
    }
    let (b, eps) = (train.betas, train.eps);
    Ok(Some(adam_direction(store, &state, t, b, eps)))
}
