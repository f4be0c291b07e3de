//! One forward + backward pass of the sequence transformer on a [`SeqBatch`]: mean cross-entropy
//! over the (sequence, position) pairs whose target is not [`IGNORE`] (nanoGPT's ignore index).

use super::config::Precision;
use super::loss::{accuracy, cross_entropy};
use super::step::{Step, StepResult};
use crate::models::{ModelSpec, Net, ParamStore, Scored};
use crate::tasks::{SeqBatch, IGNORE};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rayon::prelude::*;

/// The forward's scored positions for `batch` and, per logits row of that forward, the target:
/// the common positions when every sequence scores the same ones (only those are computed),
/// else every position, with [`IGNORE`] rows dropped before the loss.
fn scoring(batch: &SeqBatch) -> (Scored, Vec<i64>) {
    match batch.common_positions() {
        Some(p) => {
            let targets = (0..batch.len())
                .flat_map(|i| p.iter().map(move |&t| batch.targets_of(i)[t]))
                .collect();
            (Scored::Positions(p), targets)
        }
        None => (Scored::All, batch.targets.clone()),
    }
}

/// Logits `[N, d_vocab_out]` and targets `[N]` of the N scored pairs of `batch`.
fn scored_logits(model: &Net, batch: &SeqBatch, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let (scored, targets) = scoring(batch);
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new(batch.tokens.clone(), [batch.len(), batch.n_ctx]),
        device,
    );
    let logits = model.logits_scored(tokens, &scored);
    let keep: Vec<i64> = (0..targets.len() as i64)
        .filter(|&r| targets[r as usize] != IGNORE)
        .collect();
    let labels: Vec<i64> = keep.iter().map(|&r| targets[r as usize]).collect();
    let n = keep.len();
    let logits = if n == targets.len() {
        logits
    } else {
        logits.select(
            0,
            Tensor::<1, Int>::from_data(TensorData::new(keep, [n]), device),
        )
    };
    (
        logits,
        Tensor::from_data(TensorData::new(labels, [n]), device),
    )
}

/// Loss (nats, mean over scored pairs), accuracy and gradients (flat per store entry, `None` for
/// frozen ones) of `params` on `batch`. `device` must have autodiff; the forward runs in
/// `compute`, the log-softmax in `loss_dtype`.
pub fn seq_train(
    model: &ModelSpec,
    params: &ParamStore,
    device: &Device,
    batch: &SeqBatch,
    compute: Precision,
    loss_dtype: Precision,
) -> StepResult {
    let model = model.bind(params, device, compute.dtype(), true);
    let (logits, labels) = scored_logits(&model, batch, device);
    let acc = accuracy(logits.clone(), labels.clone());
    let loss = cross_entropy(logits, labels, loss_dtype);
    let grads = model.gradients(&loss.backward());
    StepResult {
        loss: loss.into_scalar::<f64>(),
        acc,
        grads,
    }
}

/// Loss and accuracy of `params` on `batch` without gradients (NaN for an empty batch).
pub fn seq_evaluate(
    model: &ModelSpec,
    params: &ParamStore,
    device: &Device,
    batch: &SeqBatch,
    compute: Precision,
    loss_dtype: Precision,
) -> (f64, f64) {
    if batch.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let model = model.bind(params, device, compute.dtype(), false);
    let (logits, labels) = scored_logits(&model, batch, device);
    let acc = accuracy(logits.clone(), labels.clone());
    (
        cross_entropy(logits, labels, loss_dtype).into_scalar::<f64>(),
        acc,
    )
}

/// Per scored position of `batch` (the same positions in every sequence, else empty): mean loss
/// (nats) and accuracy at that position, `(position, loss, accuracy)` ascending. For digit
/// addition these are the per-answer-digit curves that show one phase change per digit.
pub fn seq_evaluate_positions(
    model: &ModelSpec,
    params: &ParamStore,
    device: &Device,
    batch: &SeqBatch,
    compute: Precision,
    loss_dtype: Precision,
) -> Vec<(usize, f64, f64)> {
    let Some(positions) = batch.common_positions() else {
        return Vec::new();
    };
    if batch.is_empty() {
        return Vec::new();
    }
    let model = model.bind(params, device, compute.dtype(), false);
    let (logits, labels) = scored_logits(&model, batch, device);
    let n = labels.dims()[0];
    let logits = logits.cast(loss_dtype.dtype());
    let picked = burn::tensor::activation::log_softmax(logits.clone(), 1)
        .gather(1, labels.clone().reshape([n, 1]))
        .reshape([n]);
    let losses: Vec<f64> = picked.into_data().try_into_vec_as::<f64>().expect("float");
    let hits: Vec<i64> = (logits.argmax(1).reshape([n]).equal(labels).int())
        .into_data()
        .try_into_vec_as::<i64>()
        .expect("int");
    let k = positions.len();
    (positions.iter().enumerate())
        .map(|(i, &pos)| {
            let rows = (i..n).step_by(k);
            let count = rows.len() as f64;
            let loss = -rows.clone().map(|r| losses[r]).sum::<f64>() / count;
            let acc = rows.map(|r| hits[r] as f64).sum::<f64>() / count;
            (pos, loss, acc)
        })
        .collect()
}

impl Step<'_> {
    /// [`seq_train`] on `batch`, its sequences cut into up to `threads` contiguous chunks run in
    /// parallel, each chunk its own graph; the chunks' losses, accuracies and gradients are
    /// combined weighted by their scored pairs, as the mean over all pairs decomposes.
    pub fn train_seq(&self, batch: &SeqBatch) -> StepResult {
        let (model, params, device) = (self.model, self.params, self.device);
        let results = (self.chunks(batch).par_iter())
            .map(|(n, part)| {
                (
                    *n,
                    seq_train(model, params, device, part, self.compute, self.loss_dtype),
                )
            })
            .collect();
        StepResult::combine(self.params, results)
    }

    /// [`seq_evaluate`] on `batch` in parallel chunks (NaN for an empty batch).
    pub fn evaluate_seq(&self, batch: &SeqBatch) -> (f64, f64) {
        if batch.is_empty() {
            return (f64::NAN, f64::NAN);
        }
        let (model, params, device) = (self.model, self.params, self.device);
        let results: Vec<(usize, (f64, f64))> = (self.chunks(batch).par_iter())
            .map(|(n, part)| {
                let r = seq_evaluate(model, params, device, part, self.compute, self.loss_dtype);
                (*n, r)
            })
            .collect();
        let total: usize = results.iter().map(|(n, _)| n).sum();
        results.iter().fold((0.0, 0.0), |(l, a), (n, (rl, ra))| {
            let w = *n as f64 / total as f64;
            (l + w * rl, a + w * ra)
        })
    }

    /// `batch` cut into up to `threads` contiguous chunks (at most [`EVAL_CHUNK`] sequences
    /// each, bounding the attention patterns' memory), with each chunk's scored-pair count.
    fn chunks(&self, batch: &SeqBatch) -> Vec<(usize, SeqBatch)> {
        let n = batch.len();
        let k = self.threads.max(n.div_ceil(EVAL_CHUNK)).min(n).max(1);
        (0..k)
            .map(|i| {
                let rows: Vec<usize> = (i * n / k..(i + 1) * n / k).collect();
                let part = batch.select(&rows);
                let scored = part.targets.iter().filter(|&&t| t != IGNORE).count();
                (scored, part)
            })
            .filter(|(scored, _)| *scored > 0)
            .collect()
    }
}

/// Most sequences one chunk of a sequence step holds.
const EVAL_CHUNK: usize = 512;
