//! Max of a sequence (Nanda et al. 2023 appendix, "skip trigrams"): `START x₁…xₙ END`, the END
//! position predicts the maximum, which occurs exactly once.
//!
//! Tokens: values `0..n_values`, START = `n_values`, END = `n_values + 1`
//! (d_vocab = n_values + 2); T = n + 2; `n_values` classes; only the END position is scored.
//! The values are uniform, redrawn until the maximum is unique, so larger classes are more
//! frequent (the maximum of n uniform values) and class 0 never occurs for n ≥ 2.

use super::batch::{SeqBatch, IGNORE};
use super::sequence::{positive, SeqShape, SeqTaskConfig, SequenceTask};
use crate::error::{GrokError, Result};
use serde::{Deserialize, Serialize};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Max of a sequence (`task.name = "max_element"`; keys: `n_values`, `n_elems`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxElement {
    /// Values are `0..n_values`.
    pub n_values: usize,
    /// Values per sequence n (≤ n_values, so a unique maximum exists).
    pub n_elems: usize,
}

impl MaxElement {
    /// Token START.
    pub fn start(&self) -> i64 {
        self.n_values as i64
    }

    /// Token END.
    pub fn end(&self) -> i64 {
        self.n_values as i64 + 1
    }
}

impl SeqTaskConfig for MaxElement {
    const NAME: &'static str = "max_element";

    fn validate(&self) -> Result<()> {
        positive("n_values", self.n_values)?;
        positive("n_elems", self.n_elems)?;
        if self.n_elems > self.n_values {
            return Err(GrokError::invalid(
                "task.n_elems",
                self.n_elems,
                "at most n_values",
            ));
        }
        Ok(())
    }

    fn build(&self, _seed: u64) -> Box<dyn SequenceTask> {
        Box::new(*self)
    }
}

impl SequenceTask for MaxElement {
    fn one_scored_position(&self) -> bool {
        true
    }

    fn shape(&self) -> SeqShape {
        SeqShape {
            d_vocab: self.n_values + 2,
            d_vocab_out: self.n_values,
            n_ctx: self.n_elems + 2,
        }
    }

    fn scores_per_class(&self) -> bool {
        true
    }

    fn sample_one(&self, rng: &mut ChaCha8Rng, batch: &mut SeqBatch) {
        let v = self.n_values as i64;
        let xs: Vec<i64> = loop {
            let xs: Vec<i64> = (0..self.n_elems).map(|_| rng.random_range(0..v)).collect();
            let max = *xs.iter().max().expect("n_elems >= 1");
            if xs.iter().filter(|&&x| x == max).count() == 1 {
                break xs;
            }
        };
        let mut tokens = vec![self.start()];
        tokens.extend(&xs);
        tokens.push(self.end());
        let mut targets = vec![IGNORE; tokens.len()];
        targets[self.n_elems + 1] = *xs.iter().max().unwrap();
        batch.push(&tokens, &targets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::batch::stream_rng;

    #[test]
    fn format_and_the_unique_maximum() {
        let task = MaxElement {
            n_values: 12,
            n_elems: 6,
        };
        let batch = task.sample(&mut stream_rng(1, 0), 2000);
        let mut seen = vec![0usize; 12];
        for i in 0..batch.len() {
            let (t, y) = (batch.tokens_of(i), batch.targets_of(i));
            assert_eq!((t[0], t[7]), (12, 13), "{t:?}");
            let xs = &t[1..7];
            assert!(xs.iter().all(|&x| (0..12).contains(&x)));
            let max = *xs.iter().max().unwrap();
            assert_eq!(xs.iter().filter(|&&x| x == max).count(), 1, "{t:?}");
            assert_eq!(y[7], max);
            assert!(y[..7].iter().all(|&y| y == IGNORE));
            seen[max as usize] += 1;
        }
        // a unique maximum of 6 values is never 0; the top classes are the most frequent
        assert_eq!(seen[0], 0);
        assert!(seen[6..].iter().all(|&n| n > 0), "{seen:?}");
        assert!(seen[11] > seen[8] && seen[8] > seen[5], "{seen:?}");
        assert_eq!(batch.common_positions(), Some(vec![7]));
    }
}
