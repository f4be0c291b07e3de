//! A hand-written forward + backward pass of the sequence transformer (the general path of
//! [`crate::models::Transformer::forward_seq`]: any number of blocks, attention-only or with an
//! MLP, with or without LayerNorm, ReLU or GELU), llm.c style, for the speed of the sequence
//! presets' step.
//!
//! The burn graph spends its time in element-wise passes, copies and a scalar `exp` over the
//! whole `[B, H, T, T]` score tensor; here every projection is one matrix product on contiguous
//! rows, the softmax exponentiates only the unmasked keys with a vectorised `exp`
//! ([`attention`]), and the last block computes queries, MLP and unembedding at the scored
//! positions only, as the burn path does. Sequences are split into one chunk per thread and
//! the chunks' gradients summed. The burn model is the reference it is tested against
//! (`tests/fused_seq.rs`: losses and every gradient in f64 and f32).

mod attention;
mod dense;
mod pass;

pub use attention::SoftmaxExp;

use super::fused::Kernel;
use super::{Normalization, ParamStore, TransformerConfig};
use crate::numerics::linalg::{heads_side_by_side, heads_stacked};
use rayon::prelude::*;

/// A LayerNorm's scale and bias `[D]`.
pub(crate) struct Ln<T> {
    w: Vec<T>,
    b: Vec<T>,
}

/// An MLP sublayer: `W_in` `[D, M]`, `b_in` `[M]`, `W_out` `[M, D]`, `b_out` `[D]`.
pub(crate) struct MlpW<T> {
    ln2: Option<Ln<T>>,
    w_in: Vec<T>,
    b_in: Vec<T>,
    w_out: Vec<T>,
    b_out: Vec<T>,
}

/// One block: `W_Q`, `W_K`, `W_V` as `[D, H·Dh]` (heads side by side), their biases `[H·Dh]`,
/// `W_O` `[H·Dh, D]` (TransformerLens' `[H, Dh, D]` as is), `b_O` `[D]`.
pub(crate) struct BlockW<T> {
    ln1: Option<Ln<T>>,
    w_q: Vec<T>,
    w_k: Vec<T>,
    w_v: Vec<T>,
    b_q: Vec<T>,
    b_k: Vec<T>,
    b_v: Vec<T>,
    w_o: Vec<T>,
    b_o: Vec<T>,
    mlp: Option<MlpW<T>>,
}

/// Every weight of the model in compute precision `T` (or, for a backward pass, their
/// gradients in the same layouts).
pub struct SeqWeights<T> {
    cfg: TransformerConfig,
    w_e: Vec<T>,
    w_pos: Vec<T>,
    blocks: Vec<BlockW<T>>,
    ln_final: Option<Ln<T>>,
    w_u: Vec<T>,
    b_u: Vec<T>,
}

impl<T: Kernel + SoftmaxExp> SeqWeights<T> {
    /// All-zero tensors shaped for `cfg`.
    fn zeros(cfg: &TransformerConfig) -> Self {
        let (d, hd, m) = (cfg.d_model, cfg.n_heads * cfg.d_head, cfg.d_mlp);
        let z = |n: usize| vec![T::zero(); n];
        let ln = cfg.normalization == Normalization::PreLn;
        let norm = || ln.then(|| Ln { w: z(d), b: z(d) });
        Self {
            cfg: cfg.clone(),
            w_e: z(cfg.d_vocab * d),
            w_pos: z(cfg.n_ctx * d),
            blocks: (0..cfg.n_layers)
                .map(|_| BlockW {
                    ln1: norm(),
                    w_q: z(d * hd),
                    w_k: z(d * hd),
                    w_v: z(d * hd),
                    b_q: z(hd),
                    b_k: z(hd),
                    b_v: z(hd),
                    w_o: z(hd * d),
                    b_o: z(d),
                    mlp: (!cfg.attn_only).then(|| MlpW {
                        ln2: norm(),
                        w_in: z(d * m),
                        b_in: z(m),
                        w_out: z(m * d),
                        b_out: z(d),
                    }),
                })
                .collect(),
            ln_final: norm(),
            w_u: z(d * cfg.d_vocab_out),
            b_u: z(cfg.d_vocab_out),
        }
    }

    /// Every tensor with its TransformerLens name (`W_Q`, `W_K`, `W_V` in the side-by-side
    /// layout).
    fn named_mut(&mut self) -> Vec<(String, &mut Vec<T>)> {
        let mut out: Vec<(String, &mut Vec<T>)> = vec![
            ("embed.W_E".into(), &mut self.w_e),
            ("pos_embed.W_pos".into(), &mut self.w_pos),
        ];
        for (l, blk) in self.blocks.iter_mut().enumerate() {
            let p = |s: &str| format!("blocks.{l}.{s}");
            push_ln(&mut out, &p("ln1"), &mut blk.ln1);
            out.push((p("attn.W_Q"), &mut blk.w_q));
            out.push((p("attn.W_K"), &mut blk.w_k));
            out.push((p("attn.W_V"), &mut blk.w_v));
            out.push((p("attn.W_O"), &mut blk.w_o));
            out.push((p("attn.b_Q"), &mut blk.b_q));
            out.push((p("attn.b_K"), &mut blk.b_k));
            out.push((p("attn.b_V"), &mut blk.b_v));
            out.push((p("attn.b_O"), &mut blk.b_o));
            if let Some(mlp) = &mut blk.mlp {
                push_ln(&mut out, &p("ln2"), &mut mlp.ln2);
                out.push((p("mlp.W_in"), &mut mlp.w_in));
                out.push((p("mlp.b_in"), &mut mlp.b_in));
                out.push((p("mlp.W_out"), &mut mlp.w_out));
                out.push((p("mlp.b_out"), &mut mlp.b_out));
            }
        }
        push_ln(&mut out, "ln_final", &mut self.ln_final);
        out.push(("unembed.W_U".into(), &mut self.w_u));
        out.push(("unembed.b_U".into(), &mut self.b_u));
        out
    }

