//! Progress measures (Nanda et al. 2023, "Progress measures for grokking via mechanistic
//! interpretability", §4–5; definitions in REFERENCES §2): the Fourier basis and transforms,
//! Fourier norms of the embedding and of W_L, neuron frequencies and clusters, restricted and
//! excluded loss, Gini coefficients, the logit trig fit, sums of squared weights and mean
//! attention, and for addition Zhong et al.'s clock/pizza measures ([`clock_pizza`]) — for one
//! checkpoint ([`Analyzer::measure`]) or every checkpoint of a run.
//!
//! Everything is computed in f64 on the model's outputs for all p² inputs `[a, b, =]` or
//! `[a, b]` (rows a-major, `a·p + b`).

pub mod activations;
mod analyze;
pub mod attention_views;
mod bench;
mod checkpoint;
pub mod clock_pizza;
pub mod fourier;
pub mod grad_split;
pub mod head_saliency;
pub mod icl_run;
pub mod llc;
pub mod llc_run;
pub mod logits;
pub mod matrix;
pub mod mlp_fourier;
pub mod neurons;
pub mod outcome;
pub mod phases;
mod run;
pub mod saliency;
pub mod saliency_run;
pub mod sequence_run;
mod snapshot;
pub mod weights;

// what the training loop also logs lives below it, in `models`, and is measured here too
pub use crate::models::attention_scores as attention;
pub use crate::models::lsa_compare as icl;
pub use crate::models::lsa_heads as icl_weights;
pub use analyze::{analyze_checkpoints, CheckpointAnalysis};
pub use bench::bench_analyze;
pub use checkpoint::{analyze_checkpoint, parse_split, CheckpointTask};
pub use neurons::KeyFreqVotes;
pub use run::{
    analyze_run, check_key_freqs, finite_checkpoints, load_measures, load_run, RunAnalysis,
    RunMeasures, SkippedCheckpoint,
};
pub use snapshot::{Analyzer, KeyFreqRule, Measures, DEFAULT_EMBED_THRESHOLD};
