//! `[task]`: a binary operation enumerated and split by fraction (`add`, `div`, `s5_compose`,
//! …; [`TaskSection`]), a sampled sequence task (`digit_add`, `repeat_subsequence`,
//! `skip_trigram`, `max_element`, `sparse_parity`; [`SeqTaskSection`]) or in-context linear regression
//! (`linear_regression_icl`; [`IclTaskSection`]). `task.name` picks the family, and each
//! family's section accepts only its own keys.

use super::section;
use crate::error::{GrokError, Result};
use crate::tasks::SplitMode;
use crate::tasks::{
    CopyLayout, DigitAdd, IclFormat, IclRegression, MaxElement, Operation, Regime,
    RepeatSubsequence, SeqData, SequenceTask, SkipTrigram, SparseParity,
};
use serde::{Deserialize, Deserializer, Serialize};

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

/// The sequence tasks' config names.
pub const SEQUENCE_TASKS: [&str; 5] = [
    "digit_add",
    "repeat_subsequence",
    "skip_trigram",
    "max_element",
    "sparse_parity",
];

/// How a sequence run draws its training data (`task.regime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegimeName {
    /// A fixed training set of `task.n_train` sequences.
    Finite,
    /// A fresh sample every step.
    Infinite,
}

fn is_random_layout(l: &CopyLayout) -> bool {
    *l == CopyLayout::Random
}

/// `[task]` of a sequence task. Keys of other tasks are rejected by [`SeqTaskSection::validate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeqTaskSection {
    /// One of [`SEQUENCE_TASKS`].
    pub name: String,
    /// `finite` or `infinite`.
    pub regime: RegimeName,
    /// Training sequences (`finite` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_train: Option<usize>,
    /// Test sequences (a fixed sample).
    pub n_test: usize,
    /// Seed of the data (test set, training set or stream, sparse parity's bits).
    pub seed: u64,
    /// `digit_add`: digits per operand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_digits: Option<usize>,
    /// `repeat_subsequence`: vocabulary size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_vocab: Option<usize>,
    /// `repeat_subsequence`: sequence length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_ctx: Option<usize>,
    /// `repeat_subsequence`: length of the repeated subsequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_len: Option<usize>,
    /// `repeat_subsequence`: copies of it (≥ 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copies: Option<usize>,
    /// `repeat_subsequence`: position 0 is a BOS token 0, the others are drawn from
    /// `1..d_vocab` (the authors' notebook). Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bos: bool,
    /// `repeat_subsequence`: where the copies go, `random` (default) or `windows` (copy i in
    /// its own window of `(n_ctx − bos) / copies` tokens, the authors' notebook).
    #[serde(default, skip_serializing_if = "is_random_layout")]
    pub layout: CopyLayout,
    /// `skip_trigram`: signal tokens (= classes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_signal: Option<usize>,
    /// `skip_trigram`: noise tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_noise: Option<usize>,
    /// `max_element`: values are `0..n_values`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_values: Option<usize>,
    /// `max_element`: values per sequence; `skip_trigram`: positions between BOS and END.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_elems: Option<usize>,
    /// `sparse_parity`: bits per sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_bits: Option<usize>,
    /// `sparse_parity`: parity bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
}

