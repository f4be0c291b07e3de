//! The model seam: what the loop, the checkpoints and the measures ask of any model
//! ([`Model`]), and a model bound to its weights for one pass on burn's graph ([`Net`]).
//!
//! A new architecture is one file with its config type implementing [`Model`] (and, where it runs
//! on burn's graph, a bound type implementing [`Net`]); nothing outside it matches on models.

use super::lsa::LsaConfig;
use super::mlp::{Mlp, MlpConfig};
use super::{ParamSpec, ParamStore, RawTensor, Scored, Transformer, TransformerConfig};
use crate::error::{GrokError, Result};
use burn::tensor::{DType, Device, Gradients, Int, Tensor};
use std::any::Any;
use std::fmt::Debug;

/// A model a run trains: its parameters (TransformerLens names and layouts), its checkpoint
/// buffers, the graph it binds to its weights, and the FLOPs of a step.
pub trait Model: Debug + Send + Sync {
    /// The `model.arch` name (`transformer`, `mlp`, `lsa`).
    fn arch(&self) -> &'static str;

    /// Every parameter tensor (names, shapes, init, trained or frozen), in store order.
    fn param_specs(&self) -> Vec<ParamSpec>;

    /// Non-parameter state a checkpoint carries (TransformerLens' attention buffers); none by
    /// default.
    fn buffers(&self) -> Vec<RawTensor> {
        Vec::new()
    }

    /// The transformer's config, for the engines and measures written for it (the fused steps,
    /// attention scores); `None` for other models.
    fn transformer(&self) -> Option<&TransformerConfig> {
        None
    }

    /// The model bound to `store` on `device` for one forward (and, with `track`, backward) pass
    /// on burn's graph.
    ///
    /// # Errors
    /// [`GrokError::Config`] for a model whose step is its own (the LSA's
    /// [`super::lsa::loss_and_grads`]).
    fn bind(
        &self,
        store: &ParamStore,
        device: &Device,
        dtype: DType,
        track: bool,
    ) -> Result<Box<dyn Net>>;

    /// Nominal FLOPs of one training step (forward + backward, 2 per multiply-add) on `rows`
    /// examples scoring `scored` positions each (`None`: one, the last).
    fn train_step_flops(&self, rows: usize, scored: Option<f64>) -> f64;

    /// Rough memory of the model for `groklab`'s estimate before a run (no weights are
    /// allocated): parameters (count) and activation floats per token of a forward, on sequences
    /// of `n_ctx` tokens. Within a small factor, to tell 10 MB from 10 TB.
    fn memory_estimate(&self, n_ctx: usize) -> (f64, f64);

    /// The engine of this model's step where no fused transformer pass runs (`burn`, or the
    /// model's own such as `lsa`).
    fn own_engine(&self) -> &'static str {
        "burn"
    }

    /// `self` as [`Any`], for the measures written for one architecture (downcast to its
    /// config type).
    fn as_any(&self) -> &dyn Any;
}

/// A model bound to its weights for one pass ([`Model::bind`]).
pub trait Net {
    /// `[batch, d_vocab_out]` logits at the last position of `tokens` `[batch, T]` (the MLP's one
    /// prediction per sequence).
    fn logits_last(&self, tokens: Tensor<2, Int>) -> Tensor<2>;

    /// `[batch·P, d_vocab_out]` logits at the scored positions (batch-major).
    fn logits_scored(&self, tokens: Tensor<2, Int>, scored: &Scored) -> Tensor<2>;

    /// Gradients of every tensor, `None` for frozen ones, in store order (f64).
    fn gradients(&self, grads: &Gradients) -> Vec<Option<Vec<f64>>>;
}

