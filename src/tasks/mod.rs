//! Algorithmic datasets and their train/test splits.
//!
//! - [`modular`]: binary operations `[a, b, =] → a ∘ b` on residues mod p and on S5, enumerated
//!   and split by fraction (Power et al. 2022; Nanda et al. 2023).
//! - Sequence tasks ([`SequenceTask`]), sampled in a `finite` or `infinite` [`Regime`]:
//!   [`DigitAdd`] (n-digit addition), [`RepeatSubsequence`] (induction), [`SkipTrigram`] (the
//!   authors' signal-token lookup), [`MaxElement`] (max of a sequence), [`SparseParity`], [`Sort`] (sorting a list); each is
//!   one file registered by one line of `sequence_tasks!` below (`docs/extending.md`). Each documents its tokens and the positions it scores; a batch
//!   carries a target per position ([`SeqBatch`], [`IGNORE`] where unscored).
//! - [`IclRegression`]: in-context linear regression on real-valued tokens (von Oswald et al.
//!   2023), a fresh batch of tasks every step.

mod batch;
pub mod icl_regression;
pub mod modular;
pub mod permutation;
mod python_random;
mod sequence;
mod spec;
mod split;

pub use batch::{indices_with_replacement, stream_rng, Batch, SeqBatch, IGNORE};
pub use icl_regression::{IclBatch, IclFormat, IclRegression};
pub use induction::CopyLayout;
pub use modular::{is_prime, ModularDataset, Operation};
pub use python_random::PythonRandom;
pub use sequence::{Regime, SeqData, SeqShape, SeqTaskConfig, SeqTaskEntry, SequenceTask};
pub use sparse_parity::SparseParity;
pub use spec::{DataSpec, Inputs, Targets};
pub use split::{split_indices, Split, SplitMode};

/// Declares each sequence task's module, re-exports its config type, and lists it in
/// [`SEQUENCE_TASKS`]: `module::ConfigType,` is the one line a new task adds.
macro_rules! sequence_tasks {
    ($($module:ident :: $config:ident),* $(,)?) => {
        $(pub mod $module; pub use $module::$config;)*
        /// Every sequence task, by `task.name` ([`SeqTaskConfig::NAME`]).
        pub const SEQUENCE_TASKS: &[SeqTaskEntry] = &[$(SeqTaskEntry::of::<$config>()),*];
    };
}

sequence_tasks! {
    digit_add::DigitAdd,
    induction::RepeatSubsequence,
    skip_trigram::SkipTrigram,
    max_element::MaxElement,
    sparse_parity::SparseParityConfig,
    sort::Sort,
}

/// The registered sequence task named `name`.
pub fn sequence_task(name: &str) -> Option<&'static SeqTaskEntry> {
    SEQUENCE_TASKS.iter().find(|e| e.name == name)
}
