//! A run's configuration: TOML sections `[task]`, `[model]`, `[train]`, built from an embedded
//! preset, an optional config file and `--set key=value` overrides.

use super::grad_filter::GrokfastKind;
use super::loss::LossFn;
use super::optim::{DecayTarget, OptimizerKind};
use super::presets::preset_table;
use super::schedule::{Schedule, ScheduleKind};
use super::task_config::{task_names, RegimeName, TaskConfig, ICL_TASK};
use crate::error::{GrokError, Result};
use crate::models::lsa::LsaConfig;
use crate::models::mlp::{Combine, MlpConfig};
use crate::models::{Activation, ModelSpec, Normalization, Residual, TransformerConfig};
use crate::tasks::{ModularDataset, Operation, SplitMode};
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

/// `[task]`: which examples, and how they are split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSection {
    /// Operation name (see [`Operation`]).
    pub name: String,
    /// Modulus.
    pub p: u64,
    /// Fraction of examples used for training, in (0, 1].
    pub frac_train: f64,
    /// Shuffle used for the split.
    pub split: SplitMode,
    /// Seed of the split shuffle (and of `random_table` labels).
    pub split_seed: u64,
    /// Keep `(a, b)` and `(b, a)` on the same side (commutative operations).
    pub keep_commutative: bool,
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

/// Separates the key path inside a section from the message, in errors of the sections that pick
/// their family by a key ([`ModelConfig`], [`TaskConfig`]).
pub(crate) const SECTION_PATH: char = '\u{1f}';

/// Deserializes one family's section, keeping the path of a bad key for the error message.
pub(crate) fn section<T: serde::de::DeserializeOwned, E: serde::de::Error>(
    value: toml::Value,
) -> std::result::Result<T, E> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| E::custom(format!("{}{SECTION_PATH}{}", e.path(), e.inner())))
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

    fn d_vocab_out(&self) -> Option<VocabOut> {
        match self {
            ModelConfig::Transformer(m) => m.d_vocab_out,
            ModelConfig::Mlp(m) => m.d_vocab_out,
            ModelConfig::Lsa(_) => None,
        }
    }
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
    /// Learning-rate multipliers `[[from_step, factor], ...]`: lr × factor from that step on.
    #[serde(default)]
    pub lr_jumps: Vec<(u64, f64)>,
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
    fn validate_dynamics(&self) -> Result<()> {
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
        for (i, (_, k)) in self.lr_jumps.iter().enumerate() {
            if !(*k > 0.0 && k.is_finite()) {
                return Err(GrokError::invalid(
                    &format!("train.lr_jumps[{i}]"),
                    k,
                    "[from_step, factor] with a positive factor",
                ));
            }
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
        }
    }
}

/// `(dotted key, value)` of every leaf of `v` under `prefix`, in table order; strings without
/// their quotes, other values (arrays too) as TOML writes them.
pub fn flatten_table(prefix: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, x) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_table(&key, x, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// A whole run's configuration, as written to `config.toml` in the run directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Data: a binary operation or a sequence task.
    pub task: TaskConfig,
    /// Model: the transformer or the MLP.
    pub model: ModelConfig,
    /// Training.
    pub train: TrainSection,
    /// The `--set` overrides of each `train --resume` that gave any, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumed_with: Vec<ResumeRecord>,
}

/// One `train --resume --set ...`: from which checkpoint, with which overrides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeRecord {
    /// The checkpoint step the run resumed from (the overrides apply from this step on).
    pub step: u64,
    /// The overrides, `key=value` as given.
    pub set: Vec<String>,
}

/// `train` keys that change the data a run sees or the meaning of its saved state, fixed for a
/// run's life like every `task.*` and `model.*` key ([`RunConfig::fixed_keys`]).
const FIXED_TRAIN_KEYS: [&str; 6] = [
    "train.batch_size",
    "train.sampling",
    "train.compute_dtype",
    "train.optimizer",
    "train.grokfast",
    "train.grokfast_window",
];

