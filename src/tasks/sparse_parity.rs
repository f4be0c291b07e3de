//! Sparse parity (Barak et al. 2022; Prieto et al. 2025 use 3 parity bits + 40 noise bits):
//! `n_bits` uniform bits, the label is the parity of `k` fixed bits.
//!
//! Tokens: bits 0/1, then `=` = 2 (d_vocab 3); T = n_bits + 1; 2 classes; only the `=` position
//! is scored. The k bit positions are drawn once from the task seed ([`SparseParity::new`]).

use super::batch::{stream_rng, SeqBatch, IGNORE};
use super::sequence::{positive, SeqShape, SeqTaskConfig, SequenceTask};
use crate::error::{GrokError, Result};
use serde::{Deserialize, Serialize};
use rand::seq::index::sample;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Token `=`.
pub const EQUALS: i64 = 2;

/// `[task]` of sparse parity (`task.name = "sparse_parity"`): the parity bits are drawn from
/// `task.seed` when the task is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseParityConfig {
    /// Bits per sequence.
    pub n_bits: usize,
    /// Parity bits (≤ n_bits).
    pub k: usize,
}

impl SeqTaskConfig for SparseParityConfig {
    const NAME: &'static str = "sparse_parity";

    fn validate(&self) -> Result<()> {
        positive("n_bits", self.n_bits)?;
        positive("k", self.k)?;
        if self.k > self.n_bits {
            return Err(GrokError::invalid("task.k", self.k, "at most n_bits"));
        }
        Ok(())
    }

    fn build(&self, seed: u64) -> Box<dyn SequenceTask> {
        Box::new(SparseParity::new(self.n_bits, self.k, seed))
    }
}

/// Sparse parity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparseParity {
    /// Bits per sequence.
    pub n_bits: usize,
    /// The parity bits' positions, ascending.
    pub parity_bits: Vec<usize>,
}

impl SparseParity {
    /// `k` parity bits among `n_bits`, chosen by `seed`.
    ///
    /// # Panics
    /// When `k > n_bits` (validated by the config).
    pub fn new(n_bits: usize, k: usize, seed: u64) -> Self {
        let mut parity_bits = sample(&mut stream_rng(seed, 0x9a71), n_bits, k).into_vec();
        parity_bits.sort_unstable();
        Self {
            n_bits,
            parity_bits,
        }
    }

    /// The label of `bits`.
    pub fn parity(&self, bits: &[i64]) -> i64 {
        self.parity_bits.iter().map(|&i| bits[i]).sum::<i64>() % 2
    }
}

impl SequenceTask for SparseParity {
    fn one_scored_position(&self) -> bool {
        true
    }

    fn shape(&self) -> SeqShape {
        SeqShape {
            d_vocab: 3,
            d_vocab_out: 2,
            n_ctx: self.n_bits + 1,
        }
    }

    fn sample_one(&self, rng: &mut ChaCha8Rng, batch: &mut SeqBatch) {
        let mut tokens: Vec<i64> = (0..self.n_bits).map(|_| rng.random_range(0..2)).collect();
        let label = self.parity(&tokens);
        tokens.push(EQUALS);
        let mut targets = vec![IGNORE; tokens.len()];
        targets[self.n_bits] = label;
        batch.push(&tokens, &targets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_parity_of_the_chosen_bits() {
        let task = SparseParity::new(43, 3, 7);
        assert_eq!(task.parity_bits.len(), 3);
        assert!(task.parity_bits.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(task, SparseParity::new(43, 3, 7), "fixed by the seed");
        let batch = task.sample(&mut stream_rng(0, 0), 1000);
        let mut ones = 0;
        for i in 0..batch.len() {
            let (t, y) = (batch.tokens_of(i), batch.targets_of(i));
            assert_eq!(t[43], EQUALS);
            let xor = task.parity_bits.iter().fold(0, |acc, &b| acc ^ t[b]);
            assert_eq!(y[43], xor);
            ones += y[43];
        }
        assert!((400..600).contains(&ones), "labels balanced: {ones}");
        // flipping a noise bit keeps the label, flipping a parity bit changes it
        let mut bits = vec![0i64; 43];
        let noise = (0..43).find(|i| !task.parity_bits.contains(i)).unwrap();
        bits[noise] = 1;
        assert_eq!(task.parity(&bits), 0);
        bits[task.parity_bits[1]] = 1;
        assert_eq!(task.parity(&bits), 1);
    }
}
