//! The transformer's hyper-parameters, mirroring TransformerLens' `HookedTransformerConfig`.

use super::params::{NamedTensors, RawTensor};
use crate::error::{GrokError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// MLP non-linearity (`act_fn` in TransformerLens).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, x)
    Relu,
    /// x·Φ(x), the exact (erf) GELU.
    Gelu,
}

/// Where LayerNorm sits (`normalization_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// No normalisation (Nanda et al. 2023).
    None,
    /// Pre-LN: `ln1` before attention, `ln2` before the MLP, `ln_final` before the unembedding.
    PreLn,
}

/// How each block adds to the residual stream (`model.residual`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Residual {
    /// TransformerLens: `x_{l+1} = x_l + attn_l(x_l)` (and `+ mlp_l(·)`).
    #[default]
    Standard,
    /// The authors' induction notebook (Nanda et al. 2023, `Non_Modular_Addition_Grokking_Tasks`;
    /// REFERENCES.md §3): each block returns `x + attn(x)` and the model loop adds `x` again,
    /// so `x_{l+1} = 2·x_l + attn_l(x_l)` (with an MLP, `2·x_l + attn_l + mlp_l(x_l + attn_l)`);
    /// the unembedding of a 2-layer attention-only model reads `4·(W_E + W_pos) + 2·attn_0 +
    /// attn_1`. It reproduces the saved runs' step-0 loss (5.05 against ln 128 ≈ 4.86).
    Doubled,
}

impl Residual {
    fn is_standard(&self) -> bool {
        *self == Residual::Standard
    }
}

/// The weights whose initial standard deviation `model.init_std` may set, by their
/// TransformerLens short name.
pub const INIT_STD_NAMES: [&str; 9] = [
    "W_E", "W_pos", "W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "W_U",
];

/// Shape of a decoder-only transformer in TransformerLens terms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransformerConfig {
    /// Number of blocks.
    pub n_layers: usize,
    /// Attention heads per block.
    pub n_heads: usize,
    /// Residual stream width.
    pub d_model: usize,
    /// Width of each head's queries, keys and values.
    pub d_head: usize,
    /// MLP hidden width.
    pub d_mlp: usize,
    /// Input vocabulary size (p + 1 for `[a, b, =]`).
    pub d_vocab: usize,
    /// Output classes (p, or p + 1 with the never-used `=` class as in the paper).
    pub d_vocab_out: usize,
    /// Context length.
    pub n_ctx: usize,
    /// MLP activation.
    pub act_fn: Activation,
    /// LayerNorm placement.
    pub normalization: Normalization,
    /// Blocks without MLPs.
    pub attn_only: bool,
    /// How blocks add to the residual stream (default: standard).
    #[serde(default, skip_serializing_if = "Residual::is_standard")]
    pub residual: Residual,
    /// Initial standard deviation of the weights named here by short name ([`INIT_STD_NAMES`],
    /// e.g. `W_Q = 0.2887` for the authors' 1/√d_head); every other weight keeps
    /// [`TransformerConfig::param_specs`]' default.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub init_std: BTreeMap<String, f64>,
    /// Attention rate α ∈ [0, 1] of Zhong et al. 2023 (§3, their models A and B; the authors'
    /// `train-main.py`): each head's pattern is `α·softmax(scores) + (1 − α)` over the keys a
    /// query sees, not renormalised. 1 (the default): standard attention; 0: constant attention,
    /// every key weighted 1.
    #[serde(
        default = "standard_attn_rate",
        skip_serializing_if = "is_standard_attn_rate"
    )]
    pub attn_rate: f64,
}

fn standard_attn_rate() -> f64 {
    1.0
}

fn is_standard_attn_rate(a: &f64) -> bool {
    *a == 1.0
}

