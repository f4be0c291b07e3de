//! The transformer over whole sequences, scoring any set of positions (the general path: digit
//! addition, induction, max-of-sequence, sparse parity). Same weights and TransformerLens layout
//! as [`Transformer::forward`]; every block runs at every position except the last, which
//! computes its queries, attention output, MLP and unembedding only at the scored positions.
//!
//! Per block (TransformerLens `HookedTransformer`): `x += attn(ln1(x))`, `x += mlp(ln2(x))`, with
//! `attn = softmax(q·kᵀ/√d_head + causal mask)·v·W_O + b_O` per head; `logits = ln_final(x)·W_U + b_U`.
//! With [`Residual::Doubled`] each block's input is added once more at its output.

use super::config::{Activation, Residual};
use super::transformer::Transformer;
use burn::tensor::activation::{gelu, relu, softmax};
use burn::tensor::{Bool, Int, Tensor, TensorData};

/// Which positions of every sequence a forward pass scores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scored {
    /// Every position: logits `[B·T, d_vocab_out]`, row `b·T + t`.
    All,
    /// These positions (ascending) of every sequence: logits `[B·P, d_vocab_out]`, row `b·P + i`
    /// for position `positions[i]`.
    Positions(Vec<usize>),
}

/// What [`Transformer::forward_seq`] returns.
pub struct SeqForward {
    /// `[B·P, d_vocab_out]` logits at the scored positions (`unembed.hook_out`), batch-major.
    pub logits: Tensor<2>,
    /// Per block `blocks.{l}.attn.hook_pattern` `[B, n_heads, T_query, T_key]`; the last block's
    /// queries are the scored positions only.
    pub patterns: Vec<Tensor<4>>,
}

impl Transformer {
    /// Forward pass on `tokens` `[B, T]` (T ≤ n_ctx), scoring `scored`.
    pub fn forward_seq(&self, tokens: Tensor<2, Int>, scored: &Scored) -> SeqForward {
        let c = &self.cfg;
        let [b, t] = tokens.dims();
        let (d, h, dh) = (c.d_model, c.n_heads, c.d_head);
        let positions: Vec<usize> = match scored {
            Scored::All => (0..t).collect(),
            Scored::Positions(p) => p.clone(),
        };
        // x = W_E[tok] + W_pos[pos]                                              // (B·T, D)
        let embed = self
            .w::<2>("embed.W_E", [c.d_vocab, d])
            .select(0, tokens.reshape([b * t]));
        let pos = self
            .w::<3>("pos_embed.W_pos", [c.n_ctx, 1, d])
            .slice([0..t, 0..1, 0..d]);
        let mut x = (embed.reshape([b, t, d]) + pos.reshape([1, t, d])).reshape([b * t, d]);
        let mut patterns = Vec::with_capacity(c.n_layers);

        for l in 0..c.n_layers {
            let last = l + 1 == c.n_layers;
            let prefix = format!("blocks.{l}");
            let query_pos: Vec<usize> = if last {
                positions.clone()
            } else {
                (0..t).collect()
            };
            let tq = query_pos.len();
            let at_queries = |src: Tensor<2>| -> Tensor<2> {
                if tq == t {
                    return src;
                }
                let w = src.dims()[1];
                let idx = Tensor::<1, Int>::from_data(
                    TensorData::new(query_pos.iter().map(|&p| p as i64).collect(), [tq]),
                    &self.device,
                );
                src.reshape([b, t, w]).select(1, idx).reshape([b * tq, w])
            };
            // ---- attention ----
            let normed = self.layer_norm(x.clone(), &format!("{prefix}.ln1"));
            let project = |src: Tensor<2>, name: &str| {
                let w = self.heads_2d(&format!("{prefix}.attn.W_{name}"), false);
                self.add_bias(src.matmul(w), &format!("{prefix}.attn.b_{name}"))
            };
            let heads = |m: Tensor<2>, rows: usize| m.reshape([b, rows, h, dh]).swap_dims(1, 2); // (B, H, rows, dh)
            let k = heads(project(normed.clone(), "K"), t);
            let v = heads(project(normed.clone(), "V"), t);
            // the 1/√d_head scale goes on the queries: T× fewer elements than the scores
            let q = project(at_queries(normed), "Q") * self.scalar::<2>(1.0 / (dh as f64).sqrt());
            let q = heads(q, tq);
            let scores = q.matmul(k.swap_dims(2, 3)); // (B, H, Tq, Tk)
            let scores = scores.mask_fill(self.future_mask(&query_pos, t, b, h), f64::NEG_INFINITY);
            let pattern = softmax(scores, 3);
            let z = pattern
                .clone()
                .matmul(v)
                .swap_dims(1, 2)
                .reshape([b * tq, h * dh]); // (B·Tq, H·dh)
            let attn_out = z.matmul(self.heads_2d(&format!("{prefix}.attn.W_O"), true));
            let attn_out = self.add_bias(attn_out, &format!("{prefix}.attn.b_O"));
            let resid_in = at_queries(x);
            x = resid_in.clone() + attn_out; // (B·Tq, D)
            patterns.push(pattern);

            // ---- MLP ----
            if !c.attn_only {
                let m = c.d_mlp;
                let normed = self.layer_norm(x.clone(), &format!("{prefix}.ln2"));
                let pre = normed.matmul(self.w(&format!("{prefix}.mlp.W_in"), [d, m]))
                    + self.w(&format!("{prefix}.mlp.b_in"), [1, m]);
                let post = match c.act_fn {
                    Activation::Relu => relu(pre),
                    Activation::Gelu => gelu(pre),
                };
                x = x
                    + post.matmul(self.w(&format!("{prefix}.mlp.W_out"), [m, d]))
                    + self.w(&format!("{prefix}.mlp.b_out"), [1, d]);
            }
            if c.residual == Residual::Doubled {
                x = x + resid_in; // the notebook's loop adds the block's input again
            }
        }
        let x = self.layer_norm(x, "ln_final");
        let logits = x.matmul(self.w("unembed.W_U", [d, c.d_vocab_out]));
        SeqForward {
            logits: self.add_bias(logits, "unembed.b_U"),
            patterns,
        }
    }

    /// `[B, H, Tq, Tk]` mask, true where key position k comes after query position `queries[i]`.
    fn future_mask(&self, queries: &[usize], t: usize, b: usize, h: usize) -> Tensor<4, Bool> {
        let mask: Vec<bool> = (queries.iter())
            .flat_map(|&q| (0..t).map(move |k| k > q))
            .collect();
        Tensor::<2, Bool>::from_data(TensorData::new(mask, [queries.len(), t]), &self.device)
            .reshape([1, 1, queries.len(), t])
            .expand([b, h, queries.len(), t])
    }
}
