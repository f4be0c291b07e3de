//! What a run trains and evaluates on ([`TaskData`]): each task family's data in the loop — a
//! binary operation's split ([`modular`]), a sequence task's set or stream ([`sequence`]),
//! in-context regression's fresh tasks ([`super::IclData`]). The loop asks for the step's result
//! and the evaluation metrics and knows no family; a family's section builds its data
//! (`TaskFamily::data` in [`crate::config`]).

pub(crate) mod modular;
mod sequence;

use super::numerics::LogitStats;
use super::step::{Step, StepResult};
use crate::config::{RunConfig, Sampling};
use crate::error::Result;

/// Test loss and accuracy, and the task's own metrics by name.
pub type TestMetrics = ((f64, f64), Vec<(String, f64)>);

/// A run's data as the loop uses it.
pub trait TaskData: Send + Sync {
    /// `split.json` of a run whose split a resume must check (`{"train": [...], "test": [...]}`,
    /// row ids); `None` where the config's seed regenerates the data.
    fn split_json(&self) -> Option<String> {
        None
    }

    /// Training examples of a fixed set (`None`: a fresh sample every step).
    fn n_train(&self) -> Option<usize> {
        None
    }

    /// Passes over the training set after `step` updates of `batch_size` (0: full batch); for a
    /// fresh sample every step, the step.
    fn epoch(&self, step: u64, batch_size: usize) -> f64 {
        match self.n_train() {
            Some(n) if batch_size != 0 && batch_size < n => {
                step as f64 * batch_size as f64 / n as f64
            }
            _ => step as f64,
        }
    }

    /// Rows of step 0's batch of `batch_size` and the positions each row scores on average
    /// (`None`: one, the last; for in-context regression, the tokens per task), for the FLOPs
    /// of a step.
    fn shape_of_step0(&self, batch_size: usize) -> (usize, Option<f64>);

    /// Forward and backward of `step`'s batch, and whether that batch is the whole training
    /// distribution's estimate the metrics may report as train loss (the full set, or a fresh
    /// sample).
    ///
    /// # Errors
    /// A model that cannot read the data ([`crate::models::Model::step`]).
    fn train(
        &self,
        step_fn: &Step,
        step: u64,
        batch_size: usize,
        sampling: Sampling,
    ) -> Result<(StepResult, bool)>;

    /// Loss and accuracy on the whole training set (NaN where there is none: a fresh sample).
    ///
    /// # Errors
    /// A model that cannot read the data ([`crate::models::Model::step`]).
    fn evaluate_train(&self, _eval: &Step) -> Result<(f64, f64)> {
        Ok((f64::NAN, f64::NAN))
    }

    /// Loss and accuracy on the test set, and the task's own metrics on it
    /// ([`crate::rundir::MetricsRow::task_metrics`]).
    ///
    /// # Errors
    /// A model that cannot read the data ([`crate::models::Model::step`]).
    fn test_metrics(&self, eval: &Step) -> Result<TestMetrics>;

    /// Metrics of `step`'s own training batch (the per-position curves of a stream); none by
    /// default.
    ///
    /// # Errors
    /// A model that cannot read the data ([`crate::models::Model::step`]).
    fn train_batch_metrics(
        &self,
        _eval: &Step,
        _step: u64,
        _batch_size: usize,
    ) -> Result<Vec<(String, f64)>> {
        Ok(Vec::new())
    }

    /// Softmax collapse and logit scale on the fixed training set (`None` for a fresh sample
    /// every step, or real-valued targets).
    fn train_logit_stats(&self, _eval: &Step) -> Option<LogitStats> {
        None
    }
}

/// The data of `cfg`'s task, for `cfg`'s model.
///
/// # Errors
/// Invalid task fields; a finite set that cannot avoid the test set.
pub(crate) fn task_data(cfg: &RunConfig) -> Result<Box<dyn TaskData>> {
    cfg.task.data(&*cfg.model_spec())
}

/// The test metrics a run logs — `test_loss`, `test_acc` and the task's own
/// ([`TaskData::test_metrics`]) — of the weights `params` of the run config `cfg`, evaluated on
/// the calling thread as the run evaluates (its engine and precisions).
///
/// # Errors
/// Invalid task fields of `cfg`.
pub fn checkpoint_test_metrics(
    cfg: &RunConfig,
    params: &crate::models::ParamStore,
) -> Result<Vec<(String, f64)>> {
    let data = task_data(cfg)?;
    let model = cfg.model_spec();
    let device = burn::tensor::Device::flex();
    let mut eval = Step::for_run(&*model, params, &device, &cfg.train);
    eval.threads = 1;
    let ((loss, acc), task) = data.test_metrics(&eval)?;
    let mut out = vec![
        ("test_loss".to_string(), loss * cfg.train.loss_scale),
        ("test_acc".to_string(), acc),
    ];
    out.extend(task);
    Ok(out)
}