impl TransformerConfig {
    /// The 1-layer model of Nanda et al. 2023 for modulus `p` (REFERENCES.md §1): d_model 128,
    /// 4 heads of 32, d_mlp 512, ReLU, no LayerNorm, `p + 1` outputs.
    pub fn nanda2023(p: usize) -> Self {
        Self {
            n_layers: 1,
            n_heads: 4,
            d_model: 128,
            d_head: 32,
            d_mlp: 512,
            d_vocab: p + 1,
            d_vocab_out: p + 1,
            n_ctx: 3,
            act_fn: Activation::Relu,
            normalization: Normalization::None,
            attn_only: false,
            residual: Residual::Standard,
            init_std: BTreeMap::new(),
            attn_rate: 1.0,
        }
    }

    /// Reads the shape of a TransformerLens-layout model off its tensors: `embed.W_E`
    /// `[d_vocab, d_model]`, `pos_embed.W_pos` `[n_ctx, d_model]`, `blocks.{l}.attn.W_Q`
    /// `[n_heads, d_model, d_head]`, `blocks.0.mlp.W_in` `[d_model, d_mlp]` (absent: attention-only),
    /// `blocks.0.ln1.w` (present: pre-LN), `unembed.W_U` `[d_model, d_vocab_out]`. The activation
    /// cannot be read off the weights, so the caller gives it.
    ///
    /// # Errors
    /// [`GrokError::Config`] naming the first missing or wrongly-ranked tensor.
    pub fn infer(tensors: &NamedTensors, act_fn: Activation) -> Result<Self> {
        let shape = |name: &str, rank: usize| -> Result<&[usize]> {
            match tensors.get(name) {
                Some((s, _)) if s.len() == rank => Ok(s),
                Some((s, _)) => Err(GrokError::Config(format!(
                    "tensor `{name}` has shape {s:?}, expected rank {rank}"
                ))),
                None => Err(GrokError::Config(format!(
                    "tensor `{name}` missing: not a TransformerLens-layout checkpoint"
                ))),
            }
        };
        let w_e = shape("embed.W_E", 2)?;
        let w_q = shape("blocks.0.attn.W_Q", 3)?;
        let n_layers = (0..)
            .take_while(|l| tensors.contains_key(&format!("blocks.{l}.attn.W_Q")))
            .count();
        let attn_only = !tensors.contains_key("blocks.0.mlp.W_in");
        let d_mlp = if attn_only {
            1
        } else {
            shape("blocks.0.mlp.W_in", 2)?[1]
        };
        Ok(Self {
            n_layers,
            n_heads: w_q[0],
            d_model: w_e[1],
            d_head: w_q[2],
            d_mlp,
            d_vocab: w_e[0],
            d_vocab_out: shape("unembed.W_U", 2)?[1],
            n_ctx: shape("pos_embed.W_pos", 2)?[0],
            act_fn,
            normalization: if tensors.contains_key("blocks.0.ln1.w") {
                Normalization::PreLn
            } else {
                Normalization::None
            },
            attn_only,
            residual: Residual::Standard,
            init_std: BTreeMap::new(),
            attn_rate: 1.0,
        })
    }

