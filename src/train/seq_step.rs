//! One forward + backward pass of the sequence transformer on a [`SeqBatch`]: mean cross-entropy
//! over the (sequence, position) pairs whose target is not [`IGNORE`] (nanoGPT's ignore index).

use super::loss::{accuracy, classification_loss, log_probs};
use super::step::{bind, Step, StepResult};
use crate::config::LossFn;
use crate::config::{Engine, Precision};
use crate::models::{fused_seq, Model, Net, ParamStore, Scored};
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
fn scored_logits(
    model: &dyn Net,
    batch: &SeqBatch,
    device: &Device,
) -> (Tensor<2>, Tensor<1, Int>) {
    let (logits, labels, _) = scored_logits_at(model, batch, device);
    (logits, labels)
}

/// As [`scored_logits`], with the position of each of the N pairs.
fn scored_logits_at(
    model: &dyn Net,
    batch: &SeqBatch,
    device: &Device,
) -> (Tensor<2>, Tensor<1, Int>, Vec<usize>) {
    let (scored, targets) = scoring(batch);
    let position_of = |r: usize| match &scored {
        Scored::All => r % batch.n_ctx,
        Scored::Positions(p) => p[r % p.len()],
    };
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new(batch.tokens.clone(), [batch.len(), batch.n_ctx]),
        device,
    );
    let logits = model.logits_scored(tokens, &scored);
    let keep: Vec<i64> = (0..targets.len() as i64)
        .filter(|&r| targets[r as usize] != IGNORE)
        .collect();
    let labels: Vec<i64> = keep.iter().map(|&r| targets[r as usize]).collect();
    let positions: Vec<usize> = keep.iter().map(|&r| position_of(r as usize)).collect();
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
        positions,
    )
}

/// Mean cross-entropy over the scored pairs of `batch` (`loss`: the precision and probability
/// map of the loss, shape `[1]`) and accuracy.
fn loss_and_accuracy(
    net: &dyn Net,
    batch: &SeqBatch,
    device: &Device,
    loss: (Precision, LossFn),
) -> (Tensor<1>, f64) {
    let (logits, labels) = scored_logits(net, batch, device);
    let acc = accuracy(logits.clone(), labels.clone());
    (classification_loss(logits, labels, loss.0, loss.1), acc)
}

/// Loss (nats, mean over scored pairs), accuracy and gradients (flat per store entry, `None` for
/// frozen ones) of `params` on `batch`. `device` must have autodiff; the forward runs in
/// `compute`, the loss in `loss.0` with `loss.1`'s probabilities.
pub fn seq_train(
    model: &dyn Model,
    params: &ParamStore,
    device: &Device,
    batch: &SeqBatch,
    compute: Precision,
    loss: (Precision, LossFn),
) -> StepResult {
    let net = bind(model, params, device, compute, true);
    let (loss, acc) = loss_and_accuracy(&*net, batch, device, loss);
    let grads = net.gradients(&loss.backward());
    StepResult {
        loss: loss.into_scalar::<f64>(),
        acc,
        grads,
    }
}

/// Loss and accuracy of `params` on `batch` without gradients (NaN for an empty batch).
pub fn seq_evaluate(
    model: &dyn Model,
    params: &ParamStore,
    device: &Device,
    batch: &SeqBatch,
    compute: Precision,
    loss: (Precision, LossFn),
) -> (f64, f64) {
    if batch.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let net = bind(model, params, device, compute, false);
    let (loss, acc) = loss_and_accuracy(&*net, batch, device, loss);
    (loss.into_scalar::<f64>(), acc)
}

/// One scored (sequence, position) pair of an evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredPair {
    /// Position in the sequence.
    pub position: usize,
    /// The target class.
    pub target: i64,
    /// Cross-entropy (nats).
    pub loss: f64,
    /// Whether the arg-max logit is the target.
    pub correct: bool,
}

