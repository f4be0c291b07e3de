//! The training loop: one screen, top to bottom.

use super::checkpoint;
use super::data::{task_data, TaskData};
use super::grad_filter::global_norm;
use super::numerics::{last_layer_norm, Slingshots};
use super::optim::Optimizer;
use super::step::{Step, StepResult};
use crate::config::{Precision, ResumeRecord, RunConfig};
use crate::error::{GrokError, Result};
use crate::models::{Model, ParamStore};
use crate::rundir::{atomic_write, prepare_dir, MetricsLog, MetricsRow, RunLock};
use crate::tasks::{split_indices, ModularDataset, Operation, Split};
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

/// Where a run goes and how to treat an existing directory.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Run directory.
    pub out: PathBuf,
    /// Continue from the latest checkpoint in `out`.
    pub resume: bool,
    /// Delete a non-empty `out` first.
    pub force: bool,
    /// What draws the run's plots at the end, under the run's lock (`report::plot_run` from the
    /// command line); `None`: no plots. The loop itself knows nothing of reports.
    pub plots: Option<PlotFn>,
    /// No line per logged row (sweeps print their own progress).
    pub quiet: bool,
    /// With `resume`: the `--set` overrides `cfg` was built with, recorded in `config.toml`
    /// (`resumed_with`) together with the step they apply from.
    pub set: Vec<String>,
    /// Memory and thread limits the config is checked against before anything is allocated.
    pub limits: super::resources::Limits,
}

/// Draws a run's plots from its directory and metrics rows, e.g. `groklab::report::plot_run`.
pub type PlotFn = fn(&std::path::Path, &[MetricsRow]) -> Result<()>;

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// The last metrics row.
    pub last: MetricsRow,
    /// First logged step with train accuracy ≥ 99%.
    pub train_99_step: Option<u64>,
    /// First logged step with test accuracy ≥ 99%.
    pub test_99_step: Option<u64>,
}

/// A task's examples and their train/test split.
pub struct RunData {
    /// All examples.
    pub dataset: ModularDataset,
    /// Train/test rows.
    pub split: Split,
}

impl RunData {
    /// Builds the dataset and split of `cfg`.
    ///
    /// # Errors
    /// Invalid task fields.
    pub fn new(cfg: &RunConfig) -> Result<Self> {
        Self::of(cfg.modular("a split")?)
    }

    /// Builds the dataset and split of the binary-operation section `t`.
    ///
    /// # Errors
    /// Invalid task fields.
    pub fn of(t: &crate::config::TaskSection) -> Result<Self> {
        let op = Operation::parse(&t.name)?;
        let mut dataset = ModularDataset::new(op, t.p, t.split_seed)?;
        if !t.equals_token {
            dataset = dataset.without_equals();
        }
        let split = split_indices(
            &dataset,
            t.frac_train,
            t.split,
            t.split_seed,
            t.keep_commutative,
        )?;
        Ok(Self { dataset, split })
    }
}

/// `[rows, n_ctx]` tokens and `[rows]` labels of the given examples.
pub fn tensors(
    data: &ModularDataset,
    rows: &[usize],
    device: &Device,
) -> (Tensor<2, Int>, Tensor<1, Int>) {
    let (toks, labs) = data.gather(rows);
    (
        Tensor::from_data(TensorData::new(toks, [rows.len(), data.n_ctx]), device),
        Tensor::from_data(TensorData::new(labs, [rows.len()]), device),
    )
}

