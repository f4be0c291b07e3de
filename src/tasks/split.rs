//! Train/test splits of a task's examples.

use super::{ModularDataset, PythonRandom};
use crate::error::{GrokError, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// How the examples are shuffled before the first `⌊frac·n⌋` become the training set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitMode {
    /// groklab's own seeded shuffle (ChaCha8).
    Native,
    /// Python's `random.seed(seed); random.shuffle(examples)`, as in Nanda et al. 2023.
    Python,
}

/// Row indices (into the dataset's a-major order) of the training and test examples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Training rows, in shuffled order.
    pub train: Vec<usize>,
    /// Test rows, in shuffled order.
    pub test: Vec<usize>,
}

/// Shuffles the dataset's rows and puts the first `⌊frac·n⌋` (as Python's `int(frac*n)`) in the
/// training set.
///
/// With `keep_commutative` and a commutative operation, the mirror `(b, a)` of every training pair `(a, b)` joins the training
/// set with it (avoiding the commutative leakage Power et al. 2022 warn about), so the training set
/// can exceed `⌊frac·n⌋` by one.
///
/// # Errors
/// `task.frac_train` outside (0, 1].
pub fn split_indices(
    data: &ModularDataset,
    frac: f64,
    mode: SplitMode,
    seed: u64,
    keep_commutative: bool,
) -> Result<Split> {
    if !(frac > 0.0 && frac <= 1.0) {
        return Err(GrokError::invalid(
            "task.frac_train",
            frac,
            "a number in (0, 1]",
        ));
    }
    let n = data.len();
    let mut order: Vec<usize> = (0..n).collect();
    match mode {
        SplitMode::Python => PythonRandom::seed(seed).shuffle(&mut order),
        SplitMode::Native => order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed)),
    }
    let n_train = ((frac * n as f64) as usize).max(1);
    if !(keep_commutative && data.op.is_commutative()) {
        let test = order.split_off(n_train);
        return Ok(Split { train: order, test });
    }
    let row_of = |a: u64, b: u64| {
        data.pairs
            .binary_search(&(a, b))
            .expect("mirrored pair exists in the dataset")
    };
    let mut in_train = vec![false; n];
    let mut train = Vec::with_capacity(n_train + 1);
    for &r in &order {
        if train.len() >= n_train {
            break;
        }
        if in_train[r] {
            continue;
        }
        let (a, b) = data.pairs[r];
        for row in [r, row_of(b, a)] {
            if !in_train[row] {
                in_train[row] = true;
                train.push(row);
            }
        }
    }
    let test = order.into_iter().filter(|&r| !in_train[r]).collect();
    Ok(Split { train, test })
}
