//! `[task]`: a binary operation enumerated and split by fraction (`add`, `div`, `s5_compose`,
//! …; [`TaskSection`]), a sampled sequence task (any of [`SEQUENCE_TASKS`], each reading its
//! own keys; [`SeqTaskSection`]) or in-context linear regression
//! (`linear_regression_icl`; [`IclTaskSection`]). `task.name` picks the family, and each
//! family's section accepts only its own keys.

use super::{section, TrainSection, SECTION_PATH};
use crate::error::{GrokError, Result};
use crate::models::lsa::LsaConfig;
use crate::models::Model;
use crate::tasks::icl_regression::tokens_per_task;
use crate::tasks::{
    sequence_task, DataSpec, IclRegression, Inputs, ModularDataset, Operation, Regime, SeqData,
    SeqTaskEntry, SequenceTask, SplitMode, Targets, SEQUENCE_TASKS,
};
use crate::train::{IclData, IclRun, ModularData, RunData, TaskData};
use dyn_clone::DynClone;
use serde::{Deserialize, Deserializer, Serialize};
use std::any::Any;
use std::fmt::Debug;

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
    /// Whether inputs end with the `=` token, `[a, b, =]` over p + 1 tokens (the default, Power et
    /// al. and Nanda et al.); `false`: `[a, b]` over p tokens, the answer read at b's position
    /// (Zhong et al. 2023's inputs).
    #[serde(default = "with_equals", skip_serializing_if = "is_with_equals")]
    pub equals_token: bool,
}

fn with_equals() -> bool {
    true
}

fn is_with_equals(b: &bool) -> bool {
    *b
}

/// How a sequence run draws its training data (`task.regime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegimeName {
    /// A fixed training set of `task.n_train` sequences.
    Finite,
    /// A fresh sample every step.
    Infinite,
}

/// Splits a `[task]` table into the keys every task of a family has (`common`, read as `C`) and
/// the rest, which are the task's own. `Err` is the key path inside the section and serde's
/// message.
fn split_section<C: serde::de::DeserializeOwned>(
    value: toml::Value,
    common: &[&str],
) -> std::result::Result<(C, toml::Table), (String, String)> {
    let toml::Value::Table(mut table) = value else {
        return Err((String::new(), "[task] is a table".into()));
    };
    let keys: toml::Table = (common.iter())
        .filter_map(|k| table.remove(*k).map(|v| (k.to_string(), v)))
        .collect();
    let c = serde_path_to_error::deserialize(toml::Value::Table(keys))
        .map_err(|e| (e.path().to_string(), e.inner().to_string()))?;
    Ok((c, table))
}

/// serde's "unknown field `x`, expected one of …" for a task's own keys, with the family's
/// common keys added to the list, so that the nearest key named may be one of them.
fn with_common_keys(msg: String, common: &[&str]) -> String {
    let first = msg.lines().next().unwrap_or_default();
    if !first.starts_with("unknown field") {
        return msg;
    }
    let common: Vec<String> = common.iter().map(|k| format!("`{k}`")).collect();
    format!("{first}, {}", common.join(", "))
}

/// The keys every sequence task has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeqCommon {
    name: String,
    regime: RegimeName,
    #[serde(default)]
    n_train: Option<usize>,
    n_test: usize,
    seed: u64,
}

/// The keys of [`SeqCommon`].
const SEQ_COMMON_KEYS: [&str; 5] = ["name", "regime", "n_train", "n_test", "seed"];

/// `[task]` of a sequence task: the keys every sequence task has, and the task's own keys as its
/// config type ([`SeqTaskConfig`], registered in [`SEQUENCE_TASKS`]) reads and writes them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeqTaskSection {
    /// A registered task's name ([`SEQUENCE_TASKS`]).
    pub name: String,
    /// `finite` or `infinite`.
    pub regime: RegimeName,
    /// Training sequences (`finite` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_train: Option<usize>,
    /// Test sequences (a fixed sample).
    pub n_test: usize,
    /// Seed of the data (test set, training set or stream, sparse parity's bits).
    pub seed: u64,
    /// The task's own keys, as its config type wrote them back after reading them (private:
    /// only what the config type wrote can be built).
    #[serde(flatten)]
    own: toml::Table,
}

impl SeqTaskSection {
    /// Reads a `[task]` table whose `name` is a registered sequence task. `Err` is the key path
    /// inside the section and serde's message.
    fn read(value: toml::Value) -> std::result::Result<Self, (String, String)> {
        let (c, table): (SeqCommon, _) = split_section(value, &SEQ_COMMON_KEYS)?;
        let entry = sequence_task(&c.name).ok_or_else(|| {
            (
                "name".to_string(),
                format!("unknown sequence task `{}`", c.name),
            )
        })?;
        let own = (entry.read)(table)
            .map_err(|(path, msg)| (path, with_common_keys(msg, &SEQ_COMMON_KEYS)))?;
        Ok(Self {
            own,
            name: c.name,
            regime: c.regime,
            n_train: c.n_train,
            n_test: c.n_test,
            seed: c.seed,
        })
    }

