//! A fused forward + backward pass for the 1-layer, LayerNorm-free ReLU transformer of Nanda et
//! al. 2023 on `[a, b, =]` inputs, written out by hand (llm.c style) because its step is bound by
//! wasted FLOPs and framework overhead, not by the arithmetic it needs.
//!
//! The loss reads only the last position, whose query sees the fixed `=` token; attention writes
//! a pattern-weighted sum of per-(position, token) value rows, which is linear, so the OV circuit
//! is pushed through `W_in` and `W_U` once per table row instead of once per example
//! (`table.rs`). Per example that leaves 3·n_heads table rows of d_mlp + d_vocab_out to combine
//! (`kernels.rs`: partial sums in registers, AVX2 for f32; the backward one table-row position
//! at a time so a table row's blocks stay in cache across the rows that read it) and one
//! `post · W_L` row (`W_L = W_out·W_U`), forward and backward (`rows.rs`): ≈ 1.78 GFLOP for the
//! paper's 3,830-row step against 3.7 GFLOP for the unfactored one. Rows are split into one chunk
//! per thread and the chunk gradients summed. The burn [`crate::models::Transformer`] is the
//! reference it is tested against (gradients and 25 AdamW steps, f64 and f32).

#[cfg(target_arch = "x86_64")]
mod avx2;
mod kernels;
mod rows;
mod table;

use super::{Activation, Normalization, ParamStore, TransformerConfig};
pub use crate::numerics::linalg::Real;
use crate::numerics::linalg::{heads_side_by_side, heads_stacked};
pub use kernels::{cross_entropy_f32, log_sum_exp, Kernel};
use rayon::prelude::*;
pub use rows::RowsForward;

/// Whether the fused step applies: 1 layer, no LayerNorm, ReLU MLP, 3 positions, the standard
/// residual and standard attention (`attn_rate` 1), and a vocabulary below 2²⁰ tokens.
pub fn applies(cfg: &TransformerConfig) -> bool {
    cfg.n_layers == 1
        && 2 * cfg.d_vocab < 1 << 21
        && cfg.d_vocab_out < 1 << 21
        && cfg.normalization == Normalization::None
        && !cfg.attn_only
        && cfg.act_fn == Activation::Relu
        && cfg.n_ctx == 3
        && cfg.residual == super::Residual::Standard
        && cfg.attn_rate == 1.0
}

/// FLOPs (2 × multiply-adds) the fused training step executes on `rows` examples: per row three
/// `d_mlp × d_vocab_out` products (logits, ∂W_L, ∂post) and 3·n_heads table rows of
/// `d_mlp + d_vocab_out` combined three times (forward; backward dot and scatter); per step the
/// table stage's products (see `table.rs`) over its `2·d_vocab + 1` rows.
pub fn step_flops(cfg: &TransformerConfig, rows: usize) -> f64 {
    let (d, hd, m, vo) = (
        cfg.d_model as f64,
        (cfg.n_heads * cfg.d_head) as f64,
        cfg.d_mlp as f64,
        cfg.d_vocab_out as f64,
    );
    let n_tab = (2 * cfg.d_vocab + 1) as f64;
    let per_row = 3.0 * m * vo + 9.0 * cfg.n_heads as f64 * (m + vo);
    // keys and values and their backward; W_O·W_in, W_O·W_U; the table rows through them;
    // W_L; each once forward and twice backward
    let table = 6.0 * n_tab * d * hd
        + 3.0 * hd * d * (m + vo)
        + 3.0 * n_tab * hd * (m + vo)
        + 3.0 * m * d * vo;
    2.0 * (rows as f64 * per_row + table)
}

/// The weights in the fused layouts, in compute precision `T`.
pub struct Weights<T> {
    d: usize,
    h: usize,
    dh: usize,
    m: usize,
    v: usize,
    vo: usize,
    n_ctx: usize,
    w_e: Vec<T>,
    w_pos: Vec<T>,
    /// `[D, H·Dh]` (TransformerLens `[H, D, Dh]` with the heads side by side).
    w_q2: Vec<T>,
    w_k2: Vec<T>,
    w_v2: Vec<T>,
    b_q: Vec<T>,
    b_k: Vec<T>,
    b_v: Vec<T>,
    w_o: Vec<T>,
    b_o: Vec<T>,
    w_in: Vec<T>,
    b_in: Vec<T>,
    w_out: Vec<T>,
    b_out: Vec<T>,
    w_u: Vec<T>,
    b_u: Vec<T>,
}

