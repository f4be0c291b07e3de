//! Skip trigrams as the authors ran them (Nanda et al. 2023 appendix; their notebook,
//! REFERENCES.md §3): one signal token hidden among noise tokens, read out at the end.
//!
//! Tokens: 0 = BOS, 1 = END, noise `2..2 + n_noise`, signal `2 + n_noise + c` for class
//! `c ∈ 0..n_signal` (d_vocab = 2 + n_noise + n_signal; the authors': 10 noise tokens, 10
//! signals, d_vocab 22). A sequence is `BOS x₁…x_n END` (T = n + 2; the authors': n = 40,
//! T = 42): every `x_i` uniform noise, then one uniformly chosen position in 1..=n overwritten
//! by the signal of a uniform class c. Only END is scored, with target c (`n_signal` classes):
//! the skip trigram "signal … END → c".

use super::batch::{SeqBatch, IGNORE};
use super::sequence::{positive, SeqShape, SeqTaskConfig, SequenceTask};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A signal token among noise, its class predicted at END (`task.name = "skip_trigram"`;
/// keys: `n_signal`, `n_noise`, `n_elems`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipTrigram {
    /// Signal tokens = classes.
    pub n_signal: usize,
    /// Noise tokens.
    pub n_noise: usize,
    /// Positions between BOS and END n.
    pub n_elems: usize,
}

impl SkipTrigram {
    /// Token BOS.
    pub const BOS: i64 = 0;
    /// Token END.
    pub const END: i64 = 1;

    /// The token of signal class `c`.
    pub fn signal(&self, c: usize) -> i64 {
        (2 + self.n_noise + c) as i64
    }
}

impl SeqTaskConfig for SkipTrigram {
    const NAME: &'static str = "skip_trigram";

    fn validate(&self) -> Result<()> {
        positive("n_signal", self.n_signal)?;
        positive("n_noise", self.n_noise)?;
        positive("n_elems", self.n_elems)
    }

    fn build(&self, _seed: u64) -> Box<dyn SequenceTask> {
        Box::new(*self)
    }
}

impl SequenceTask for SkipTrigram {
    fn shape(&self) -> SeqShape {
        SeqShape {
            d_vocab: 2 + self.n_noise + self.n_signal,
            d_vocab_out: self.n_signal,
            n_ctx: self.n_elems + 2,
        }
    }

    fn scores_per_class(&self) -> bool {
        true
    }

    fn signal_tokens(&self) -> Option<std::ops::Range<i64>> {
        Some(self.signal(0)..self.signal(self.n_signal))
    }

    fn sample_one(&self, rng: &mut ChaCha8Rng, batch: &mut SeqBatch) {
        let mut tokens = Vec::with_capacity(self.n_elems + 2);
        tokens.push(Self::BOS);
        let noise = 2..2 + self.n_noise as i64;
        tokens.extend((0..self.n_elems).map(|_| rng.random_range(noise.clone())));
        tokens.push(Self::END);
        let c = rng.random_range(0..self.n_signal);
        tokens[rng.random_range(1..=self.n_elems)] = self.signal(c);
        let mut targets = vec![IGNORE; tokens.len()];
        targets[self.n_elems + 1] = c as i64;
        batch.push(&tokens, &targets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::batch::stream_rng;

    /// The authors' shapes; one signal per sequence whose class is the target at END; BOS and
    /// END in place; noise elsewhere; every class and every signal position occurs.
    #[test]
    fn one_signal_among_noise_predicts_its_class_at_end() {
        let task = SkipTrigram {
            n_signal: 10,
            n_noise: 10,
            n_elems: 40,
        };
        let s = task.shape();
        assert_eq!((s.d_vocab, s.d_vocab_out, s.n_ctx), (22, 10, 42));
        let batch = task.sample(&mut stream_rng(1, 0), 4000);
        assert_eq!(batch.common_positions(), Some(vec![41]));
        let (mut classes, mut places) = (vec![0; 10], vec![0; 42]);
        for i in 0..batch.len() {
            let (t, y) = (batch.tokens_of(i), batch.targets_of(i));
            assert_eq!((t[0], t[41]), (SkipTrigram::BOS, SkipTrigram::END));
            let signals: Vec<usize> = (1..41).filter(|&p| t[p] >= 12).collect();
            assert_eq!(signals.len(), 1, "sequence {i}");
            assert!(t[1..41].iter().all(|&x| (2..22).contains(&x)));
            assert_eq!(y[41], t[signals[0]] - 12);
            classes[y[41] as usize] += 1;
            places[signals[0]] += 1;
        }
        assert!(classes.iter().all(|&n| n > 300), "{classes:?}");
        assert!(places[1..41].iter().all(|&n| n > 40), "{places:?}");
    }
}