    fn entry(&self) -> Result<&'static SeqTaskEntry> {
        sequence_task(&self.name)
            .ok_or_else(|| GrokError::invalid("task.name", &self.name, task_names()))
    }

    /// Checks the task's own keys ([`SeqTaskConfig::validate`]) and the regime's.
    ///
    /// # Errors
    /// The first offending `task.<key>`, with what is allowed.
    pub fn validate(&self) -> Result<()> {
        (self.entry()?.validate)(&self.own)?;
        match (self.regime, self.n_train) {
            (RegimeName::Finite, None | Some(0)) => {
                return Err(GrokError::invalid(
                    "task.n_train",
                    self.n_train.unwrap_or(0),
                    "a positive integer (regime `finite`)",
                ))
            }
            (RegimeName::Infinite, Some(n)) => {
                return Err(GrokError::invalid(
                    "task.n_train",
                    n,
                    "no value: regime `infinite` samples every step",
                ))
            }
            _ => {}
        }
        if self.n_test == 0 {
            return Err(GrokError::invalid("task.n_test", 0, "a positive integer"));
        }
        Ok(())
    }

    /// The task's generator.
    ///
    /// # Panics
    /// When `name` is not a registered task, which reading the section refuses.
    pub fn task(&self) -> Box<dyn SequenceTask> {
        let entry = self.entry().expect("read checked task.name");
        (entry.build)(&self.own, self.seed)
    }

    /// The run's data: test set and training set or stream.
    ///
    /// # Errors
    /// As [`SeqData::new`].
    pub fn data(&self) -> Result<SeqData> {
        let regime = match self.regime {
            RegimeName::Finite => Regime::Finite {
                n_train: self.n_train.unwrap_or(0),
            },
            RegimeName::Infinite => Regime::Infinite,
        };
        SeqData::new(self.task(), regime, self.n_test, self.seed)
    }
}

/// Every task name, joined by `|`.
pub fn task_names() -> String {
    let seq: Vec<&str> = SEQUENCE_TASKS.iter().map(|e| e.name).collect();
    format!(
        "{}|{}|{ICL_TASK}",
        Operation::allowed_names(),
        seq.join("|")
    )
}

/// The in-context regression task's config name.
pub const ICL_TASK: &str = "linear_regression_icl";

/// `[task]` of in-context linear regression: the task distribution's own keys
/// ([`IclRegression`], read by its own serde derive) beside `name` and `n_eval`. Real-valued
/// tokens, a fresh batch of tasks every step, a fixed evaluation set. Dereferences to the task.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IclTaskSection {
    /// [`ICL_TASK`].
    pub name: String,
    /// The task distribution (`d`, `n_pairs`, `x_range`, `w_scale`, `noise`, `format`, `seed`).
    #[serde(flatten)]
    pub task: IclRegression,
    /// Tasks in the fixed evaluation set (the paper: 10,000).
    pub n_eval: usize,
}

impl std::ops::Deref for IclTaskSection {
    type Target = IclRegression;

    fn deref(&self) -> &IclRegression {
        &self.task
    }
}

/// The keys of an [`IclTaskSection`] that are not the task's.
const ICL_COMMON_KEYS: [&str; 2] = ["name", "n_eval"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IclCommon {
    name: String,
    n_eval: usize,
}

impl IclTaskSection {
    /// Reads a `[task]` table of in-context regression. `Err` is the key path inside the
    /// section and serde's message.
    fn read(value: toml::Value) -> std::result::Result<Self, (String, String)> {
        let (c, table): (IclCommon, _) = split_section(value, &ICL_COMMON_KEYS)?;
        let task: IclRegression = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let msg = e.inner().message().to_string();
                (
                    e.path().to_string(),
                    with_common_keys(msg, &ICL_COMMON_KEYS),
                )
            })?;
        Ok(Self {
            name: c.name,
            task,
            n_eval: c.n_eval,
        })
    }

    /// Checks every key's range.
    ///
    /// # Errors
    /// The first offending `task.<key>`, with what is allowed.
    pub fn validate(&self) -> Result<()> {
        for (key, v) in [
            ("d", self.d),
            ("n_pairs", self.n_pairs),
            ("n_eval", self.n_eval),
        ] {
            if v == 0 {
                return Err(GrokError::invalid(
                    &format!("task.{key}"),
                    0,
                    "a positive integer",
                ));
            }
        }
        if !(self.x_range > 0.0 && self.x_range.is_finite()) {
            return Err(GrokError::invalid(
                "task.x_range",
                self.x_range,
                "a positive number",
            ));
        }
        for (key, v) in [("w_scale", self.w_scale), ("noise", self.noise)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(GrokError::invalid(
                    &format!("task.{key}"),
                    v,
                    "a number >= 0",
                ));
            }
        }
        Ok(())
    }

    /// The task distribution.
    pub fn task(&self) -> IclRegression {
        self.task.clone()
    }
}

