//! Benchmarks (`groklab bench`, `groklab bench --all`): the training step as a run takes it
//! ([`Run::train_step`], the update of [`Run::advance`]), on a run held in memory. Figures are
//! printed, never asserted.

use super::seeds::seed_configs;
use super::trainer::{set_threads, Run};
use crate::config::RunConfig;
use crate::error::Result;
use crate::models::fused;
use rayon::prelude::*;
use std::time::Instant;

/// Timing of one configuration's training step.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// Training rows per step (sequences, for a sequence task).
    pub rows: usize,
    /// Milliseconds per step (forward, backward, AdamW), median of the timed steps.
    pub ms_per_step: f64,
    /// Nominal FLOPs of the step ([`crate::models::TransformerConfig::train_step_flops`]: the
    /// unfactored last-position products), the same count for every engine.
    pub flops: f64,
    /// `flops / time`, in GFLOP/s ("effective": the fused step executes fewer).
    pub gflops: f64,
    /// FLOPs the step actually executes (fused step: [`fused::step_flops`]; burn: `flops`).
    pub executed_flops: f64,
    /// Threads used.
    pub threads: usize,
    /// Whether the fused step ran.
    pub fused: bool,
    /// Whether the fused sequence pass ([`crate::models::fused_seq`]) ran.
    pub fused_seq: bool,
    /// Which engine ran the step: `fused`, `fused_seq`, `lsa` (the LSA's own step) or `burn`.
    pub engine: &'static str,
}

/// Times `steps` training steps of `cfg` (full batch, or one minibatch of `train.batch_size`
/// rows) after two warm-up steps.
///
/// # Errors
/// Invalid config.
pub fn bench_train_step(cfg: &RunConfig, steps: usize) -> Result<BenchReport> {
    let t = &cfg.train;
    set_threads(t.threads);
    let model = cfg.model_spec();
    let mut run = Run::scratch(cfg, t.threads)?;
    let mut times = Vec::new();
    for i in 0..steps + 2 {
        let clock = Instant::now();
        run.train_step(i as u64)?;
        if i >= 2 {
            times.push(clock.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let secs = times[times.len() / 2];
    let (rows, scored) = run.shape_of_step0();
    let flops = model.train_step_flops(rows, scored);
    let probe = run.probe();
    let (fused, fused_seq) = (
        probe.uses_fused(),
        !probe.uses_fused() && probe.uses_fused_seq(),
    );
    Ok(BenchReport {
        rows,
        ms_per_step: secs * 1e3,
        flops,
        gflops: flops / secs / 1e9,
        executed_flops: if fused {
            fused::step_flops(model.transformer().expect("fused is a transformer"), rows)
        } else {
            flops
        },
        threads: t.threads,
        fused,
        fused_seq,
        engine: match (fused, fused_seq) {
            (true, _) => "fused",
            (_, true) => "fused_seq",
            _ => model.own_engine(),
        },
    })
}

/// Seed-steps per second of `seeds` runs trained one after another (each step on all threads)
/// and side by side (one run per thread per step, [`super::train_seeds`]'s schedule).
#[derive(Clone, Debug)]
pub struct SeedsReport {
    /// Number of seeds.
    pub seeds: usize,
    /// Seed-steps per second, seeds one after another.
    pub sequential: f64,
    /// Seed-steps per second, seeds batched.
    pub batched: f64,
}

/// Times `steps` steps of `seeds` seeds of `cfg`, sequentially and batched.
///
/// # Errors
/// Invalid config.
pub fn bench_seeds(cfg: &RunConfig, seeds: usize, steps: usize) -> Result<SeedsReport> {
    set_threads(cfg.train.threads);
    let configs = seed_configs(cfg, seeds);
    let clock = Instant::now();
    for c in &configs {
        let mut run = Run::scratch(c, cfg.train.threads)?;
        for s in 0..steps as u64 {
            run.train_step(s)?;
        }
    }
    let sequential = (seeds * steps) as f64 / clock.elapsed().as_secs_f64();
    let mut runs = (configs.iter())
        .map(|c| Run::scratch(c, 1))
        .collect::<Result<Vec<_>>>()?;
    let clock = Instant::now();
    for s in 0..steps as u64 {
        (runs.par_iter_mut())
            .map(|r| r.train_step(s))
            .collect::<Result<()>>()?;
    }
    let batched = (seeds * steps) as f64 / clock.elapsed().as_secs_f64();
    Ok(SeedsReport {
        seeds,
        sequential,
        batched,
    })
}

/// Peak resident memory of this process so far, in MiB (Linux `ru_maxrss`).
pub fn peak_memory_mib() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}
