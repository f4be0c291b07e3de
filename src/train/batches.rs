//! What a run trains and evaluates on, for each task family: a binary operation's split
//! (full batch, or seeded minibatches per epoch), a sequence task's data (a finite set or a
//! fresh sample per step), or in-context regression's fresh tasks per step. The loop asks for the step's result and the evaluation metrics and
//! knows neither family in detail.

use super::icl_step::IclData;
use super::numerics::{logit_stats, LogitStats};
use super::seq_step::group_pairs;
use super::step::{Step, StepResult};
use super::trainer::RunData;
use crate::config::{IclTaskSection, LsaSection, RunConfig, Sampling, SeqTaskSection, TaskSection};
use crate::error::Result;
use crate::models::attention_scores::{attention_to_tokens, induction_score, previous_token_score};
use crate::models::{Scored, Transformer};
use crate::tasks::{SeqBatch, SeqData};
use burn::tensor::{Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// A run's data, by family.
pub(crate) enum Batches {
    /// Binary operation: all examples, the split, and the two sides gathered once.
    Modular {
        data: RunData,
        /// `[n_train, 3]` tokens and `[n_train]` labels.
        train: (Vec<i64>, Vec<i64>),
        /// `[n_test, 3]` tokens and `[n_test]` labels.
        test: (Vec<i64>, Vec<i64>),
        /// Seed of the minibatch order.
        seed: u64,
    },
    /// Sequence task.
    Sequence(SeqData),
    /// In-context linear regression.
    Icl(IclData),
}

impl Batches {
    /// The data of `cfg`.
    ///
    /// # Errors
    /// Invalid task fields; a finite set that cannot avoid the test set.
    pub(crate) fn new(cfg: &RunConfig) -> Result<Self> {
        if let Some(t) = cfg.task.get::<TaskSection>() {
            let data = RunData::new(cfg)?;
            return Ok(Batches::Modular {
                train: data.dataset.gather(&data.split.train),
                test: data.dataset.gather(&data.split.test),
                data,
                seed: t.split_seed,
            });
        }
        if let Some(t) = cfg.task.get::<SeqTaskSection>() {
            return Ok(Batches::Sequence(t.data()?));
        }
        let t = cfg.task.get::<IclTaskSection>().expect("three families");
        let layers = cfg.model.get::<LsaSection>().map_or(1, |m| m.n_layers);
        Ok(Batches::Icl(IclData::new(t, layers)))
    }

    /// `split.json` of a binary operation (`{"train": [...], "test": [...]}`, row ids); `None`
    /// for a sequence task, whose data the config's seed regenerates.
    pub(crate) fn split_json(&self) -> Option<String> {
        match self {
            Batches::Modular { data, .. } => Some(
                serde_json::json!({"train": data.split.train, "test": data.split.test}).to_string(),
            ),
            Batches::Sequence(_) | Batches::Icl(_) => None,
        }
    }

    /// Training examples of a fixed set (`None`: a fresh sample every step).
    fn n_train(&self) -> Option<usize> {
        match self {
            Batches::Modular { data, .. } => Some(data.split.train.len()),
            Batches::Sequence(d) => d.train.as_ref().map(SeqBatch::len),
            Batches::Icl(_) => None,
        }
    }

    /// Passes over the training set after `step` updates of `batch_size` (0: full batch); for a
    /// fresh sample every step, the step.
    pub(crate) fn epoch(&self, step: u64, batch_size: usize) -> f64 {
        match self.n_train() {
            Some(n) if batch_size != 0 && batch_size < n => {
                step as f64 * batch_size as f64 / n as f64
            }
            _ => step as f64,
        }
    }

    /// Rows of step 0's batch of `batch_size` and, for a sequence task, the positions each
    /// sequence scores on average (`None` for a binary operation, scored at its last position;
    /// for in-context regression, the tokens per task).
    pub(crate) fn shape_of_step0(&self, batch_size: usize) -> (usize, Option<f64>) {
        match self {
            Batches::Modular { train, .. } => {
                let n = train.1.len();
                (
                    if batch_size == 0 {
                        n
                    } else {
                        batch_size.min(n)
                    },
                    None,
                )
            }
            Batches::Sequence(d) => {
                let b = d.train_batch(0, batch_size);
                let scored = b
                    .targets
                    .iter()
                    .filter(|&&t| t != crate::tasks::IGNORE)
                    .count();
                (b.len(), Some(scored as f64 / b.len() as f64))
            }
            Batches::Icl(d) => (batch_size, Some(d.tokens_per_task() as f64)),
        }
    }

    /// Forward and backward of `step`'s batch, and whether that batch is the whole training
    /// distribution's estimate the metrics may report as train loss (the full set, or a fresh
    /// sample).
    pub(crate) fn train(
        &self,
        step_fn: &Step,
        step: u64,
        batch_size: usize,
        sampling: Sampling,
    ) -> (StepResult, bool) {
        let replace = sampling == Sampling::WithReplacement;
        match self {
            Batches::Modular {
                data, train, seed, ..
            } => {
                let n = train.1.len();
                if batch_size == 0 || (batch_size >= n && !replace) {
                    return (step_fn.train_host(&train.0, &train.1), true);
                }
                let rows = if replace {
                    rows_with_replacement(&data.split.train, batch_size, step, *seed)
                } else {
                    minibatch_rows(&data.split.train, batch_size, step, *seed)
                };
                let (tokens, labels) = data.dataset.gather(&rows);
                (step_fn.train_host(&tokens, &labels), false)
            }
            Batches::Sequence(d) => match (&d.train, replace && batch_size != 0) {
                (Some(_), true) => (
                    step_fn.train_seq(&d.train_batch_with_replacement(step, batch_size)),
                    false,
                ),
                _ => {
                    let whole =
                        (d.train.as_ref()).is_none_or(|t| batch_size == 0 || batch_size >= t.len());
                    (step_fn.train_seq(&d.train_batch(step, batch_size)), whole)
                }
            },
            Batches::Icl(d) => (
                step_fn.train_icl(&d.task.train_batch(step, batch_size), d.task.format),
                true,
            ),
        }
    }

    /// Loss and accuracy on the whole training set (a sequence task's fresh sample has none:
    /// NaN).
    pub(crate) fn evaluate_train(&self, eval: &Step) -> (f64, f64) {
        match self {
            Batches::Modular { train, .. } => eval.evaluate_host(&train.0, &train.1),
            Batches::Sequence(d) => match &d.train {
                Some(t) => eval.evaluate_seq(t),
                None => (f64::NAN, f64::NAN),
            },
            Batches::Icl(_) => (f64::NAN, f64::NAN),
        }
    }

    /// Loss and accuracy on the test set, and a sequence task's own metrics on it
    /// ([`super::MetricsRow::task_metrics`]): loss and accuracy per scored position where every
    /// sequence scores the same several positions, per target class where the task asks for it,
    /// and per-head induction and previous-token scores on the first [`PROBE`] test sequences
    /// where the task scores induction (`signal_attention.<l>.<h>`, the attention from the
    /// scored position to the signal token, where the task has signal tokens). Where per-pair
    /// metrics are asked for, one pass gives them and the overall loss and accuracy (their means
    /// over the pairs).
    pub(crate) fn test_metrics(&self, eval: &Step) -> ((f64, f64), Vec<(String, f64)>) {
        if let Batches::Icl(d) = self {
            let (loss, metrics) = eval.evaluate_icl(d);
            return ((loss, f64::NAN), metrics);
        }
        let Batches::Sequence(d) = self else {
            return (self.evaluate_test(eval), Vec::new());
        };
        let mut out = Vec::new();
        let by_position = d.test.common_positions().is_some_and(|p| p.len() > 1);
        let by_class = d.task().scores_per_class();
        let mut overall = None;
        if by_position || by_class {
            let pairs = eval.evaluate_seq_pairs(&d.test);
            let n = pairs.len() as f64;
            overall = Some((
                pairs.iter().map(|p| p.loss).sum::<f64>() / n,
                pairs.iter().filter(|p| p.correct).count() as f64 / n,
            ));
            if by_position {
                for (t, loss, acc) in group_pairs(&pairs, |p| p.position as i64) {
                    out.push((format!("test_loss_at.{t}"), loss));
                    out.push((format!("test_acc_at.{t}"), acc));
                }
            }
            if by_class {
                for (c, loss, acc) in group_pairs(&pairs, |p| p.target) {
                    out.push((format!("test_loss_class.{c}"), loss));
                    out.push((format!("test_acc_class.{c}"), acc));
                }
            }
        }
        let signal = d.task().signal_tokens();
        let attention = d.task().scores_induction() || signal.is_some();
        if let (true, Some(cfg)) = (attention, eval.model.transformer()) {
            let n = d.test.len().min(PROBE);
            let probe = d.test.select(&(0..n).collect::<Vec<_>>());
            let model =
                Transformer::new(cfg, eval.params, eval.device, eval.compute.dtype(), false);
            let tokens = Tensor::<2, Int>::from_data(
                TensorData::new(probe.tokens.clone(), [n, probe.n_ctx]),
                eval.device,
            );
            let h = cfg.n_heads;
            for (l, pattern) in model
                .forward_seq(tokens, &Scored::All)
                .patterns
                .into_iter()
                .enumerate()
            {
                let p: Vec<f64> = pattern.into_data().try_into_vec_as::<f64>().expect("float");
                if let Some(tokens) = signal.clone() {
                    let scores = attention_to_tokens(&p, &probe, h, tokens).into_iter();
                    out.extend(
                        (scores.enumerate()).map(|(i, s)| (format!("signal_attention.{l}.{i}"), s)),
                    );
                    continue;
                }
                let heads = (induction_score(&p, &probe, h).into_iter().enumerate())
                    .map(|(i, s)| (format!("induction_score.{l}.{i}"), s))
                    .chain(
                        (previous_token_score(&p, n, h, probe.n_ctx)
                            .into_iter()
                            .enumerate())
                        .map(|(i, s)| (format!("prev_token_score.{l}.{i}"), s)),
                    );
                out.extend(heads);
            }
        }
        (overall.unwrap_or_else(|| eval.evaluate_seq(&d.test)), out)
    }

    /// The training batch's own per-position loss and accuracy (`train_loss_at.<t>`,
    /// `train_acc_at.<t>`) of a sequence task drawn fresh every step whose sequences score the
    /// same several positions (5-digit addition: the authors' per-digit curves are the training
    /// batch's, REFERENCES.md §3). The batch of `step` is drawn again and evaluated with the
    /// weights the step's update starts from, so the figures are the step's own. Empty for
    /// every other run.
    pub(crate) fn train_batch_metrics(
        &self,
        eval: &Step,
        step: u64,
        batch_size: usize,
    ) -> Vec<(String, f64)> {
        let Batches::Sequence(d) = self else {
            return Vec::new();
        };
        let by_position = d.test.common_positions().is_some_and(|p| p.len() > 1);
        if d.train.is_some() || !by_position {
            return Vec::new();
        }
        let pairs = eval.evaluate_seq_pairs(&d.train_batch(step, batch_size));
        (group_pairs(&pairs, |p| p.position as i64).into_iter())
            .flat_map(|(t, loss, acc)| {
                [
                    (format!("train_loss_at.{t}"), loss),
                    (format!("train_acc_at.{t}"), acc),
                ]
            })
            .collect()
    }

    /// Softmax collapse and logit scale on the fixed training set (`None` for a fresh sample
    /// every step).
    pub(crate) fn train_logit_stats(&self, eval: &Step) -> Option<LogitStats> {
        match self {
            Batches::Modular { train, .. } => {
                Some(logit_stats(&eval.logits_host(&train.0, &train.1), &train.1))
            }
            Batches::Sequence(d) => {
                let (logits, labels) = eval.logits_seq(d.train.as_ref()?);
                Some(logit_stats(&logits, &labels))
            }
            Batches::Icl(_) => None,
        }
    }

    /// Loss and accuracy on the test set.
    pub(crate) fn evaluate_test(&self, eval: &Step) -> (f64, f64) {
        match self {
            Batches::Modular { test, .. } => eval.evaluate_host(&test.0, &test.1),
            Batches::Sequence(d) => eval.evaluate_seq(&d.test),
            Batches::Icl(d) => (eval.evaluate_icl(d).0, f64::NAN),
        }
    }
}

/// Test sequences the attention scores are measured on.
const PROBE: usize = 64;

/// Rows of the training set used at `step`: epoch `e` walks a permutation seeded by
/// `(seed, e)`, so a resumed run sees the same batches without saved RNG state.
fn minibatch_rows(train: &[usize], batch: usize, step: u64, seed: u64) -> Vec<usize> {
    let per_epoch = train.len().div_ceil(batch) as u64;
    let (epoch, k) = (step / per_epoch, (step % per_epoch) as usize);
    let mut perm = train.to_vec();
    let mut rng =
        rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9).wrapping_add(epoch));
    perm.shuffle(&mut rng);
    perm[k * batch..((k + 1) * batch).min(train.len())].to_vec()
}

