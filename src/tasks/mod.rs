//! Algorithmic datasets and their train/test splits.
//!
//! - [`modular`]: binary operations `[a, b, =] → a ∘ b` on residues mod p and on S5, enumerated
//!   and split by fraction (Power et al. 2022; Nanda et al. 2023).
//! - Sequence tasks ([`SequenceTask`]), sampled in a `finite` or `infinite` [`Regime`]:
//!   [`DigitAdd`] (n-digit addition), [`RepeatSubsequence`] (induction), [`SkipTrigram`] (the
//!   authors' signal-token lookup), [`MaxElement`] (max of a sequence), [`SparseParity`]. Each documents its tokens and the positions it scores; a batch
//!   carries a target per position ([`SeqBatch`], [`IGNORE`] where unscored).
//! - [`IclRegression`]: in-context linear regression on real-valued tokens (von Oswald et al.
//!   2023), a fresh batch of tasks every step.

mod batch;
mod digit_add;
pub mod icl_regression;
mod induction;
mod max_element;
pub mod modular;
pub mod permutation;
mod python_random;
mod sequence;
mod skip_trigram;
mod sparse_parity;
mod split;

pub use batch::{indices_with_replacement, stream_rng, SeqBatch, IGNORE};
pub use digit_add::DigitAdd;
pub use icl_regression::{IclBatch, IclFormat, IclRegression};
pub use induction::{CopyLayout, RepeatSubsequence};
pub use max_element::MaxElement;
pub use modular::{is_prime, ModularDataset, Operation};
pub use python_random::PythonRandom;
pub use sequence::{Regime, SeqData, SeqShape, SequenceTask};
pub use skip_trigram::SkipTrigram;
pub use sparse_parity::SparseParity;
pub use split::{split_indices, Split, SplitMode};
