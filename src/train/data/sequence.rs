//! A sequence task's data in the loop: a fixed training set or a fresh sample every step, the
//! fixed test set, and the task's own test metrics (per scored position, per class, attention
//! scores of the induction and signal heads).

use super::{TaskData, TestMetrics};
use crate::config::Sampling;
use crate::error::Result;
use crate::models::attention_scores::{attention_to_tokens, induction_score, previous_token_score};
use crate::tasks::{Batch, SeqBatch, SeqData};
use crate::train::numerics::{logit_stats, LogitStats};
use crate::train::seq_step::group_pairs;
use crate::train::step::{Step, StepResult};

/// Loss and accuracy of `batch` without gradients ([`crate::models::Model::step`]).
fn evaluate(eval: &Step, batch: &SeqBatch) -> Result<(f64, f64)> {
    let r = eval.step(&Batch::Sequence(batch), false)?;
    Ok((r.loss, r.acc))
}

/// Test sequences the attention scores are measured on.
const PROBE: usize = 64;

impl TaskData for SeqData {
    fn n_train(&self) -> Option<usize> {
        self.train.as_ref().map(SeqBatch::len)
    }

    fn shape_of_step0(&self, batch_size: usize) -> (usize, Option<f64>) {
        let b = self.train_batch(0, batch_size);
        let scored = (b.targets.iter())
            .filter(|&&t| t != crate::tasks::IGNORE)
            .count();
        (b.len(), Some(scored as f64 / b.len() as f64))
    }

    fn train(
        &self,
        step_fn: &Step,
        step: u64,
        batch_size: usize,
        sampling: Sampling,
    ) -> Result<(StepResult, bool)> {
        let replace = sampling == Sampling::WithReplacement;
        let d = self;
        let (batch, whole) = match (&d.train, replace && batch_size != 0) {
            (Some(_), true) => (d.train_batch_with_replacement(step, batch_size), false),
            _ => {
                let whole =
                    (d.train.as_ref()).is_none_or(|t| batch_size == 0 || batch_size >= t.len());
                (d.train_batch(step, batch_size), whole)
            }
        };
        Ok((step_fn.step(&Batch::Sequence(&batch), true)?, whole))
    }

    fn evaluate_train(&self, eval: &Step) -> Result<(f64, f64)> {
        match &self.train {
            Some(t) => evaluate(eval, t),
            None => Ok((f64::NAN, f64::NAN)),
        }
    }

    /// Loss and accuracy per scored position where every sequence scores the same several
    /// positions, per target class where the task asks for it, and per-head induction and
    /// previous-token scores on the first [`PROBE`] test sequences where the task scores
    /// induction (`signal_attention.<l>.<h>`, the attention from the scored position to the
    /// signal token, where the task has signal tokens). Where per-pair metrics are asked for,
    /// one pass gives them and the overall loss and accuracy (their means over the pairs).
    fn test_metrics(&self, eval: &Step) -> Result<TestMetrics> {
        let d = self;
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
        if d.task().scores_induction() || signal.is_some() {
            let n = d.test.len().min(PROBE);
            let probe = d.test.select(&(0..n).collect::<Vec<_>>());
            let dtype = eval.compute.dtype();
            let hooks = (eval.model).hooks(eval.params, &probe.tokens, probe.n_ctx, dtype)?;
            for l in 0.. {
                let Some((shape, p)) = hooks.get(&format!("blocks.{l}.attn.hook_pattern")) else {
                    break;
                };
                let h = shape[1];
                if let Some(tokens) = signal.clone() {
                    let scores = attention_to_tokens(p, &probe, h, tokens).into_iter();
                    out.extend(
                        (scores.enumerate()).map(|(i, s)| (format!("signal_attention.{l}.{i}"), s)),
                    );
                    continue;
                }
                let heads = (induction_score(p, &probe, h).into_iter().enumerate())
                    .map(|(i, s)| (format!("induction_score.{l}.{i}"), s))
                    .chain(
                        (previous_token_score(p, n, h, probe.n_ctx)
                            .into_iter()
                            .enumerate())
                        .map(|(i, s)| (format!("prev_token_score.{l}.{i}"), s)),
                    );
                out.extend(heads);
            }
        }
        let overall = match overall {
            Some(o) => o,
            None => evaluate(eval, &d.test)?,
        };
        Ok((overall, out))
    }

    /// The training batch's own per-position loss and accuracy (`train_loss_at.<t>`,
    /// `train_acc_at.<t>`) of a task drawn fresh every step whose sequences score the same
    /// several positions (5-digit addition: the authors' per-digit curves are the training
    /// batch's, REFERENCES.md §3). The batch of `step` is drawn again and evaluated with the
    /// weights the step's update starts from, so the figures are the step's own.
    fn train_batch_metrics(
        &self,
        eval: &Step,
        step: u64,
        batch_size: usize,
    ) -> Result<Vec<(String, f64)>> {
        let d = self;
        let by_position = d.test.common_positions().is_some_and(|p| p.len() > 1);
        if d.train.is_some() || !by_position {
            return Ok(Vec::new());
        }
        let pairs = eval.evaluate_seq_pairs(&d.train_batch(step, batch_size));
        Ok((group_pairs(&pairs, |p| p.position as i64).into_iter())
            .flat_map(|(t, loss, acc)| {
                [
                    (format!("train_loss_at.{t}"), loss),
                    (format!("train_acc_at.{t}"), acc),
                ]
            })
            .collect())
    }

    fn train_logit_stats(&self, eval: &Step) -> Option<LogitStats> {
        let (logits, labels) = eval.logits_seq(self.train.as_ref()?);
        Some(logit_stats(&logits, &labels))
    }
}
