//! The in-context regression family in the loop: its data (a fresh batch of tasks per step, the
//! fixed evaluation set, the GD learners it is compared with) and the LSA's step, which is its
//! own forward and backward ([`crate::models::lsa`]), not burn's graph.

use super::data::TestMetrics;
use super::step::{Step, StepResult};
use crate::config::IclTaskSection;
use crate::error::Result;
use crate::models::lsa::LsaConfig;
use crate::models::lsa::{loss_and_grads, LsaWeights};
use crate::models::lsa_compare::{icl_metrics, IclReference};
use crate::tasks::{Batch, IclBatch, IclFormat, IclRegression};

/// A run's in-context regression data.
pub(crate) struct IclData {
    /// The task distribution.
    pub task: IclRegression,
    /// `[n_eval, T, e]` tokens of the evaluation set.
    pub eval_tokens: Vec<f32>,
    /// `[n_eval]` its query labels.
    pub eval_targets: Vec<f32>,
    /// K-step GD with its line-searched step, and for K ≥ 2 K-step GD++ with its fitted (η, γ),
    /// K the model's layers.
    pub references: Vec<IclReference>,
}

impl IclData {
    /// The data of `t` for a model of `n_layers` layers (the references are fitted here, on
    /// the evaluation set).
    pub fn new(t: &IclTaskSection, n_layers: usize) -> Self {
        let task = t.task();
        let eval: IclBatch = task.eval_set(t.n_eval);
        let mut references = vec![IclReference::fit(&eval, n_layers, false)];
        if n_layers >= 2 {
            references.push(IclReference::fit(&eval, n_layers, true));
        }
        Self {
            eval_tokens: eval.tokens(t.format),
            eval_targets: eval.y_q.clone(),
            task,
            references,
        }
    }

    /// Tokens per task T.
    pub fn tokens_per_task(&self) -> usize {
        crate::tasks::icl_regression::tokens_per_task(self.task.format, self.task.n_pairs)
    }
}

impl Step<'_> {
    /// ½-MSE and gradients of one batch of tasks in the token layout `format`, `threads`
    /// chunks in parallel. Accuracy has no meaning here: NaN.
    pub fn train_icl(&self, cfg: &LsaConfig, batch: &IclBatch, format: IclFormat) -> StepResult {
        let tokens = batch.tokens(format);
        let t = crate::tasks::icl_regression::tokens_per_task(format, batch.n);
        let (loss, grads) = loss_and_grads(
            &LsaWeights::from_store(cfg, self.params),
            &tokens,
            &batch.y_q,
            t,
            self.threads,
        );
        StepResult {
            loss,
            acc: f64::NAN,
            grads: grads.into_iter().map(Some).collect(),
        }
    }

    /// The evaluation set's ½-MSE and the comparison with each reference learner
    /// ([`icl_metrics`]).
    pub(crate) fn evaluate_icl(
        &self,
        cfg: &LsaConfig,
        data: &IclData,
    ) -> (f64, Vec<(String, f64)>) {
        icl_metrics(
            &LsaWeights::from_store(cfg, self.params),
            &data.eval_tokens,
            &data.eval_targets,
            data.task.n_pairs,
            &data.references,
        )
    }
}

/// In-context regression in the loop: its data and the LSA that is compared with the references.
pub(crate) struct IclRun {
    /// Tasks, evaluation set and references.
    pub data: IclData,
    /// The model's shape.
    pub lsa: LsaConfig,
}

impl super::data::TaskData for IclRun {
    /// `batch_size` tasks of T tokens each.
    fn shape_of_step0(&self, batch_size: usize) -> (usize, Option<f64>) {
        (batch_size, Some(self.data.tokens_per_task() as f64))
    }

    /// A fresh batch of tasks every step: always the whole distribution's estimate.
    fn train(
        &self,
        step_fn: &Step,
        step: u64,
        batch_size: usize,
        _sampling: crate::config::Sampling,
    ) -> Result<(StepResult, bool)> {
        let (task, format) = (&self.data.task, self.data.task.format);
        let batch = task.train_batch(step, batch_size);
        Ok((
            step_fn.step(
                &Batch::Reals {
                    batch: &batch,
                    format,
                },
                true,
            )?,
            true,
        ))
    }

    /// The evaluation set's ½-MSE (accuracy: NaN) and the comparison with each reference
    /// learner.
    fn test_metrics(&self, eval: &Step) -> Result<TestMetrics> {
        let (loss, metrics) = eval.evaluate_icl(&self.lsa, &self.data);
        Ok(((loss, f64::NAN), metrics))
    }
}
