//! `[model]`: the transformer (TransformerLens field names), the MLP over one-hot inputs, or
//! linear self-attention, each family with its own keys ([`ModelConfig`]).

use super::{section, Precision, TrainSection};
use crate::error::{GrokError, Result};
use crate::models::lsa::LsaConfig;
use crate::models::mlp::{Combine, MlpConfig};
use crate::models::{Activation, Model, Normalization, Residual, TransformerConfig};
use crate::tasks::{DataSpec, Inputs, Targets};
use dyn_clone::DynClone;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::fmt::Debug;

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
    /// Attention rate α ∈ [0, 1] (Zhong et al. 2023): pattern `α·softmax + (1 − α)`; absent: 1,
    /// standard attention ([`TransformerConfig::attn_rate`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attn_rate: Option<f64>,
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

/// One model family's `[model]` section: its own keys (serde), and how it checks and shapes
/// itself for a task's data. A new architecture implements this for its section and adds one
/// arm to [`ModelConfig`]'s deserializer (its `arch` name).
pub trait ModelFamily: erased_serde::Serialize + DynClone + Debug + Send + Sync + Any {
    /// The `model.arch` name.
    fn arch(&self) -> &'static str;

    /// Seed of the weight initialisation (`model.init_seed`).
    fn init_seed(&self) -> u64;

    /// Sets `model.init_seed`.
    fn set_init_seed(&mut self, seed: u64);

    /// Whether this model can read `data`'s inputs and predict its targets, and its own keys'
    /// ranges (with what it asks of `train`).
    ///
    /// # Errors
    /// [`GrokError::InvalidValue`] naming the first offending key (`model.arch` where the data
    /// does not fit the model at all).
    fn accepts(&self, data: &DataSpec, train: &TrainSection) -> Result<()>;

    /// The model shaped for `data` (vocabularies, sequence length, widths); `data` was accepted.
    fn shape(&self, data: &DataSpec) -> Box<dyn Model>;

    /// `self` as [`Any`] (for [`ModelConfig::get`]).
    fn as_any(&self) -> &dyn Any;
}

erased_serde::serialize_trait_object!(ModelFamily);
dyn_clone::clone_trait_object!(ModelFamily);

/// `[model]`: the transformer (no `arch` key, or `arch = "transformer"`), the MLP
/// (`arch = "mlp"`) or linear self-attention (`arch = "lsa"`), each its own section type
/// ([`ModelFamily`]). Dereferences to the section.
#[derive(Clone, Debug)]
pub struct ModelConfig(Box<dyn ModelFamily>);

impl ModelConfig {
    /// The `[model]` section `m`.
    pub fn new(m: impl ModelFamily) -> Self {
        Self(Box::new(m))
    }

    /// The section as its own type `T`, where it is one.
    pub fn get<T: ModelFamily>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref()
    }

    /// The model for `data`, after [`ModelFamily::accepts`].
    ///
    /// # Errors
    /// As [`ModelFamily::accepts`].
    pub fn build(&self, data: &DataSpec, train: &TrainSection) -> Result<Box<dyn Model>> {
        self.0.accepts(data, train)?;
        Ok(self.0.shape(data))
    }
}

impl std::ops::Deref for ModelConfig {
    type Target = dyn ModelFamily;

    fn deref(&self) -> &dyn ModelFamily {
        &*self.0
    }
}

impl std::ops::DerefMut for ModelConfig {
    fn deref_mut(&mut self) -> &mut dyn ModelFamily {
        &mut *self.0
    }
}

impl PartialEq for ModelConfig {
    /// The same keys with the same values.
    fn eq(&self, other: &Self) -> bool {
        toml::Value::try_from(self).ok() == toml::Value::try_from(other).ok()
    }
}

impl Serialize for ModelConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (*self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for ModelConfig {
    /// Picks the section type by `arch`, then reads it with that type's keys only.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let mut value = toml::Value::deserialize(d)?;
        match value.get("arch").and_then(toml::Value::as_str) {
            Some("mlp") => section::<MlpSection, _>(value).map(ModelConfig::new),
            Some("lsa") => section::<LsaSection, _>(value).map(ModelConfig::new),
            None | Some("transformer") => {
                if let Some(t) = value.as_table_mut() {
                    t.remove("arch");
                }
                section::<ModelSection, _>(value).map(ModelConfig::new)
            }
            Some(other) => Err(D::Error::custom(format!(
                "invalid value for `model.arch`: {other} (allowed: transformer|mlp|lsa)"
            ))),
        }
    }
}

/// Classes a token model predicts for `data` with `model.d_vocab_out = choice`.
///
/// # Errors
/// `model.arch` for real-valued data; `model.d_vocab_out` missing where the task lets the
/// model choose (a binary operation), or given where the task fixes its classes.
fn token_shape(arch: &str, choice: Option<VocabOut>, data: &DataSpec) -> Result<(usize, usize)> {
    let (
        Inputs::Tokens { d_vocab },
        Targets::Classes {
            d_vocab_out,
            padded,
        },
    ) = (data.inputs, data.targets)
    else {
        return Err(GrokError::invalid(
            "model.arch",
            arch,
            format!("lsa (task `{}` has real-valued tokens)", data.task),
        ));
    };
    let out = match (padded, choice) {
        (Some(_), None) => {
            return Err(GrokError::invalid(
                "model.d_vocab_out",
                "(missing)",
                "\"p\" or \"p+1\"",
            ))
        }
        (Some(_), Some(VocabOut::P)) | (None, None) => d_vocab_out,
        (Some(padded), Some(VocabOut::PPlus1)) => padded,
        (None, Some(v)) => {
            return Err(GrokError::invalid(
                "model.d_vocab_out",
                format!("{v:?}"),
                format!("no value: task `{}` fixes its classes", data.task),
            ))
        }
    };
    Ok((d_vocab, out))
}