    /// Checks that every size is positive.
    ///
    /// # Errors
    /// The first zero-sized field, named `model.<field>`.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("model.n_layers", self.n_layers),
            ("model.n_heads", self.n_heads),
            ("model.d_model", self.d_model),
            ("model.d_head", self.d_head),
            ("model.d_mlp", self.d_mlp),
        ] {
            if v == 0 {
                return Err(GrokError::invalid(name, v, "a positive integer"));
            }
        }
        if !(0.0..=1.0).contains(&self.attn_rate) {
            return Err(GrokError::invalid(
                "model.attn_rate",
                self.attn_rate,
                "a number in [0, 1]",
            ));
        }
        for (name, &std) in &self.init_std {
            if !INIT_STD_NAMES.contains(&name.as_str()) {
                return Err(GrokError::invalid(
                    "model.init_std",
                    name,
                    INIT_STD_NAMES.join("|"),
                ));
            }
            if !(std > 0.0 && std.is_finite()) {
                return Err(GrokError::invalid(
                    &format!("model.init_std.{name}"),
                    std,
                    "a positive number",
                ));
            }
        }
        Ok(())
    }

    /// The initial standard deviation of weight `short` (`W_Q`, ...): `model.init_std`'s, else
    /// `default`.
    fn init_normal(&self, short: &str, default: f64) -> Init {
        Init::Normal(self.init_std.get(short).copied().unwrap_or(default))
    }

    /// Every parameter tensor with its TransformerLens name, shape, initialisation and whether it
    /// is trained. Biases the paper's model lacks (`b_Q`, `b_K`, `b_V`, `b_O`, `b_U`) are listed as
    /// frozen zeros so checkpoints carry every TransformerLens key.
    ///
    /// Init (Nanda et al. 2023, REFERENCES.md §1): weights N(0, 1)/√d_model, `W_U` N(0, 1)/√d_vocab,
    /// biases 0, LayerNorm scales 1; `model.init_std` overrides a weight's standard deviation.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let (d, h, dh, m) = (self.d_model, self.n_heads, self.d_head, self.d_mlp);
        let w = (d as f64).sqrt().recip();
        let mut specs = vec![
            ParamSpec::new(
                "embed.W_E",
                vec![self.d_vocab, d],
                self.init_normal("W_E", w),
            ),
            ParamSpec::new(
                "pos_embed.W_pos",
                vec![self.n_ctx, d],
                self.init_normal("W_pos", w),
            ),
        ];
        let ln = self.normalization == Normalization::PreLn;
        for l in 0..self.n_layers {
            let b = |s: &str| format!("blocks.{l}.{s}");
            if ln {
                specs.push(ParamSpec::new(&b("ln1.w"), vec![d], Init::Ones));
                specs.push(ParamSpec::new(&b("ln1.b"), vec![d], Init::Zeros));
            }
            for short in ["W_Q", "W_K", "W_V"] {
                let init = self.init_normal(short, w);
                specs.push(ParamSpec::new(
                    &b(&format!("attn.{short}")),
                    vec![h, d, dh],
                    init,
                ));
            }
            let init = self.init_normal("W_O", w);
            specs.push(ParamSpec::new(&b("attn.W_O"), vec![h, dh, d], init));
            for name in ["attn.b_Q", "attn.b_K", "attn.b_V"] {
                specs.push(ParamSpec::frozen(&b(name), vec![h, dh]));
            }
            specs.push(ParamSpec::frozen(&b("attn.b_O"), vec![d]));
            if !self.attn_only {
                if ln {
                    specs.push(ParamSpec::new(&b("ln2.w"), vec![d], Init::Ones));
                    specs.push(ParamSpec::new(&b("ln2.b"), vec![d], Init::Zeros));
                }
                let init = self.init_normal("W_in", w);
                specs.push(ParamSpec::new(&b("mlp.W_in"), vec![d, m], init));
                specs.push(ParamSpec::new(&b("mlp.b_in"), vec![m], Init::Zeros));
                let init = self.init_normal("W_out", w);
                specs.push(ParamSpec::new(&b("mlp.W_out"), vec![m, d], init));
                specs.push(ParamSpec::new(&b("mlp.b_out"), vec![d], Init::Zeros));
            }
        }
        if ln {
            specs.push(ParamSpec::new("ln_final.w", vec![d], Init::Ones));
            specs.push(ParamSpec::new("ln_final.b", vec![d], Init::Zeros));
        }
        let wu = (self.d_vocab as f64).sqrt().recip();
        specs.push(ParamSpec::new(
            "unembed.W_U",
            vec![d, self.d_vocab_out],
            self.init_normal("W_U", wu),
        ));
        specs.push(ParamSpec::frozen("unembed.b_U", vec![self.d_vocab_out]));
        specs
    }

    /// TransformerLens' non-parameter state, so that a checkpoint loads with
    /// `HookedTransformer(cfg).load_state_dict(sd, strict=True)`: per block `blocks.{l}.attn.mask`
    /// (bool `[n_ctx, n_ctx]`, true on and below the diagonal: query i sees keys j ≤ i) and
    /// `blocks.{l}.attn.IGNORE` (f32 scalar −inf, the masked score). groklab's readers skip both.
    pub fn tl_buffers(&self) -> Vec<RawTensor> {
        let t = self.n_ctx;
        let mask: Vec<u8> = (0..t * t).map(|i| u8::from(i % t <= i / t)).collect();
        (0..self.n_layers)
            .flat_map(|l| {
                [
                    RawTensor {
                        name: format!("blocks.{l}.attn.mask"),
                        dtype: safetensors::Dtype::BOOL,
                        shape: vec![t, t],
                        bytes: mask.clone(),
                    },
                    RawTensor {
                        name: format!("blocks.{l}.attn.IGNORE"),
                        dtype: safetensors::Dtype::F32,
                        shape: vec![],
                        bytes: f32::NEG_INFINITY.to_le_bytes().to_vec(),
                    },
                ]
            })
            .collect()
    }

    /// Multiply-accumulate count ×2 (FLOPs) of one training step (forward + backward ≈ 3× forward)
    /// on `rows` examples, counting only the matrix products the last-position loss reads; the
    /// table projections and elementwise work are left out (they are < 2% for the paper model).
    pub fn train_step_flops(&self, rows: usize) -> f64 {
        let (d, hd, m) = (
            self.d_model as f64,
            (self.n_heads * self.d_head) as f64,
            self.d_mlp as f64,
        );
        let (r, t) = (rows as f64, self.n_ctx as f64);
        let mlp = if self.attn_only { 0.0 } else { 2.0 * d * m };
        // Earlier layers run at every position; the last one only at the last position.
        let full_layer = t * (4.0 * d * hd + mlp);
        let last_layer = d * hd + mlp;
        let earlier = (self.n_layers - 1) as f64 * full_layer;
        let fwd = 2.0 * r * (earlier + last_layer + d * self.d_vocab_out as f64);
        3.0 * fwd
    }
}

