//! The transformer's forward pass on burn, computing only what the last position's logits read.
//!
//! Residual stream (TransformerLens `HookedTransformer`, Nanda et al. 2023 §3):
//! `x = W_E[tok] + W_pos`; per block `x += attn(ln1(x))`, `x += mlp(ln2(x))`;
//! `logits = ln_final(x)·W_U`. Attention: `softmax(q·kᵀ/√d_head + causal mask)·v·W_O`.
//!
//! What is skipped, and why it is exact: the loss reads only the last position's logits, so the
//! last block computes its query, attention output and MLP at that position alone. Block 0's input
//! depends only on (token, position), so its queries, keys and values are projected once for the
//! `n_ctx × d_vocab` table of such pairs and gathered per example.
//!
//! With `attn_rate` α < 1 (Zhong et al. 2023) the pattern is `α·softmax + (1 − α)` on the keys a
//! query sees.

use super::config::{Activation, Normalization, Residual, TransformerConfig};
use super::params::{leaf_gradients, upload, ParamStore};
use burn::tensor::activation::{gelu, relu, softmax};
use burn::tensor::Gradients;
use burn::tensor::{Bool, DType, Device, Int, Tensor, TensorData};
use std::collections::{HashMap, HashSet};

/// LayerNorm epsilon (TransformerLens default).
use crate::numerics::layer_norm::LN_EPS;

/// A model bound to burn tensors for one forward (and backward) pass.
pub struct Transformer {
    pub(super) cfg: TransformerConfig,
    leaves: Vec<Tensor<1>>,
    index: HashMap<String, usize>,
    /// Frozen tensors that are all zeros (the paper's absent biases): their adds are skipped.
    zero_frozen: HashSet<String>,
    pub(super) device: Device,
}

/// What one forward pass returns, all at the last position.
pub struct ForwardOutput {
    /// `[batch, d_vocab_out]` logits (hook `unembed.hook_out` at the last position).
    pub logits: Tensor<2>,
    /// `[batch, n_heads, n_ctx]` attention pattern of the last block's last query
    /// (`blocks.{L-1}.attn.hook_pattern[:, :, -1, :]`).
    pub pattern_last: Tensor<3>,
    /// `[batch, d_mlp]` MLP activations of the last block (`blocks.{L-1}.mlp.hook_post[:, -1]`),
    /// absent for attention-only models.
    pub mlp_post_last: Option<Tensor<2>>,
}

/// Where a block reads its input from.
#[allow(clippy::large_enum_variant)] // one short-lived value per forward pass
enum Stream {
    /// Block 0: rows of the `[n_ctx·d_vocab, d_model]` (position, token) table, gathered by the
    /// `[batch·pos]` flat ids `pos·d_vocab + token`.
    Table {
        table: Tensor<2>,
        ids: Tensor<1, Int>,
    },
    /// Later blocks: the full `[batch·pos, d_model]` residual stream.
    Full(Tensor<2>),
}

impl Transformer {
    /// Uploads `store` to `device` in `dtype` (F32 or F64). With `track_grads`, every trainable
    /// tensor becomes a leaf that receives a gradient (the device must have autodiff enabled).
    pub fn new(
        cfg: &TransformerConfig,
        store: &ParamStore,
        device: &Device,
        dtype: DType,
        track_grads: bool,
    ) -> Self {
        let (leaves, index) = upload(store, device, dtype, track_grads);
        let zero_frozen = (store.entries.iter())
            .filter(|e| !e.trainable && e.data.iter().all(|&x| x == 0.0))
            .map(|e| e.name.clone())
            .collect();
        Self {
            cfg: cfg.clone(),
            leaves,
            index,
            zero_frozen,
            device: device.clone(),
        }
    }

    /// `x + bias` (bias broadcast over rows as `[1, width]`), skipped for an all-zero frozen bias.
    pub(super) fn add_bias(&self, x: Tensor<2>, name: &str) -> Tensor<2> {
        if self.zero_frozen.contains(name) {
            return x;
        }
        let width = x.dims()[1];
        x + self.w(name, [1, width])
    }

    /// The parameter `name` reshaped to `shape`.
    pub(super) fn w<const D: usize>(&self, name: &str, shape: [usize; D]) -> Tensor<D> {
        self.leaves[self.index[name]].clone().reshape(shape)
    }

    /// A `[n_heads, a, b]` TransformerLens weight as the 2-D matrix a single matmul needs:
    /// `W_Q/W_K/W_V [H, d_model, d_head] → [d_model, H·d_head]`, `W_O [H, d_head, d_model] →
    /// [H·d_head, d_model]`.
    pub(super) fn heads_2d(&self, name: &str, out_major: bool) -> Tensor<2> {
        let (h, d, dh) = (self.cfg.n_heads, self.cfg.d_model, self.cfg.d_head);
        if out_major {
            self.w(name, [h * dh, d])
        } else {
            self.w(name, [h, d, dh])
                .swap_dims(0, 1)
                .reshape([d, h * dh])
        }
    }

