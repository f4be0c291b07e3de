//! `groklab llc RUN_DIR`: the local learning coefficient ([`super::llc`]) at a run's
//! checkpoints, on its training split, written to `llc.jsonl` (with each chain's loss trace)
//! and `llc.csv` (the estimates).

use super::llc::{estimate_llc, LlcEstimate, LlcOptions};
use super::run::{finite_checkpoints, load_run, write_rows};
use crate::error::Result;
use crate::models::{Model, ParamStore};
use crate::rundir::model_path;
use crate::tasks::Batch;
use crate::train::Step;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One checkpoint's row of `llc.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlcRow {
    /// Training step of the checkpoint.
    pub step: u64,
    /// The estimate, its spread over chains and the chains' traces.
    #[serde(flatten)]
    pub estimate: LlcEstimate,
}

/// The LLC of every `every`-th checkpoint of `run_dir` (the last always), or of the checkpoints
/// `only` names, chains in parallel,
/// checkpoints in order; the loss is the run's training loss (`[train]`'s precisions and loss
/// function) on its training split, through the model's own training step (the fused passes
/// where they apply). Writes `llc.jsonl` and `llc.csv`; prints each chain's warnings.
///
/// # Errors
/// A run that is not a binary-operation task, no finite checkpoints, a step in `only` without a
/// checkpoint (`--steps`, naming the steps there are), unreadable files, invalid options
/// ([`LlcOptions::validate`]).
pub fn llc_run(
    run_dir: &Path,
    opts: &LlcOptions,
    every: usize,
    only: Option<&[u64]>,
) -> Result<Vec<LlcRow>> {
    opts.validate()?;
    let (cfg, data) = load_run(run_dir)?;
    let model = cfg.model_spec();
    let (tokens, labels) = data.dataset.gather(&data.split.train);
    let (steps, _) = finite_checkpoints(run_dir)?;
    let last = *steps.last().expect("finite_checkpoints returns some");
    if let Some(missing) = only.and_then(|o| o.iter().find(|s| !steps.contains(s))) {
        let have: Vec<String> = steps.iter().map(u64::to_string).collect();
        return Err(crate::error::GrokError::invalid(
            "--steps",
            missing,
            crate::error::clip(&format!("checkpointed steps: {}", have.join(", "))),
        ));
    }
    let mut rows = Vec::new();
    for (i, &step) in steps.iter().enumerate() {
        let chosen = match only {
            Some(o) => o.contains(&step),
            None => i % every.max(1) == 0 || step == last,
        };
        if !chosen {
            continue;
        }
        let store =
            ParamStore::from_safetensors_specs(&model_path(run_dir, step), model.param_specs())?;
        let estimate = llc_at(&*model, &cfg.train, &store, &tokens, &labels, opts)?;
        for w in &estimate.warnings {
            eprintln!("warning: step {step}: {w}");
        }
        rows.push(LlcRow { step, estimate });
    }
    write_rows(
        run_dir,
        "llc",
        &rows,
        &["llc_per_chain.", "loss_trace.", "warnings."],
    )?;
    Ok(rows)
}

/// The LLC of `model` at the weights `store` on the examples `tokens` `[n, n_ctx]` / `labels`
/// `[n]` (rows `[a, b, =]` or `[a, b]`), with the loss of `train`'s settings.
///
/// # Errors
/// A model that cannot read rows of tokens.
pub fn llc_at(
    model: &dyn Model,
    train: &crate::config::TrainSection,
    store: &ParamStore,
    tokens: &[i64],
    labels: &[i64],
    opts: &LlcOptions,
) -> Result<LlcEstimate> {
    let device = burn::tensor::Device::flex().autodiff();
    let step_of = |params: &ParamStore, rows: &[usize], backward: bool| {
        let mut exec = Step::for_run(model, params, &device, train);
        exec.threads = 1;
        let (t, l): (Vec<i64>, Vec<i64>) = if rows.len() == labels.len() {
            (tokens.to_vec(), labels.to_vec())
        } else {
            let n_ctx = tokens.len() / labels.len(); // [a, b, =] or [a, b]
            let t = (rows.iter()).flat_map(|&r| tokens[n_ctx * r..n_ctx * r + n_ctx].to_vec());
            (t.collect(), rows.iter().map(|&r| labels[r]).collect())
        };
        let batch = Batch::Rows {
            tokens: &t,
            labels: &l,
        };
        model.step(&exec, &batch, backward)
    };
    let all: Vec<usize> = (0..labels.len()).collect();
    let init_loss = step_of(store, &all, false)?.loss;
    let w_star = flatten(store);
    // the closure cannot return an error: a batch the model cannot read fails above first
    let loss_grad = |w: &[f64], rows: &[usize]| {
        let params = unflatten(store, w);
        let r = step_of(&params, rows, true).expect("the model read these rows above");
        let grad = (r.grads.iter().zip(&store.entries))
            .filter(|(_, e)| e.trainable)
            .flat_map(|(g, e)| g.clone().unwrap_or_else(|| vec![0.0; e.data.len()]))
            .collect();
        (r.loss, grad)
    };
    Ok(estimate_llc(
        &w_star,
        labels.len(),
        init_loss,
        opts,
        &loss_grad,
    ))
}

/// The trainable weights of `store`, concatenated in store order.
fn flatten(store: &ParamStore) -> Vec<f64> {
    (store.entries.iter())
        .filter(|e| e.trainable)
        .flat_map(|e| e.data.iter().copied())
        .collect()
}

/// `store` with its trainable tensors replaced by consecutive slices of `w`.
fn unflatten(store: &ParamStore, w: &[f64]) -> ParamStore {
    let mut out = store.clone();
    let mut at = 0;
    for e in out.entries.iter_mut().filter(|e| e.trainable) {
        let n = e.data.len();
        e.data.copy_from_slice(&w[at..at + n]);
        at += n;
    }
    out
}
