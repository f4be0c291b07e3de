//! A sequence task's data in the loop: a fixed training set or a fresh sample every step, the
//! fixed test set, and the task's own test metrics (per scored position, per class, attention
//! scores of the induction and signal heads).

use super::TaskData;
use crate::config::Sampling;
use crate::models::attention_scores::{attention_to_tokens, induction_score, previous_token_score};
use crate::models::{Scored, Transformer};
use crate::tasks::{SeqBatch, SeqData};
use crate::train::numerics::{logit_stats, LogitStats};
use crate::train::seq_step::group_pairs;
use crate::train::step::{Step, StepResult};
use burn::tensor::{Int, Tensor, TensorData};

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
    ) -> (StepResult, bool) {
        let replace = sampling == Sampling::WithReplacement;
        let d = self;
        match (&d.train, replace && batch_size != 0) {
            (Some(_), true) => (
                step_fn.train_seq(&d.train_batch_with_replacement(step, batch_size)),
                false,
            ),
            _ => {
                let whole =
                    (d.train.as_ref()).is_none_or(|t| batch_size == 0 || batch_size >= t.len());
                (step_fn.train_seq(&d.train_batch(step, batch_size)), whole)
            }
        }
    }

    fn evaluate_train(&self, eval: &Step) -> (f64, f64) {
        match &self.train {
            Some(t) => eval.evaluate_seq(t),
            None => (f64::NAN, f64::NAN),
        }
    }

    /// Loss and accuracy per scored position where every sequence scores the same several
    /// positions, per target class where the task asks for it, and per-head induction and
    /// previous-token scores on the first [`PROBE`] test sequences where the task scores
    /// induction (`signal_attention.<l>.<h>`, the attention from the scored position to the
    /// signal token, where the task has signal tokens). Where per-pair metrics are asked for,
    /// one pass gives them and the overall loss and accuracy (their means over the pairs).
    fn test_metrics(&self, eval: &Step) -> ((f64, f64), Vec<(String, f64)>) {
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
    /// `train_acc_at.<t>`) of a task drawn fresh every step whose sequences score the same
    /// several positions (5-digit addition: the authors' per-digit curves are the training
    /// batch's, REFERENCES.md §3). The batch of `step` is drawn again and evaluated with the
    /// weights the step's update starts from, so the figures are the step's own.
    fn train_batch_metrics(&self, eval: &Step, step: u64, batch_size: usize) -> Vec<(String, f64)> {
        let d = self;
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

    fn train_logit_stats(&self, eval: &Step) -> Option<LogitStats> {
        let (logits, labels) = eval.logits_seq(self.train.as_ref()?);
        Some(logit_stats(&logits, &labels))
    }
}