    /// Gradients of every tensor, `None` for frozen ones, flattened in store order (f64).
    pub fn gradients(&self, grads: &Gradients) -> Vec<Option<Vec<f64>>> {
        leaf_gradients(&self.leaves, grads)
    }

    pub(super) fn layer_norm(&self, x: Tensor<2>, prefix: &str) -> Tensor<2> {
        if self.cfg.normalization == Normalization::None {
            return x;
        }
        let d = self.cfg.d_model;
        let centred = x.clone() - x.mean_dim(1);
        let scale = (centred.clone().powi_scalar(2).mean_dim(1) + self.scalar::<2>(LN_EPS)).sqrt();
        centred / scale * self.w(&format!("{prefix}.w"), [1, d])
            + self.w(&format!("{prefix}.b"), [1, d])
    }

    /// Forward pass on `tokens` `[batch, pos]` (pos ≤ n_ctx), returning the last position's
    /// logits and the hooks the tests and measures read.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> ForwardOutput {
        let c = &self.cfg;
        let [b, t] = tokens.dims();
        let (d, v) = (c.d_model, c.d_vocab);

        // (pos, token) table: row pos·d_vocab + tok = W_E[tok] + W_pos[pos]       // (n_ctx·V, D)
        let table = (self.w("embed.W_E", [1, v, d]) + self.w("pos_embed.W_pos", [c.n_ctx, 1, d]))
            .reshape([c.n_ctx * v, d]);
        let offsets =
            Tensor::<1, Int>::arange(0..t as i64, &self.device).reshape([1, t]) * v as i64;
        let ids = (tokens + offsets).reshape([b * t]); // (B·T)
        self.blocks(Stream::Table { table, ids }, b, t)
    }

    /// Forward pass from the residual stream's input `resid_pre` `[batch, pos, d_model]`
    /// (`blocks.0.hook_resid_pre`, i.e. `W_E[tok] + W_pos`) instead of tokens, so that gradients
    /// with respect to each position's embedding can be taken (the clock/pizza gradient
    /// symmetricity, [`crate::measures::clock_pizza`]).
    pub fn forward_embedded(&self, resid_pre: Tensor<3>) -> ForwardOutput {
        let [b, t, d] = resid_pre.dims();
        self.blocks(Stream::Full(resid_pre.reshape([b * t, d])), b, t)
    }

    /// The blocks, the final LayerNorm and the unembedding on a `[b, t]` batch's stream.
    fn blocks(&self, mut stream: Stream, b: usize, t: usize) -> ForwardOutput {
        let c = &self.cfg;
        let (d, h, dh) = (c.d_model, c.n_heads, c.d_head);
        for l in 0..c.n_layers {
            let last = l + 1 == c.n_layers;
            let prefix = format!("blocks.{l}");
            // ---- attention ----
            let (normed_src, resid_src) = match &stream {
                Stream::Table { table, .. } => (
                    self.layer_norm(table.clone(), &format!("{prefix}.ln1")),
                    table.clone(),
                ),
                Stream::Full(x) => (
                    self.layer_norm(x.clone(), &format!("{prefix}.ln1")),
                    x.clone(),
                ),
            };
            // rows at every position, and at the last position only
            let (all_rows, last_rows) = match &stream {
                Stream::Table { ids, .. } => {
                    let last_ids = ids
                        .clone()
                        .reshape([b, t])
                        .slice([0..b, t - 1..t])
                        .reshape([b]);
                    (Rows::Gather(ids.clone()), Rows::Gather(last_ids))
                }
                Stream::Full(_) => (Rows::All, Rows::Last { b, t }),
            };
            // Project the (small) table before gathering; select stream rows before projecting.
            let project = |rows: &Rows, name: &str| {
                let w = self.heads_2d(&format!("{prefix}.attn.W_{name}"), false);
                let bias = format!("{prefix}.attn.b_{name}");
                match rows {
                    Rows::Gather(_) => {
                        rows.take(self.add_bias(normed_src.clone().matmul(w), &bias))
                    }
                    _ => self.add_bias(rows.take(normed_src.clone()).matmul(w), &bias),
                }
            };
            let k = project(&all_rows, "K").reshape([b, 1, t, h, dh]); // (B, 1, Tk, H, dh)
            let vv = project(&all_rows, "V").reshape([b, 1, t, h, dh]);
            let (q_rows, tq) = if last {
                (&last_rows, 1)
            } else {
                (&all_rows, t)
            };
            let q = project(q_rows, "Q").reshape([b, tq, 1, h, dh]); // (B, Tq, 1, H, dh)
            let mut scores = (q * k).sum_dim(4).reshape([b, tq, t, h])
                * self.scalar::<4>(1.0 / (dh as f64).sqrt());
            if tq > 1 {
                scores = scores.mask_fill(self.causal_mask(b, t, h), f64::NEG_INFINITY);
            }
            let mut pattern = softmax(scores, 2); // (B, Tq, Tk, H)
            if c.attn_rate != 1.0 {
                // Zhong et al.'s α·softmax + (1 − α) on the keys the query sees
                let visible: Vec<f64> = (0..tq * t)
                    .map(|i| f64::from(tq == 1 || i % t <= i / t))
                    .collect();
                let visible = Tensor::<2>::from_data(
                    TensorData::new(visible, [tq, t]),
                    (&self.device, pattern.dtype()),
                )
                .reshape([1, tq, t, 1]);
                pattern = pattern * self.scalar::<4>(c.attn_rate)
                    + visible * self.scalar::<4>(1.0 - c.attn_rate);
            }
            let z = (pattern.clone().reshape([b, tq, t, h, 1]) * vv)
                .sum_dim(2)
                .reshape([b * tq, h * dh]); // (B·Tq, H·dh)
            let attn_out = z.matmul(self.heads_2d(&format!("{prefix}.attn.W_O"), true)); // (B·Tq, D)
            let attn_out = self.add_bias(attn_out, &format!("{prefix}.attn.b_O"));
            let resid_in = if last {
                last_rows.take(resid_src)
            } else {
                all_rows.take(resid_src)
            };
            let mut x = resid_in.clone() + attn_out; // (B·Tq, D)

            // ---- MLP ----
            let mut post_hook = None;
            if !c.attn_only {
                let m = c.d_mlp;
                let normed = self.layer_norm(x.clone(), &format!("{prefix}.ln2"));
                let pre = normed.matmul(self.w(&format!("{prefix}.mlp.W_in"), [d, m]))
                    + self.w(&format!("{prefix}.mlp.b_in"), [1, m]); // (rows, d_mlp)
                let post = match c.act_fn {
                    Activation::Relu => relu(pre),
                    Activation::Gelu => gelu(pre),
                };
                x = x
                    + post
                        .clone()
                        .matmul(self.w(&format!("{prefix}.mlp.W_out"), [m, d]))
                    + self.w(&format!("{prefix}.mlp.b_out"), [1, d]);
                post_hook = Some(post);
            }
            if c.residual == Residual::Doubled {
                x = x + resid_in; // the notebook's loop adds the block's input again
            }
            if last {
                let x = self.layer_norm(x, "ln_final");
                let logits = x.matmul(self.w("unembed.W_U", [d, c.d_vocab_out])); // (B, V_out)
                let logits = self.add_bias(logits, "unembed.b_U");
                let pattern_last = pattern.reshape([b, t, h]).swap_dims(1, 2); // (B, H, Tk)
                return ForwardOutput {
                    logits,
                    pattern_last,
                    mlp_post_last: post_hook,
                };
            }
            stream = Stream::Full(x);
        }
        unreachable!("n_layers >= 1 is validated")
    }

    /// A `[1; D]` constant in the model's dtype, for broadcasting. Scalar ops would round the
    /// constant to f32 first (burn's nominal float element), costing ~1e-8 relative accuracy in
    /// f64 runs.
    pub(super) fn scalar<const D: usize>(&self, value: f64) -> Tensor<D> {
        let dtype = self.leaves[0].dtype();
        Tensor::from_data(TensorData::new(vec![value], [1; D]), (&self.device, dtype))
    }

    /// `[B, T, T, H]` mask, true where the key comes after the query.
    fn causal_mask(&self, b: usize, t: usize, h: usize) -> Tensor<4, Bool> {
        let mut mask = vec![false; t * t];
        for q in 0..t {
            for k in q + 1..t {
                mask[q * t + k] = true;
            }
        }
        Tensor::<2, Bool>::from_data(TensorData::new(mask, [t, t]), &self.device)
            .reshape([1, t, t, 1])
            .expand([b, t, t, h])
    }
}

/// Which rows of a `[rows, width]` source a block reads.
#[allow(clippy::large_enum_variant)] // one short-lived value per forward pass
enum Rows {
    /// Table rows by id.
    Gather(Tensor<1, Int>),
    /// The whole `[B·T, width]` stream.
    All,
    /// The last position of a `[B·T, width]` stream.
    Last { b: usize, t: usize },
}

impl Rows {
    fn take(&self, src: Tensor<2>) -> Tensor<2> {
        match self {
            Rows::Gather(ids) => src.select(0, ids.clone()),
            Rows::All => src,
            Rows::Last { b, t } => {
                let w = src.dims()[1];
                src.reshape([*b, *t, w])
                    .slice([0..*b, t - 1..*t, 0..w])
                    .reshape([*b, w])
            }
        }
    }
}