impl Model for TransformerConfig {
    fn arch(&self) -> &'static str {
        "transformer"
    }

    fn param_specs(&self) -> Vec<ParamSpec> {
        TransformerConfig::param_specs(self)
    }

    fn buffers(&self) -> Vec<RawTensor> {
        self.tl_buffers()
    }

    fn transformer(&self) -> Option<&TransformerConfig> {
        Some(self)
    }

    fn bind(
        &self,
        store: &ParamStore,
        device: &Device,
        dtype: DType,
        track: bool,
    ) -> Result<Box<dyn Net>> {
        Ok(Box::new(Transformer::new(
            self, store, device, dtype, track,
        )))
    }

    fn train_step_flops(&self, rows: usize, scored: Option<f64>) -> f64 {
        match scored {
            None => TransformerConfig::train_step_flops(self, rows),
            Some(s) => self.seq_train_step_flops(rows, s),
        }
    }

    fn memory_estimate(&self, n_ctx: usize) -> (f64, f64) {
        let f = |x: usize| x as f64;
        let (l, h, d, dh, dm) = (
            f(self.n_layers),
            f(self.n_heads),
            f(self.d_model),
            f(self.d_head),
            f(self.d_mlp),
        );
        let (v, v_out, t) = (f(self.d_vocab), f(self.d_vocab_out), f(n_ctx));
        let mlp = if self.attn_only {
            0.0
        } else {
            2.0 * d * dm + dm + d
        };
        let block = 4.0 * h * d * dh + 3.0 * h * dh + d + mlp + 4.0 * d;
        let params = v * d + t * d + l * block + d * v_out + v_out;
        let act = l * (8.0 * d + 4.0 * h * dh + 2.0 * h * t + 2.0 * dm) + 2.0 * v_out;
        (params, act)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Net for Transformer {
    fn logits_last(&self, tokens: Tensor<2, Int>) -> Tensor<2> {
        self.forward(tokens).logits
    }

    fn logits_scored(&self, tokens: Tensor<2, Int>, scored: &Scored) -> Tensor<2> {
        self.forward_seq(tokens, scored).logits
    }

    fn gradients(&self, grads: &Gradients) -> Vec<Option<Vec<f64>>> {
        Transformer::gradients(self, grads)
    }
}

impl Model for MlpConfig {
    fn arch(&self) -> &'static str {
        "mlp"
    }

    fn param_specs(&self) -> Vec<ParamSpec> {
        MlpConfig::param_specs(self)
    }

    fn bind(
        &self,
        store: &ParamStore,
        device: &Device,
        dtype: DType,
        track: bool,
    ) -> Result<Box<dyn Net>> {
        Ok(Box::new(Mlp::new(self, store, device, dtype, track)))
    }

    fn train_step_flops(&self, rows: usize, _scored: Option<f64>) -> f64 {
        MlpConfig::train_step_flops(self, rows)
    }

    fn memory_estimate(&self, n_ctx: usize) -> (f64, f64) {
        let widths: Vec<f64> = self.d_hidden.iter().map(|&w| w as f64).collect();
        let (v, v_out, t) = (self.d_vocab as f64, self.d_vocab_out as f64, n_ctx as f64);
        let first = widths.first().copied().unwrap_or(0.0);
        let inner: f64 = widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
        let last = widths.last().copied().unwrap_or(0.0);
        let params = v * t * first + inner + last * v_out + v_out;
        let act = 2.0 * widths.iter().sum::<f64>() / t.max(1.0) + 2.0 * v_out;
        (params, act)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Net for Mlp {
    fn logits_last(&self, tokens: Tensor<2, Int>) -> Tensor<2> {
        self.forward(tokens).logits
    }

    /// The MLP predicts one class per sequence: `scored` must be one position (the config's
    /// validation admits only tasks scored at one position).
    fn logits_scored(&self, tokens: Tensor<2, Int>, scored: &Scored) -> Tensor<2> {
        debug_assert!(matches!(scored, Scored::Positions(p) if p.len() == 1));
        self.forward(tokens).logits
    }

    fn gradients(&self, grads: &Gradients) -> Vec<Option<Vec<f64>>> {
        Mlp::gradients(self, grads)
    }
}

impl Model for LsaConfig {
    fn arch(&self) -> &'static str {
        "lsa"
    }

    fn param_specs(&self) -> Vec<ParamSpec> {
        LsaConfig::param_specs(self)
    }

    fn bind(&self, _: &ParamStore, _: &Device, _: DType, _: bool) -> Result<Box<dyn Net>> {
        Err(GrokError::Config(
            "the LSA has no burn graph; its step is its own (models::lsa::loss_and_grads)".into(),
        ))
    }

    /// `scored`: the tokens per task T.
    fn train_step_flops(&self, rows: usize, scored: Option<f64>) -> f64 {
        LsaConfig::train_step_flops(self, rows, scored.unwrap_or(1.0) as usize)
    }

    fn memory_estimate(&self, n_ctx: usize) -> (f64, f64) {
        let f = |x: usize| x as f64;
        let (l, h, w, dm) = (
            f(self.n_layers),
            f(self.n_heads),
            f(self.d + 1),
            f(self.d_mlp),
        );
        let params = l * (4.0 * h * w * w + 2.0 * w * dm + dm + w);
        let act = l * (6.0 * w + 2.0 * h * f(n_ctx) + 2.0 * dm);
        (params, act)
    }

    fn own_engine(&self) -> &'static str {
        "lsa"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
