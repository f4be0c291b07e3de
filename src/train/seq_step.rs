//! One forward + backward pass of the sequence transformer on a [`SeqBatch`]: mean cross-entropy
//! over the (sequence, position) pairs whose target is not [`IGNORE`] (nanoGPT's ignore index).

use super::config::Precision;
use super::loss::{accuracy, cross_entropy};
use super::step::StepResult;
use crate::models::{ParamStore, Scored, Transformer, TransformerConfig};
use crate::tasks::{SeqBatch, IGNORE};
use burn::tensor::{Device, Int, Tensor, TensorData};

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
fn scored_logits(
    model: &Transformer,
    batch: &SeqBatch,
    device: &Device,
) -> (Tensor<2>, Tensor<1, Int>) {
    let (scored, targets) = scoring(batch);
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new(batch.tokens.clone(), [batch.len(), batch.n_ctx]),
        device,
    );
    let logits = model.forward_seq(tokens, &scored).logits;
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
    cfg: &TransformerConfig,
    params: &ParamStore,
    device: &Device,
    batch: &SeqBatch,
    compute: Precision,
    loss_dtype: Precision,
) -> StepResult {
    let model = Transformer::new(cfg, params, device, compute.dtype(), true);
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
    cfg: &TransformerConfig,
    params: &ParamStore,
    device: &Device,
    batch: &SeqBatch,
    compute: Precision,
    loss_dtype: Precision,
) -> (f64, f64) {
    if batch.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let model = Transformer::new(cfg, params, device, compute.dtype(), false);
    let (logits, labels) = scored_logits(&model, batch, device);
    let acc = accuracy(logits.clone(), labels.clone());
    (
        cross_entropy(logits, labels, loss_dtype).into_scalar::<f64>(),
        acc,
    )
}