impl ModelSection {
    fn config(&self, data: &DataSpec) -> Result<TransformerConfig> {
        let (d_vocab, d_vocab_out) = token_shape("transformer", self.d_vocab_out, data)?;
        Ok(TransformerConfig {
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            d_model: self.d_model,
            d_head: self.d_head,
            d_mlp: self.d_mlp,
            d_vocab,
            d_vocab_out,
            n_ctx: data.n_ctx,
            act_fn: self.act_fn,
            normalization: self.normalization,
            attn_only: self.attn_only,
            residual: self.residual,
            init_std: self.init_std.clone(),
            attn_rate: self.attn_rate.unwrap_or(1.0),
        })
    }
}

impl ModelFamily for ModelSection {
    fn arch(&self) -> &'static str {
        "transformer"
    }

    fn init_seed(&self) -> u64 {
        self.init_seed
    }

    fn set_init_seed(&mut self, seed: u64) {
        self.init_seed = seed;
    }

    fn accepts(&self, data: &DataSpec, _train: &TrainSection) -> Result<()> {
        if let Some(a) = self.attn_rate.filter(|&a| a != 1.0) {
            if crate::tasks::Operation::parse(&data.task).is_err() {
                return Err(GrokError::invalid(
                    "model.attn_rate",
                    a,
                    format!(
                        "1 or absent: task `{}` runs the sequence model, whose attention is standard",
                        data.task
                    ),
                ));
            }
        }
        self.config(data)?.validate()
    }

    fn shape(&self, data: &DataSpec) -> Box<dyn Model> {
        Box::new(self.config(data).expect("accepted"))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl MlpSection {
    /// The MLP reads every position but the last (`[a, b, =]` → a, b; sparse parity's bits;
    /// max-of-sequence's values with START).
    fn config(&self, data: &DataSpec) -> Result<MlpConfig> {
        let (d_vocab, d_vocab_out) = token_shape("mlp", self.d_vocab_out, data)?;
        Ok(MlpConfig {
            d_vocab,
            n_inputs: data.n_ctx - 1,
            d_hidden: self.d_hidden.clone(),
            d_vocab_out,
            act_fn: self.act_fn,
            combine: self.combine,
            biases: self.biases,
        })
    }
}

impl ModelFamily for MlpSection {
    fn arch(&self) -> &'static str {
        "mlp"
    }

    fn init_seed(&self) -> u64 {
        self.init_seed
    }

    fn set_init_seed(&mut self, seed: u64) {
        self.init_seed = seed;
    }

    fn accepts(&self, data: &DataSpec, _train: &TrainSection) -> Result<()> {
        self.config(data)?;
        if self.d_hidden.is_empty() || self.d_hidden.contains(&0) {
            return Err(GrokError::invalid(
                "model.d_hidden",
                format!("{:?}", self.d_hidden),
                "one or more positive widths, e.g. [200, 200]",
            ));
        }
        // one prediction per example: a task scored at one position
        if !data.one_scored_position {
            return Err(GrokError::invalid(
                "model.arch",
                "mlp",
                format!(
                    "transformer (task `{}` is scored at several positions)",
                    data.task
                ),
            ));
        }
        Ok(())
    }

    fn shape(&self, data: &DataSpec) -> Box<dyn Model> {
        Box::new(self.config(data).expect("accepted"))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl ModelFamily for LsaSection {
    fn arch(&self) -> &'static str {
        "lsa"
    }

    fn init_seed(&self) -> u64 {
        self.init_seed
    }

    fn set_init_seed(&mut self, seed: u64) {
        self.init_seed = seed;
    }

    fn accepts(&self, data: &DataSpec, train: &TrainSection) -> Result<()> {
        if !matches!(data.inputs, Inputs::Reals { .. }) {
            return Err(GrokError::invalid(
                "model.arch",
                "lsa",
                "transformer|mlp (lsa reads the real-valued tokens of task `linear_regression_icl`)",
            ));
        }
        if self.n_layers == 0 {
            return Err(GrokError::invalid(
                "model.n_layers",
                0,
                "a positive integer",
            ));
        }
        if !(self.init_scale > 0.0 && self.init_scale.is_finite()) {
            return Err(GrokError::invalid(
                "model.init_scale",
                self.init_scale,
                "a positive number",
            ));
        }
        if train.compute_dtype != Precision::F32 {
            return Err(GrokError::invalid(
                "train.compute_dtype",
                "f64",
                "f32 (the LSA step computes in f32; the loss sums in f64)",
            ));
        }
        let plain = self.attention == AttentionKind::Linear && !self.layer_norm && self.d_mlp == 0;
        if self.rollout_steps > 0 && (self.n_layers != 1 || !plain) {
            return Err(GrokError::invalid(
                "model.rollout_steps",
                self.rollout_steps,
                "0 (the roll-out repeats one trained linear layer: n_layers = 1, attention = \"linear\", no layer_norm or d_mlp)",
            ));
        }
        Ok(())
    }

    fn shape(&self, data: &DataSpec) -> Box<dyn Model> {
        let Inputs::Reals { d } = data.inputs else {
            unreachable!("accepted: real-valued tokens")
        };
        Box::new(LsaConfig {
            d,
            n_layers: self.n_layers,
            shared: self.shared,
            n_heads: self.n_heads,
            softmax: self.attention == AttentionKind::Softmax,
            init_scale: self.init_scale,
            layer_norm: self.layer_norm,
            d_mlp: self.d_mlp,
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