/// One task family's `[task]` section: its own keys (serde), what its data is ([`DataSpec`]),
/// and what it asks of `[train]`. A new family implements this for its section and adds one
/// arm to [`TaskConfig`]'s deserializer; a new sequence task is one file and one line of
/// `sequence_tasks!` instead ([`SeqTaskConfig`]).
pub trait TaskFamily: erased_serde::Serialize + DynClone + Debug + Send + Sync + Any {
    /// `task.name`.
    fn name(&self) -> &str;

    /// The inputs, targets and sequence length of its batches.
    ///
    /// # Panics
    /// A section that does not validate may panic here; call [`TaskFamily::validate`] first.
    fn spec(&self) -> DataSpec;

    /// Checks its keys' ranges and what it asks of `train` (a stream needs a batch size).
    ///
    /// # Errors
    /// [`GrokError::InvalidValue`] naming the first offending key.
    fn validate(&self, train: &TrainSection) -> Result<()>;

    /// Rough size of its data for the memory estimate: rows stored, rows one step (or the
    /// evaluation) reads, and floats per stored row.
    fn data_estimate(&self, batch_size: usize) -> (f64, f64, f64);

    /// Its data in the training loop, for `model` (in-context regression fits its reference
    /// learners to the model's depth).
    ///
    /// # Errors
    /// Invalid keys; a finite set that cannot avoid the test set.
    fn data(&self, model: &dyn Model) -> Result<Box<dyn TaskData>>;

    /// `self` as [`Any`] (for [`TaskConfig::get`]).
    fn as_any(&self) -> &dyn Any;
}

erased_serde::serialize_trait_object!(TaskFamily);
dyn_clone::clone_trait_object!(TaskFamily);

/// `[task]` of any family: a binary operation ([`TaskSection`]), a sequence task
/// ([`SeqTaskSection`]) or in-context regression ([`IclTaskSection`]), picked by `task.name`.
/// Dereferences to the section ([`TaskFamily`]).
#[derive(Clone, Debug)]
pub struct TaskConfig(Box<dyn TaskFamily>);

impl TaskConfig {
    /// The `[task]` section `t`.
    pub fn new(t: impl TaskFamily) -> Self {
        Self(Box::new(t))
    }

    /// The section as its own type `T`, where it is one.
    pub fn get<T: TaskFamily>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref()
    }
}

impl std::ops::Deref for TaskConfig {
    type Target = dyn TaskFamily;

    fn deref(&self) -> &dyn TaskFamily {
        &*self.0
    }
}

impl PartialEq for TaskConfig {
    /// The same keys with the same values.
    fn eq(&self, other: &Self) -> bool {
        toml::Value::try_from(self).ok() == toml::Value::try_from(other).ok()
    }
}

impl Serialize for TaskConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (*self.0).serialize(s)
    }
}

impl TaskFamily for TaskSection {
    fn name(&self) -> &str {
        &self.name
    }

    /// `[a, b, =]` over p + 1 tokens; p classes at the last position, or the p + 1 of the
    /// vocabulary (`model.d_vocab_out`). Without the `=` token: `[a, b]` over p tokens, p classes.
    fn spec(&self) -> DataSpec {
        let p = self.p as usize;
        let (d_vocab, n_ctx) = match self.equals_token {
            true => (p + 1, ModularDataset::N_CTX),
            false => (p, ModularDataset::N_CTX - 1),
        };
        DataSpec {
            task: self.name.clone(),
            inputs: Inputs::Tokens { d_vocab },
            targets: Targets::Classes {
                d_vocab_out: p,
                padded: self.equals_token.then_some(p + 1),
            },
            n_ctx,
            one_scored_position: true,
        }
    }

    fn validate(&self, _train: &TrainSection) -> Result<()> {
        let op = Operation::parse(&self.name)
            .map_err(|_| GrokError::invalid("task.name", &self.name, task_names()))?;
        op.check_modulus(self.p)?;
        let f = self.frac_train;
        if !(f > 0.0 && f <= 1.0) {
            return Err(GrokError::invalid(
                "task.frac_train",
                f,
                "a number in (0, 1]",
            ));
        }
        Ok(())
    }

