//! Training: configuration, the optimisers and gradient filters, the schedules, the loss, checkpoints, metrics and the loop.

mod batches;
mod bench;
mod checkpoint;
mod config;
mod grad_filter;
mod icl_step;
pub(crate) use icl_step::IclData;
mod loss;
mod numerics;
mod optim;
mod presets;
pub mod resources;
mod schedule;
mod seeds;
mod seq_step;
mod step;
mod task_config;
mod trainer;

pub use batches::checkpoint_test_metrics;
pub use bench::{bench_seeds, bench_train_step, peak_memory_mib, BenchReport, SeedsReport};
pub use checkpoint::{load_latest, save, Resumed};
pub use config::{
    flatten_table, AttentionKind, Engine, LsaSection, MlpSection, ModelConfig, ModelSection,
    Precision, ResumeRecord, RunConfig, Sampling, TaskSection, TrainSection, VocabOut,
};
pub use grad_filter::{
    clip_global_norm, global_norm, orthogonalize, rescale_to_norm, trainable_norm, Grads, Grokfast,
    GrokfastKind,
};
pub use loss::{
    accuracy, classification_loss, cross_entropy, log_probs, stablemax_cross_entropy, LossFn,
};
pub use numerics::{
    last_layer_norm, logit_stats, LogitStats, Slingshots, SLINGSHOT_RISE, SLINGSHOT_WINDOW,
};
pub use optim::{DecayTarget, Optimizer, OptimizerKind};
pub use presets::{describe_preset, find_preset, preset_names, PRESETS};
pub use resources::{Estimate, Limits};
pub use schedule::{warmup_lr, Schedule, ScheduleKind};
pub use seeds::{seed_configs, train_seeds, train_side_by_side};
pub use seq_step::{group_pairs, seq_evaluate, seq_evaluate_pairs, seq_train, ScoredPair};
pub use step::{Step, StepResult};
pub use task_config::{
    task_names, IclTaskSection, RegimeName, SeqTaskSection, TaskConfig, ICL_TASK, SEQUENCE_TASKS,
};
pub use trainer::{
    flush_denormals, set_threads, tensors, train, PlotFn, RunData, RunSummary, TrainOptions,
};