impl<T: Real> Weights<T> {
    /// Converts the store's weights (`cfg` must satisfy [`applies`]), one tensor per rayon
    /// task.
    pub fn new(cfg: &TransformerConfig, store: &ParamStore) -> Self {
        const NAMES: [&str; 16] = [
            "embed.W_E",
            "pos_embed.W_pos",
            "blocks.0.attn.W_Q",
            "blocks.0.attn.W_K",
            "blocks.0.attn.W_V",
            "blocks.0.attn.b_Q",
            "blocks.0.attn.b_K",
            "blocks.0.attn.b_V",
            "blocks.0.attn.W_O",
            "blocks.0.attn.b_O",
            "blocks.0.mlp.W_in",
            "blocks.0.mlp.b_in",
            "blocks.0.mlp.W_out",
            "blocks.0.mlp.b_out",
            "unembed.W_U",
            "unembed.b_U",
        ];
        let (h, d, dh) = (cfg.n_heads, cfg.d_model, cfg.d_head);
        let all: Vec<Vec<T>> = (NAMES.par_iter())
            .map(|name| {
                let e = store
                    .get(name)
                    .unwrap_or_else(|| panic!("parameter `{name}` exists for this config"));
                let x: Vec<T> = e.data.iter().map(|&x| T::of(x)).collect();
                if matches!(
                    *name,
                    "blocks.0.attn.W_Q" | "blocks.0.attn.W_K" | "blocks.0.attn.W_V"
                ) {
                    heads_side_by_side(&x, h, d, dh)
                } else {
                    x
                }
            })
            .collect();
        let [w_e, w_pos, w_q2, w_k2, w_v2, b_q, b_k, b_v, w_o, b_o, w_in, b_in, w_out, b_out, w_u, b_u]: [Vec<T>; 16] =
            all.try_into().unwrap_or_else(|_| unreachable!("one vector per name"));
        Self {
            d,
            h,
            dh,
            m: cfg.d_mlp,
            v: cfg.d_vocab,
            vo: cfg.d_vocab_out,
            n_ctx: cfg.n_ctx,
            w_e,
            w_pos,
            w_q2,
            w_k2,
            w_v2,
            b_q,
            b_k,
            b_v,
            w_o,
            b_o,
            w_in,
            b_in,
            w_out,
            b_out,
            w_u,
            b_u,
        }
    }
}

/// Mean loss (nats, log-softmax in f64), accuracy, and (for a training step) the gradient of
/// every store entry in store order (`None` for frozen tensors).
pub struct FusedResult {
    /// Mean cross-entropy over the rows.
    pub loss: f64,
    /// Accuracy in [0, 1].
    pub acc: f64,
    /// Gradients, absent for a forward-only pass.
    pub grads: Option<Vec<Option<Vec<f64>>>>,
}

/// The position-2 token shared by every example of `tokens` (`[R, 3]` row-major) and each
/// example's table rows `[a, V + b, 2V]`; `None` when the examples do not share that token (the
/// fused pass needs the `=` query to be a single vector).
fn table_ids(cfg: &TransformerConfig, tokens: &[i64]) -> Option<(usize, Vec<[usize; 3]>)> {
    let eq_tok = *tokens.get(2)? as usize;
    let v = cfg.d_vocab;
    tokens
        .chunks(3)
        .map(|row| {
            (row[2] as usize == eq_tok).then(|| [row[0] as usize, v + row[1] as usize, 2 * v])
        })
        .collect::<Option<Vec<_>>>()
        .map(|ids| (eq_tok, ids))
}

/// The examples (`ids` `[R, 3]` table rows, `labels` `[R]`) sorted by (a, b), then label:
/// consecutive rows then read and scatter into the same a row, which stays in cache (the row
/// stage groups the b rows itself). Sums over rows are order-independent up to rounding, and the
/// order is fixed by the data, so runs stay deterministic. The sort runs on packed `u64` keys,
/// several times faster than on tuples.
///
/// # Panics
/// If a table row or label is 2²¹ or more ([`applies`] bounds the vocabulary far below).
fn sorted(ids: Vec<[usize; 3]>, labels: &[i64]) -> (Vec<[usize; 3]>, Vec<usize>) {
    const BITS: u32 = 21;
    let mask = (1u64 << BITS) - 1;
    let field = |x: usize| {
        assert!(
            x as u64 <= mask,
            "fused step: table row or label {x} ≥ 2^21"
        );
        x as u64
    };
    // The third id is the same `=` row for every example.
    let eq = ids.first().map_or(0, |id| id[2]);
    let mut keys: Vec<u64> = (ids.iter().zip(labels))
        .map(|(id, &l)| field(id[0]) << (2 * BITS) | field(id[1]) << BITS | field(l as usize))
        .collect();
    keys.sort_unstable();
    keys.into_iter()
        .map(|k| {
            let part = |shift: u32| ((k >> shift) & mask) as usize;
            ([part(2 * BITS), part(BITS), eq], part(0))
        })
        .unzip()
}

