//! Sequence tasks: generators of token sequences with targets at the positions a model is scored
//! on, and the two data regimes every such task runs in.
//!
//! - `infinite`: batch `s` of training is a fresh sample from stream `s` of the task seed; the
//!   test set is a fixed sample from its own stream.
//! - `finite`: a fixed training set of `n_train` sequences, sampled once, and a held-out test
//!   set with none of the training sequences in it (Nanda et al. 2023 §5: limited data + weight
//!   decay turns a phase change into grokking).

use super::batch::{indices_with_replacement, stream_rng, SeqBatch};
use crate::error::{GrokError, Result};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashSet;

/// Vocabulary and length of a sequence task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqShape {
    /// Input token ids are in `[0, d_vocab)`.
    pub d_vocab: usize,
    /// Target classes are in `[0, d_vocab_out)`.
    pub d_vocab_out: usize,
    /// Sequence length T.
    pub n_ctx: usize,
}

/// A task that samples sequences: what the tokens mean, and which positions are scored.
pub trait SequenceTask: Send + Sync {
    /// Vocabulary sizes and sequence length.
    fn shape(&self) -> SeqShape;

    /// Appends one random sequence and its targets to `batch`.
    fn sample_one(&self, rng: &mut ChaCha8Rng, batch: &mut SeqBatch);

    /// Whether the induction-head scores apply (a copy's tokens are scored), so the training loop
    /// logs them ([`crate::measures::attention`]).
    fn scores_induction(&self) -> bool {
        false
    }

    /// Whether the loss per target class is a curve worth logging (max of a sequence: the skip
    /// trigram of each value forms on its own).
    fn scores_per_class(&self) -> bool {
        false
    }

    /// The signal tokens whose attention from the scored position is a curve worth logging
    /// (skip trigrams: how much END reads the signal), `None` for other tasks.
    fn signal_tokens(&self) -> Option<std::ops::Range<i64>> {
        None
    }

    /// What a scored position is, in plot titles ("Test loss per {name}").
    fn position_name(&self) -> &'static str {
        "scored position"
    }

    /// The label of the `i`-th scored position (in position order) in plots; `None`: its
    /// position number.
    fn position_label(&self, _i: usize) -> Option<String> {
        None
    }

    /// Whether every sequence is scored at one and the same position, so a model that makes one
    /// prediction per sequence (the MLP) can learn it.
    fn one_scored_position(&self) -> bool {
        false
    }

    /// `n` random sequences.
    fn sample(&self, rng: &mut ChaCha8Rng, n: usize) -> SeqBatch {
        let mut batch = SeqBatch::new(self.shape().n_ctx);
        for _ in 0..n {
            self.sample_one(rng, &mut batch);
        }
        batch
    }
}

/// A sequence task's own `[task]` keys as one config type: read by serde (unknown keys refused,
/// so `--set` and config files are checked against the task's own fields), checked, and built
/// into the generator. Registering the type in `tasks/mod.rs`'s `sequence_tasks!` list is all it
/// takes for `task.name = NAME` to work everywhere (config, training, analysis, report).
pub trait SeqTaskConfig: DeserializeOwned + Serialize {
    /// `task.name`.
    const NAME: &'static str;

    /// Checks ranges and consistency beyond what the types say.
    ///
    /// # Errors
    /// The first offending `task.<key>` ([`GrokError::invalid`]) with what is allowed.
    fn validate(&self) -> Result<()>;

    /// The generator. `seed` is `task.seed` (for a task whose definition is itself drawn, as
    /// sparse parity's bits).
    fn build(&self, seed: u64) -> Box<dyn SequenceTask>;
}

/// One registered sequence task: its name and its config type's read / check / build, erased to
/// plain functions over the `[task]` keys that are the task's own.
#[derive(Clone, Copy)]
pub struct SeqTaskEntry {
    /// `task.name`.
    pub name: &'static str,
    /// Reads the task's own keys into its config type and writes them back as it serialises
    /// them. `Err` carries serde's message and the key path inside the section.
    pub read: fn(toml::Table) -> std::result::Result<toml::Table, (String, String)>,
    /// [`SeqTaskConfig::validate`] on keys `read` accepted.
    pub validate: fn(&toml::Table) -> Result<()>,
    /// [`SeqTaskConfig::build`] on keys `read` wrote.
    ///
    /// # Panics
    /// On keys that `read` did not write (`SeqTaskSection` keeps them private).
    pub build: fn(&toml::Table, u64) -> Box<dyn SequenceTask>,
}

impl SeqTaskEntry {
    /// The entry of config type `T`.
    pub const fn of<T: SeqTaskConfig>() -> Self {
        Self {
            name: T::NAME,
            read: read_keys::<T>,
            validate: |keys| parse::<T>(keys)?.validate(),
            build: |keys, seed| {
                parse::<T>(keys)
                    .expect("validated: the keys were written by the same config type")
                    .build(seed)
            },
        }
    }
}

