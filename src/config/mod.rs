//! A run's configuration: TOML sections `[task]`, `[model]`, `[train]`, built from an embedded
//! preset, an optional config file and `--set key=value` overrides. It sits below `train`,
//! `measures` and `report`, which all read a run's config through
//! [`crate::rundir::RunDir::config`].
//!
//! `task` ([`TaskConfig`]) and `model` ([`ModelConfig`]) are read by deserializers that pick the
//! family by `task.name` and `model.arch`; `train` ([`TrainSection`]) is shared by every family;
//! `presets` embeds the preset files and `schedule` the learning-rate schedules.

mod model;
mod presets;
mod schedule;
mod task;
mod train;

pub use model::{
    AttentionKind, LsaSection, MlpSection, ModelConfig, ModelFamily, ModelSection, VocabOut,
};
pub use presets::{describe_preset, find_preset, preset_names, PRESETS};
pub use schedule::{warmup_lr, JumpDecay, LrJump, Schedule, ScheduleKind};
pub use task::{
    task_names, IclTaskSection, RegimeName, SeqTaskSection, TaskConfig, TaskFamily, TaskSection,
    ICL_TASK,
};
pub use train::{
    DecayTarget, Engine, GrokfastKind, LossFn, OptimizerKind, Precision, Sampling, TrainSection,
};

use crate::error::{GrokError, Result};
use crate::models::{Model, TransformerConfig};
use crate::tasks::Operation;
use presets::preset_table;
use serde::{Deserialize, Serialize};

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
        self.task.validate(&self.train)?;
        self.model.accepts(&self.task.spec(), &self.train)?;
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
    /// A task of another family, named in a one-line error with `what` needs.
    pub fn modular(&self, what: &str) -> Result<&TaskSection> {
        self.task.get::<TaskSection>().ok_or_else(|| {
            GrokError::invalid(
                "task.name",
                self.task.name(),
                format!(
                    "{} ({what} supports those only so far)",
                    Operation::allowed_names()
                ),
            )
        })
    }

    /// The transformer's shape for this task; `None` for another model.
    pub fn transformer(&self) -> Option<TransformerConfig> {
        self.model_spec().transformer().cloned()
    }

    /// The model of this run, shaped for its task's data ([`ModelConfig::build`]).
    ///
    /// # Panics
    /// A config that does not validate ([`RunConfig::validate`]: every config read from a file
    /// or a preset does).
    pub fn model_spec(&self) -> Box<dyn Model> {
        (self.model.build(&self.task.spec(), &self.train))
            .unwrap_or_else(|e| panic!("validated: {e}"))
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
    // (toml appends "\n\nin `task`" to the message of a section read by its own deserializer)
    let expected = expected.split('\n').next().unwrap_or(expected);
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
    use crate::models::Activation;
    use crate::tasks::SplitMode;

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
    fn zhong2023_models_read_a_b_and_mix_attention() {
        for (name, rate) in [("zhong2023_model_a", 0.0), ("zhong2023_model_b", 1.0)] {
            let c = RunConfig::build(name, None, &[]).unwrap();
            let m = c.transformer().unwrap();
            // [a, b] over p = 59 tokens, 59 classes, Zhong et al.'s W_in scale 1/sqrt(d_mlp)
            assert_eq!((m.d_vocab, m.d_vocab_out, m.n_ctx), (59, 59, 2), "{name}");
            assert_eq!(m.attn_rate, rate);
            assert_eq!(m.init_std["W_in"], 1.0 / 512f64.sqrt());
            let data = crate::train::RunData::new(&c).unwrap();
            assert_eq!(data.dataset.tokens[..4], [0, 0, 0, 1]);
            assert_eq!((data.split.train.len(), data.split.test.len()), (2784, 697));
        }
        let err = |preset: &str, set: &str| {
            RunConfig::build(preset, None, &[set.to_string()])
                .unwrap_err()
                .to_string()
        };
        let e = err("zhong2023_model_a", "model.attn_rate=1.5");
        assert!(e.contains("model.attn_rate") && e.contains("[0, 1]"), "{e}");
        let e = err("zhong2023_model_a", "model.d_vocab_out=\"p+1\"");
        assert!(e.contains("model.d_vocab_out"), "{e}");
        let e = err("induction_standard", "model.attn_rate=0.5");
        assert!(
            e.contains("model.attn_rate") && e.contains("sequence model"),
            "{e}"
        );
        // standard attention is the default and is not written out
        let c = RunConfig::build("quick", None, &[]).unwrap();
        assert_eq!(c.transformer().unwrap().attn_rate, 1.0);
        assert!(!c.to_toml().contains("attn_rate") && !c.to_toml().contains("equals_token"));
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
        let m = c.model.get::<ModelSection>().expect("a transformer");
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
