//! Models, with TransformerLens parameter names and layouts.
//!
//! A model's weights live in a [`ParamStore`] (host memory, f64 master copy); each step builds a
//! burn [`Transformer`] over them whose leaves carry gradients.

pub mod attention_scores;
mod config;
pub mod fused;
pub mod fused_seq;
pub mod lsa;
mod lsa_batched;
pub mod lsa_compare;
pub mod lsa_gd;
pub mod lsa_heads;
pub mod mlp;
mod params;
mod sequence;
mod transformer;

pub use config::{
    Activation, Init, Normalization, ParamSpec, Residual, TransformerConfig, INIT_STD_NAMES,
};
pub use params::{
    encode_safetensors, first_non_finite_tensor, is_tl_buffer, read_safetensors,
    read_safetensors_metadata, NamedTensors, ParamEntry, ParamStore, RawTensor,
};
pub use sequence::{Scored, SeqForward};
pub use transformer::{ForwardOutput, Transformer};

use burn::tensor::{DType, Device, Gradients, Int, Tensor};
use mlp::{Mlp, MlpConfig};

/// Which model a run trains: the transformer or the MLP, each with its own config.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSpec {
    /// TransformerLens-layout transformer.
    Transformer(TransformerConfig),
    /// MLP over one-hot inputs (binary tasks).
    Mlp(MlpConfig),
    /// Linear self-attention on real-valued tokens (in-context regression).
    Lsa(lsa::LsaConfig),
}

impl ModelSpec {
    /// Every parameter tensor (names, shapes, init, trained or frozen).
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        match self {
            ModelSpec::Transformer(c) => c.param_specs(),
            ModelSpec::Mlp(c) => c.param_specs(),
            ModelSpec::Lsa(c) => c.param_specs(),
        }
    }

    /// Non-parameter state a checkpoint carries (TransformerLens' attention buffers).
    pub fn buffers(&self) -> Vec<RawTensor> {
        match self {
            ModelSpec::Transformer(c) => c.tl_buffers(),
            ModelSpec::Mlp(_) | ModelSpec::Lsa(_) => Vec::new(),
        }
    }

    /// The transformer's config, `None` for other models.
    pub fn transformer(&self) -> Option<&TransformerConfig> {
        match self {
            ModelSpec::Transformer(c) => Some(c),
            ModelSpec::Mlp(_) | ModelSpec::Lsa(_) => None,
        }
    }

    /// The model bound to `store` on `device` for one forward (and backward) pass on burn's
    /// graph.
    ///
    /// # Panics
    /// For the LSA, whose step is its own ([`lsa::loss_and_grads`]; a programming error).
    pub fn bind(&self, store: &ParamStore, device: &Device, dtype: DType, track: bool) -> Net {
        match self {
            ModelSpec::Transformer(c) => {
                Net::Transformer(Transformer::new(c, store, device, dtype, track))
            }
            ModelSpec::Mlp(c) => Net::Mlp(Mlp::new(c, store, device, dtype, track)),
            ModelSpec::Lsa(_) => {
                panic!("the LSA has no burn graph; its step is lsa::loss_and_grads")
            }
        }
    }
}

/// A model bound for one pass ([`ModelSpec::bind`]).
pub enum Net {
    /// The transformer.
    Transformer(Transformer),
    /// The MLP.
    Mlp(Mlp),
}

impl Net {
    /// `[batch, d_vocab_out]` logits at the last position of `tokens` `[batch, T]` (the MLP's one
    /// prediction per sequence).
    pub fn logits_last(&self, tokens: Tensor<2, Int>) -> Tensor<2> {
        match self {
            Net::Transformer(t) => t.forward(tokens).logits,
            Net::Mlp(m) => m.forward(tokens).logits,
        }
    }

    /// `[batch·P, d_vocab_out]` logits at the scored positions. The MLP predicts one class per
    /// sequence: it takes [`Scored::Positions`] with a single position only.
    ///
    /// # Panics
    /// The MLP with other positions (the config's validation rejects such runs).
    pub fn logits_scored(&self, tokens: Tensor<2, Int>, scored: &Scored) -> Tensor<2> {
        match (self, scored) {
            (Net::Transformer(t), _) => t.forward_seq(tokens, scored).logits,
            (Net::Mlp(m), Scored::Positions(p)) if p.len() == 1 => m.forward(tokens).logits,
            (Net::Mlp(_), _) => panic!("the MLP predicts one position per sequence"),
        }
    }

    /// Gradients of every tensor, `None` for frozen ones, in store order (f64).
    pub fn gradients(&self, grads: &Gradients) -> Vec<Option<Vec<f64>>> {
        match self {
            Net::Transformer(t) => t.gradients(grads),
            Net::Mlp(m) => m.gradients(grads),
        }
    }
}