/// Every scored pair of `batch` with its loss and correctness, batch-major (no gradients): the
/// rows the per-position and per-class curves group.
pub fn seq_evaluate_pairs(
    model: &dyn Model,
    params: &ParamStore,
    device: &Device,
    batch: &SeqBatch,
    compute: Precision,
    loss: (Precision, LossFn),
) -> Vec<ScoredPair> {
    if batch.is_empty() {
        return Vec::new();
    }
    let model = bind(model, params, device, compute, false);
    let (logits, labels, positions) = scored_logits_at(&*model, batch, device);
    let n = labels.dims()[0];
    let targets: Vec<i64> = labels
        .clone()
        .into_data()
        .try_into_vec_as::<i64>()
        .expect("int");
    let picked = log_probs(logits.clone(), loss.0, loss.1)
        .gather(1, labels.clone().reshape([n, 1]))
        .reshape([n]);
    let losses: Vec<f64> = picked.into_data().try_into_vec_as::<f64>().expect("float");
    let hits: Vec<i64> = (logits.argmax(1).reshape([n]).equal(labels).int())
        .into_data()
        .try_into_vec_as::<i64>()
        .expect("int");
    (0..n)
        .map(|r| ScoredPair {
            position: positions[r],
            target: targets[r],
            loss: -losses[r],
            correct: hits[r] == 1,
        })
        .collect()
}

/// Mean loss and accuracy of `pairs` grouped by `key`, `(key, loss, accuracy)` ascending.
pub fn group_pairs(pairs: &[ScoredPair], key: impl Fn(&ScoredPair) -> i64) -> Vec<(i64, f64, f64)> {
    let mut groups: std::collections::BTreeMap<i64, (f64, f64, f64)> = Default::default();
    for p in pairs {
        let g = groups.entry(key(p)).or_default();
        g.0 += p.loss;
        g.1 += f64::from(u8::from(p.correct));
        g.2 += 1.0;
    }
    (groups.into_iter())
        .map(|(k, (loss, hits, n))| (k, loss / n, hits / n))
        .collect()
}

