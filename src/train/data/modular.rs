//! A binary operation's data in the loop: the enumerated examples and their split, the two
//! sides gathered once, full batch or seeded minibatches per epoch.

use super::{TaskData, TestMetrics};
use crate::config::Sampling;
use crate::error::Result;
use crate::tasks::Batch;
use crate::train::numerics::{logit_stats, LogitStats};
use crate::train::step::{Step, StepResult};
use crate::train::RunData;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// A binary operation's examples, split, and the two sides gathered.
pub(crate) struct ModularData {
    data: RunData,
    /// `[n_train, 3]` tokens and `[n_train]` labels.
    train: (Vec<i64>, Vec<i64>),
    /// `[n_test, 3]` tokens and `[n_test]` labels.
    test: (Vec<i64>, Vec<i64>),
    /// Seed of the minibatch order.
    seed: u64,
}

impl ModularData {
    /// `data` gathered; minibatches ordered by `seed`.
    pub(crate) fn new(data: RunData, seed: u64) -> Self {
        Self {
            train: data.dataset.gather(&data.split.train),
            test: data.dataset.gather(&data.split.test),
            data,
            seed,
        }
    }
}

impl TaskData for ModularData {
    fn split_json(&self) -> Option<String> {
        let split = &self.data.split;
        Some(serde_json::json!({"train": split.train, "test": split.test}).to_string())
    }

    fn n_train(&self) -> Option<usize> {
        Some(self.data.split.train.len())
    }

    fn shape_of_step0(&self, batch_size: usize) -> (usize, Option<f64>) {
        let n = self.train.1.len();
        let rows = if batch_size == 0 {
            n
        } else {
            batch_size.min(n)
        };
        (rows, None)
    }

    fn train(
        &self,
        step_fn: &Step,
        step: u64,
        batch_size: usize,
        sampling: Sampling,
    ) -> Result<(StepResult, bool)> {
        let replace = sampling == Sampling::WithReplacement;
        let n = self.train.1.len();
        if batch_size == 0 || (batch_size >= n && !replace) {
            let (tokens, labels) = (&self.train.0, &self.train.1);
            return Ok((step_fn.step(&Batch::Rows { tokens, labels }, true)?, true));
        }
        let split = &self.data.split;
        let rows = if replace {
            rows_with_replacement(&split.train, batch_size, step, self.seed)
        } else {
            minibatch_rows(&split.train, batch_size, step, self.seed)
        };
        let (tokens, labels) = self.data.dataset.gather(&rows);
        let batch = Batch::Rows {
            tokens: &tokens,
            labels: &labels,
        };
        Ok((step_fn.step(&batch, true)?, false))
    }

    fn evaluate_train(&self, eval: &Step) -> Result<(f64, f64)> {
        let (tokens, labels) = (&self.train.0, &self.train.1);
        let r = eval.step(&Batch::Rows { tokens, labels }, false)?;
        Ok((r.loss, r.acc))
    }

    fn test_metrics(&self, eval: &Step) -> Result<TestMetrics> {
        let (tokens, labels) = (&self.test.0, &self.test.1);
        let r = eval.step(&Batch::Rows { tokens, labels }, false)?;
        Ok(((r.loss, r.acc), Vec::new()))
    }

    fn train_logit_stats(&self, eval: &Step) -> Option<LogitStats> {
        let (tokens, labels) = &self.train;
        Some(logit_stats(&eval.logits_host(tokens, labels), labels))
    }
}

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
