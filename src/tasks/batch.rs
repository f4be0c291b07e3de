//! A batch of token sequences with a target at every scored position (nanoGPT's layout: targets
//! beside the tokens, [`IGNORE`] where a position is not scored).

use super::icl_regression::{IclBatch, IclFormat};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One batch as a model's step reads it ([`crate::models::Model::step`]), by the kind of data
/// rather than the task family: each model accepts the kinds it can read.
#[derive(Clone, Copy, Debug)]
pub enum Batch<'a> {
    /// `[B, 3]` rows `[a, b, =]` (row-major) and `[B]` labels at the last position: a binary
    /// operation (the fused step's layout).
    Rows {
        /// `[B, 3]` token ids.
        tokens: &'a [i64],
        /// `[B]` classes.
        labels: &'a [i64],
    },
    /// `[B, T]` tokens with a target per position, [`IGNORE`] where unscored.
    Sequence(&'a SeqBatch),
    /// Real-valued tokens: in-context regression tasks laid out as `format` says, the query's
    /// y the target.
    Reals {
        /// The tasks.
        batch: &'a IclBatch,
        /// Their token layout.
        format: IclFormat,
    },
}

impl Batch<'_> {
    /// What the batch holds, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Batch::Rows { .. } => "rows of tokens",
            Batch::Sequence(_) => "token sequences",
            Batch::Reals { .. } => "real-valued tokens",
        }
    }
}

/// Target of a position whose prediction is not scored.
pub const IGNORE: i64 = -1;

/// `n` sequences of `n_ctx` tokens, row-major.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeqBatch {
    /// Sequence length T.
    pub n_ctx: usize,
    /// `[B, T]` token ids.
    pub tokens: Vec<i64>,
    /// `[B, T]` the class position t's logits must predict, or [`IGNORE`].
    pub targets: Vec<i64>,
}

impl SeqBatch {
    /// An empty batch of sequences of length `n_ctx`.
    pub fn new(n_ctx: usize) -> Self {
        Self {
            n_ctx,
            ..Self::default()
        }
    }

    /// Appends one sequence (`tokens` and `targets` both `[T]`).
    ///
    /// # Panics
    /// When either is not `n_ctx` long.
    pub fn push(&mut self, tokens: &[i64], targets: &[i64]) {
        assert_eq!(tokens.len(), self.n_ctx, "sequence length");
        assert_eq!(targets.len(), self.n_ctx, "target length");
        self.tokens.extend_from_slice(tokens);
        self.targets.extend_from_slice(targets);
    }

    /// Number of sequences B.
    pub fn len(&self) -> usize {
        self.tokens.len().checked_div(self.n_ctx).unwrap_or(0)
    }

    /// Whether the batch holds no sequence.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Sequence `i`'s `[T]` tokens.
    pub fn tokens_of(&self, i: usize) -> &[i64] {
        &self.tokens[i * self.n_ctx..(i + 1) * self.n_ctx]
    }

    /// Sequence `i`'s `[T]` targets.
    pub fn targets_of(&self, i: usize) -> &[i64] {
        &self.targets[i * self.n_ctx..(i + 1) * self.n_ctx]
    }

    /// The scored positions, the same in every sequence of the batch, or `None` when they vary
    /// (a model that scores a fixed set computes only those).
    pub fn common_positions(&self) -> Option<Vec<usize>> {
        let first: Vec<usize> = (0..self.n_ctx)
            .filter(|&t| !self.targets.is_empty() && self.targets[t] != IGNORE)
            .collect();
        (0..self.len())
            .all(|i| {
                let row = self.targets_of(i);
                (0..self.n_ctx).all(|t| (row[t] != IGNORE) == first.contains(&t))
            })
            .then_some(first)
    }

    /// The sequences `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> Self {
        let mut out = Self::new(self.n_ctx);
        for &r in rows {
            out.push(self.tokens_of(r), self.targets_of(r));
        }
        out
    }
}

/// The generator of a sampled batch: ChaCha8 seeded by `(seed, stream)`, so batch `stream` of a
/// run is the same whenever it is drawn (resume needs no saved RNG state).
pub fn stream_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// `batch` indices in `0..n` drawn uniformly with replacement for `step`, from a stream seeded by
/// `(seed, step)`, so a resumed run draws the same.
pub fn indices_with_replacement(n: usize, batch: usize, step: u64, seed: u64) -> Vec<usize> {
    use rand::Rng;
    let mut rng = stream_rng(seed ^ 0x7e91_ace5, step);
    (0..batch).map(|_| rng.random_range(0..n)).collect()
}
