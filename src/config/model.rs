//! `[model]`: the transformer (TransformerLens field names), the MLP over one-hot inputs, or
//! linear self-attention, each family with its own keys ([`ModelConfig`]).

use super::section;
use crate::models::mlp::Combine;
use crate::models::{Activation, Normalization, Residual};
use serde::{Deserialize, Serialize};

/// Number of output classes relative to p.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VocabOut {
    /// p classes (TransformerLens demo).
    #[serde(rename = "p")]
    P,
    /// p + 1 classes, the `=` class never a label (the paper).
    #[serde(rename = "p+1")]
    PPlus1,
}

/// `[model]`: the transformer (TransformerLens field names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Blocks.
    pub n_layers: usize,
    /// Heads per block.
    pub n_heads: usize,
    /// Residual width.
    pub d_model: usize,
    /// Head width.
    pub d_head: usize,
    /// MLP width.
    pub d_mlp: usize,
    /// MLP activation.
    pub act_fn: Activation,
    /// LayerNorm placement.
    pub normalization: Normalization,
    /// No MLPs.
    pub attn_only: bool,
    /// `standard` or `doubled` ([`Residual`]: the authors' induction notebook adds each block's
    /// input twice, x_{l+1} = 2·x_l + attn_l(x_l)).
    #[serde(default, skip_serializing_if = "is_standard")]
    pub residual: Residual,
    /// Initial standard deviation per weight by TransformerLens short name
    /// (`{ W_Q = 0.2887, ... }`); unnamed weights keep the default N(0, 1/d_model).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub init_std: std::collections::BTreeMap<String, f64>,
    /// Output classes of a binary-operation task: `"p"` or `"p+1"` (sequence tasks fix their
    /// own and take no value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_vocab_out: Option<VocabOut>,
    /// Seed of the weight initialisation.
    pub init_seed: u64,
}

/// `[model]` with `arch = "mlp"`: the MLP over one-hot inputs ([`crate::models::mlp`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpSection {
    /// `"mlp"`.
    pub arch: String,
    /// Widths of the hidden layers, e.g. `[200, 200]`.
    pub d_hidden: Vec<usize>,
    /// Non-linearity.
    pub act_fn: Activation,
    /// Inputs summed (`sum`, one shared embedding) or concatenated (`concat`).
    pub combine: Combine,
    /// Trained biases (else frozen zeros).
    pub biases: bool,
    /// Output classes of a binary-operation task: `"p"` or `"p+1"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_vocab_out: Option<VocabOut>,
    /// Seed of the weight initialisation.
    pub init_seed: u64,
}

/// `[model]` with `arch = "lsa"`: linear self-attention on real-valued tokens
/// ([`crate::models::lsa`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LsaSection {
    /// `"lsa"`.
    pub arch: String,
    /// Layers K.
    pub n_layers: usize,
    /// One block applied K times ("recurrent") instead of K blocks.
    pub shared: bool,
    /// Heads per layer.
    pub n_heads: usize,
    /// `linear` (LSA: no softmax, no scale) or `softmax` (scaled by 1/√e, over the context).
    pub attention: AttentionKind,
    /// Init variance scale s: truncated normal with variance s / (K · fan_in) (the paper: 0.002).
    pub init_scale: f64,
    /// Seed of the weight initialisation.
    pub init_seed: u64,
    /// `analyze` also rolls the trained first layer out 1, …, this many times with its best
    /// dampening λ ([`crate::measures::icl_weights::best_rollout`]); 0: no roll-out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rollout_steps: usize,
    /// Pre-LayerNorm before the attention (and the MLP), as in von Oswald et al.'s softmax
    /// models with LayerNorm.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub layer_norm: bool,
    /// Hidden width of a ReLU MLP after each attention (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub d_mlp: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_standard(r: &Residual) -> bool {
    *r == Residual::Standard
}

/// The attention of an `arch = "lsa"` model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionKind {
    /// `A = Q Kᵀ`.
    Linear,
    /// `A = softmax(Q Kᵀ / √e)`.
    Softmax,
}

/// `[model]`: the transformer (no `arch` key, or `arch = "transformer"`), the MLP
/// (`arch = "mlp"`) or linear self-attention (`arch = "lsa"`), each with its own keys.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ModelConfig {
    /// TransformerLens-layout transformer.
    Transformer(ModelSection),
    /// MLP.
    Mlp(MlpSection),
    /// Linear self-attention.
    Lsa(LsaSection),
}

impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let mut value = toml::Value::deserialize(d)?;
        match value.get("arch").and_then(toml::Value::as_str) {
            Some("mlp") => section(value).map(ModelConfig::Mlp),
            Some("lsa") => section(value).map(ModelConfig::Lsa),
            None | Some("transformer") => {
                if let Some(t) = value.as_table_mut() {
                    t.remove("arch");
                }
                section(value).map(ModelConfig::Transformer)
            }
            Some(other) => Err(D::Error::custom(format!(
                "invalid value for `model.arch`: {other} (allowed: transformer|mlp|lsa)"
            ))),
        }
    }
}

impl ModelConfig {
    /// Seed of the weight initialisation.
    pub fn init_seed(&self) -> u64 {
        match self {
            ModelConfig::Transformer(m) => m.init_seed,
            ModelConfig::Mlp(m) => m.init_seed,
            ModelConfig::Lsa(m) => m.init_seed,
        }
    }

    /// Sets the seed of the weight initialisation.
    pub fn set_init_seed(&mut self, seed: u64) {
        match self {
            ModelConfig::Transformer(m) => m.init_seed = seed,
            ModelConfig::Mlp(m) => m.init_seed = seed,
            ModelConfig::Lsa(m) => m.init_seed = seed,
        }
    }

    /// The `arch` name of this section.
    pub fn arch(&self) -> &'static str {
        match self {
            ModelConfig::Transformer(_) => "transformer",
            ModelConfig::Mlp(_) => "mlp",
            ModelConfig::Lsa(_) => "lsa",
        }
    }

    pub(super) fn d_vocab_out(&self) -> Option<VocabOut> {
        match self {
            ModelConfig::Transformer(m) => m.d_vocab_out,
            ModelConfig::Mlp(m) => m.d_vocab_out,
            ModelConfig::Lsa(_) => None,
        }
    }
}
