//! An MLP over one-hot token inputs, for the binary tasks (modular arithmetic, sparse parity):
//! Liu et al. 2022's model (learned embeddings of a and b summed, then an MLP) and Prieto et al.
//! 2025's (one-hot a and b concatenated, two hidden layers of 200, no biases).
//!
//! Reads the first `n_inputs` tokens of each sequence (`[a, b, =]` → a, b) and predicts one class:
//! `h₀ = act(Σ_t W_E[t, tok_t] + b_E)` (`concat`: a matrix per position, i.e. one-hot inputs
//! concatenated) or `h₀ = act(Σ_t W_E[tok_t] + b_E)` (`sum`: one shared embedding, one-hot inputs
//! summed); `h_i = act(h_{i−1}·W_i + b_i)`; `logits = h_last·W_U + b_U`. Parameter names:
//! `embed.W_E` ([n_inputs, d_vocab, d_hidden₀] or [d_vocab, d_hidden₀]), `embed.b_E`,
//! `mlp.{i}.W` [d_hidden_{i−1}, d_hidden_i], `mlp.{i}.b`, `unembed.W_U` [d_hidden_last,
//! d_vocab_out], `unembed.b_U`; absent biases are frozen zeros. Hooks: `hidden.{i}.hook_post`.
//! Init: every weight N(0, 1/fan_in), with the first layer's fan-in the one-hot input's width
//! (PyTorch's default Linear init has variance 1/(3·fan_in)); biases 0.

use super::config::{Activation, Init, ParamSpec};
use super::params::{leaf_gradients, upload, ParamStore};
use burn::tensor::activation::{gelu, relu};
use burn::tensor::{DType, Device, Gradients, Int, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How the input tokens enter the first layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// One embedding shared by every position, summed (one-hot inputs summed; Liu et al. 2022).
    Sum,
    /// One embedding per position (one-hot inputs concatenated; Prieto et al. 2025).
    Concat,
}

/// The MLP's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Input token ids are in `[0, d_vocab)`.
    pub d_vocab: usize,
    /// Tokens read per example (the first `n_inputs` positions).
    pub n_inputs: usize,
    /// Widths of the hidden layers (the first is the embedding's output).
    pub d_hidden: Vec<usize>,
    /// Output classes.
    pub d_vocab_out: usize,
    /// Non-linearity after every hidden layer.
    pub act_fn: Activation,
    /// Inputs summed or concatenated.
    pub combine: Combine,
    /// Whether the layers have (trained) biases.
    pub biases: bool,
}

impl MlpConfig {
    /// Every parameter: names, shapes, init, trained or frozen.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let h0 = self.d_hidden[0];
        // the first layer as a Linear over the one-hot input vector: d_vocab wide (sum) or
        // n_inputs · d_vocab (concat)
        let fan_in_e = match self.combine {
            Combine::Sum => self.d_vocab,
            Combine::Concat => self.n_inputs * self.d_vocab,
        } as f64;
        let embed_shape = match self.combine {
            Combine::Sum => vec![self.d_vocab, h0],
            Combine::Concat => vec![self.n_inputs, self.d_vocab, h0],
        };
        let bias = |name: &str, n: usize| {
            if self.biases {
                ParamSpec::new(name, vec![n], Init::Zeros)
            } else {
                ParamSpec::frozen(name, vec![n])
            }
        };
        let mut specs = vec![
            ParamSpec::new(
                "embed.W_E",
                embed_shape,
                Init::Normal(fan_in_e.sqrt().recip()),
            ),
            bias("embed.b_E", h0),
        ];
        for (i, w) in self.d_hidden.windows(2).enumerate() {
            let std = (w[0] as f64).sqrt().recip();
            specs.push(ParamSpec::new(
                &format!("mlp.{}.W", i + 1),
                vec![w[0], w[1]],
                Init::Normal(std),
            ));
            specs.push(bias(&format!("mlp.{}.b", i + 1), w[1]));
        }
        let last = *self.d_hidden.last().expect("at least one hidden layer");
        let std = (last as f64).sqrt().recip();
        specs.push(ParamSpec::new(
            "unembed.W_U",
            vec![last, self.d_vocab_out],
            Init::Normal(std),
        ));
        specs.push(bias("unembed.b_U", self.d_vocab_out));
        specs
    }
}