/// Sets the number of CPU threads burn's kernels use (first call wins), and keeps freed memory in
/// the process: every step allocates and frees the same few-MB activation buffers, and glibc's
/// default of returning them to the OS costs a page fault per 4 KiB on the next step (~15% of a
/// step in `perf`).
///
/// Every thread (this one and the pool's) also flushes subnormal floats to zero
/// ([`flush_denormals`]).
pub fn set_threads(n: usize) {
    flush_denormals();
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .start_handler(|_| flush_denormals())
        .build_global();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes glibc's allocator thresholds; it is called before heavy use.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Sets flush-to-zero and denormals-are-zero (MXCSR bits 15 and 6) on the calling thread.
///
/// Late in a grokking run the wrong classes' probabilities fall below f32's smallest normal
/// (1.2e-38, a logit gap near 87), and f32 arithmetic on the subnormal gradients that follow
/// takes a microcode assist per operation on Intel CPUs: on a 2-core AVX-512 Xeon
/// (2026-11-30), 300 steps of `nanda2023` from epoch 7,100 took 64.6 s without this and 11.7 s
/// with it, with bit-identical metrics and weights (`docs/performance.md`). Subnormals carry no information a loss or an
/// update of these models can use (each is < 1.2e-38 beside terms of order 1e-8 or more).
#[allow(deprecated)] // `_mm_setcsr` is deprecated only in favour of inline assembly
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86_64; only the two flush bits of this thread's MXCSR change.
    unsafe {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        _mm_setcsr(_mm_getcsr() | 0x8040);
    }
}

/// Trains `cfg` into `opts.out` (or continues it with `opts.resume`): logs every
/// `train.log_every` steps, checkpoints on schedule, stops with an error on a non-finite loss.
///
/// # Errors
/// Invalid config, a config above `opts.limits` ([`super::resources::check`]), an existing
/// non-empty directory without `resume`/`force`, a directory another process holds
/// ([`GrokError::Locked`]), I/O failures, a missing, corrupt or non-finite checkpoint or a
/// changed fixed key on resume, and [`GrokError::NonFiniteLoss`].
pub fn train(cfg: &RunConfig, opts: &TrainOptions) -> Result<RunSummary> {
    train_observed(cfg, opts, &mut |_: u64, _: Option<&MetricsRow>| true)
}

/// Watches a run step by step: the Python package's progress, live plots and Ctrl-C.
pub trait TrainObserver {
    /// Called after step `step`'s update, with the step's metrics row where it was logged.
    /// `false` stops the run there: the weights after the step are checkpointed as step
    /// `step + 1` (with the optimiser state), from which a resume continues exactly.
    fn after_step(&mut self, step: u64, row: Option<&MetricsRow>) -> bool;
}

impl<F: FnMut(u64, Option<&MetricsRow>) -> bool> TrainObserver for F {
    fn after_step(&mut self, step: u64, row: Option<&MetricsRow>) -> bool {
        self(step, row)
    }
}

/// [`train`], calling `observer` after every step; it may stop the run
/// ([`TrainObserver::after_step`]).
///
/// # Errors
/// As [`train`].
pub fn train_observed(
    cfg: &RunConfig,
    opts: &TrainOptions,
    observer: &mut dyn TrainObserver,
) -> Result<RunSummary> {
    super::resources::check(cfg, 1, &opts.limits)?;
    set_threads(cfg.train.threads);
    let mut run = Run::open(cfg, opts, cfg.train.threads)?;
    let bar = if opts.quiet {
        ProgressBar::hidden()
    } else {
        progress_bar(run.start, cfg.train.steps)
    };
    let stop = cfg.train.stop_at_test_acc;
    let reached = |row: &MetricsRow| stop > 0.0 && row.test_acc >= stop;
    // a run that stopped early and was resumed from its stop checkpoint stays stopped
    if !run.log.rows.last().is_some_and(reached) {
        for step in run.start..=cfg.train.steps {
            let logged = run.advance(step).inspect_err(|_| bar.abandon())?;
            if let Some(row) = &logged {
                if !opts.quiet {
                    report_row(&bar, row);
                }
                if reached(row) && step < cfg.train.steps {
                    run.checkpoint(step + 1)?;
                    break;
                }
            }
            bar.inc(1);
            if !observer.after_step(step, logged.as_ref()) {
                if step < cfg.train.steps {
                    run.checkpoint(step + 1)?;
                }
                break;
            }
        }
    }
    bar.finish_and_clear();
    run.finish(opts.plots)
}

