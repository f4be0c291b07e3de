//! Repeated subsequences (Nanda et al. 2023 appendix; the induction-head task of Olsson et al.
//! 2022): random tokens in which one random subsequence appears several times; the loss is on
//! the tokens that copying from an earlier occurrence predicts.
//!
//! Two layouts of a sequence of length T with `copies` copies of a subsequence S of length L:
//! - [`CopyLayout::Random`] (groklab's): the `T − copies·L` filler tokens are split into
//!   `copies + 1` gaps (before, between and after the copies) by a uniformly random
//!   composition, so the copies sit at random, non-overlapping places;
//! - [`CopyLayout::Windows`] (the authors' notebook, REFERENCES.md §3): the positions after the
//!   BOS (or all of them, without one) are cut into `copies` windows of `w = (T − bos) / copies`
//!   tokens, and copy i starts uniformly in `[bos + w·i, bos + w·i + w − L]`.
//!
//! Every token, filler or S, is uniform in `0..d_vocab`, or in `1..d_vocab` with `bos`, where
//! position 0 always holds token 0. Scored: in every copy after the first, the position holding
//! S[i − 1] predicts S[i] (i = 1..L); the first token of a copy follows filler and is not
//! predictable. d_vocab_out = d_vocab.

use super::batch::{SeqBatch, IGNORE};
use super::sequence::{positive, SeqShape, SeqTaskConfig, SequenceTask};
use crate::error::{GrokError, Result};
use rand::seq::index::sample;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Where the copies of the subsequence go (`task.layout`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyLayout {
    /// Anywhere, not overlapping: a uniformly random composition of the filler into gaps.
    #[default]
    Random,
    /// Copy i inside its own window of `(T − bos) / copies` tokens (the authors' notebook).
    Windows,
}

/// Repeated subsequences (`task.name = "repeat_subsequence"`; keys: `d_vocab`, `n_ctx`,
/// `sub_len`, `copies`, and optionally `bos`, `layout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepeatSubsequence {
    /// Vocabulary size (tokens and classes).
    pub d_vocab: usize,
    /// Sequence length T.
    pub n_ctx: usize,
    /// Length L of the repeated subsequence.
    pub sub_len: usize,
    /// How many times it appears (≥ 2).
    pub copies: usize,
    /// Position 0 is token 0 (a BOS) and every other token is drawn from `1..d_vocab` (the
    /// authors' notebook). Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bos: bool,
    /// Where the copies go: `random` (default) or `windows` (the authors' notebook).
    #[serde(default, skip_serializing_if = "is_random")]
    pub layout: CopyLayout,
}

fn is_random(l: &CopyLayout) -> bool {
    *l == CopyLayout::Random
}

impl SeqTaskConfig for RepeatSubsequence {
    const NAME: &'static str = "repeat_subsequence";

    fn validate(&self) -> Result<()> {
        for (key, v) in [
            ("d_vocab", self.d_vocab),
            ("n_ctx", self.n_ctx),
            ("sub_len", self.sub_len),
            ("copies", self.copies),
        ] {
            positive(key, v)?;
        }
        if self.copies < 2 {
            return Err(GrokError::invalid("task.copies", self.copies, "an integer >= 2"));
        }
        if self.copies * self.sub_len + usize::from(self.bos) > self.n_ctx {
            return Err(GrokError::invalid(
                "task.n_ctx",
                self.n_ctx,
                "at least copies x sub_len (+ 1 with bos)",
            ));
        }
        if self.bos && self.d_vocab < 2 {
            return Err(GrokError::invalid(
                "task.d_vocab",
                self.d_vocab,
                "at least 2 with bos (token 0 is the BOS)",
            ));
        }
        Ok(())
    }

    fn build(&self, _seed: u64) -> Box<dyn SequenceTask> {
        Box::new(*self)
    }
}

impl RepeatSubsequence {
    /// Width of each copy's window under [`CopyLayout::Windows`]: `(T − bos) / copies`.
    pub fn window(&self) -> usize {
        (self.n_ctx - usize::from(self.bos)) / self.copies
    }

    /// The start of each copy in one layout drawn from `rng` (ascending, non-overlapping, never
    /// on the BOS).
    pub fn copy_starts(&self, rng: &mut ChaCha8Rng) -> Vec<usize> {
        let first = usize::from(self.bos);
        match self.layout {
            CopyLayout::Windows => {
                let w = self.window();
                (0..self.copies)
                    .map(|i| first + w * i + rng.random_range(0..=w - self.sub_len))
                    .collect()
            }
            CopyLayout::Random => {
                let free = self.n_ctx - first - self.copies * self.sub_len;
                // stars and bars: `copies` bars among `free + copies` slots
                let mut bars = sample(rng, free + self.copies, self.copies).into_vec();
                bars.sort_unstable();
                // copy c starts after the fillers before its bar and the c earlier copies
                bars.iter()
                    .enumerate()
                    .map(|(c, &bar)| first + (bar - c) + c * self.sub_len)
                    .collect()
            }
        }
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
        let (lo, v) = (i64::from(self.bos), self.d_vocab as i64);
        let sub: Vec<i64> = (0..self.sub_len).map(|_| rng.random_range(lo..v)).collect();
        let mut tokens: Vec<i64> = (0..self.n_ctx).map(|_| rng.random_range(lo..v)).collect();
        if self.bos {
            tokens[0] = 0;
        }
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
            bos: false,
            layout: CopyLayout::Random,
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
            bos: false,
            layout: CopyLayout::Random,
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

    /// The authors' layout: BOS 0 at position 0 and nowhere else, copy i inside
    /// [1 + 28i, 29 + 28i) with its start uniform over [1 + 28i, 14 + 28i) (both ends occur), 30
    /// scored positions that copying predicts.
    #[test]
    fn windows_with_bos_follow_the_notebook() {
        let task = RepeatSubsequence {
            d_vocab: 128,
            n_ctx: 85,
            sub_len: 16,
            copies: 3,
            bos: true,
            layout: CopyLayout::Windows,
        };
        assert_eq!(task.window(), 28);
        let mut rng = stream_rng(3, 0);
        let mut offsets = vec![std::collections::BTreeSet::new(); 3];
        for _ in 0..3000 {
            for (i, s) in task.copy_starts(&mut rng).into_iter().enumerate() {
                assert!((1 + 28 * i..14 + 28 * i).contains(&s), "copy {i} at {s}");
                offsets[i].insert(s - (1 + 28 * i));
            }
        }
        for o in &offsets {
            assert_eq!(
                o.iter().copied().collect::<Vec<_>>(),
                (0..13).collect::<Vec<_>>()
            );
        }
        let batch = task.sample(&mut stream_rng(4, 2), 200);
        for i in 0..batch.len() {
            let (t, y) = (batch.tokens_of(i), batch.targets_of(i));
            assert_eq!(t[0], 0);
            assert!(t[1..].iter().all(|&x| (1..128).contains(&x)));
            let scored: Vec<usize> = (0..85).filter(|&p| y[p] != IGNORE).collect();
            assert_eq!(scored.len(), 30);
            assert!(scored.iter().all(|&p| t[p + 1] == y[p] && p >= 29));
        }
    }
}
