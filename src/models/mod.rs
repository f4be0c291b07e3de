//! Models, with TransformerLens parameter names and layouts.
//!
//! A model's weights live in a [`ParamStore`] (host memory, f64 master copy); each step builds a
//! burn [`Transformer`] over them whose leaves carry gradients.

pub mod attention_scores;
mod config;
pub mod fused;
pub mod fused_seq;
mod hooks;
pub mod lsa;
mod lsa_batched;
pub mod lsa_compare;
pub mod lsa_gd;
pub mod lsa_heads;
pub mod mlp;
mod model;
mod params;
mod sequence;
mod transformer;

pub use config::{
    Activation, Init, Normalization, ParamSpec, Residual, TransformerConfig, INIT_STD_NAMES,
};
pub use hooks::HookCache;
pub use model::{Model, Net};
pub use params::{
    encode_safetensors, first_non_finite_tensor, is_tl_buffer, read_safetensors,
    read_safetensors_metadata, NamedTensors, ParamEntry, ParamStore, RawTensor,
};
pub use sequence::{Scored, SeqForward};
pub use transformer::{ForwardOutput, Transformer};