fn read_keys<T: SeqTaskConfig>(
    keys: toml::Table,
) -> std::result::Result<toml::Table, (String, String)> {
    let own: T = serde_path_to_error::deserialize(toml::Value::Table(keys))
        .map_err(|e| (e.path().to_string(), e.inner().message().to_string()))?;
    match toml::Value::try_from(&own) {
        Ok(toml::Value::Table(t)) => Ok(t),
        _ => Err((String::new(), "a task config serialises to a table".into())),
    }
}

/// `T` from keys its own `read` wrote.
///
/// # Errors
/// [`GrokError::Config`] for keys `T` does not read (not written by `read`).
fn parse<T: SeqTaskConfig>(keys: &toml::Table) -> Result<T> {
    T::deserialize(toml::Value::Table(keys.clone()))
        .map_err(|e| GrokError::Config(format!("task `{}`: {}", T::NAME, e.message())))
}

/// Refuses 0 for `task.<key>`.
///
/// # Errors
/// [`GrokError::invalid`] naming `task.<key>`.
pub fn positive(key: &str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(GrokError::invalid(
            &format!("task.{key}"),
            0,
            "a positive integer",
        ));
    }
    Ok(())
}

/// Stream of the test set (training batches use streams 0, 1, 2, … by step).
const TEST_STREAM: u64 = u64::MAX;
/// Stream of a finite run's fixed training set.
const TRAIN_SET_STREAM: u64 = u64::MAX - 1;

/// How a run draws its training data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regime {
    /// A fixed training set of this many sequences.
    Finite {
        /// Training sequences.
        n_train: usize,
    },
    /// A fresh sample every step.
    Infinite,
}

/// A sequence task's data for one run: the test set, and the training set or stream.
pub struct SeqData {
    task: Box<dyn SequenceTask>,
    seed: u64,
    /// The fixed training set (`finite`), `None` for `infinite`.
    pub train: Option<SeqBatch>,
    /// The fixed test set.
    pub test: SeqBatch,
}

impl SeqData {
    /// Draws the test set (`n_test` sequences) and, for `finite`, the training set from `seed`.
    /// A finite training set never repeats a test sequence: candidates equal to one are drawn
    /// again.
    ///
    /// # Errors
    /// `task.n_train` of 0, or a training set that cannot avoid the test set (a task with too few
    /// distinct sequences for the counts asked).
    pub fn new(
        task: Box<dyn SequenceTask>,
        regime: Regime,
        n_test: usize,
        seed: u64,
    ) -> Result<Self> {
        let test = task.sample(&mut stream_rng(seed, TEST_STREAM), n_test);
        let train = match regime {
            Regime::Infinite => None,
            Regime::Finite { n_train: 0 } => {
                return Err(GrokError::invalid("task.n_train", 0, "a positive integer"))
            }
            Regime::Finite { n_train } => {
                let held: HashSet<&[i64]> = (0..test.len()).map(|i| test.tokens_of(i)).collect();
                let mut rng = stream_rng(seed, TRAIN_SET_STREAM);
                let mut train = SeqBatch::new(task.shape().n_ctx);
                let mut tries = 0usize;
                while train.len() < n_train {
                    let mut one = SeqBatch::new(train.n_ctx);
                    task.sample_one(&mut rng, &mut one);
                    tries += 1;
                    if tries > 100 * n_train + 1000 {
                        return Err(GrokError::invalid(
                            "task.n_train",
                            n_train,
                            "fewer sequences: most samples repeat a test sequence",
                        ));
                    }
                    if !held.contains(one.tokens_of(0)) {
                        train.push(one.tokens_of(0), one.targets_of(0));
                    }
                }
                Some(train)
            }
        };
        Ok(Self {
            task,
            seed,
            train,
            test,
        })
    }

    /// The task.
    pub fn task(&self) -> &dyn SequenceTask {
        self.task.as_ref()
    }

    /// The training batch of `step` (`batch_size` sequences; 0 = the whole finite set): a fresh
    /// sample from stream `step` (`infinite`), or the `step`-th slice of a per-epoch permutation of
    /// the training set (`finite`).
    pub fn train_batch(&self, step: u64, batch_size: usize) -> SeqBatch {
        match &self.train {
            None => self
                .task
                .sample(&mut stream_rng(self.seed, step), batch_size.max(1)),
            Some(train) if batch_size == 0 || batch_size >= train.len() => train.clone(),
            Some(train) => {
                let per_epoch = train.len().div_ceil(batch_size) as u64;
                let (epoch, k) = (step / per_epoch, (step % per_epoch) as usize);
                let mut order: Vec<usize> = (0..train.len()).collect();
                order.shuffle(&mut stream_rng(self.seed ^ 0x5eed, epoch));
                train.select(&order[k * batch_size..((k + 1) * batch_size).min(train.len())])
            }
        }
    }

    /// `batch_size` sequences of the fixed training set drawn uniformly with replacement for
    /// `step` (seeded by `(seed, step)`); a fresh sample where there is no fixed set.
    pub fn train_batch_with_replacement(&self, step: u64, batch_size: usize) -> SeqBatch {
        let Some(train) = &self.train else {
            return self.train_batch(step, batch_size);
        };
        train.select(&indices_with_replacement(
            train.len(),
            batch_size.max(1),
            step,
            self.seed,
        ))
    }
}