    fn data_estimate(&self, batch_size: usize) -> (f64, f64, f64) {
        let rows = (self.p as f64 + 2.0).powi(2);
        let train = (rows * self.frac_train).max(1.0);
        let batch = match batch_size {
            0 => train,
            b => (b as f64).min(train),
        };
        // tokens, label, split index, row id
        (rows, batch.max(rows - train), 6.0)
    }

    fn data(&self, _model: &dyn Model) -> Result<Box<dyn TaskData>> {
        let data = RunData::of(self)?;
        Ok(Box::new(ModularData::new(data, self.split_seed)))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl TaskFamily for SeqTaskSection {
    fn name(&self) -> &str {
        &self.name
    }

    fn spec(&self) -> DataSpec {
        let task = self.task();
        let s = task.shape();
        DataSpec {
            task: self.name.clone(),
            inputs: Inputs::Tokens { d_vocab: s.d_vocab },
            targets: Targets::Classes {
                d_vocab_out: s.d_vocab_out,
                padded: None,
            },
            n_ctx: s.n_ctx,
            one_scored_position: task.one_scored_position(),
        }
    }

    fn validate(&self, train: &TrainSection) -> Result<()> {
        SeqTaskSection::validate(self)?;
        if self.regime == RegimeName::Infinite && train.batch_size == 0 {
            return Err(GrokError::invalid(
                "train.batch_size",
                0,
                "a positive integer (regime `infinite` samples a batch every step)",
            ));
        }
        Ok(())
    }

    fn data_estimate(&self, batch_size: usize) -> (f64, f64, f64) {
        let n_ctx = self.task().shape().n_ctx as f64;
        let stored = (self.n_train.unwrap_or(0) + self.n_test) as f64;
        let batch = (batch_size.max(1) as f64).max(self.n_test as f64);
        (stored, batch, 2.0 * n_ctx + 1.0)
    }

    fn data(&self, _model: &dyn Model) -> Result<Box<dyn TaskData>> {
        Ok(Box::new(SeqTaskSection::data(self)?))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl TaskFamily for IclTaskSection {
    fn name(&self) -> &str {
        &self.name
    }

    /// Real-valued tokens of width d + 1, T per task; one real target, the query's y.
    fn spec(&self) -> DataSpec {
        DataSpec {
            task: self.name.clone(),
            inputs: Inputs::Reals { d: self.d },
            targets: Targets::Reals { d_out: 1 },
            n_ctx: tokens_per_task(self.format, self.n_pairs),
            one_scored_position: true,
        }
    }

    fn validate(&self, train: &TrainSection) -> Result<()> {
        IclTaskSection::validate(self)?;
        if train.batch_size == 0 {
            return Err(GrokError::invalid(
                "train.batch_size",
                0,
                "a positive integer (a fresh batch of tasks every step)",
            ));
        }
        Ok(())
    }

    fn data_estimate(&self, batch_size: usize) -> (f64, f64, f64) {
        let tokens = (self.n_pairs + 1) as f64;
        let width = (self.d + 1) as f64;
        let batch = (batch_size.max(1) as f64).max(self.n_eval as f64);
        (self.n_eval as f64, batch, tokens * width)
    }

    fn data(&self, model: &dyn Model) -> Result<Box<dyn TaskData>> {
        let Some(lsa) = model.as_any().downcast_ref::<LsaConfig>() else {
            return Err(GrokError::invalid(
                "model.arch",
                model.arch(),
                format!("lsa (task `{ICL_TASK}` has real-valued tokens)"),
            ));
        };
        Ok(Box::new(IclRun {
            data: IclData::new(self, lsa.n_layers),
            lsa: lsa.clone(),
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl<'de> Deserialize<'de> for TaskConfig {
    /// Picks the family by `name`, then reads the section with that family's keys only.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let value = toml::Value::deserialize(d)?;
        let name = value
            .get("name")
            .and_then(toml::Value::as_str)
            .ok_or_else(|| D::Error::custom("missing `name`"))?
            .to_string();
        if sequence_task(&name).is_some() {
            SeqTaskSection::read(value)
                .map(TaskConfig::new)
                .map_err(|(path, msg)| D::Error::custom(format!("{path}{SECTION_PATH}{msg}")))
        } else if name == ICL_TASK {
            IclTaskSection::read(value)
                .map(TaskConfig::new)
                .map_err(|(path, msg)| D::Error::custom(format!("{path}{SECTION_PATH}{msg}")))
        } else {
            section::<TaskSection, _>(value).map(TaskConfig::new)
        }
    }
}