impl SeqTaskSection {
    /// The task's own keys (besides `name`, `regime`, `n_train`, `n_test`, `seed`).
    fn own_keys(&self) -> &'static [&'static str] {
        match self.name.as_str() {
            "digit_add" => &["n_digits"],
            "repeat_subsequence" => &["d_vocab", "n_ctx", "sub_len", "copies"],
            "max_element" => &["n_values", "n_elems"],
            "skip_trigram" => &["n_signal", "n_noise", "n_elems"],
            _ => &["n_bits", "k"],
        }
    }

    fn keys(&self) -> [(&'static str, Option<usize>); 11] {
        [
            ("n_signal", self.n_signal),
            ("n_noise", self.n_noise),
            ("n_digits", self.n_digits),
            ("d_vocab", self.d_vocab),
            ("n_ctx", self.n_ctx),
            ("sub_len", self.sub_len),
            ("copies", self.copies),
            ("n_values", self.n_values),
            ("n_elems", self.n_elems),
            ("n_bits", self.n_bits),
            ("k", self.k),
        ]
    }

    /// Checks the task's keys (present, positive, consistent) and the regime's.
    ///
    /// # Errors
    /// The first offending `task.<key>`, with what is allowed.
    pub fn validate(&self) -> Result<()> {
        if !SEQUENCE_TASKS.contains(&self.name.as_str()) {
            return Err(GrokError::invalid("task.name", &self.name, task_names()));
        }
        let own = self.own_keys();
        for (key, value) in self.keys() {
            match (own.contains(&key), value) {
                (true, None) => {
                    return Err(GrokError::invalid(
                        &format!("task.{key}"),
                        "(missing)",
                        format!("a positive integer (task `{}` needs {own:?})", self.name),
                    ))
                }
                (true, Some(0)) => {
                    return Err(GrokError::invalid(
                        &format!("task.{key}"),
                        0,
                        "a positive integer",
                    ))
                }
                (false, Some(v)) => {
                    return Err(GrokError::invalid(
                        &format!("task.{key}"),
                        v,
                        format!("no value: task `{}` takes {own:?}", self.name),
                    ))
                }
                _ => {}
            }
        }
        if self.name != "repeat_subsequence" {
            if self.bos {
                return Err(GrokError::invalid(
                    "task.bos",
                    true,
                    "no value: only task `repeat_subsequence` takes it",
                ));
            }
            if self.layout != CopyLayout::Random {
                return Err(GrokError::invalid(
                    "task.layout",
                    "windows",
                    "no value: only task `repeat_subsequence` takes it",
                ));
            }
        }
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
        let v = |k: Option<usize>| k.unwrap_or(0);
        match self.name.as_str() {
            "repeat_subsequence" if v(self.copies) < 2 => Err(GrokError::invalid(
                "task.copies",
                v(self.copies),
                "an integer >= 2",
            )),
            "repeat_subsequence"
                if v(self.copies) * v(self.sub_len) + usize::from(self.bos) > v(self.n_ctx) =>
            {
                Err(GrokError::invalid(
                    "task.n_ctx",
                    v(self.n_ctx),
                    "at least copies x sub_len (+ 1 with bos)",
                ))
            }
            "repeat_subsequence" if self.bos && v(self.d_vocab) < 2 => Err(GrokError::invalid(
                "task.d_vocab",
                v(self.d_vocab),
                "at least 2 with bos (token 0 is the BOS)",
            )),
            "max_element" if v(self.n_elems) > v(self.n_values) => Err(GrokError::invalid(
                "task.n_elems",
                v(self.n_elems),
                "at most n_values",
            )),
            "sparse_parity" if v(self.k) > v(self.n_bits) => {
                Err(GrokError::invalid("task.k", v(self.k), "at most n_bits"))
            }
            _ => Ok(()),
        }
    }

    /// The task's generator (validated section).
    pub fn task(&self) -> Box<dyn SequenceTask> {
        let v = |k: Option<usize>| k.expect("validated");
        match self.name.as_str() {
            "digit_add" => Box::new(DigitAdd {
                n_digits: v(self.n_digits),
            }),
            "repeat_subsequence" => Box::new(RepeatSubsequence {
                d_vocab: v(self.d_vocab),
                n_ctx: v(self.n_ctx),
                sub_len: v(self.sub_len),
                copies: v(self.copies),
                bos: self.bos,
                layout: self.layout,
            }),
            "skip_trigram" => Box::new(SkipTrigram {
                n_signal: v(self.n_signal),
                n_noise: v(self.n_noise),
                n_elems: v(self.n_elems),
            }),
            "max_element" => Box::new(MaxElement {
                n_values: v(self.n_values),
                n_elems: v(self.n_elems),
            }),
            _ => Box::new(SparseParity::new(v(self.n_bits), v(self.k), self.seed)),
        }
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
    format!(
        "{}|{}|{ICL_TASK}",
        Operation::allowed_names(),
        SEQUENCE_TASKS.join("|")
    )
}

/// The in-context regression task's config name.
pub const ICL_TASK: &str = "linear_regression_icl";

/// `[task]` of in-context linear regression ([`IclRegression`]): real-valued tokens, a fresh
/// batch of tasks every step, a fixed evaluation set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IclTaskSection {
    /// [`ICL_TASK`].
    pub name: String,
    /// Input dimension d.
    pub d: usize,
    /// Context pairs N.
    pub n_pairs: usize,
    /// Inputs are uniform on `[−x_range/2, x_range/2]^d` (the paper's code: 1).
    pub x_range: f64,
    /// Weights are `w_scale · N(0, I)`.
    pub w_scale: f64,
    /// Standard deviation of Gaussian label noise (0: noiseless).
    pub noise: f64,
    /// Token layout: `paired` or `alternating`.
    pub format: IclFormat,
    /// Tasks in the fixed evaluation set (the paper: 10,000).
    pub n_eval: usize,
    /// Seed of the batches and the evaluation set.
    pub seed: u64,
}

impl IclTaskSection {
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
        IclRegression {
            d: self.d,
            n_ctx_pairs: self.n_pairs,
            x_range: self.x_range,
            w_scale: self.w_scale,
            noise: self.noise,
            format: self.format,
            seed: self.seed,
        }
    }
}

/// `[task]` of any family.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TaskConfig {
    /// A binary operation, enumerated and split.
    Modular(TaskSection),
    /// A sampled sequence task.
    Sequence(SeqTaskSection),
    /// In-context linear regression.
    Icl(IclTaskSection),
}

impl TaskConfig {
    /// `task.name`.
    pub fn name(&self) -> &str {
        match self {
            TaskConfig::Modular(t) => &t.name,
            TaskConfig::Sequence(t) => &t.name,
            TaskConfig::Icl(t) => &t.name,
        }
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
        if SEQUENCE_TASKS.contains(&name.as_str()) {
            section(value).map(TaskConfig::Sequence)
        } else if name == ICL_TASK {
            section(value).map(TaskConfig::Icl)
        } else {
            section(value).map(TaskConfig::Modular)
        }
    }
}