impl TransformerConfig {
    /// FLOPs (2 × multiply-accumulates, forward + backward ≈ 3× forward) of one training step of
    /// [`super::Transformer::forward_seq`] on `rows` sequences of n_ctx tokens scoring `scored`
    /// positions each (on average): every block but the last at every position (projections,
    /// `q·kᵀ` and `pattern·v`, MLP), the last block's keys and values at every position and the
    /// rest, with the unembedding, at the scored ones.
    pub fn seq_train_step_flops(&self, rows: usize, scored: f64) -> f64 {
        let (d, hd, m, t) = (
            self.d_model as f64,
            (self.n_heads * self.d_head) as f64,
            self.d_mlp as f64,
            self.n_ctx as f64,
        );
        let mlp = if self.attn_only { 0.0 } else { 2.0 * d * m };
        // per query row: its projection q, scores over ≤ t keys and the weighted sum of values
        let per_query = d * hd + 2.0 * t * hd + hd * d + mlp;
        let full_layer = t * (2.0 * d * hd + per_query);
        let last_layer = t * 2.0 * d * hd + scored * (per_query + d * self.d_vocab_out as f64);
        let fwd = 2.0 * rows as f64 * ((self.n_layers - 1) as f64 * full_layer + last_layer);
        3.0 * fwd
    }
}

/// How a parameter is initialised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// N(0, 1) times the given standard deviation.
    Normal(f64),
    /// N(0, 1) redrawn outside ±2, times the given scale (haiku's `TruncatedNormal`).
    TruncatedNormal(f64),
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
}

/// One parameter tensor: TransformerLens name, shape, init, and whether the optimiser updates it.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// TransformerLens state-dict key, e.g. `blocks.0.attn.W_Q`.
    pub name: String,
    /// TransformerLens layout, e.g. `[n_heads, d_model, d_head]`.
    pub shape: Vec<usize>,
    /// Initialisation.
    pub init: Init,
    /// Whether the optimiser updates it (false for the paper's absent biases).
    pub trainable: bool,
}

impl ParamSpec {
    /// A trained tensor.
    pub fn new(name: &str, shape: Vec<usize>, init: Init) -> Self {
        Self {
            name: name.to_string(),
            shape,
            init,
            trainable: true,
        }
    }

    /// A frozen all-zero tensor (a bias the model lacks, kept so the state dict is complete).
    pub fn frozen(name: &str, shape: Vec<usize>) -> Self {
        Self {
            name: name.to_string(),
            shape,
            init: Init::Zeros,
            trainable: false,
        }
    }
}
