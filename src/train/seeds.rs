//! Batched seeds: S runs of one config that differ only in `model.init_seed`, trained in one
//! process with a leading seed axis — every step advances all S runs, one run per core at a
//! time, instead of running the seeds one after another with each step split across the cores.
//!
//! Each seed's directory (`<out>/seed_<i>`) is an ordinary run directory: config, split,
//! metrics and checkpoints, written atomically, resumable on its own with `train --resume`.

use super::resources::{check, Limits};
use super::trainer::{set_threads, PlotFn, Run, RunSummary, TrainOptions};
use crate::config::RunConfig;
use crate::error::{GrokError, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The S configs: `cfg` with `model.init_seed` = its own + 0, 1, …, S − 1.
pub fn seed_configs(cfg: &RunConfig, seeds: usize) -> Vec<RunConfig> {
    (0..seeds as u64)
        .map(|i| {
            let mut c = cfg.clone();
            c.model.set_init_seed(cfg.model.init_seed() + i);
            c
        })
        .collect()
}

/// Trains `seeds` runs of `cfg` side by side into `out/seed_<i>` and returns their summaries.
///
/// # Errors
/// `--seeds` of 0; S runs above `limits` ([`check`], before any directory is made); otherwise
/// as [`super::train`] for any of the runs (the first error stops all).
pub fn train_seeds(
    cfg: &RunConfig,
    out: &Path,
    seeds: usize,
    force: bool,
    plots: Option<PlotFn>,
    limits: &Limits,
) -> Result<Vec<RunSummary>> {
    if seeds == 0 {
        return Err(GrokError::invalid(
            "--seeds",
            seeds,
            "a positive number of seeds",
        ));
    }
    // before a single seed directory is made
    check(cfg, seeds, limits)?;
    let runs: Vec<(RunConfig, PathBuf)> = (seed_configs(cfg, seeds).into_iter().enumerate())
        .map(|(i, c)| (c, out.join(format!("seed_{i}"))))
        .collect();
    train_side_by_side(&runs, force, plots, false, limits)
}

/// Trains fresh runs of configs that differ only in `model.init_seed` (the first config's
/// steps and threads) side by side, each into its own directory, one thread per run at a
/// time; prints one line per logged step unless `quiet`. Each run equals the run trained alone.
///
/// # Errors
/// As [`super::train`] for any of the runs (the first error stops all).
pub fn train_side_by_side(
    runs: &[(RunConfig, PathBuf)],
    force: bool,
    plots: Option<PlotFn>,
    quiet: bool,
    limits: &Limits,
) -> Result<Vec<RunSummary>> {
    let Some((cfg, _)) = runs.first() else {
        return Ok(Vec::new());
    };
    check(cfg, runs.len(), limits)?;
    let seeds = runs.len();
    set_threads(cfg.train.threads);
    let mut runs = (runs.iter())
        .map(|(c, dir)| {
            let opts = TrainOptions {
                out: dir.clone(),
                resume: false,
                force,
                plots,
                quiet,
                set: Vec::new(),
                limits: *limits,
            };
            Run::open(c, &opts, 1)
        })
        .collect::<Result<Vec<_>>>()?;
    let clock = Instant::now();
    // `train.stop_at_test_acc`: a run stops as it would alone (a checkpoint of the next step,
    // nothing after it); the others go on, and the loop ends when all have stopped
    let (stop, last) = (cfg.train.stop_at_test_acc, cfg.train.steps);
    let mut stopped = vec![false; runs.len()];
    for step in 0..=last {
        let rows = (runs.par_iter_mut().zip(stopped.par_iter_mut()))
            .map(|(r, stopped)| {
                if *stopped {
                    return Ok(None);
                }
                let row = r.advance(step)?;
                if row
                    .as_ref()
                    .is_some_and(|row| stop > 0.0 && row.test_acc >= stop)
                    && step < last
                {
                    r.checkpoint(step + 1)?;
                    *stopped = true;
                }
                Ok(row)
            })
            .collect::<Result<Vec<_>>>()?;
        let logged: Vec<_> = rows.into_iter().flatten().collect();
        if !logged.is_empty() && !quiet {
            let range = |f: fn(&crate::rundir::MetricsRow) -> f64| {
                (logged.iter().map(f)).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
                    (lo.min(x), hi.max(x))
                })
            };
            // accuracy where the task has one, else (regression) the test loss
            let (lo, hi) = range(|r| r.test_acc);
            let what = if lo.is_finite() {
                format!("test acc {:.1}%–{:.1}%", 100.0 * lo, 100.0 * hi)
            } else {
                let (lo, hi) = range(|r| r.test_loss);
                format!("test loss {lo:.4e}–{hi:.4e}")
            };
            println!(
                "step {step:>6}  {seeds} seeds: {what}  {:.1}s",
                clock.elapsed().as_secs_f64()
            );
        }
        if stopped.iter().all(|s| *s) {
            break;
        }
    }
    runs.iter().map(|r| r.finish(plots)).collect()
}
