//! What a task feeds a model and asks back ([`DataSpec`]): the seam between tasks and models. A
//! model checks it (`ModelFamily::accepts` in [`crate::config`]) and sizes itself from it, so
//! task × model compatibility is one check per model, not a cross-product.

/// The inputs, targets and sequence length of a task's batches.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSpec {
    /// `task.name`, for error messages.
    pub task: String,
    /// What a batch's inputs are.
    pub inputs: Inputs,
    /// What a batch's targets are.
    pub targets: Targets,
    /// Positions (tokens) per sequence T.
    pub n_ctx: usize,
    /// Whether every sequence is scored at one position only (a model with one prediction per
    /// sequence, the MLP, can learn it).
    pub one_scored_position: bool,
}

/// A batch's inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inputs {
    /// `[B, T]` token ids in `0..d_vocab`.
    Tokens {
        /// Input vocabulary.
        d_vocab: usize,
    },
    /// `[B, T, d + 1]` real-valued tokens (in-context regression's `(x, y)` pairs).
    Reals {
        /// Dimension of x.
        d: usize,
    },
}

/// A batch's targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Targets {
    /// Class ids at the scored positions (`IGNORE` elsewhere).
    Classes {
        /// Classes the task has.
        d_vocab_out: usize,
        /// Where the model may also predict over the whole input vocabulary instead
        /// (`model.d_vocab_out = "p+1"` of a binary operation: the `=` token a class never a
        /// label), that vocabulary; `None`: the task fixes its classes.
        padded: Option<usize>,
    },
    /// A real value per sequence (the query's y).
    Reals {
        /// Its dimension.
        d_out: usize,
    },
}