/// Checkpoint metadata key of the slingshot counter's state.
const SLINGSHOT_META: &str = "slingshots";

/// Checkpoint metadata key of the config's fixed keys ([`RunConfig::fixed_keys`]).
const FIXED_META: &str = "fixed_keys";

/// Refuses a resume whose config changes the data or the model: a fixed key
/// ([`RunConfig::fixed_keys`]) that differs from the latest checkpoint's record.
fn check_fixed_keys(cfg: &RunConfig, dir: &std::path::Path) -> Result<()> {
    let Some(step) = crate::rundir::resumable_step(dir) else {
        return Ok(()); // load_latest says why
    };
    let path = crate::rundir::optim_path(dir, step);
    let bytes = std::fs::read(&path).map_err(|e| GrokError::io(&path, e))?;
    let meta = crate::models::read_safetensors_metadata(&path, &bytes)?;
    match meta.get(FIXED_META).and_then(|m| cfg.fixed_key_change(m)) {
        Some((key, then, now)) => Err(GrokError::Checkpoint {
            path,
            reason: format!(
                "cannot resume: `{key}` was {then} at this checkpoint and is {now} now; keys that change the data or the model are fixed for a run's life (start a new run for another value)"
            ),
        }),
        None => Ok(()),
    }
}

/// A fresh run's weights and optimiser from the initial weights `init`: the weights rounded to
/// f32 for an f32 run (what its step-0 checkpoint stores, so that resuming from it is exact).
fn fresh_state(cfg: &RunConfig, init: &ParamStore) -> (ParamStore, Optimizer) {
    let optim = Optimizer::for_run(init, &cfg.train, init);
    let mut params = init.clone();
    if cfg.train.compute_dtype == Precision::F32 {
        params.round_to_f32();
    }
    (params, optim)
}

/// Refuses a resume whose split is not the one `split.json` records (an edited `config.toml`).
fn check_split(dir: &std::path::Path, batches: &dyn TaskData) -> Result<()> {
    let Some(split) = batches.split_json() else {
        return Ok(());
    };
    let path = dir.join("split.json");
    let reason = match std::fs::read_to_string(&path) {
        Ok(saved) if saved == split => return Ok(()),
        Ok(_) => "cannot resume: the config's split (task.split_seed, task.frac_train, task.split, task.keep_commutative) is not the one this file records; restore config.toml".into(),
        Err(e) => format!("cannot resume: {e}"),
    };
    Err(GrokError::Checkpoint { path, reason })
}

/// One run's state between steps: what the loop of [`train`] (one run on all threads) and
/// [`super::seeds::train_seeds`] (several runs side by side, one thread each) advance.
pub(crate) struct Run<'a> {
    cfg: &'a RunConfig,
    model: Box<dyn Model>,
    dir: PathBuf,
    batches: Box<dyn TaskData>,
    params: ParamStore,
    optim: Optimizer,
    log: MetricsLog,
    /// First step this process runs.
    pub(crate) start: u64,
    resumed: bool,
    wall0: f64,
    clock: Instant,
    last_ckpt: Option<u64>,
    threads: usize,
    devices: (Device, Device),
    slingshots: Slingshots,
    /// Held while the run is open: no second writer (`None`: a scratch run, no directory).
    _lock: Option<RunLock>,
}

