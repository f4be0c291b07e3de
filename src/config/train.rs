//! `[train]`: optimiser, schedule, precision, logging, and the choices they name.

use super::{JumpDecay, LrJump, Schedule, ScheduleKind};
use crate::error::{GrokError, Result};
use serde::{Deserialize, Serialize};

/// Floating-point precision of a computation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// 32-bit floats.
    F32,
    /// 64-bit floats.
    F64,
}

impl Precision {
    /// The burn dtype.
    pub fn dtype(self) -> burn::tensor::DType {
        match self {
            Precision::F32 => burn::tensor::DType::F32,
            Precision::F64 => burn::tensor::DType::F64,
        }
    }
}

/// Which implementation runs the training step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// A fused hand-written step where one applies with an f64 loss: `models::fused` for the
    /// 1-layer LayerNorm-free ReLU model on `[a, b, =]`, `models::fused_seq` for the
    /// transformer on sequence tasks; the burn graph otherwise.
    #[default]
    Auto,
    /// Always the burn graph (the reference).
    Burn,
}

/// `[train]`: optimiser, schedule, precision, logging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Optimiser updates (= epochs with full batch).
    pub steps: u64,
    /// AdamW learning rate.
    pub lr: f64,
    /// Decoupled weight decay (PyTorch `AdamW.weight_decay`).
    pub weight_decay: f64,
    /// Adam (β₁, β₂).
    pub betas: [f64; 2],
    /// Adam ε.
    pub eps: f64,
    /// Linear warm-up: lr × min(step / warmup_steps, 1), so step 0 has lr 0 (0 disables).
    pub warmup_steps: u64,
    /// Minibatch size; 0 means full batch.
    pub batch_size: usize,
    /// Precision of the forward and backward pass.
    pub compute_dtype: Precision,
    /// Precision of log-softmax and the loss.
    pub loss_dtype: Precision,
    /// Log metrics every N steps.
    pub log_every: u64,
    /// Checkpoint every N steps.
    pub checkpoint_every: u64,
    /// Before this step, checkpoint ten times as often.
    pub dense_checkpoints_until: u64,
    /// CPU threads.
    pub threads: usize,
    /// Step implementation: `auto` (fused where it applies) or `burn`.
    #[serde(default)]
    pub engine: Engine,
    /// Update rule: `adamw`, `adam` (coupled L2) or `sgd`.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// SGD momentum μ in [0, 1) (0: none).
    #[serde(default)]
    pub momentum: f64,
    /// SGD Nesterov momentum (needs `momentum` > 0).
    #[serde(default)]
    pub nesterov: bool,
    /// Weight decay pulls toward `zero` or toward the initial weights (`init`).
    #[serde(default)]
    pub decay_to: DecayTarget,
    /// Shape after warm-up: `constant`, `cosine` or `linear` (to 0 at `steps`).
    #[serde(default)]
    pub schedule: ScheduleKind,
    /// Learning-rate multipliers `[[from_step, factor], ...]`: lr × factor from that step on;
    /// `[from_step, factor, ramp_steps]` reaches the factor linearly over `ramp_steps` updates.
    #[serde(default)]
    pub lr_jumps: Vec<LrJump>,
    /// AdamW's decoupled decay under `lr_jumps`: `scaled` (PyTorch: the decay step `lr·λ`
    /// uses the jumped lr) or `fixed` (it keeps the lr without the jumps).
    #[serde(default, skip_serializing_if = "is_scaled")]
    pub jump_decay: JumpDecay,
    /// Global-norm gradient clipping threshold (0: none).
    #[serde(default)]
    pub clip_grad_norm: f64,
    /// Minibatches `without_replacement` (a fresh permutation per epoch) or
    /// `with_replacement` (each batch drawn independently).
    #[serde(default)]
    pub sampling: Sampling,
    /// Class probabilities of the loss: `softmax` or `stablemax`.
    #[serde(default)]
    pub loss_fn: LossFn,
    /// Grokfast gradient filter: `none`, `ema` or `ma`.
    #[serde(default)]
    pub grokfast: GrokfastKind,
    /// Grokfast EMA momentum α in [0, 1).
    #[serde(default = "default_grokfast_alpha")]
    pub grokfast_alpha: f64,
    /// Grokfast amplification λ (the paper's: 2 for EMA, 5 for MA).
    #[serde(default = "default_grokfast_lambda")]
    pub grokfast_lambda: f64,
    /// Grokfast MA window w.
    #[serde(default = "default_grokfast_window")]
    pub grokfast_window: usize,
    /// ⊥Grad: step along the gradient's component orthogonal to each weight tensor.
    #[serde(default)]
    pub orthograd: bool,
    /// Omnigrok: after every update, rescale the weights to this multiple of their initial
    /// total L2 norm (0: unconstrained).
    #[serde(default)]
    pub constrain_norm: f64,
    /// Stop at the first logged step whose test accuracy reaches this (0: run every step): a
    /// time-to-grok sweep needs no steps after it. The run ends with a checkpoint there.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub stop_at_test_acc: f64,
    /// Multiplies the loss the optimiser sees (and the logged `train_loss` and `test_loss`; the
    /// per-position and per-class curves stay plain means). The authors' induction notebook
    /// scales its mean over the scored tokens by 85/84 (REFERENCES.md §3), which shows in the
    /// step-0 loss; under Adam it barely changes the updates. Default 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub loss_scale: f64,
    /// Keep every checkpoint's optimiser state (`step_XXXXXX.optim.safetensors`: Adam's moments),
    /// not only the latest one's, so that `groklab saliency` can split each checkpoint's Adam
    /// update. Costs two f64 copies of the weights per checkpoint on disk. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_optim_state: bool,
}

