//! Training: configuration, the AdamW optimiser, the loss, checkpoints, metrics and the loop.

mod batches;
mod bench;
mod checkpoint;
mod config;
mod loss;
mod optim;
mod seeds;
mod seq_step;
mod step;
mod task_config;
mod trainer;

pub use batches::checkpoint_test_metrics;
pub use bench::{bench_seeds, bench_train_step, peak_memory_mib, BenchReport, SeedsReport};
pub use checkpoint::{load_latest, save, Resumed};
pub use config::{
    preset_names, Engine, MlpSection, ModelConfig, ModelSection, Precision, RunConfig, TaskSection,
    TrainSection, VocabOut, PRESETS,
};
pub use loss::{accuracy, cross_entropy};
pub use optim::{warmup_lr, AdamW};
pub use seeds::{seed_configs, train_seeds};
pub use seq_step::{group_pairs, seq_evaluate, seq_evaluate_pairs, seq_train, ScoredPair};
pub use step::{Step, StepResult};
pub use task_config::{task_names, RegimeName, SeqTaskSection, TaskConfig, SEQUENCE_TASKS};
pub use trainer::{
    flush_denormals, set_threads, tensors, train, RunData, RunSummary, TrainOptions,
};