impl Step<'_> {
    /// Whether [`Step::train_seq`] and [`Step::evaluate_seq`] run the fused sequence pass
    /// ([`fused_seq`]): engine `auto`, a transformer with standard attention (`attn_rate` 1),
    /// and a softmax loss (its log-softmax in f64 or f32, as `loss_dtype` says).
    pub fn uses_fused_seq(&self) -> bool {
        self.engine == Engine::Auto
            && self.loss_fn == LossFn::Softmax
            && (self.model.transformer()).is_some_and(|c| c.attn_rate == 1.0)
    }

    /// Logits `[pairs, classes]` (f32, row-major) and targets `[pairs]` of `batch`'s scored
    /// pairs on the burn graph, for the numerics the loop logs.
    pub fn logits_seq(&self, batch: &SeqBatch) -> (Vec<f32>, Vec<i64>) {
        let net = bind(self.model, self.params, self.device, self.compute, false);
        let (logits, labels) = scored_logits(&*net, batch, self.device);
        (
            logits.into_data().try_into_vec_as::<f32>().expect("float"),
            labels.into_data().try_into_vec_as::<i64>().expect("int"),
        )
    }

    /// The fused sequence pass on `batch` in one chunk per thread, where it applies.
    fn fused_seq(&self, batch: &SeqBatch, backward: bool) -> Option<fused_seq::SeqResult> {
        let cfg = self.model.transformer().filter(|_| self.uses_fused_seq())?;
        let (scored, targets) = scoring(batch);
        let positions = match scored {
            Scored::All => (0..batch.n_ctx).collect(),
            Scored::Positions(p) => p,
        };
        let input = fused_seq::SeqInput {
            tokens: &batch.tokens,
            t: batch.n_ctx,
            positions: &positions,
            targets: &targets,
            ignore: IGNORE,
            f32_loss: self.loss_dtype == Precision::F32,
        };
        let chunks = self.threads.max(batch.len().div_ceil(EVAL_CHUNK));
        Some(match self.compute {
            Precision::F32 => fused_seq::run::<f32>(cfg, self.params, &input, chunks, backward),
            Precision::F64 => fused_seq::run::<f64>(cfg, self.params, &input, chunks, backward),
        })
    }

    /// Forward and backward on `batch`: the fused sequence pass where
    /// [`Step::uses_fused_seq`], else [`seq_train`] per chunk (below).
    ///
    /// [`seq_train`] on `batch`, its sequences cut into up to `threads` contiguous chunks run in
    /// parallel, each chunk its own graph; the chunks' losses, accuracies and gradients are
    /// combined weighted by their scored pairs, as the mean over all pairs decomposes.
    pub fn train_seq(&self, batch: &SeqBatch) -> StepResult {
        if let Some(r) = self.fused_seq(batch, true) {
            return StepResult {
                loss: r.loss,
                acc: r.acc,
                grads: r.grads.expect("backward was requested"),
            };
        }
        let (model, params, device) = (self.model, self.params, self.device);
        let results = (self.chunks(batch).par_iter())
            .map(|(n, part)| {
                (
                    *n,
                    seq_train(model, params, device, part, self.compute, self.loss()),
                )
            })
            .collect();
        StepResult::combine(self.params, results)
    }

    /// Every scored pair of `batch` with its loss and correctness, batch-major: the fused
    /// sequence pass where [`Step::uses_fused_seq`] (so the pairs average to
    /// [`Step::evaluate_seq`]'s loss), else [`seq_evaluate_pairs`].
    pub fn evaluate_seq_pairs(&self, batch: &SeqBatch) -> Vec<ScoredPair> {
        if batch.is_empty() {
            return Vec::new();
        }
        let Some(r) = self.fused_seq(batch, false) else {
            let (model, params, device) = (self.model, self.params, self.device);
            return seq_evaluate_pairs(model, params, device, batch, self.compute, self.loss());
        };
        let (scored, targets) = scoring(batch);
        let position_of = |row: usize| match &scored {
            Scored::All => row % batch.n_ctx,
            Scored::Positions(p) => p[row % p.len()],
        };
        let kept = (targets.iter().enumerate()).filter(|(_, &y)| y != IGNORE);
        (kept.zip(r.pairs))
            .map(|((row, &target), (loss, correct))| ScoredPair {
                position: position_of(row),
                target,
                loss,
                correct,
            })
            .collect()
    }

    /// [`seq_evaluate`] on `batch` in parallel chunks (NaN for an empty batch).
    pub fn evaluate_seq(&self, batch: &SeqBatch) -> (f64, f64) {
        if batch.is_empty() {
            return (f64::NAN, f64::NAN);
        }
        if let Some(r) = self.fused_seq(batch, false) {
            return (r.loss, r.acc);
        }
        let (model, params, device) = (self.model, self.params, self.device);
        let results: Vec<(usize, (f64, f64))> = (self.chunks(batch).par_iter())
            .map(|(n, part)| {
                let r = seq_evaluate(model, params, device, part, self.compute, self.loss());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_group_into_means_per_key() {
        let pair = |position, target, loss, correct| ScoredPair {
            position,
            target,
            loss,
            correct,
        };
        let pairs = [
            pair(3, 7, 1.0, true),
            pair(4, 7, 3.0, false),
            pair(3, 2, 0.5, true),
            pair(3, 7, 2.0, false),
        ];
        assert_eq!(
            group_pairs(&pairs, |p| p.position as i64),
            vec![(3, 3.5 / 3.0, 2.0 / 3.0), (4, 3.0, 0.0)]
        );
        assert_eq!(
            group_pairs(&pairs, |p| p.target),
            vec![(2, 0.5, 1.0), (7, 2.0, 1.0 / 3.0)]
        );
    }
}
