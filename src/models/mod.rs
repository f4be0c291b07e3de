//! Models, with TransformerLens parameter names and layouts.
//!
//! A model's weights live in a [`ParamStore`] (host memory, f64 master copy); each step builds a
//! burn [`Transformer`] over them whose leaves carry gradients.

mod config;
pub mod fused;
pub mod linalg;
pub mod mlp;
mod params;
mod sequence;
mod transformer;

pub use config::{Activation, Init, Normalization, ParamSpec, TransformerConfig};
pub use params::{
    encode_safetensors, is_tl_buffer, read_safetensors, read_safetensors_metadata, NamedTensors,
    ParamEntry, ParamStore, RawTensor,
};
pub use sequence::{Scored, SeqForward};
pub use transformer::{ForwardOutput, Transformer};
