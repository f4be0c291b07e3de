//! The sequence report's checkpoint explorer data (`attention.json`, written by `analyze`): at
//! each checkpoint, every head's attention pattern (`blocks.{l}.attn.hook_pattern`) on one
//! fixed test sequence, and, over the first [`PROBE`] test sequences, the mean pattern by offset
//! — relative to the earlier occurrence of the query's token (the induction stripe at +1;
//! repeated subsequences only) and relative to the query (the previous-token diagonal at 1).

use super::attention::{
    induction_offset_profile, query_offset_profile, INDUCTION_OFFSETS, QUERY_OFFSETS,
};
use crate::models::{ParamStore, Scored, Transformer, TransformerConfig};
use crate::tasks::SeqBatch;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Test sequences the offset profiles average over.
pub const PROBE: usize = 64;

/// Most checkpoints the explorer carries (evenly spaced, the first and last always): each holds
/// `n_layers · n_heads · T²` pattern entries.
pub const MAX_CHECKPOINTS: usize = 40;

/// One checkpoint's views.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointViews {
    /// Optimiser steps.
    pub step: u64,
    /// Per head (layer-major: index `l·n_heads + h`) the pattern on the fixed sequence,
    /// `[T_query, T_key]` row-major, in thousandths (0–1000).
    pub patterns: Vec<Vec<u16>>,
    /// Per head (layer-major) the mean attention at each offset of `induction_offsets` from the
    /// earlier occurrence; empty for tasks that do not repeat tokens by design.
    pub induction_profile: Vec<Vec<f64>>,
    /// Per head (layer-major) the mean attention to the query's position minus each of
    /// `query_offsets`.
    pub query_profile: Vec<Vec<f64>>,
}

/// `attention.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttentionViews {
    /// Blocks and heads per block.
    pub n_layers: usize,
    /// Heads per block.
    pub n_heads: usize,
    /// The fixed sequence (test sequence 0) `[T]`.
    pub tokens: Vec<i64>,
    /// Its targets `[T]` (−100 where unscored).
    pub targets: Vec<i64>,
    /// Where the fixed sequence holds its signal token (skip trigrams), else `None`.
    pub signal_position: Option<usize>,
    /// Offsets of `induction_profile` (key − earlier occurrence).
    pub induction_offsets: Vec<i64>,
    /// Offsets of `query_profile` (query − key).
    pub query_offsets: Vec<usize>,
    /// The checkpoints shown, ascending.
    pub checkpoints: Vec<CheckpointViews>,
}

/// The checkpoints of `steps` the explorer shows: all if at most [`MAX_CHECKPOINTS`], else that
/// many evenly spaced, first and last included.
pub fn explorer_steps(steps: &[u64]) -> Vec<u64> {
    let n = steps.len();
    if n <= MAX_CHECKPOINTS {
        return steps.to_vec();
    }
    let mut picked: Vec<u64> = (0..MAX_CHECKPOINTS)
        .map(|i| steps[i * (n - 1) / (MAX_CHECKPOINTS - 1)])
        .collect();
    picked.dedup();
    picked
}

/// The views of the weights `store` on `probe` (its first sequence is the fixed one); the
/// induction profile when `induction`.
pub fn checkpoint_views(
    cfg: &TransformerConfig,
    store: &ParamStore,
    probe: &SeqBatch,
    step: u64,
    induction: bool,
) -> CheckpointViews {
    let device = Device::flex();
    let (b, t, h) = (probe.len(), probe.n_ctx, cfg.n_heads);
    let model = Transformer::new(cfg, store, &device, DType::F64, false);
    let tokens =
        Tensor::<2, Int>::from_data(TensorData::new(probe.tokens.clone(), [b, t]), &device);
    let mut views = CheckpointViews {
        step,
        patterns: Vec::new(),
        induction_profile: Vec::new(),
        query_profile: Vec::new(),
    };
    for pattern in model.forward_seq(tokens, &Scored::All).patterns {
        let p: Vec<f64> = pattern.into_data().try_into_vec_as::<f64>().expect("float");
        for head in 0..h {
            let first = &p[head * t * t..][..t * t];
            views
                .patterns
                .push(first.iter().map(|x| (x * 1000.0).round() as u16).collect());
        }
        if induction {
            views
                .induction_profile
                .extend(induction_offset_profile(&p, probe, h));
        }
        views
            .query_profile
            .extend(query_offset_profile(&p, b, h, t));
    }
    views
}

impl AttentionViews {
    /// The frame of the views of `cfg` on `probe` (before any checkpoint); `signal` the task's
    /// signal tokens, if it has any.
    pub fn new(
        cfg: &TransformerConfig,
        probe: &SeqBatch,
        signal: Option<std::ops::Range<i64>>,
    ) -> Self {
        let tokens = probe.tokens_of(0);
        Self {
            n_layers: cfg.n_layers,
            n_heads: cfg.n_heads,
            signal_position: signal.and_then(|s| tokens.iter().position(|t| s.contains(t))),
            tokens: tokens.to_vec(),
            targets: probe.targets_of(0).to_vec(),
            induction_offsets: INDUCTION_OFFSETS.collect(),
            query_offsets: QUERY_OFFSETS.collect(),
            checkpoints: Vec::new(),
        }
    }
}