/// The forward pass alone in precision `T` on `tokens` (`[R, 3]` row-major), rows in the given
/// order, on the calling thread: attention pattern, MLP activations and logits at the last
/// position. `None` as for [`run`].
pub fn forward<T: Kernel>(
    cfg: &TransformerConfig,
    store: &ParamStore,
    tokens: &[i64],
) -> Option<RowsForward<T>> {
    let (eq_tok, ids) = table_ids(cfg, tokens)?;
    let w = Weights::<T>::new(cfg, store);
    let t = table::forward(&w, eq_tok);
    Some(rows::forward(&w, &t, &ids))
}

/// Runs the fused pass in precision `T` on `tokens` (`[R, 3]` row-major) and `labels` (`[R]`),
/// split into `chunks` parallel chunks; with `backward`, also the gradients.
///
/// Returns `None` when the examples do not share one position-2 token; callers then use the
/// burn model.
pub fn run<T: Kernel>(
    cfg: &TransformerConfig,
    store: &ParamStore,
    tokens: &[i64],
    labels: &[i64],
    chunks: usize,
    backward: bool,
    f32_loss: bool,
) -> Option<FusedResult> {
    let n = labels.len();
    let (eq_tok, ids) = table_ids(cfg, tokens)?;
    let ((ids, labels), (w, t)) = rayon::join(
        || sorted(ids, labels),
        || {
            let w = Weights::<T>::new(cfg, store);
            let t = table::forward(&w, eq_tok);
            (w, t)
        },
    );
    let chunks = chunks.clamp(1, n.max(1));
    let parts: Vec<rows::ChunkResult<T>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let (lo, hi) = (c * n / chunks, (c + 1) * n / chunks);
            rows::run(
                &w,
                &t,
                &ids[lo..hi],
                &labels[lo..hi],
                (n, backward, f32_loss),
            )
        })
        .collect();
    let loss = parts.iter().map(|p| p.loss_sum).sum::<f64>() / n as f64;
    let acc = parts.iter().map(|p| p.correct).sum::<usize>() as f64 / n as f64;
    let grads = backward.then(|| {
        let mut it = parts.into_iter().filter_map(|p| p.grads);
        let mut g = it.next().expect("at least one chunk");
        it.for_each(|o| g.add(&o));
        let wg = table::backward(&w, &t, &g, eq_tok);
        let (h, d, dh) = (w.h, w.d, w.dh);
        let f = |x: &[T]| x.iter().map(|v| v.f64()).collect::<Vec<f64>>();
        (store.entries.par_iter())
            .map(|e| {
                if !e.trainable {
                    return None;
                }
                Some(match e.name.as_str() {
                    "embed.W_E" => f(&wg.w_e),
                    "pos_embed.W_pos" => f(&wg.w_pos),
                    "blocks.0.attn.W_Q" => heads_stacked(&wg.w_q2, h, d, dh),
                    "blocks.0.attn.W_K" => heads_stacked(&wg.w_k2, h, d, dh),
                    "blocks.0.attn.W_V" => heads_stacked(&wg.w_v2, h, d, dh),
                    "blocks.0.attn.W_O" => f(&wg.w_o),
                    "blocks.0.mlp.W_in" => f(&wg.w_in),
                    "blocks.0.mlp.b_in" => f(&wg.b_in),
                    "blocks.0.mlp.W_out" => f(&wg.w_out),
                    "blocks.0.mlp.b_out" => f(&wg.b_out),
                    "unembed.W_U" => f(&wg.w_u),
                    other => panic!("no fused gradient for trainable `{other}`"),
                })
            })
            .collect()
    });
    Some(FusedResult { loss, acc, grads })
}
