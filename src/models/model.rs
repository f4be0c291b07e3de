//! The model seam: what the loop, the checkpoints and the measures ask of any model
//! ([`Model`]), and a model bound to its weights for one pass on burn's graph ([`Net`]).
//!
//! A new architecture is one file with its config type implementing [`Model`] (and, where it runs
//! on burn's graph, a bound type implementing [`Net`]); nothing outside it matches on models.

use super::lsa::LsaConfig;
use super::mlp::{Mlp, MlpConfig};
use super::{HookCache, ParamSpec, ParamStore, RawTensor, Scored, Transformer, TransformerConfig};
use crate::error::{GrokError, Result};
use crate::tasks::Batch;
use crate::train::{Step, StepResult};
use burn::tensor::{DType, Device, Gradients, Int, Tensor, TensorData};
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

    /// Loss, accuracy and (with `backward`) gradients of `batch` under `exec`'s weights and
    /// precisions, on the engine this model picks for it: the transformer its fused passes
    /// where they apply ([`crate::train::Step::train_host`], [`crate::train::Step::train_seq`]),
    /// else burn's graph; the MLP burn's graph; the LSA its own step.
    ///
    /// # Errors
    /// [`GrokError::Config`] for a batch this model cannot read (real-valued tokens for a token
    /// model, tokens for the LSA).
    fn step(&self, exec: &Step, batch: &Batch, backward: bool) -> Result<StepResult>;

    /// Activations of a forward on `tokens` `[B, n_ctx]` (row-major) in `dtype`, by
    /// TransformerLens hook name: the transformer gives `blocks.{l}.attn.hook_pattern`
    /// `[B, n_heads, n_ctx, n_ctx]` for every block and `unembed.hook_out`
    /// `[B, n_ctx, d_vocab_out]`; a model without such hooks gives none (the default).
    ///
    /// # Errors
    /// As [`Model::bind`].
    fn hooks(
        &self,
        _params: &ParamStore,
        _tokens: &[i64],
        _n_ctx: usize,
        _dtype: DType,
    ) -> Result<HookCache> {
        Ok(HookCache::default())
    }

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

/// The step of a token model (transformer or MLP) on `batch`: the rows and sequence passes of
/// [`Step`], which run the transformer's fused kernels where they apply.
fn token_step(arch: &str, exec: &Step, batch: &Batch, backward: bool) -> Result<StepResult> {
    let loss_only = |(loss, acc): (f64, f64)| StepResult {
        loss,
        acc,
        grads: Vec::new(),
    };
    Ok(match (batch, backward) {
        (Batch::Rows { tokens, labels }, true) => exec.train_host(tokens, labels),
        (Batch::Rows { tokens, labels }, false) => loss_only(exec.evaluate_host(tokens, labels)),
        (Batch::Sequence(b), true) => exec.train_seq(b),
        (Batch::Sequence(b), false) => loss_only(exec.evaluate_seq(b)),
        (Batch::Reals { .. }, _) => return Err(cannot_read(arch, batch)),
    })
}

/// The error of a model given a batch it cannot read.
fn cannot_read(arch: &str, batch: &Batch) -> GrokError {
    GrokError::Config(format!(
        "model `{arch}` cannot read {} (a task × model mismatch the config's validation refuses)",
        batch.kind()
    ))
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

    fn step(&self, exec: &Step, batch: &Batch, backward: bool) -> Result<StepResult> {
        token_step("transformer", exec, batch, backward)
    }

    fn hooks(
        &self,
        params: &ParamStore,
        tokens: &[i64],
        n_ctx: usize,
        dtype: DType,
    ) -> Result<HookCache> {
        let device = Device::flex();
        let b = tokens.len() / n_ctx.max(1);
        let model = Transformer::new(self, params, &device, dtype, false);
        let input =
            Tensor::<2, Int>::from_data(TensorData::new(tokens.to_vec(), [b, n_ctx]), &device);
        let out = model.forward_seq(input, &Scored::All);
        let values = |t: Tensor<4>| -> (Vec<usize>, Vec<f64>) {
            let shape = t.dims().to_vec();
            (
                shape,
                t.into_data().try_into_vec_as::<f64>().expect("float"),
            )
        };
        let mut cache = HookCache::default();
        for (l, pattern) in out.patterns.into_iter().enumerate() {
            let (shape, data) = values(pattern);
            cache.insert(format!("blocks.{l}.attn.hook_pattern"), shape, data);
        }
        let logits: Vec<f64> = out
            .logits
            .into_data()
            .try_into_vec_as::<f64>()
            .expect("float");
        cache.insert("unembed.hook_out", vec![b, n_ctx, self.d_vocab_out], logits);
        Ok(cache)
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

    fn step(&self, exec: &Step, batch: &Batch, backward: bool) -> Result<StepResult> {
        token_step("mlp", exec, batch, backward)
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

    /// Its own forward and backward ([`super::lsa::loss_and_grads`]; the gradients are
    /// computed with the loss either way).
    fn step(&self, exec: &Step, batch: &Batch, _backward: bool) -> Result<StepResult> {
        match batch {
            Batch::Reals { batch, format } => Ok(exec.train_icl(self, batch, *format)),
            _ => Err(cannot_read("lsa", batch)),
        }
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
