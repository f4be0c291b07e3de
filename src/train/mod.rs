//! Training (its configuration lives in [`crate::config`]): the optimisers and gradient filters, the schedules, the loss, checkpoints, metrics and the loop.

mod bench;
mod checkpoint;
mod data;
mod grad_filter;
mod icl_step;
pub(crate) use icl_step::{IclData, IclRun};
mod loss;
mod numerics;
mod optim;
pub mod resources;
mod seeds;
mod seq_step;
mod step;
mod trainer;

pub use crate::config::{
    describe_preset, find_preset, flatten_table, preset_names, task_names, warmup_lr,
    AttentionKind, DecayTarget, Engine, GrokfastKind, IclTaskSection, LossFn, LsaSection,
    MlpSection, ModelConfig, ModelSection, OptimizerKind, Precision, RegimeName, ResumeRecord,
    RunConfig, Sampling, Schedule, ScheduleKind, SeqTaskSection, TaskConfig, TaskSection,
    TrainSection, VocabOut, ICL_TASK, PRESETS,
};
pub use bench::{bench_seeds, bench_train_step, peak_memory_mib, BenchReport, SeedsReport};
pub use checkpoint::{load_latest, save, Resumed};
pub(crate) use data::modular::ModularData;
pub use data::{checkpoint_test_metrics, TaskData};
pub use grad_filter::{
    clip_global_norm, global_norm, orthogonalize, rescale_to_norm, trainable_norm, Grads, Grokfast,
};
pub use loss::{accuracy, classification_loss, cross_entropy, log_probs, stablemax_cross_entropy};
pub use numerics::{
    last_layer_norm, logit_stats, LogitStats, Slingshots, SLINGSHOT_RISE, SLINGSHOT_WINDOW,
};
pub use optim::Optimizer;
pub use resources::{Estimate, Limits};
pub use seeds::{seed_configs, train_seeds, train_side_by_side};
pub use seq_step::{group_pairs, seq_evaluate, seq_evaluate_pairs, seq_train, ScoredPair};
pub use step::{Step, StepResult};
pub use trainer::{
    flush_denormals, set_threads, tensors, train, train_observed, PlotFn, RunData, RunSummary,
    TrainObserver, TrainOptions,
};