impl<'a> Run<'a> {
    /// Prepares (or, with `opts.resume`, reloads) the run directory; steps use `threads` chunks.
    pub(crate) fn open(cfg: &'a RunConfig, opts: &TrainOptions, threads: usize) -> Result<Self> {
        let t = &cfg.train;
        let model = cfg.model_spec();
        let devices = (Device::flex().autodiff(), Device::flex());
        let batches = task_data(cfg)?;
        let dir = opts.out.clone();
        std::fs::create_dir_all(&dir).map_err(|e| GrokError::io(&dir, e))?;
        let lock = RunLock::acquire(&dir, "train")?;
        // θ₀: the anchor of decay toward init and the reference of the norm constraint
        let init = ParamStore::init_specs(model.param_specs(), cfg.model.init_seed());
        let fresh_optim = |p: &ParamStore| Optimizer::for_run(p, t, &init);
        let mut slingshots = Slingshots::default();
        let (params, optim, start, log, wall0) = if opts.resume {
            let template = fresh_optim(&ParamStore::zeros_specs(model.param_specs()));
            crate::rundir::check_checkpoint_dir(&dir)?;
            crate::rundir::remove_stale_temporaries(&dir);
            check_fixed_keys(cfg, &dir)?;
            let r = checkpoint::load_latest(&dir, &*model, &template)?;
            check_split(&dir, &*batches)?;
            if !opts.set.is_empty() {
                let mut c = cfg.clone();
                c.resumed_with.push(ResumeRecord {
                    step: r.step,
                    set: opts.set.clone(),
                });
                crate::rundir::RunDir::new(&dir).write_config(&c)?;
            }
            let mut log = MetricsLog::load(&dir)?;
            log.rows.retain(|row| row.step < r.step);
            if let Some(s) = r.meta.get(SLINGSHOT_META) {
                slingshots = Slingshots::from_meta(s).unwrap_or_default();
            }
            // the clock goes on from the last row logged before the checkpoint (checkpoints of
            // older runs carried their own `wall_s`)
            let wall0 = log.rows.last().map_or(0.0, |row| row.wall_s).max(r.wall_s);
            (r.params, r.optim, r.step, log, wall0)
        } else {
            prepare_dir(&dir, opts.force)?;
            crate::rundir::RunDir::new(&dir).write_config(cfg)?;
            if let Some(split) = batches.split_json() {
                atomic_write(&dir.join("split.json"), split.as_bytes())?;
            }
            let (params, optim) = fresh_state(cfg, &init);
            (params, optim, 0, MetricsLog::default(), 0.0)
        };
        Ok(Self {
            cfg,
            model,
            batches,
            last_ckpt: crate::rundir::list_steps(&dir).last().copied(),
            dir,
            params,
            optim,
            log,
            start,
            resumed: opts.resume,
            wall0,
            clock: Instant::now(),
            threads,
            devices,
            slingshots,
            _lock: Some(lock),
        })
    }

    /// A fresh run of `cfg` in memory only (no directory, nothing written, nothing locked):
    /// what `groklab bench` steps with [`Run::train_step`], the update [`Run::advance`] takes.
    ///
    /// # Errors
    /// An invalid task config ([`task_data`]).
    pub(crate) fn scratch(cfg: &'a RunConfig, threads: usize) -> Result<Self> {
        let model = cfg.model_spec();
        let batches = task_data(cfg)?;
        let init = ParamStore::init_specs(model.param_specs(), cfg.model.init_seed());
        let (params, optim) = fresh_state(cfg, &init);
        Ok(Self {
            cfg,
            model,
            batches,
            dir: PathBuf::new(),
            params,
            optim,
            log: MetricsLog::default(),
            start: 0,
            resumed: false,
            wall0: 0.0,
            clock: Instant::now(),
            last_ckpt: None,
            threads,
            devices: (Device::flex().autodiff(), Device::flex()),
            slingshots: Slingshots::default(),
            _lock: None,
        })
    }

    /// Step `step`'s gradient (forward and backward on its batch, the loss scaled by
    /// `train.loss_scale`) and whether the batch was the whole training set.
    fn gradients(&self, step: u64) -> Result<(StepResult, bool)> {
        let t = &self.cfg.train;
        let (mut r, whole) = (self.batches).train(
            &self.step_fn(&self.devices.0),
            step,
            t.batch_size,
            t.sampling,
        )?;
        scale_result(&mut r, t.loss_scale);
        Ok((r, whole))
    }

