//! Timing of the training step (`groklab bench`). Figures are printed, never asserted.

use super::config::RunConfig;
use super::optim::{warmup_lr, AdamW};
use super::step::Step;
use super::trainer::{set_threads, RunData};
use crate::error::Result;
use crate::models::ParamStore;
use burn::tensor::Device;
use std::time::Instant;

/// Timing of one configuration's training step.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// Training rows per step.
    pub rows: usize,
    /// Milliseconds per step (forward, backward, AdamW), median of the timed steps.
    pub ms_per_step: f64,
    /// FLOPs of one step's matrix products ([`crate::models::TransformerConfig::train_step_flops`]).
    pub flops: f64,
    /// `flops / time`, in GFLOP/s.
    pub gflops: f64,
    /// Threads used.
    pub threads: usize,
}

/// Times `steps` full-batch training steps of `cfg` after two warm-up steps.
///
/// # Errors
/// Invalid config.
pub fn bench_train_step(cfg: &RunConfig, steps: usize) -> Result<BenchReport> {
    let t = &cfg.train;
    set_threads(t.threads);
    let model_cfg = cfg.transformer();
    let device = Device::flex().autodiff();
    let data = RunData::new(cfg, &device)?;
    let mut params = ParamStore::init(&model_cfg, cfg.model.init_seed);
    let mut optim = AdamW::new(&params, t.betas, t.eps, t.weight_decay);
    let (tokens, labels) = data.dataset.gather(&data.split.train);
    let mut times = Vec::new();
    for step in 0..steps + 2 {
        let clock = Instant::now();
        let r = Step::for_run(&model_cfg, &params, &device, t).train_host(&tokens, &labels);
        optim.update(
            &mut params,
            &r.grads,
            warmup_lr(t.lr, step as u64, t.warmup_steps),
        );
        if step >= 2 {
            times.push(clock.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let secs = times[times.len() / 2];
    let rows = data.split.train.len();
    let flops = model_cfg.train_step_flops(rows);
    Ok(BenchReport {
        rows,
        ms_per_step: secs * 1e3,
        flops,
        gflops: flops / secs / 1e9,
        threads: t.threads,
    })
}
