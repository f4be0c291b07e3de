//! The in-context regression family in the loop: its data (a fresh batch of tasks per step, the
//! fixed evaluation set, the GD learners it is compared with) and the LSA's step, which is its
//! own forward and backward ([`crate::models::lsa`]), not burn's graph.

use super::step::{Step, StepResult};
use crate::config::IclTaskSection;
use crate::models::lsa::LsaConfig;
use crate::models::lsa::{loss_and_grads, LsaWeights};
use crate::models::lsa_compare::{icl_metrics, IclReference};
use crate::tasks::{IclBatch, IclFormat, IclRegression};

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
    /// The LSA's weights in f32.
    fn lsa(&self) -> LsaWeights {
        let cfg = (self.model.as_any().downcast_ref::<LsaConfig>())
            .expect("validated: task `linear_regression_icl` runs the LSA");
        LsaWeights::from_store(cfg, self.params)
    }

    /// ½-MSE and gradients of one batch of tasks in the token layout `format`, `threads`
    /// chunks in parallel. Accuracy has no meaning here: NaN.
    pub fn train_icl(&self, batch: &IclBatch, format: IclFormat) -> StepResult {
        let tokens = batch.tokens(format);
        let t = crate::tasks::icl_regression::tokens_per_task(format, batch.n);
        let (loss, grads) = loss_and_grads(&self.lsa(), &tokens, &batch.y_q, t, self.threads);
        StepResult {
            loss,
            acc: f64::NAN,
            grads: grads.into_iter().map(Some).collect(),
        }
    }

    /// The evaluation set's ½-MSE and the comparison with each reference learner
    /// ([`icl_metrics`]).
    pub(crate) fn evaluate_icl(&self, data: &IclData) -> (f64, Vec<(String, f64)>) {
        icl_metrics(
            &self.lsa(),
            &data.eval_tokens,
            &data.eval_targets,
            data.task.n_pairs,
            &data.references,
        )
    }
}

impl super::data::TaskData for IclData {
    /// `batch_size` tasks of T tokens each.
    fn shape_of_step0(&self, batch_size: usize) -> (usize, Option<f64>) {
        (batch_size, Some(self.tokens_per_task() as f64))
    }

    /// A fresh batch of tasks every step: always the whole distribution's estimate.
    fn train(
        &self,
        step_fn: &Step,
        step: u64,
        batch_size: usize,
        _sampling: crate::config::Sampling,
    ) -> (StepResult, bool) {
        let batch = self.task.train_batch(step, batch_size);
        (step_fn.train_icl(&batch, self.task.format), true)
    }

    /// The evaluation set's ½-MSE (accuracy: NaN) and the comparison with each reference
    /// learner.
    fn test_metrics(&self, eval: &Step) -> ((f64, f64), Vec<(String, f64)>) {
        let (loss, metrics) = eval.evaluate_icl(self);
        ((loss, f64::NAN), metrics)
    }
}