    /// The update of `step`: the optimiser on `grads` at the schedule's lr, and the rounding of
    /// an f32 run's weights.
    fn apply(&mut self, grads: super::grad_filter::Grads, step: u64) {
        let t = &self.cfg.train;
        let schedule = t.schedule();
        let (lr, decay_lr) = (schedule.lr_at(step), schedule.decay_lr_at(step));
        self.optim.step(&mut self.params, grads, lr, decay_lr);
        if t.compute_dtype == Precision::F32 {
            self.params.round_to_f32();
        }
    }

    /// One training step without checkpoint or log: [`Run::advance`]'s gradient and update.
    ///
    /// # Errors
    /// A model that cannot read the task's data ([`crate::models::Model::step`]).
    pub(crate) fn train_step(&mut self, step: u64) -> Result<()> {
        let (r, _) = self.gradients(step)?;
        self.apply(r.grads, step);
        Ok(())
    }

    /// The batch shape of step 0: rows, and scored positions per sequence of a sequence task.
    pub(crate) fn shape_of_step0(&self) -> (usize, Option<f64>) {
        self.batches.shape_of_step0(self.cfg.train.batch_size)
    }

    /// The step function over the current weights (which engine runs it).
    pub(crate) fn probe(&self) -> Step<'_> {
        self.step_fn(&self.devices.0)
    }

    fn step_fn<'s>(&'s self, device: &'s Device) -> Step<'s> {
        let mut s = Step::for_run(&*self.model, &self.params, device, &self.cfg.train);
        s.threads = self.threads;
        s
    }

    /// Saves the current weights and optimiser state as the checkpoint of `step` (the state
    /// before `step`'s update).
    pub(crate) fn checkpoint(&mut self, step: u64) -> Result<()> {
        let dtype = match self.cfg.train.compute_dtype {
            Precision::F32 => safetensors::Dtype::F32,
            Precision::F64 => safetensors::Dtype::F64,
        };
        let buffers = self.model.buffers();
        let (dir, params, optim) = (&self.dir, &self.params, &self.optim);
        let extra = [
            (SLINGSHOT_META.to_string(), self.slingshots.to_meta()),
            (FIXED_META.to_string(), self.cfg.fixed_keys()),
        ];
        checkpoint::save(dir, step, params, &buffers, optim, dtype, &extra)?;
        if !self.cfg.train.keep_optim_state {
            checkpoint::prune_optim_states(dir, step);
        }
        self.last_ckpt = Some(step);
        Ok(())
    }

    /// Checkpoints (on schedule, and always at the last step), steps, logs (on schedule;
    /// returned) and updates, for `step`.
    pub(crate) fn advance(&mut self, step: u64) -> Result<Option<MetricsRow>> {
        let t = &self.cfg.train;
        let wall = self.wall0 + self.clock.elapsed().as_secs_f64();
        // the last step is always checkpointed, so the final weights are never lost
        let due = self.cfg.is_checkpoint_step(step) || step == t.steps;
        if due && !(self.resumed && step == self.start) {
            self.checkpoint(step)?;
        }
        let (r, whole) = self.gradients(step)?;
        if !r.loss.is_finite() {
            return Err(GrokError::NonFiniteLoss {
                step,
                value: r.loss,
                last_checkpoint: self.last_ckpt.map_or("none".into(), |s| {
                    crate::rundir::model_path(&self.dir, s)
                        .display()
                        .to_string()
                }),
            });
        }
        if self.slingshots.observe(r.loss) {
            println!("slingshot at step {step}: train loss {:.3e}", r.loss);
        }
        let lr = t.schedule().lr_at(step);
        let mut logged = None;
        if step.is_multiple_of(t.log_every) || step == t.steps {
            let eval = self.step_fn(&self.devices.1);
            let train_metrics = if whole {
                (r.loss, r.acc)
            } else {
                let (loss, acc) = self.batches.evaluate_train(&eval)?;
                (loss * t.loss_scale, acc)
            };
            let ((test_loss, test_acc), mut task_metrics) = self.batches.test_metrics(&eval)?;
            let test_metrics = (test_loss * t.loss_scale, test_acc);
            task_metrics.extend(
                self.batches
                    .train_batch_metrics(&eval, step, t.batch_size)?,
            );
            let mut row = MetricsRow::new(
                step,
                self.batches.epoch(step, t.batch_size),
                train_metrics,
                test_metrics,
                (lr, global_norm(&r.grads)),
                self.params.sum_squares(),
                wall,
            );
            row.set_task_metrics(
                self.numerics(&eval)
                    .into_iter()
                    .chain(task_metrics)
                    .collect(),
            );
            self.log.push(row.clone(), &self.dir)?;
            logged = Some(row);
        }
        if step < t.steps {
            self.apply(r.grads, step);
        }
        Ok(logged)
    }

    /// The numerics of every logged row: slingshots so far, softmax collapse and logit scale
    /// on the training set, the last layer's norm.
    fn numerics(&self, eval: &Step) -> Vec<(String, f64)> {
        let stats = self.batches.train_logit_stats(eval);
        vec![
            ("slingshots".into(), self.slingshots.count as f64),
            (
                "softmax_collapse".into(),
                stats.map_or(f64::NAN, |s| s.softmax_collapse),
            ),
            (
                "logit_scale".into(),
                stats.map_or(f64::NAN, |s| s.logit_scale),
            ),
            ("last_layer_norm".into(), last_layer_norm(&self.params)),
        ]
    }

    /// Draws the plots (with `plots`) and summarises the run.
    pub(crate) fn finish(&self, plots: Option<PlotFn>) -> Result<RunSummary> {
        if let Some(draw) = plots {
            draw(&self.dir, &self.log.rows)?;
        }
        Ok(RunSummary::of_rows(&self.log.rows).expect("the last step is always logged"))
    }
}