impl RunConfig {
    /// Builds a config from a preset, an optional TOML file merged over it, and `key=value`
    /// overrides (dotted keys such as `train.lr=3e-3`), then validates it. A file that is a
    /// complete valid config by itself replaces the preset instead of merging over it.
    ///
    /// # Errors
    /// Unknown preset or key, unparsable values, and every check of [`RunConfig::validate`].
    pub fn build(preset: &str, file: Option<&str>, overrides: &[String]) -> Result<Self> {
        Self::build_on(preset_table(preset)?, file, overrides)
    }

    /// As [`RunConfig::build`] over a resolved config's TOML text (a run's `config.toml`).
    ///
    /// # Errors
    /// As [`RunConfig::build`].
    pub fn build_from_toml(base: &str, overrides: &[String]) -> Result<Self> {
        let table: toml::Table =
            toml::from_str(base).map_err(|e| GrokError::Config(one_line(&e.to_string())))?;
        Self::build_on(table, None, overrides)
    }

    fn build_on(mut table: toml::Table, file: Option<&str>, overrides: &[String]) -> Result<Self> {
        if let Some(text) = file {
            let extra: toml::Table =
                toml::from_str(text).map_err(|e| GrokError::Config(one_line(&e.to_string())))?;
            // a complete config (a run's config.toml, or one of another family than the
            // preset's) stands alone: the preset's keys of its own family would not apply
            if Self::from_table(extra.clone()).is_ok() {
                table = toml::Table::new();
            }
            for (section, value) in extra {
                let toml::Value::Table(items) = value else {
                    return Err(GrokError::Config(format!(
                        "`{}` in the config file is a value; the file's keys go in [task], [model] and [train]",
                        crate::error::clip(&section)
                    )));
                };
                for (key, v) in items {
                    set_key(&mut table, &format!("{section}.{key}"), v)?;
                }
            }
        }
        for item in overrides {
            let (key, raw) = item.split_once('=').ok_or_else(|| {
                GrokError::invalid("--set", item, "key=value, e.g. train.lr=3e-3")
            })?;
            let raw = raw.trim();
            // TOML integers are i64: a larger one would silently become a string
            if raw.parse::<u64>().is_ok_and(|v| v > i64::MAX as u64) {
                return Err(GrokError::invalid(
                    key.trim(),
                    raw,
                    format!("an integer up to {} (TOML's largest)", i64::MAX),
                ));
            }
            set_key(&mut table, key.trim(), parse_value(raw))?;
        }
        Self::from_table(table)
    }