impl MlpConfig {
    /// FLOPs (2 × multiply-accumulates, forward + backward ≈ 3× forward) of one training step on
    /// `rows` examples: the embedding gather-sum is not counted, every hidden and the output
    /// product is.
    pub fn train_step_flops(&self, rows: usize) -> f64 {
        let widths: Vec<f64> = (self.d_hidden.iter().map(|&w| w as f64))
            .chain(std::iter::once(self.d_vocab_out as f64))
            .collect();
        let macs: f64 = widths.windows(2).map(|w| w[0] * w[1]).sum();
        3.0 * 2.0 * rows as f64 * macs
    }
}

/// What one MLP forward pass returns.
pub struct MlpForward {
    /// `[batch, d_vocab_out]` logits.
    pub logits: Tensor<2>,
    /// Per hidden layer `hidden.{i}.hook_post` `[batch, d_hidden_i]`.
    pub hidden: Vec<Tensor<2>>,
}

/// An MLP bound to burn tensors for one forward (and backward) pass.
pub struct Mlp {
    cfg: MlpConfig,
    leaves: Vec<Tensor<1>>,
    index: HashMap<String, usize>,
    device: Device,
}

impl Mlp {
    /// Uploads `store` (laid out by [`MlpConfig::param_specs`]) in `dtype`; with `track_grads`,
    /// trained tensors become leaves that receive gradients (the device must have autodiff).
    pub fn new(
        cfg: &MlpConfig,
        store: &ParamStore,
        device: &Device,
        dtype: DType,
        track_grads: bool,
    ) -> Self {
        let (leaves, index) = upload(store, device, dtype, track_grads);
        Self {
            cfg: cfg.clone(),
            leaves,
            index,
            device: device.clone(),
        }
    }

    fn w<const D: usize>(&self, name: &str, shape: [usize; D]) -> Tensor<D> {
        self.leaves[self.index[name]].clone().reshape(shape)
    }

    fn act(&self, x: Tensor<2>) -> Tensor<2> {
        match self.cfg.act_fn {
            Activation::Relu => relu(x),
            Activation::Gelu => gelu(x),
        }
    }

    /// Forward pass on `tokens` `[B, T]` (T ≥ n_inputs).
    pub fn forward(&self, tokens: Tensor<2, Int>) -> MlpForward {
        let c = &self.cfg;
        let [b, t] = tokens.dims();
        let (n, v, h0) = (c.n_inputs, c.d_vocab, c.d_hidden[0]);
        let inputs = tokens.slice([0..b, 0..n]); // (B, n)
                                                 // row ids into the embedding table: tok (sum) or pos·V + tok (concat)
        let ids = match c.combine {
            Combine::Sum => inputs,
            Combine::Concat => {
                let offsets =
                    Tensor::<1, Int>::arange(0..n as i64, &self.device).reshape([1, n]) * v as i64;
                inputs + offsets
            }
        };
        let rows = match c.combine {
            Combine::Sum => v,
            Combine::Concat => n * v,
        };
        debug_assert!(t >= n);
        let table = self.w("embed.W_E", [rows, h0]);
        let summed = table
            .select(0, ids.reshape([b * n]))
            .reshape([b, n, h0])
            .sum_dim(1)
            .reshape([b, h0]);
        let mut x = self.act(summed + self.w("embed.b_E", [1, h0]));
        let mut hidden = vec![x.clone()];
        for (i, w) in c.d_hidden.windows(2).enumerate() {
            let pre = x.matmul(self.w(&format!("mlp.{}.W", i + 1), [w[0], w[1]]))
                + self.w(&format!("mlp.{}.b", i + 1), [1, w[1]]);
            x = self.act(pre);
            hidden.push(x.clone());
        }
        let last = *c.d_hidden.last().expect("validated");
        let logits = x.matmul(self.w("unembed.W_U", [last, c.d_vocab_out]))
            + self.w("unembed.b_U", [1, c.d_vocab_out]);
        MlpForward { logits, hidden }
    }

    /// Gradients of every tensor, `None` for frozen ones, flattened in store order (f64).
    pub fn gradients(&self, grads: &Gradients) -> Vec<Option<Vec<f64>>> {
        leaf_gradients(&self.leaves, grads)
    }
}
