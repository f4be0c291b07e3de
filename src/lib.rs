//! groklab: a laboratory for watching small neural networks learn algorithms.
//!
//! The pipeline reads top to bottom: [`tasks`] (data and splits) → [`models`] (the
//! TransformerLens-layout transformer on burn) → [`train`] (AdamW, checkpoints, metrics, the
//! training loop) → [`measures`] (progress measures of checkpoints) → [`report`] (plots, HTML),
//! with [`rundir`] (the run directory's layout, atomic writes, the metrics log) below them all.

#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod measures;
pub mod models;
pub mod numerics;
pub mod report;
pub mod rundir;
pub mod sweep;
pub mod tasks;
pub mod train;

pub use error::{GrokError, Result};