fn one() -> f64 {
    1.0
}

fn is_one(x: &f64) -> bool {
    *x == 1.0
}

fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
}

fn is_scaled(d: &JumpDecay) -> bool {
    *d == JumpDecay::Scaled
}

fn default_grokfast_alpha() -> f64 {
    0.98
}

fn default_grokfast_lambda() -> f64 {
    2.0
}

fn default_grokfast_window() -> usize {
    100
}

/// How minibatches are drawn from a fixed training set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Each epoch walks a fresh permutation (PyTorch `DataLoader(shuffle=True)`).
    #[default]
    WithoutReplacement,
    /// Each batch is `batch_size` rows drawn uniformly with replacement.
    WithReplacement,
}

impl TrainSection {
    /// Checks the optimiser, schedule and gradient-filter keys.
    ///
    /// # Errors
    /// [`GrokError::InvalidValue`] naming the first offending field.
    pub(super) fn validate_dynamics(&self) -> Result<()> {
        if !(self.loss_scale > 0.0 && self.loss_scale.is_finite()) {
            return Err(GrokError::invalid(
                "train.loss_scale",
                self.loss_scale,
                "a positive number",
            ));
        }
        let non_negative = [
            ("train.clip_grad_norm", self.clip_grad_norm),
            ("train.constrain_norm", self.constrain_norm),
            ("train.grokfast_lambda", self.grokfast_lambda),
        ];
        for (name, v) in non_negative {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(GrokError::invalid(name, v, "a number >= 0 (0 disables)"));
            }
        }
        if !(0.0..=1.0).contains(&self.stop_at_test_acc) {
            return Err(GrokError::invalid(
                "train.stop_at_test_acc",
                self.stop_at_test_acc,
                "a number in [0, 1] (0 disables)",
            ));
        }
        for (name, v) in [
            ("train.momentum", self.momentum),
            ("train.grokfast_alpha", self.grokfast_alpha),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(GrokError::invalid(name, v, "a number in [0, 1)"));
            }
        }
        let sgd = self.optimizer == OptimizerKind::Sgd;
        if self.momentum != 0.0 && !sgd {
            return Err(GrokError::invalid(
                "train.momentum",
                self.momentum,
                "0 unless train.optimizer = \"sgd\" (Adam's momentum is train.betas)",
            ));
        }
        if self.nesterov && !(sgd && self.momentum > 0.0) {
            return Err(GrokError::invalid(
                "train.nesterov",
                true,
                "false unless train.optimizer = \"sgd\" with train.momentum > 0",
            ));
        }
        if self.grokfast_window == 0 {
            return Err(GrokError::invalid(
                "train.grokfast_window",
                0,
                "a positive integer",
            ));
        }
        for (i, j) in self.lr_jumps.iter().enumerate() {
            if !(j.factor > 0.0 && j.factor.is_finite()) {
                return Err(GrokError::invalid(
                    &format!("train.lr_jumps[{i}]"),
                    j.factor,
                    "[from_step, factor] or [from_step, factor, ramp_steps] with a positive factor",
                ));
            }
        }
        if self.jump_decay == JumpDecay::Fixed && self.optimizer != OptimizerKind::Adamw {
            return Err(GrokError::invalid(
                "train.jump_decay",
                "\"fixed\"",
                "\"scaled\" unless train.optimizer = \"adamw\" (only AdamW's decay is decoupled)",
            ));
        }
        Ok(())
    }

    /// The learning-rate schedule of these settings.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            lr: self.lr,
            warmup_steps: self.warmup_steps,
            steps: self.steps,
            kind: self.schedule,
            jumps: self.lr_jumps.clone(),
            jump_decay: self.jump_decay,
        }
    }
}

/// Grokfast's filter of the gradient history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrokfastKind {
    /// No filter.
    #[default]
    None,
    /// `μ ← αμ + (1−α)g` (μ starts at the first gradient), `g ← g + λμ`
    /// (Lee et al. 2024, Algorithm 2; `gradfilter_ema`).
    Ema,
    /// `g ← g + λ·mean(last w gradients, this one included)`, once w gradients have been seen
    /// (Lee et al. 2024, Algorithm 1; `gradfilter_ma` with `warmup=True`).
    Ma,
}

/// How logits become class probabilities in the loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossFn {
    /// Softmax cross-entropy.
    #[default]
    Softmax,
    /// StableMax cross-entropy (Prieto et al. 2025, §4): `s(x) = x + 1` for x ≥ 0,
    /// `1/(1 − x)` for x < 0, `p_i = s(x_i) / Σ_j s(x_j)`; no exponential, so no softmax collapse.
    Stablemax,
}

/// Which update rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// `torch.optim.AdamW`: decoupled weight decay (Loshchilov & Hutter 2019).
    #[default]
    Adamw,
    /// `torch.optim.Adam`: weight decay as an L2 term added to the gradient.
    Adam,
    /// `torch.optim.SGD`: L2 weight decay, optional momentum (dampening 0) and Nesterov.
    Sgd,
}

/// Where weight decay pulls the weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecayTarget {
    /// Toward 0 (PyTorch).
    #[default]
    Zero,
    /// Toward the initial weights θ₀: every `θ` in the decay term becomes `θ − θ₀`.
    Init,
}
