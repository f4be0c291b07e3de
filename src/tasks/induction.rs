//! Repeated subsequences (Nanda et al. 2023 appendix; the induction-head task of Olsson et al.
//! 2022): uniform random tokens in which one random subsequence appears several times; the loss
//! is on the tokens that copying from an earlier occurrence predicts.
//!
//! Layout of a sequence of length T with `copies` copies of a subsequence S of length L: the
//! `T − copies·L` filler tokens are split into `copies + 1` gaps (before, between and after the
//! copies) by a uniformly random composition, so the copies sit at random, non-overlapping
//! places. Every token, filler or S, is uniform in `0..d_vocab`. Scored: in every copy after the
//! first, the position holding S[i − 1] predicts S[i] (i = 1..L); the first token of a copy
//! follows filler and is not predictable. d_vocab_out = d_vocab.

use super::batch::{SeqBatch, IGNORE};
use super::sequence::{SeqShape, SequenceTask};
use rand::seq::index::sample;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Repeated subsequences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepeatSubsequence {
    /// Vocabulary size (tokens and classes).
    pub d_vocab: usize,
    /// Sequence length T.
    pub n_ctx: usize,
    /// Length L of the repeated subsequence.
    pub sub_len: usize,
    /// How many times it appears (≥ 2).
    pub copies: usize,
}

impl RepeatSubsequence {
    /// The start of each copy in one layout drawn from `rng`.
    pub fn copy_starts(&self, rng: &mut ChaCha8Rng) -> Vec<usize> {
        let free = self.n_ctx - self.copies * self.sub_len;
        // stars and bars: `copies` bars among `free + copies` slots
        let mut bars = sample(rng, free + self.copies, self.copies).into_vec();
        bars.sort_unstable();
        // copy c starts after the fillers before its bar and the c earlier copies
        bars.iter()
            .enumerate()
            .map(|(c, &bar)| (bar - c) + c * self.sub_len)
            .collect()
    }
}

impl SequenceTask for RepeatSubsequence {
    fn shape(&self) -> SeqShape {
        SeqShape {
            d_vocab: self.d_vocab,
            d_vocab_out: self.d_vocab,
            n_ctx: self.n_ctx,
        }
    }

    fn scores_induction(&self) -> bool {
        true
    }

    fn sample_one(&self, rng: &mut ChaCha8Rng, batch: &mut SeqBatch) {
        let v = self.d_vocab as i64;
        let sub: Vec<i64> = (0..self.sub_len).map(|_| rng.random_range(0..v)).collect();
        let mut tokens: Vec<i64> = (0..self.n_ctx).map(|_| rng.random_range(0..v)).collect();
        let mut targets = vec![IGNORE; self.n_ctx];
        for (c, start) in self.copy_starts(rng).into_iter().enumerate() {
            tokens[start..start + self.sub_len].copy_from_slice(&sub);
            if c > 0 {
                for i in 1..self.sub_len {
                    targets[start + i - 1] = sub[i];
                }
            }
        }
        batch.push(&tokens, &targets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::batch::stream_rng;

    #[test]
    fn copies_do_not_overlap_and_fit() {
        let task = RepeatSubsequence {
            d_vocab: 128,
            n_ctx: 85,
            sub_len: 16,
            copies: 3,
        };
        let mut rng = stream_rng(5, 0);
        let mut first_starts = Vec::new();
        for _ in 0..2000 {
            let s = task.copy_starts(&mut rng);
            assert_eq!(s.len(), 3);
            assert!(s.windows(2).all(|w| w[1] >= w[0] + 16), "{s:?}");
            assert!(s[2] + 16 <= 85, "{s:?}");
            first_starts.push(s[0]);
        }
        // both extremes of the layout occur: a copy at the very start, and late first copies
        assert!(first_starts.contains(&0));
        assert!(first_starts.iter().any(|&s| s > 20));
    }

    #[test]
    fn scored_tokens_are_what_the_earlier_copy_predicts() {
        let task = RepeatSubsequence {
            d_vocab: 128,
            n_ctx: 85,
            sub_len: 16,
            copies: 3,
        };
        let batch = task.sample(&mut stream_rng(9, 1), 300);
        for i in 0..batch.len() {
            let (t, y) = (batch.tokens_of(i), batch.targets_of(i));
            let scored: Vec<usize> = (0..85).filter(|&p| y[p] != IGNORE).collect();
            // 2 later copies × 15 predictable tokens
            assert_eq!(scored.len(), 30);
            for &p in &scored {
                // next-token target ...
                assert_eq!(t[p + 1], y[p]);
                // ... that an earlier occurrence of the current token (and of its
                // predecessor, inside a copy) was followed by
                let earlier = (0..p).any(|j| t[j] == t[p] && t[j + 1] == y[p] && j + 1 < p);
                assert!(earlier, "sequence {i}, position {p}");
            }
        }
        assert_eq!(
            batch.common_positions(),
            None,
            "copies move between sequences"
        );
    }
}