    /// The store's weights converted to `T`.
    ///
    /// # Panics
    /// If `store` lacks a tensor `cfg` has (stores are built from the same config).
    pub fn new(cfg: &TransformerConfig, store: &ParamStore) -> Self {
        let (h, d, dh) = (cfg.n_heads, cfg.d_model, cfg.d_head);
        let mut w = Self::zeros(cfg);
        for (name, dst) in w.named_mut() {
            let e = (store.get(&name)).unwrap_or_else(|| panic!("parameter `{name}` exists"));
            let x: Vec<T> = e.data.iter().map(|&x| T::of(x)).collect();
            *dst = if is_heads(&name) {
                heads_side_by_side(&x, h, d, dh)
            } else {
                x
            };
        }
        w
    }

    fn add(&mut self, other: &mut Self) {
        for ((_, a), (_, b)) in self.named_mut().into_iter().zip(other.named_mut()) {
            a.iter_mut().zip(b.iter()).for_each(|(a, &b)| *a += b);
        }
    }
}

/// Pushes a LayerNorm's `{name}.w` and `{name}.b`, if it has one.
fn push_ln<'a, T>(out: &mut Vec<(String, &'a mut Vec<T>)>, name: &str, n: &'a mut Option<Ln<T>>) {
    if let Some(Ln { w, b }) = n {
        out.push((format!("{name}.w"), w));
        out.push((format!("{name}.b"), b));
    }
}

fn is_heads(name: &str) -> bool {
    name.ends_with("attn.W_Q") || name.ends_with("attn.W_K") || name.ends_with("attn.W_V")
}

/// A batch of sequences as the fused pass reads it.
pub struct SeqInput<'a> {
    /// `[B, T]` row-major token ids.
    pub tokens: &'a [i64],
    /// Sequence length T.
    pub t: usize,
    /// The scored positions of every sequence (ascending).
    pub positions: &'a [usize],
    /// `[B, P]` the target at each scored position, or `ignore` for none.
    pub targets: &'a [i64],
    /// The target value of an unscored pair.
    pub ignore: i64,
    /// The log-softmax in f32 ([`crate::models::fused::cross_entropy_f32`]) instead of f64.
    pub f32_loss: bool,
}

/// Mean cross-entropy (nats, log-softmax in f64, or f32 where asked) over the scored pairs, accuracy, and for a
/// training step every store entry's gradient in store order (`None` for frozen tensors).
pub struct SeqResult {
    /// Mean loss over the pairs whose target is not `ignore` (NaN when there are none).
    pub loss: f64,
    /// Accuracy in [0, 1].
    pub acc: f64,
    /// Scored pairs.
    pub n: usize,
    /// Per scored pair (targets that are not `ignore`, in row order): its loss (nats) and
    /// whether the arg-max logit is the target.
    pub pairs: Vec<(f64, bool)>,
    /// Gradients, absent for a forward-only pass.
    pub grads: Option<Vec<Option<Vec<f64>>>>,
}

/// Runs the pass in precision `T` on `input`, its sequences split into `chunks` parallel
/// chunks; with `backward`, also the gradients of the mean loss.
///
/// # Panics
/// If a token or target is out of the vocabulary, or `input`'s shapes disagree.
pub fn run<T: Kernel + SoftmaxExp>(
    cfg: &TransformerConfig,
    store: &ParamStore,
    input: &SeqInput,
    chunks: usize,
    backward: bool,
) -> SeqResult {
    let (t, p) = (input.t, input.positions.len());
    let b = input.tokens.len() / t.max(1);
    assert_eq!(input.targets.len(), b * p, "one target per scored position");
    let n = input.targets.iter().filter(|&&y| y != input.ignore).count();
    let w = SeqWeights::<T>::new(cfg, store);
    let chunks = chunks.clamp(1, b.max(1));
    let inv_n = 1.0 / n.max(1) as f64;
    let parts: Vec<pass::ChunkResult<T>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let (lo, hi) = (c * b / chunks, (c + 1) * b / chunks);
            let part = SeqInput {
                tokens: &input.tokens[lo * t..hi * t],
                targets: &input.targets[lo * p..hi * p],
                ..*input
            };
            pass::run(&w, &part, inv_n, backward)
        })
        .collect();
    let loss = parts.iter().map(|c| c.loss_sum).sum::<f64>() / n as f64;
    let acc = parts.iter().map(|c| c.correct).sum::<usize>() as f64 / n as f64;
    let pairs = parts.iter().flat_map(|c| c.pairs.iter().copied()).collect();
    let grads = backward.then(|| {
        let mut it = parts.into_iter().filter_map(|c| c.grads);
        let mut g = it.next().unwrap_or_else(|| SeqWeights::zeros(cfg));
        it.for_each(|mut o| g.add(&mut o));
        let (h, d, dh) = (cfg.n_heads, cfg.d_model, cfg.d_head);
        let mut named: std::collections::HashMap<String, &mut Vec<T>> =
            g.named_mut().into_iter().collect();
        (store.entries.iter())
            .map(|e| {
                let x = named.remove(&e.name).filter(|_| e.trainable)?;
                Some(if is_heads(&e.name) {
                    heads_stacked(x, h, d, dh)
                } else {
                    x.iter().map(|v| v.f64()).collect()
                })
            })
            .collect()
    });
    SeqResult {
        loss,
        acc,
        n,
        pairs,
        grads,
    }
}