    /// Parses a resolved config (e.g. a run directory's `config.toml`) and validates it.
    ///
    /// # Errors
    /// As [`RunConfig::build`].
    pub fn from_toml(text: &str) -> Result<Self> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| GrokError::Config(one_line(&e.to_string())))?;
        Self::from_table(table)
    }

    fn from_table(table: toml::Table) -> Result<Self> {
        let keys = all_keys(&table);
        let cfg: RunConfig =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let mut path = e.path().to_string();
                let mut msg = e.inner().to_string();
                // a section read by its family's own deserializer names the key inside it
                if let Some((inner, rest)) = msg.split_once(SECTION_PATH) {
                    path = format!("{path}.{inner}");
                    msg = rest.to_string();
                }
                if let Some(err) = unknown_field(&path, &msg, &keys) {
                    return err;
                }
                GrokError::Config(format!("`{path}`: {}", one_line(&msg)))
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The resolved TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// The keys fixed for a run's life, `key=value` per line in key order: every `task.*` and
    /// `model.*` key and [`FIXED_TRAIN_KEYS`]. Checkpoints record them, and a resume whose
    /// config differs in any is refused ([`RunConfig::fixed_key_change`]).
    pub fn fixed_keys(&self) -> String {
        let table: toml::Table = toml::from_str(&self.to_toml()).expect("own TOML parses");
        let mut flat = Vec::new();
        flatten_table("", &toml::Value::Table(table), &mut flat);
        flat.retain(|(k, _)| {
            k.starts_with("task.")
                || k.starts_with("model.")
                || FIXED_TRAIN_KEYS.contains(&k.as_str())
        });
        flat.sort();
        flat.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
    }

    /// The first fixed key ([`RunConfig::fixed_keys`]) whose value differs between a
    /// checkpoint's record `recorded` and this config, as `(key, recorded value, value now)`.
    pub fn fixed_key_change(&self, recorded: &str) -> Option<(String, String, String)> {
        let parse = |text: &str| -> std::collections::BTreeMap<String, String> {
            (text.lines())
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let (then, now) = (parse(recorded), parse(&self.fixed_keys()));
        let keys: std::collections::BTreeSet<String> =
            then.keys().chain(now.keys()).cloned().collect();
        let absent = || "(absent)".to_string();
        keys.into_iter().find_map(|k| {
            let (a, b) = (then.get(&k), now.get(&k));
            (a != b).then(|| {
                (
                    k.clone(),
                    a.cloned().unwrap_or_else(absent),
                    b.cloned().unwrap_or_else(absent),
                )
            })
        })
    }

    /// Checks every value against its allowed range.
    ///
    /// # Errors
    /// [`GrokError::InvalidValue`] naming the first offending field.
    pub fn validate(&self) -> Result<()> {
        match &self.task {
            TaskConfig::Modular(task) => {
                let op = Operation::parse(&task.name)
                    .map_err(|_| GrokError::invalid("task.name", &task.name, task_names()))?;
                op.check_modulus(task.p)?;
                let f = task.frac_train;
                if !(f > 0.0 && f <= 1.0) {
                    return Err(GrokError::invalid(
                        "task.frac_train",
                        f,
                        "a number in (0, 1]",
                    ));
                }
                if self.model.d_vocab_out().is_none() {
                    return Err(GrokError::invalid(
                        "model.d_vocab_out",
                        "(missing)",
                        "\"p\" or \"p+1\"",
                    ));
                }
            }
            TaskConfig::Icl(task) => {
                task.validate()?;
                if self.train.batch_size == 0 {
                    return Err(GrokError::invalid(
                        "train.batch_size",
                        0,
                        "a positive integer (a fresh batch of tasks every step)",
                    ));
                }
                if !matches!(self.model, ModelConfig::Lsa(_)) {
                    return Err(GrokError::invalid(
                        "model.arch",
                        self.model.arch(),
                        format!("lsa (task `{ICL_TASK}` has real-valued tokens)"),
                    ));
                }
            }
            TaskConfig::Sequence(task) => {
                task.validate()?;
                if task.regime == RegimeName::Infinite && self.train.batch_size == 0 {
                    return Err(GrokError::invalid(
                        "train.batch_size",
                        0,
                        "a positive integer (regime `infinite` samples a batch every step)",
                    ));
                }
                if let Some(v) = self.model.d_vocab_out() {
                    return Err(GrokError::invalid(
                        "model.d_vocab_out",
                        format!("{v:?}"),
                        format!("no value: task `{}` fixes its classes", task.name),
                    ));
                }
            }
        }
        match &self.model {
            ModelConfig::Transformer(_) => self.transformer().expect("a transformer").validate()?,
            ModelConfig::Lsa(m) => {
                if !matches!(self.task, TaskConfig::Icl(_)) {
                    return Err(GrokError::invalid(
                        "model.arch",
                        "lsa",
                        format!("transformer|mlp (lsa reads the real-valued tokens of task `{ICL_TASK}`)"),
                    ));
                }
                if m.n_layers == 0 {
                    return Err(GrokError::invalid(
                        "model.n_layers",
                        0,
                        "a positive integer",
                    ));
                }
                if !(m.init_scale > 0.0 && m.init_scale.is_finite()) {
                    return Err(GrokError::invalid(
                        "model.init_scale",
                        m.init_scale,
                        "a positive number",
                    ));
                }
                if self.train.compute_dtype != Precision::F32 {
                    return Err(GrokError::invalid(
                        "train.compute_dtype",
                        "f64",
                        "f32 (the LSA step computes in f32; the loss sums in f64)",
                    ));
                }
                let plain = m.attention == AttentionKind::Linear && !m.layer_norm && m.d_mlp == 0;
                if m.rollout_steps > 0 && (m.n_layers != 1 || !plain) {
                    return Err(GrokError::invalid(
                        "model.rollout_steps",
                        m.rollout_steps,
                        "0 (the roll-out repeats one trained linear layer: n_layers = 1, attention = \"linear\", no layer_norm or d_mlp)",
                    ));
                }
            }
            ModelConfig::Mlp(m) => {
                if m.d_hidden.is_empty() || m.d_hidden.contains(&0) {
                    return Err(GrokError::invalid(
                        "model.d_hidden",
                        format!("{:?}", m.d_hidden),
                        "one or more positive widths, e.g. [200, 200]",
                    ));
                }
                // one prediction per example: a task scored at one position
                if let TaskConfig::Sequence(t) = &self.task {
                    if !matches!(t.name.as_str(), "max_element" | "sparse_parity") {
                        return Err(GrokError::invalid(
                            "model.arch",
                            "mlp",
                            format!(
                                "transformer (task `{}` is scored at several positions)",
                                t.name
                            ),
                        ));
                    }
                }
            }
        }
        let t = &self.train;
        let positive = [("train.lr", t.lr), ("train.eps", t.eps)];
        for (name, v) in positive {
            if !(v > 0.0 && v.is_finite()) {
                return Err(GrokError::invalid(name, v, "a positive number"));
            }
        }
        if !(t.weight_decay >= 0.0 && t.weight_decay.is_finite()) {
            return Err(GrokError::invalid(
                "train.weight_decay",
                t.weight_decay,
                "a number >= 0",
            ));
        }
        for (i, b) in t.betas.iter().enumerate() {
            if !(0.0..1.0).contains(b) {
                return Err(GrokError::invalid(
                    &format!("train.betas[{i}]"),
                    b,
                    "a number in [0, 1)",
                ));
            }
        }
        for (name, v) in [
            ("train.steps", t.steps),
            ("train.log_every", t.log_every),
            ("train.checkpoint_every", t.checkpoint_every),
            ("train.threads", t.threads as u64),
        ] {
            if v == 0 {
                return Err(GrokError::invalid(name, v, "a positive integer"));
            }
        }
        t.validate_dynamics()
    }

    /// The binary-operation section, for what only that family has (split, analyze, fused step).
    ///
    /// # Errors
    /// A sequence task, named in a one-line error with `what` needs.
    pub fn modular(&self, what: &str) -> Result<&TaskSection> {
        match &self.task {
            TaskConfig::Modular(t) => Ok(t),
            other => Err(GrokError::invalid(
                "task.name",
                other.name(),
                format!(
                    "{} ({what} supports those only so far)",
                    Operation::allowed_names()
                ),
            )),
        }
    }

    /// Vocabulary in and out, and sequence length, of this task (d_vocab = p + 1, n_ctx = 3 and
    /// p or p + 1 classes for a binary operation).
    fn task_shape(&self) -> (usize, usize, usize) {
        match &self.task {
            TaskConfig::Modular(t) => {
                let p = t.p as usize;
                let out = match self.model.d_vocab_out() {
                    Some(VocabOut::P) => p,
                    _ => p + 1,
                };
                (p + 1, out, ModularDataset::N_CTX)
            }
            TaskConfig::Sequence(t) => {
                let s = t.task().shape();
                (s.d_vocab, s.d_vocab_out, s.n_ctx)
            }
            TaskConfig::Icl(_) => {
                panic!("validated: task `{ICL_TASK}` runs the LSA, no vocabulary")
            }
        }
    }

    /// The transformer's shape for this task; `None` for an MLP run.
    pub fn transformer(&self) -> Option<TransformerConfig> {
        let ModelConfig::Transformer(m) = &self.model else {
            return None;
        };
        let (d_vocab, d_vocab_out, n_ctx) = self.task_shape();
        Some(TransformerConfig {
            n_layers: m.n_layers,
            n_heads: m.n_heads,
            d_model: m.d_model,
            d_head: m.d_head,
            d_mlp: m.d_mlp,
            d_vocab,
            d_vocab_out,
            n_ctx,
            act_fn: m.act_fn,
            normalization: m.normalization,
            attn_only: m.attn_only,
            residual: m.residual,
            init_std: m.init_std.clone(),
        })
    }

    /// The model of this run, shaped for its task. The MLP reads every position but the last
    /// (`[a, b, =]` → a, b; sparse parity's bits; max-of-sequence's values with START).
    pub fn model_spec(&self) -> ModelSpec {
        match &self.model {
            ModelConfig::Transformer(_) => {
                ModelSpec::Transformer(self.transformer().expect("a transformer"))
            }
            ModelConfig::Mlp(m) => {
                let (d_vocab, d_vocab_out, n_ctx) = self.task_shape();
                ModelSpec::Mlp(MlpConfig {
                    d_vocab,
                    n_inputs: n_ctx - 1,
                    d_hidden: m.d_hidden.clone(),
                    d_vocab_out,
                    act_fn: m.act_fn,
                    combine: m.combine,
                    biases: m.biases,
                })
            }
            ModelConfig::Lsa(m) => {
                let TaskConfig::Icl(t) = &self.task else {
                    panic!("validated: the LSA runs task `{ICL_TASK}`")
                };
                ModelSpec::Lsa(LsaConfig {
                    d: t.d,
                    n_layers: m.n_layers,
                    shared: m.shared,
                    n_heads: m.n_heads,
                    softmax: m.attention == AttentionKind::Softmax,
                    init_scale: m.init_scale,
                    layer_norm: m.layer_norm,
                    d_mlp: m.d_mlp,
                })
            }
        }
    }

    /// Whether `step` gets a checkpoint.
    pub fn is_checkpoint_step(&self, step: u64) -> bool {
        let t = &self.train;
        let dense = (t.checkpoint_every / 10).max(1);
        step.is_multiple_of(t.checkpoint_every)
            || (step < t.dense_checkpoints_until && step.is_multiple_of(dense))
    }
}

/// Every dotted key of a config table, for error messages.
fn all_keys(table: &toml::Table) -> Vec<String> {
    table
        .iter()
        .flat_map(|(s, v)| {
            v.as_table()
                .into_iter()
                .flat_map(move |t| t.keys().map(move |k| format!("{s}.{k}")))
        })
        .collect()
}

/// The error for serde's "unknown field `f`, expected one of `a`, `b`" at `path`: the dotted key,
/// the nearest allowed one (Jaro–Winkler similarity, `strsim`), and every key the config has
/// or the section allows (`present`: the keys given, which include the preset's).
fn unknown_field(path: &str, msg: &str, present: &[String]) -> Option<GrokError> {
    let rest = msg.strip_prefix("unknown field `")?;
    let (field, expected) = rest.split_once('`')?;
    // the path ends at the unknown field itself
    let parent = path
        .strip_suffix(field)
        .unwrap_or(path)
        .trim_end_matches('.');
    let prefix = if parent.is_empty() {
        String::new()
    } else {
        format!("{parent}.")
    };
    let key = format!("{prefix}{field}");
    // the section's own fields, as serde lists them: the nearest is one of these
    let fields: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let nearest = (fields.iter())
        .max_by(|a, b| {
            let (x, y) = (
                strsim::jaro_winkler(field, a),
                strsim::jaro_winkler(field, b),
            );
            x.total_cmp(&y)
        })
        .map(|f| format!("{prefix}{f}"))?;
    let mut allowed: Vec<String> = fields.iter().map(|f| format!("{prefix}{f}")).collect();
    for k in present {
        if !allowed.contains(k) && *k != key && !k.starts_with(&format!("{key}.")) {
            allowed.push(k.clone());
        }
    }
    Some(GrokError::Config(format!(
        "unknown key `{}`: did you mean `{}`? (keys: {})",
        crate::error::clip(&key),
        crate::error::clip(&nearest),
        // every key of a config fits (≈ 60); a file of thousands of unknown ones is cut
        crate::error::clip_to(&allowed.join("|"), 1500)
    )))
}

/// Sets the dotted `key` (`train.lr`, `model.init_std.W_Q`) in `table`, making the tables on its
/// path as needed. Whether the key exists is left to the config's deserializer, which knows
/// every key of every family ([`unknown_field`] words its refusal).
///
/// # Errors
/// A key with an empty part, or one whose path runs through a value that is not a table.
fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<()> {
    let parts: Vec<&str> = key.split('.').collect();
    let name = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if parts.len() < 2 || !parts.iter().all(name) {
        return Err(GrokError::invalid(
            "--set",
            crate::error::clip(key),
            "section.key=value with names of letters, digits and _, e.g. train.lr=3e-3",
        ));
    }
    let (last, path) = parts.split_last().expect("two parts or more");
    let mut node = table;
    for (depth, part) in path.iter().enumerate() {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry.as_table_mut().ok_or_else(|| {
            GrokError::invalid(
                "--set",
                crate::error::clip(key),
                format!(
                    "`{}` is a value, not a table of keys",
                    parts[..=depth].join(".")
                ),
            )
        })?;
    }
    node.insert(last.to_string(), value);
    Ok(())
}

/// A `--set` value: any TOML value (`3e-3`, `true`, `[0.9, 0.99]`, `"add"`), else a bare string.
fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// A parser's message on one line, clipped ([`crate::error::clip`]): TOML errors quote the
/// offending line, which may be megabytes long.
fn one_line(s: &str) -> String {
    crate::error::clip(&s.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_accepts_every_key_serde_knows_and_names_the_nearest_otherwise() {
        // keys no preset names, known only to the config types
        let sets = [
            "model.init_std.W_Q=0.25",
            "train.grokfast_window=7",
            "train.clip_grad_norm=1.0",
        ]
        .map(String::from);
        let c = RunConfig::build("quick", None, &sets).unwrap();
        assert_eq!(c.train.grokfast_window, 7);
        let err = |set: &str| {
            RunConfig::build("quick", None, &[set.to_string()])
                .unwrap_err()
                .to_string()
        };
        let e = err("train.weight_decy=1");
        assert!(e.contains("did you mean `train.weight_decay`"), "{e}");
        assert!(!e.contains('\n'));
        let e = err("model.d_hiden=[3]");
        assert!(e.contains("did you mean `model.d_head`"), "{e}");
        let mlp = RunConfig::build("mlp_modadd", None, &["model.d_hiden=[3]".into()]);
        assert!(mlp.unwrap_err().to_string().contains("`model.d_hidden`"));
        assert!(err("task.p.x=1").contains("`task.p` is a value"));
        assert!(err("train.l r=1").contains("letters, digits and _"));
    }

    #[test]
    fn presets_parse_and_round_trip_through_toml() {
        for (name, _) in crate::train::PRESETS {
            let cfg = RunConfig::build(name, None, &[]).unwrap();
            assert_eq!(RunConfig::from_toml(&cfg.to_toml()).unwrap(), cfg, "{name}");
        }
    }

    #[test]
    fn nanda2023_is_the_paper_recipe() {
        let c = RunConfig::build("nanda2023", None, &[]).unwrap();
        let task = c.modular("test").unwrap();
        assert_eq!(
            (task.p, task.frac_train, task.split),
            (113, 0.3, SplitMode::Python)
        );
        assert_eq!(c.transformer(), Some(TransformerConfig::nanda2023(113)));
        let t = &c.train;
        assert_eq!(
            (t.lr, t.weight_decay, t.betas, t.eps),
            (1e-3, 1.0, [0.9, 0.98], 1e-8)
        );
        assert_eq!(
            (t.steps, t.warmup_steps, t.batch_size, t.checkpoint_every),
            (40_000, 10, 0, 100)
        );
        assert_eq!(t.loss_dtype, Precision::F64);
    }

    #[test]
    fn overrides_and_files_apply() {
        let c = RunConfig::build(
            "quick",
            Some("[train]\nlr = 0.01\n"),
            &["model.act_fn=gelu".into(), "train.betas=[0.9, 0.99]".into()],
        )
        .unwrap();
        assert_eq!(c.train.lr, 0.01);
        let ModelConfig::Transformer(m) = &c.model else {
            panic!("a transformer")
        };
        assert_eq!(m.act_fn, Activation::Gelu);
        assert_eq!(c.train.betas, [0.9, 0.99]);
    }

    #[test]
    fn dense_checkpoints_before_the_threshold() {
        let c = RunConfig::build("quick", None, &[]).unwrap();
        assert!(c.is_checkpoint_step(10) && c.is_checkpoint_step(100) && c.is_checkpoint_step(600));
        assert!(!c.is_checkpoint_step(610) && !c.is_checkpoint_step(5));
    }
}