impl RunSummary {
    /// The summary of a run's metrics rows (step order; `None` when there are none): the last
    /// row and the first steps at 99% accuracy. (The phase changes of its curves are a measure:
    /// [`crate::measures::phases::phase_changes_of_rows`].)
    pub fn of_rows(rows: &[MetricsRow]) -> Option<Self> {
        let first = |f: fn(&MetricsRow) -> f64| rows.iter().find(|r| f(r) >= 0.99).map(|r| r.step);
        Some(RunSummary {
            train_99_step: first(|r| r.train_acc),
            test_99_step: first(|r| r.test_acc),
            last: rows.last()?.clone(),
        })
    }
}

fn progress_bar(start: u64, steps: u64) -> ProgressBar {
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps).with_position(start);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} step {pos}/{len} {per_sec} eta {eta} {msg}")
            .expect("valid template"),
    );
    bar
}

fn report_row(bar: &ProgressBar, row: &MetricsRow) {
    // accuracy only where the task has one (not regression)
    let acc = |a: f64| {
        if a.is_finite() {
            format!(" ({:.1}%)", 100.0 * a)
        } else {
            String::new()
        }
    };
    let msg = format!(
        "train {:.3e}{} test {:.3e}{}",
        row.train_loss,
        acc(row.train_acc),
        row.test_loss,
        acc(row.test_acc)
    );
    if bar.is_hidden() {
        println!("step {:>6}  {msg}  {:.1}s", row.step, row.wall_s);
    } else {
        bar.set_message(msg);
    }
}

/// Multiplies a step's loss and gradients by `train.loss_scale` (a no-op at 1).
fn scale_result(r: &mut StepResult, scale: f64) {
    if scale == 1.0 {
        return;
    }
    r.loss *= scale;
    for g in r.grads.iter_mut().flatten() {
        g.iter_mut().for_each(|x| *x *= scale);
    }
}
