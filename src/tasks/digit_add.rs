//! n-digit addition (Nanda et al. 2023 §5 / appendix; settings from the paper's saved runs):
//! `a₁…aₙ + b₁…bₙ = s₀…sₙ`, most significant digit first, the n + 1 answer digits predicted
//! next-token.
//!
//! Tokens: digits 0–9, `+` = 10, `=` = 11 (d_vocab 12); T = 3n + 3 (18 for n = 5); 10 classes.
//! Position `2n + 1` (the `=`) predicts s₀ (the final carry), and position `2n + 1 + j` (holding
//! s_{j−1}) predicts s_j; no other position is scored. Answer digit j is always scored at the
//! same position, so per-position loss is per-digit loss.

use super::batch::{SeqBatch, IGNORE};
use super::sequence::{positive, SeqShape, SeqTaskConfig, SequenceTask};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Token `+`.
pub const PLUS: i64 = 10;
/// Token `=`.
pub const EQUALS: i64 = 11;

/// n-digit addition (`task.name = "digit_add"`; keys: `n_digits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigitAdd {
    /// Digits per operand.
    pub n_digits: usize,
}

impl DigitAdd {
    /// The position whose logits predict answer digit `j` (0 = the carry digit s₀).
    pub fn answer_position(&self, j: usize) -> usize {
        2 * self.n_digits + 1 + j
    }

    /// The sequence and targets of `a + b` (each given as n digits, most significant first).
    pub fn encode(&self, a: &[u8], b: &[u8]) -> (Vec<i64>, Vec<i64>) {
        let n = self.n_digits;
        assert!(a.len() == n && b.len() == n, "operands have {n} digits");
        // s₀…sₙ, most significant first, by schoolbook addition from the right
        let mut sum = vec![0i64; n + 1];
        let mut carry = 0;
        for i in (0..n).rev() {
            let d = a[i] + b[i] + carry;
            sum[i + 1] = (d % 10) as i64;
            carry = d / 10;
        }
        sum[0] = carry as i64;
        let mut tokens: Vec<i64> = a.iter().map(|&d| d as i64).collect();
        tokens.push(PLUS);
        tokens.extend(b.iter().map(|&d| d as i64));
        tokens.push(EQUALS);
        tokens.extend(&sum);
        let mut targets = vec![IGNORE; tokens.len()];
        for (j, &s) in sum.iter().enumerate() {
            targets[self.answer_position(j)] = s;
        }
        (tokens, targets)
    }
}

impl SeqTaskConfig for DigitAdd {
    const NAME: &'static str = "digit_add";

    fn validate(&self) -> Result<()> {
        positive("n_digits", self.n_digits)
    }

    fn build(&self, _seed: u64) -> Box<dyn SequenceTask> {
        Box::new(*self)
    }
}

impl SequenceTask for DigitAdd {
    fn position_name(&self) -> &'static str {
        "answer digit"
    }

    /// `s₀ (carry)`, `s₁`, …: the answer digits in position order, most significant first.
    fn position_label(&self, i: usize) -> Option<String> {
        Some(digit_label(i))
    }

    fn shape(&self) -> SeqShape {
        SeqShape {
            d_vocab: 12,
            d_vocab_out: 10,
            n_ctx: 3 * self.n_digits + 3,
        }
    }

    /// Both operands' digits uniform in 0–9.
    fn sample_one(&self, rng: &mut ChaCha8Rng, batch: &mut SeqBatch) {
        let n = self.n_digits;
        let a: Vec<u8> = (0..n).map(|_| rng.random_range(0..10)).collect();
        let b: Vec<u8> = (0..n).map(|_| rng.random_range(0..10)).collect();
        let (tokens, targets) = self.encode(&a, &b);
        batch.push(&tokens, &targets);
    }
}

/// `s₀ (carry)`, `s₁`, …: the answer digit at the `i`-th scored position, most significant
/// first (Nanda et al. 2023 §5: `a₁…a₅ + b₁…b₅ = s₀…s₅`).
pub fn digit_label(i: usize) -> String {
    const SUB: [char; 10] = ['₀', '₁', '₂', '₃', '₄', '₅', '₆', '₇', '₈', '₉'];
    let digits: String = i
        .to_string()
        .chars()
        .map(|c| SUB[c as usize - '0' as usize])
        .collect();
    if i == 0 {
        format!("s{digits} (carry)")
    } else {
        format!("s{digits}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::batch::stream_rng;

    fn number(digits: &[i64]) -> u64 {
        digits.iter().fold(0, |n, &d| 10 * n + d as u64)
    }

    #[test]
    fn format_and_carries() {
        let task = DigitAdd { n_digits: 5 };
        let (tokens, targets) = task.encode(&[9, 9, 9, 9, 9], &[0, 0, 0, 0, 1]);
        assert_eq!(
            tokens,
            vec![9, 9, 9, 9, 9, PLUS, 0, 0, 0, 0, 1, EQUALS, 1, 0, 0, 0, 0, 0]
        );
        assert_eq!(tokens.len(), task.shape().n_ctx);
        // position 11 (`=`) predicts s₀ = 1, positions 12…16 predict s₁…s₅; 17 predicts nothing
        let scored: Vec<(usize, i64)> = (targets.iter().enumerate())
            .filter(|(_, &t)| t != IGNORE)
            .map(|(i, &t)| (i, t))
            .collect();
        assert_eq!(
            scored,
            vec![(11, 1), (12, 0), (13, 0), (14, 0), (15, 0), (16, 0)]
        );
        // the target of each scored position is the next token (teacher forcing)
        for (i, t) in scored {
            assert_eq!(tokens[i + 1], t);
        }
        // no carry out of the top digit
        let (tokens, _) = task.encode(&[1, 2, 3, 4, 5], &[5, 4, 3, 2, 1]);
        assert_eq!(&tokens[12..], &[0, 6, 6, 6, 6, 6]);
    }

    #[test]
    fn sampled_sums_are_right() {
        let task = DigitAdd { n_digits: 5 };
        let batch = task.sample(&mut stream_rng(3, 0), 500);
        let mut carries = 0;
        for i in 0..batch.len() {
            let t = batch.tokens_of(i);
            let (a, b, s) = (number(&t[0..5]), number(&t[6..11]), number(&t[12..18]));
            assert_eq!(a + b, s, "{t:?}");
            assert_eq!((t[5], t[11]), (PLUS, EQUALS));
            carries += usize::from(t[12] == 1);
        }
        // about half of the sums carry out of the top digit
        assert!((150..350).contains(&carries), "{carries}");
        assert_eq!(batch.common_positions(), Some((11..17).collect()));
    }
}