/// `batch` rows of `train` drawn uniformly with replacement for `step`
/// ([`crate::tasks::indices_with_replacement`]).
fn rows_with_replacement(train: &[usize], batch: usize, step: u64, seed: u64) -> Vec<usize> {
    (crate::tasks::indices_with_replacement(train.len(), batch, step, seed).into_iter())
        .map(|i| train[i])
        .collect()
}

/// The test metrics a run logs — `test_loss`, `test_acc` and the task's own
/// ([`Batches::test_metrics`]) — of the weights `params` of the run config `cfg`, evaluated on
/// the calling thread as the run evaluates (its engine and precisions).
///
/// # Errors
/// Invalid task fields of `cfg`.
pub fn checkpoint_test_metrics(
    cfg: &RunConfig,
    params: &crate::models::ParamStore,
) -> Result<Vec<(String, f64)>> {
    let batches = Batches::new(cfg)?;
    let model = cfg.model_spec();
    let device = burn::tensor::Device::flex();
    let mut eval = Step::for_run(&*model, params, &device, &cfg.train);
    eval.threads = 1;
    let ((loss, acc), task) = batches.test_metrics(&eval);
    let mut out = vec![
        ("test_loss".to_string(), loss * cfg.train.loss_scale),
        ("test_acc".to_string(), acc),
    ];
    out.extend(task);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With replacement: the same step draws the same rows (exact resume), other steps others,
    /// every row comes from the training set, and repeats occur (64 draws from 40 rows must
    /// repeat); without replacement an epoch covers every row once.
    #[test]
    fn sampling_with_and_without_replacement() {
        let train: Vec<usize> = (100..140).collect();
        let a = rows_with_replacement(&train, 64, 7, 1);
        assert_eq!(a, rows_with_replacement(&train, 64, 7, 1));
        assert_ne!(a, rows_with_replacement(&train, 64, 8, 1));
        assert!(a.iter().all(|r| train.contains(r)));
        let mut distinct = a.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() < a.len());
        let mut epoch: Vec<usize> = (0..4)
            .flat_map(|s| minibatch_rows(&train, 10, s, 1))
            .collect();
        epoch.sort();
        assert_eq!(epoch, train);
    }
}
