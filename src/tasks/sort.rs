//! Sorting a list of tokens: `x₁…xₙ SEP y₁…yₙ` with `y` the `x`s in ascending order, the sorted
//! list predicted next-token. A standard toy task of mechanistic interpretability (e.g. the
//! "sorting" exercises in ARENA's transformer-interpretability chapter): the model must find, for
//! each output position, the smallest input not yet emitted, which needs attention from the
//! output back to the inputs and a comparison with the previous output.
//!
//! Tokens: values `0..n_values`, SEP = `n_values` (d_vocab = n_values + 1); T = 2n + 1;
//! `n_values` classes. Position `n` (the SEP) predicts y₁ and position `n + i` (holding yᵢ)
//! predicts yᵢ₊₁, for i < n; the last position is not scored. The inputs are drawn uniformly
//! with replacement, so a list may repeat a value, and then so does its sorted copy.
//! The definition and its defaults are groklab's (no paper fixes them).

use super::batch::{SeqBatch, IGNORE};
use super::sequence::{positive, SeqShape, SeqTaskConfig, SequenceTask};
use crate::error::Result;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Sorting (`task.name = "sort"`; keys: `n_values`, `n_elems`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sort {
    /// Values are `0..n_values`.
    pub n_values: usize,
    /// Length n of the list.
    pub n_elems: usize,
}

impl Sort {
    /// Token SEP, between the list and its sorted copy.
    pub fn sep(&self) -> i64 {
        self.n_values as i64
    }

    /// The sequence and targets of the list `xs` (values in `0..n_values`).
    pub fn encode(&self, xs: &[i64]) -> (Vec<i64>, Vec<i64>) {
        let n = self.n_elems;
        assert_eq!(xs.len(), n, "a list has n_elems values");
        let mut sorted = xs.to_vec();
        sorted.sort_unstable();
        let mut tokens = xs.to_vec();
        tokens.push(self.sep());
        tokens.extend(&sorted);
        let mut targets = vec![IGNORE; tokens.len()];
        targets[n..2 * n].copy_from_slice(&sorted);
        (tokens, targets)
    }
}

impl SeqTaskConfig for Sort {
    const NAME: &'static str = "sort";

    fn validate(&self) -> Result<()> {
        positive("n_values", self.n_values)?;
        positive("n_elems", self.n_elems)
    }

    fn build(&self, _seed: u64) -> Box<dyn SequenceTask> {
        Box::new(*self)
    }
}

impl SequenceTask for Sort {
    fn shape(&self) -> SeqShape {
        SeqShape {
            d_vocab: self.n_values + 1,
            d_vocab_out: self.n_values,
            n_ctx: 2 * self.n_elems + 1,
        }
    }

    fn sample_one(&self, rng: &mut ChaCha8Rng, batch: &mut SeqBatch) {
        let v = self.n_values as i64;
        let xs: Vec<i64> = (0..self.n_elems).map(|_| rng.random_range(0..v)).collect();
        let (tokens, targets) = self.encode(&xs);
        batch.push(&tokens, &targets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::batch::stream_rng;

    #[test]
    fn the_second_half_is_the_first_sorted_and_is_predicted_next_token() {
        let task = Sort {
            n_values: 10,
            n_elems: 5,
        };
        let (t, y) = task.encode(&[3, 9, 0, 3, 7]);
        assert_eq!(t, [3, 9, 0, 3, 7, 10, 0, 3, 3, 7, 9]);
        // position n (SEP) predicts the first sorted value, position n + i the (i+1)-th
        let i = IGNORE;
        assert_eq!(y, [i, i, i, i, i, 0, 3, 3, 7, 9, i]);
    }

    #[test]
    fn samples_are_sorted_copies_of_uniform_lists() {
        let task = Sort {
            n_values: 8,
            n_elems: 6,
        };
        let batch = task.sample(&mut stream_rng(3, 0), 4000);
        let mut counts = vec![0usize; 8];
        let mut repeats = 0;
        for i in 0..batch.len() {
            let (t, y) = (batch.tokens_of(i), batch.targets_of(i));
            assert_eq!(t.len(), task.shape().n_ctx);
            assert_eq!(t[6], 8, "SEP at position n");
            let (xs, ys) = (&t[..6], &t[7..]);
            // a permutation of the inputs, ascending
            let mut sorted = xs.to_vec();
            sorted.sort_unstable();
            assert_eq!(ys, &sorted[..]);
            assert!(ys.windows(2).all(|w| w[0] <= w[1]));
            // targets: the token one position later, at the n scored positions only
            for (p, &target) in y.iter().enumerate() {
                if (6..12).contains(&p) {
                    assert_eq!(target, t[p + 1]);
                } else {
                    assert_eq!(target, IGNORE);
                }
            }
            xs.iter().for_each(|&x| counts[x as usize] += 1);
            repeats += usize::from(sorted.windows(2).any(|w| w[0] == w[1]));
        }
        assert_eq!(batch.common_positions(), Some((6..12).collect()));
        // uniform values: each of 8 about 1/8 of 24,000 draws (±5σ ≈ ±260)
        for c in counts {
            assert!((c as f64 - 3000.0).abs() < 260.0, "{c}");
        }
        // with replacement: P(6 draws of 8 all distinct) = 8!/(2!·8⁶) ≈ 0.077
        let distinct = 1.0 - repeats as f64 / 4000.0;
        assert!((distinct - 0.0769).abs() < 0.03, "{distinct}");
    }
}
