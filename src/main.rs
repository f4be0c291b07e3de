//! The `groklab` command line: parses arguments and hands over to the library.

use clap::{Parser, Subcommand};
use groklab::measures::{self, parse_split, CheckpointTask, KeyFreqRule};
use groklab::report;
use groklab::tasks::Operation;
use groklab::train::{self, RunConfig, TrainOptions};
use groklab::{GrokError, Result};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "groklab",
    version,
    about = "Train small networks on algorithmic tasks and watch them grok"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum SweepCommand {
    /// Expand a sweep file (or a shipped sweep) into a manifest on stdout: one fully resolved
    /// run per line (JSON), with a stable id.
    Expand {
        /// Sweep file (TOML: preset, [set], [grid], [random]).
        #[arg(required_unless_present = "preset", conflicts_with = "preset")]
        file: Option<PathBuf>,
        /// A shipped sweep instead: phase_diagram_small, frac_sweep_nanda.
        #[arg(long)]
        preset: Option<String>,
    },
    /// Run a manifest's runs into RUNS/<id>/: all, one (--index, or the scheduler's
    /// SLURM_ARRAY_TASK_ID / JOB_COMPLETION_INDEX / HQ_TASK_ID), or a shard. Finished runs are
    /// skipped, stopped ones resume; DONE is written last.
    Run {
        /// Manifest from `sweep expand`.
        manifest: PathBuf,
        /// Directory of the sweep's runs.
        #[arg(long)]
        out: PathBuf,
        /// Worker processes (each run's `train.threads` threads).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Only manifest line I (0-based).
        #[arg(long, conflicts_with = "shard")]
        index: Option<usize>,
        /// Only lines i with i mod n = k.
        #[arg(long, value_name = "K/N")]
        shard: Option<String>,
    },
    /// One CSV row per finished run of RUNS (swept keys, steps to 90% and 99% train and 90 /
    /// 95 / 99% test accuracy, best and final accuracy, final losses, grokking stage, Liu et
    /// al.'s phase) on stdout; with --by-setting, one row per setting over its seeds.
    Collect {
        /// Directory of the sweep's runs.
        runs: PathBuf,
        /// One row per setting (swept keys other than `*seed`): steps to 90/95/99% test as mean
        /// and bootstrap 95% interval over seeds, runs cut off before a threshold counted at
        /// their last step (a lower bound) and marked `>N` per run.
        #[arg(long)]
        by_setting: bool,
    },
    /// Phase diagram, grokking delay and time to grok of RUNS, in RUNS/plots/ and RUNS/sweep.html.
    Plot {
        /// Directory of the sweep's runs.
        runs: PathBuf,
        /// Key on the x axis [default: the swept key with the most values].
        #[arg(long)]
        x: Option<String>,
        /// Key on the y axis [default: the next one].
        #[arg(long)]
        y: Option<String>,
    },
    /// Write an `sbatch --array` script for a manifest (stdout): each task runs its line.
    Slurm {
        /// Manifest from `sweep expand`.
        manifest: PathBuf,
        /// Directory of the sweep's runs.
        #[arg(long)]
        out: PathBuf,
        /// `--cpus-per-task`.
        #[arg(long, default_value_t = 2)]
        cpus: usize,
        /// `--time` per task.
        #[arg(long, default_value = "04:00:00")]
        time: String,
        /// `--partition`.
        #[arg(long)]
        partition: Option<String>,
        /// At most this many tasks at once.
        #[arg(long)]
        max_parallel: Option<usize>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Sweeps: expand, run (locally or under a scheduler), collect, plot, Slurm script.
    Sweep {
        #[command(subcommand)]
        cmd: SweepCommand,
    },
    /// Train a model; writes config, split, metrics, checkpoints and plots to the run directory.
    Train {
        /// Embedded preset to start from (see `groklab presets`).
        #[arg(long, default_value = "quick")]
        preset: String,
        /// TOML file merged over the preset (only the keys that differ need be given); a complete config, such as a run's config.toml, replaces the preset.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override one key, e.g. `--set train.lr=3e-3` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Run directory [default: runs/<preset>, or runs/<preset>-N if taken].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the stopped run in this directory from its latest checkpoint.
        #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["out", "config", "force", "preset"])]
        resume: Option<PathBuf>,
        /// Overwrite a non-empty run directory.
        #[arg(long)]
        force: bool,
        /// Skip drawing the plots at the end.
        #[arg(long)]
        no_plots: bool,
        /// Train this many seeds (init_seed, init_seed + 1, ...) side by side into
        /// `<out>/seed_<i>` [default out: runs/<preset>-seeds].
        #[arg(long, conflicts_with = "resume")]
        seeds: Option<usize>,
        /// Memory the run may plan to use, in GiB [default: the machine's physical memory]; a
        /// config estimated above it is refused before anything is allocated.
        #[arg(long, value_name = "GIB")]
        mem_limit: Option<f64>,
        /// Allow `train.threads` above this machine's cores.
        #[arg(long)]
        oversubscribe: bool,
    },
    /// Progress measures (Nanda et al. 2023) of every checkpoint of a run, or of one checkpoint.
    Analyze {
        /// Run directory: writes measures.jsonl/csv, analysis.json and plots/measures/.
        #[arg(required_unless_present = "checkpoint", conflicts_with = "checkpoint")]
        run_dir: Option<PathBuf>,
        /// One TransformerLens-layout safetensors checkpoint instead of a run.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// Task of the checkpoint (with --checkpoint).
        #[arg(long, default_value = "add")]
        task: String,
        /// Modulus of the checkpoint [default: its d_vocab − 1 for `[a, b, =]` inputs, d_vocab
        /// for `[a, b]` (a W_pos of 2 positions)].
        #[arg(long)]
        p: Option<usize>,
        /// Split of the checkpoint's training run, `python:SEED` or `native:SEED` [default: none,
        /// every input counts as training].
        #[arg(long, value_name = "MODE:SEED")]
        split: Option<String>,
        /// Training fraction of that split.
        #[arg(long, default_value_t = 0.3)]
        frac: f64,
        /// MLP activation of the checkpoint: relu or gelu.
        #[arg(long, default_value = "relu")]
        act_fn: String,
        /// Attention rate α of the checkpoint's model (Zhong et al. 2023's `attn_coeff`): 1
        /// standard softmax attention, 0 constant attention.
        #[arg(long, default_value_t = 1.0)]
        attn_rate: f64,
        /// Fix the key frequencies, e.g. `14,35,41,42,52` (overrides --key-freq-rule).
        #[arg(long, value_delimiter = ',')]
        key_freqs: Option<Vec<usize>>,
        /// How key frequencies are found: consensus (neuron clusters and W_E norms, the paper's
        /// analysis), neuron-argmax (the paper's code; over-counts stray neurons) or embed-norm.
        #[arg(long, default_value = "consensus")]
        key_freq_rule: String,
        /// consensus and embed-norm rules: a frequency whose W_E norm is >= this fraction of the
        /// largest is key.
        #[arg(long, default_value_t = 0.5)]
        embed_threshold: f64,
        /// Print JSON instead of the table (with --checkpoint).
        #[arg(long)]
        json: bool,
        /// Threads [default: all cores].
        #[arg(long)]
        threads: Option<usize>,
        /// Skip the plots.
        #[arg(long)]
        no_plots: bool,
    },
    /// Write RUN_DIR/report.html: config, curves and a checkpoint slider, one self-contained file.
    /// Runs `analyze` first when the run has no measures yet.
    Report {
        /// Run directory.
        run_dir: PathBuf,
        /// Recompute the measures even if measures.jsonl exists.
        #[arg(long)]
        reanalyze: bool,
    },
    /// Overlay several runs' metrics, one chart per metric, each run labelled by the config keys
    /// in which it differs; writes PNG/SVG charts and one self-contained compare.html.
    Compare {
        /// Run directories (a `train --seeds` directory stands for its seed_<i> runs).
        #[arg(required = true)]
        run_dirs: Vec<PathBuf>,
        /// Metrics to draw, comma-separated `metrics.jsonl` keys.
        #[arg(long, value_delimiter = ',', default_values_t = report::compare::DEFAULT_METRICS.map(String::from))]
        metrics: Vec<String>,
        /// Output directory.
        #[arg(long, default_value = "runs/compare")]
        out: PathBuf,
    },
    /// The general-circuits test on a run's checkpoints: per MLP neuron and per attention head,
    /// integrated gradients of the correct logit, their medians (and the neurons' histogram and
    /// skewness), top-k against random-k ablation, and the gradient's share in the
    /// key-frequency subspace; writes saliency.jsonl
    /// and plots/saliency/, and adds a section to report.html.
    Saliency {
        /// Run directory (a 1-block transformer on a binary operation).
        run_dir: PathBuf,
        /// IG baseline and ablation value: mean (each neuron's mean over the training inputs) or
        /// zero. With zero, a ReLU neuron's median is 0 unless it fires on most inputs, which on
        /// nanda2023 holds for no neuron before clean-up.
        #[arg(long, default_value = "mean")]
        baseline: String,
        /// IG interpolation points.
        #[arg(long, default_value_t = 20)]
        ig_steps: usize,
        /// Random k-sets of neurons per k for random-k ablation (their mean and standard
        /// deviation are written).
        #[arg(long, default_value_t = measures::saliency::SaliencyOptions::default().random_draws)]
        random_draws: usize,
        /// Measure every N-th checkpoint [default: at most 100 checkpoints].
        #[arg(long)]
        every: Option<usize>,
        /// Threads [default: all cores].
        #[arg(long)]
        threads: Option<usize>,
    },
    /// The local learning coefficient (Lau et al. 2023; devinterp's estimator and names) at a
    /// run's checkpoints: SGLD chains localised at each checkpoint, on the training split;
    /// writes llc.jsonl (estimates, chains, loss traces), llc.csv and plots/llc/.
    Llc {
        /// Run directory (a binary-operation task).
        run_dir: PathBuf,
        /// Measure every N-th checkpoint (the last always) [default: at most 50 checkpoints].
        #[arg(long, conflicts_with = "steps")]
        every: Option<usize>,
        /// Measure only these checkpointed steps (comma-separated).
        #[arg(long, value_delimiter = ',')]
        steps: Option<Vec<u64>>,
        #[command(flatten)]
        sgld: SgldArgs,
        /// Threads [default: all cores].
        #[arg(long)]
        threads: Option<usize>,
    },
    /// List the presets.
    Presets,
    /// Draw the plots of a run from its metrics.jsonl.
    Plot {
        /// Run directory.
        run_dir: PathBuf,
    },
    /// Time the training step (figures are printed).
    Bench {
        /// Preset whose model and data are timed.
        #[arg(long, default_value = "nanda2023")]
        preset: String,
        /// Override one key (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Timed steps.
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// The whole suite: the nanda2023 step (fused and burn), a 2-layer version with
        /// minibatch 512, batched seeds against sequential ones, analyze over 400 checkpoints,
        /// peak memory.
        #[arg(long)]
        all: bool,
    },
}

fn main() {
    // Die quietly on a closed pipe (`groklab analyze ... | head`) instead of panicking in println!.
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Sweep { cmd } => sweep_command(cmd),
        Command::Train {
            preset,
            config,
            overrides,
            out,
            resume,
            force,
            no_plots,
            seeds,
            mem_limit,
            oversubscribe,
        } => {
            let limits = train::Limits {
                mem_bytes: match mem_limit {
                    Some(g) if g.is_finite() && g > 0.0 => g * (1u64 << 30) as f64,
                    Some(g) => {
                        return Err(GrokError::invalid(
                            "--mem-limit",
                            g,
                            "a positive number of GiB",
                        ))
                    }
                    None => train::resources::physical_memory(),
                },
                oversubscribe,
            };
            let plots = (!no_plots).then_some(report::plot_run as train::PlotFn);
            if let Some(seeds) = seeds {
                let cfg = build_config(&preset, config.as_deref(), &overrides)?;
                let out = out.unwrap_or_else(|| free_run_dir(&format!("{preset}-seeds")));
                println!("run directory: {}", out.display());
                let summaries = train::train_seeds(&cfg, &out, seeds, force, plots, &limits)?;
                for (i, s) in summaries.iter().enumerate() {
                    println!(
                        "seed_{i} (init_seed {}): {} | {:.1} s",
                        cfg.model.init_seed() + i as u64,
                        outcome(s),
                        s.last.wall_s
                    );
                }
                return Ok(());
            }
            let (cfg, out, resume) = match resume {
                Some(dir) => {
                    let text = groklab::rundir::RunDir::new(&dir)
                        .config_text()
                        .map_err(|e| GrokError::Checkpoint {
                            path: dir.join("config.toml"),
                            reason: format!("cannot resume: {e}"),
                        })?;
                    (RunConfig::build_from_toml(&text, &overrides)?, dir, true)
                }
                None => {
                    let cfg = build_config(&preset, config.as_deref(), &overrides)?;
                    (cfg, out.unwrap_or_else(|| free_run_dir(&preset)), false)
                }
            };
            println!("run directory: {}", out.display());
            let opts = TrainOptions {
                out: out.clone(),
                resume,
                force,
                plots,
                quiet: false,
                set: if resume { overrides } else { Vec::new() },
                limits,
            };
            let s = train::train(&cfg, &opts)?;
            println!(
                "done: step {} {} | {:.1} s",
                s.last.step,
                outcome(&s),
                s.last.wall_s
            );
            let rows = groklab::rundir::MetricsLog::load(&opts.out)?.rows;
            let changes = measures::phases::phase_changes_of_rows(&rows);
            let (classes, curves): (Vec<_>, Vec<_>) =
                (changes.iter()).partition(|(curve, _)| curve.starts_with("test_loss_class."));
            if !classes.is_empty() {
                println!(
                    "phase changes in {} per-class test losses (listed by groklab analyze)",
                    classes.len()
                );
            }
            for (curve, pc) in curves {
                println!(
                    "phase change of {curve}: onset step {}, steepest {}, end {}",
                    pc.onset,
                    pc.steepest,
                    pc.end
                        .map_or("not before the last step".into(), |e| e.to_string())
                );
            }
            Ok(())
        }
        Command::Analyze {
            run_dir,
            checkpoint,
            task,
            p,
            split,
            frac,
            act_fn,
            attn_rate,
            key_freqs,
            key_freq_rule,
            embed_threshold,
            json,
            threads,
            no_plots,
        } => {
            if !(embed_threshold > 0.0 && embed_threshold <= 1.0) {
                return Err(GrokError::invalid(
                    "--embed-threshold",
                    embed_threshold,
                    "a fraction in (0, 1]",
                ));
            }
            let rule = match (key_freqs, key_freq_rule.as_str()) {
                (Some(k), _) => KeyFreqRule::Fixed(k),
                (None, "consensus") => KeyFreqRule::Consensus(embed_threshold),
                (None, "neuron-argmax") => KeyFreqRule::NeuronArgmax,
                (None, "embed-norm") => KeyFreqRule::EmbedNorm(embed_threshold),
                (None, other) => {
                    return Err(GrokError::invalid(
                        "--key-freq-rule",
                        other,
                        "consensus, neuron-argmax, embed-norm",
                    ))
                }
            };
            train::set_threads(
                threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            );
            if let Some(path) = checkpoint {
                let task = CheckpointTask {
                    op: Operation::parse(&task)?,
                    p,
                    split: split.as_deref().map(parse_split).transpose()?,
                    frac,
                    act_fn: parse_enum("--act-fn", &act_fn, "relu, gelu")?,
                    attn_rate,
                };
                let m = measures::analyze_checkpoint(&path, &task, &rule)?;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&m).expect("serialisable")
                    );
                } else {
                    print!("{}", report::measures_table(&m));
                }
                return Ok(());
            }
            let run_dir = run_dir.expect("clap requires RUN_DIR without --checkpoint");
            let _lock = groklab::rundir::RunLock::acquire(&run_dir, "analyze")?;
            let opts = report::AnalyzeOptions {
                rule,
                embed_threshold,
                plots: !no_plots,
            };
            let lines = report::analysis_for(&run_dir).analyze(&run_dir, &opts)?;
            lines.iter().for_each(|l| println!("{l}"));
            Ok(())
        }
        Command::Report { run_dir, reanalyze } => {
            let _lock = groklab::rundir::RunLock::acquire(&run_dir, "report")?;
            let path = report::analysis_for(&run_dir).report(&run_dir, reanalyze)?;
            println!("report written to {}", path.display());
            Ok(())
        }
        Command::Compare {
            run_dirs,
            metrics,
            out,
        } => {
            let dirs = report::compare::expand_run_dirs(&run_dirs)?;
            let runs = report::compare::load_runs(&dirs)?;
            for r in &runs {
                println!("{}: {}", r.dir.display(), r.label);
            }
            for g in report::compare::group_summaries(&runs) {
                println!("{}", g.describe());
            }
            let page = report::compare::write_comparison(&runs, &metrics, &out)?;
            println!("comparison written to {}", page.display());
            Ok(())
        }
        Command::Saliency {
            run_dir,
            baseline,
            ig_steps,
            random_draws,
            every,
            threads,
        } => {
            train::set_threads(
                threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            );
            let _lock = groklab::rundir::RunLock::acquire(&run_dir, "saliency")?;
            let opts = measures::saliency::SaliencyOptions {
                baseline: parse_enum("--baseline", &baseline, "zero|mean")?,
                steps: ig_steps,
                random_draws,
                ..Default::default()
            };
            let n = groklab::rundir::list_steps(&run_dir).len();
            let every = every.unwrap_or(n.div_ceil(100).max(1));
            let (rows, analysis) = measures::saliency_run::saliency_run(&run_dir, &opts, every)?;
            for r in &rows {
                let at = |k: usize| r.saliency.ablation.iter().find(|a| a.k == k);
                let (top, random) = at(16).map_or((f64::NAN, f64::NAN), |a| {
                    (a.top.train_loss, a.random.train_loss)
                });
                let head = r.heads.ablation.get(1).map_or((f64::NAN, f64::NAN), |a| {
                    (a.top.train_loss, a.random.train_loss)
                });
                println!(
                    "step {:>6}  skewness {:+.3}  nonzero medians {:.3}  key share {:.3}  train loss with top-16 / random-16 neurons ablated {:.3e} / {:.3e}, top-1 / random-1 head {:.3e} / {:.3e}",
                    r.saliency.step, r.saliency.skewness, r.saliency.nonzero_medians, r.key_share, top, random, head.0, head.1
                );
            }
            let dir = report::plot_saliency(&run_dir, &rows, &analysis)?;
            println!(
                "wrote {} and plots in {}",
                run_dir.join("saliency.jsonl").display(),
                dir.display()
            );
            Ok(())
        }
        Command::Llc {
            run_dir,
            every,
            steps,
            sgld,
            threads,
        } => {
            train::set_threads(
                threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            );
            let _lock = groklab::rundir::RunLock::acquire(&run_dir, "llc")?;
            let opts = sgld.options()?;
            let n = groklab::rundir::list_steps(&run_dir).len();
            let every = every.unwrap_or(n.div_ceil(50).max(1));
            let clock = std::time::Instant::now();
            let rows = measures::llc_run::llc_run(&run_dir, &opts, every, steps.as_deref())?;
            for r in &rows {
                let e = &r.estimate;
                println!(
                    "step {:>6}  llc {:>9.3} ± {:.3} (s.e., {} chains)  L_n(w*) {:.4e}  nβ {:.1}",
                    r.step,
                    e.llc_mean,
                    e.llc_se,
                    e.llc_per_chain.len(),
                    e.init_loss,
                    e.nbeta
                );
            }
            let dir = report::llc_plots::plot_llc(&run_dir, &rows)?;
            // a report already written gains the LLC section now
            if run_dir.join("report.html").exists() {
                report::analysis_for(&run_dir).report(&run_dir, false)?;
            }
            println!(
                "{} checkpoints in {:.1} s; wrote {} and plots in {}",
                rows.len(),
                clock.elapsed().as_secs_f64(),
                run_dir.join("llc.jsonl").display(),
                dir.display()
            );
            Ok(())
        }
        Command::Presets => {
            for (name, _) in train::PRESETS {
                println!("{name:<28} {}", train::describe_preset(name)?);
            }
            Ok(())
        }
        Command::Plot { run_dir } => {
            let log = groklab::rundir::MetricsLog::load(&run_dir)?;
            groklab::report::plot_run(&run_dir, &log.rows)?;
            println!("plots written to {}", run_dir.join("plots").display());
            Ok(())
        }
        Command::Bench {
            preset,
            overrides,
            steps,
            all,
        } => {
            if all {
                return bench_suite(steps);
            }
            let cfg = RunConfig::build(&preset, None, &overrides)?;
            let r = train::bench_train_step(&cfg, steps)?;
            println!(
                "{preset}: {} rows, {} thread(s), compute {:?}, loss {:?}: {:.1} ms/step, {:.2} GFLOP/step, {:.1} GFLOP/s",
                r.rows,
                r.threads,
                cfg.train.compute_dtype,
                cfg.train.loss_dtype,
                r.ms_per_step,
                r.flops / 1e9,
                r.gflops
            );
            Ok(())
        }
    }
}

/// The reference the bench's percentages are taken against: the `gemm` crate's throughput on
/// the model's shapes, 105 GFLOP/s per core (f32), as the performance issue quoted it for a
/// 2-core AVX-512 Xeon (written 2026-11-21; not measured by this program).
const GEMM_GFLOPS_2_CORES: f64 = 2.0 * 105.0;

/// The training steps `groklab bench --all` times: (label, preset, overrides).
const BENCH_STEPS: [(&str, &str, &[&str]); 12] = [
    ("nanda2023", "nanda2023", &[]),
    (
        "nanda2023, burn engine",
        "nanda2023",
        &["train.engine=burn"],
    ),
    ("2-layer nanda2023, minibatch 512", "nanda2023", &TWO_LAYER),
    (
        "induction, authors' (2L attn-only, 128 x 85, f32 loss)",
        "nanda_induction_infinite",
        &[],
    ),
    (
        "induction, authors', burn engine",
        "nanda_induction_infinite",
        &["train.engine=burn"],
    ),
    ("induction, standard (f64 loss)", "induction_standard", &[]),
    (
        "skip trigrams (1L 1-head attn-only, 256 x 42)",
        "nanda_skip_trigram_infinite",
        &[],
    ),
    (
        "skip trigrams, burn engine",
        "nanda_skip_trigram_infinite",
        &["train.engine=burn"],
    ),
    (
        "5-digit addition (1L d512 / d_mlp 2048, 64 x 18)",
        "nanda_digit_add5_infinite",
        &[],
    ),
    (
        "5-digit addition d512, burn engine",
        "nanda_digit_add5_infinite",
        &["train.engine=burn"],
    ),
    (
        "5-digit addition (1L d128, 128 x 18)",
        "digit_add5_d128_infinite",
        &[],
    ),
    (
        "in-context regression (1L LSA, 2048 tasks)",
        "icl_1layer",
        &[],
    ),
];

/// `nanda2023` made 2-layer with minibatch 512 (Power et al.'s shape).
const TWO_LAYER: [&str; 2] = ["model.n_layers=2", "train.batch_size=512"];

fn overrides(o: &[&str]) -> Vec<String> {
    o.iter().map(|s| s.to_string()).collect()
}

/// `groklab bench --all`: prints every benchmark of the suite.
fn bench_suite(steps: usize) -> Result<()> {
    println!("training step (2 threads, f32 compute, the preset's loss precision; median of {steps} steps)");
    for (name, preset, set) in BENCH_STEPS {
        let cfg = RunConfig::build(preset, None, &overrides(set))?;
        let r = train::bench_train_step(&cfg, steps)?;
        println!(
            "{name:<52} {:>5} rows {:>7.1} ms/step  {:>6.2} GFLOP nominal ({:.2} executed)  {:>6.1} GFLOP/s effective  {:>5.1}% of gemm 2x105  [{}]",
            r.rows,
            r.ms_per_step,
            r.flops / 1e9,
            r.executed_flops / 1e9,
            r.gflops,
            100.0 * r.gflops / GEMM_GFLOPS_2_CORES,
            r.engine,
        );
    }
    println!("batched seeds (seed-steps/s: one after another vs side by side)");
    for (name, set) in [
        ("nanda2023", &[][..]),
        ("2-layer, minibatch 512", &TWO_LAYER[..]),
    ] {
        let cfg = RunConfig::build("nanda2023", None, &overrides(set))?;
        for seeds in [2, 4] {
            let r = train::bench_seeds(&cfg, seeds, steps)?;
            println!(
                "{name:<26} {seeds} seeds: {:>6.1} sequential, {:>6.1} batched seed-steps/s ({:.2}x)",
                r.sequential,
                r.batched,
                r.batched / r.sequential
            );
        }
    }
    let n = 400;
    let secs = measures::bench_analyze(n)?;
    println!(
        "analyze, {n} checkpoints of the nanda2023 model: {secs:.1} s ({:.0} ms per checkpoint, 2 threads)",
        1e3 * secs / n as f64
    );
    println!("peak memory: {:.0} MiB", train::peak_memory_mib());
    Ok(())
}

/// A finished run's last losses, and where the task has accuracy (not regression) its last
/// accuracies and the first steps at 99%.
fn outcome(s: &train::RunSummary) -> String {
    let l = &s.last;
    if !(l.train_acc.is_finite() || l.test_acc.is_finite()) {
        return format!(
            "train loss {:.3e} | test loss {:.3e}",
            l.train_loss, l.test_loss
        );
    }
    let at = |s: Option<u64>| s.map_or("never".to_string(), |s| format!("step {s}"));
    format!(
        "train loss {:.3e} acc {:.1}% | test loss {:.3e} acc {:.1}% | train acc >= 99% at {}, test acc >= 99% at {}",
        l.train_loss,
        100.0 * l.train_acc,
        l.test_loss,
        100.0 * l.test_acc,
        at(s.train_99_step),
        at(s.test_99_step),
    )
}

/// The preset, with the `--config` file (if any) and the `--set` overrides merged over it.
fn build_config(preset: &str, file: Option<&Path>, overrides: &[String]) -> Result<RunConfig> {
    let text = match file {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| GrokError::io(p, e))?),
        None => None,
    };
    RunConfig::build(preset, text.as_deref(), overrides)
}

/// `runs/<preset>`, or the first free `runs/<preset>-N`.
fn free_run_dir(preset: &str) -> PathBuf {
    let base = Path::new("runs");
    std::iter::once(base.join(preset))
        .chain((2..).map(|n| base.join(format!("{preset}-{n}"))))
        .find(|p| !p.exists())
        .expect("some directory is free")
}

/// `groklab llc`'s SGLD options, under devinterp's names ([`measures::llc::LlcOptions`]).
#[derive(clap::Args)]
struct SgldArgs {
    /// SGLD step size ε (devinterp `lr`).
    #[arg(long, default_value_t = measures::llc::LlcOptions::default().lr)]
    lr: f64,
    /// Pull toward the checkpoint's weights, γ (devinterp `localization`).
    #[arg(long, default_value_t = measures::llc::LlcOptions::default().localization)]
    localization: f64,
    /// Inverse temperature nβ [default: n / ln n, n the training examples].
    #[arg(long)]
    nbeta: Option<f64>,
    /// Chains (run in parallel).
    #[arg(long, default_value_t = measures::llc::LlcOptions::default().num_chains)]
    num_chains: usize,
    /// Draws per chain.
    #[arg(long, default_value_t = measures::llc::LlcOptions::default().num_draws)]
    num_draws: usize,
    /// SGLD steps before the first draw.
    #[arg(long, default_value_t = measures::llc::LlcOptions::default().num_burnin_steps)]
    num_burnin_steps: usize,
    /// SGLD steps between draws.
    #[arg(long, default_value_t = measures::llc::LlcOptions::default().num_steps_bw_draws)]
    num_steps_bw_draws: usize,
    /// Training examples per SGLD step.
    #[arg(long, default_value_t = measures::llc::LlcOptions::default().batch_size)]
    batch_size: usize,
    /// Seed of the batch order and the chains' noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How the minibatches walk the training set (devinterp `epoch_mode`): reshuffle (a
    /// fresh permutation every epoch) or cycle (devinterp 2.x's default: the first epoch's
    /// batches replayed; the leftover examples are never seen, and L_n(w*) is taken over the
    /// replayed ones).
    #[arg(long, default_value = "reshuffle")]
    epoch_mode: String,
    /// Whether batches are drawn from a seeded permutation (devinterp `shuffle`); false: the
    /// training split in its stored order (`split.json`), consecutive batches.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    shuffle: bool,
}

impl SgldArgs {
    /// The options, `--epoch-mode` checked.
    ///
    /// # Errors
    /// [`GrokError::InvalidValue`] for an epoch mode other than reshuffle or cycle.
    fn options(self) -> Result<measures::llc::LlcOptions> {
        Ok(measures::llc::LlcOptions {
            lr: self.lr,
            localization: self.localization,
            nbeta: self.nbeta,
            num_chains: self.num_chains,
            num_draws: self.num_draws,
            num_burnin_steps: self.num_burnin_steps,
            num_steps_bw_draws: self.num_steps_bw_draws,
            batch_size: self.batch_size,
            seed: self.seed,
            epoch_mode: parse_enum("--epoch-mode", &self.epoch_mode, "reshuffle, cycle")?,
            shuffle: self.shuffle,
        })
    }
}

/// Parses a snake_case enum value the way the config files spell it.
fn parse_enum<T: serde::de::DeserializeOwned>(
    field: &str,
    value: &str,
    allowed: &str,
) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(value.to_string()))
        .map_err(|_| GrokError::invalid(field, value, allowed))
}

fn sweep_command(cmd: SweepCommand) -> groklab::Result<()> {
    use groklab::sweep::{collect, runner, slurm, spec};
    let absolute = |p: &std::path::Path| std::path::absolute(p).map_err(|e| GrokError::io(p, e));
    match cmd {
        SweepCommand::Expand { file, preset } => {
            let s = match (file, preset) {
                (Some(f), _) => {
                    let text = std::fs::read_to_string(&f).map_err(|e| GrokError::io(&f, e))?;
                    spec::SweepSpec::parse(&text)?
                }
                (None, Some(name)) => spec::SweepSpec::preset(&name)?,
                (None, None) => unreachable!("clap requires one"),
            };
            let lines = s.expand()?;
            for l in &lines {
                println!("{}", serde_json::to_string(l).expect("serialisable"));
            }
            eprintln!("{} runs", lines.len());
            Ok(())
        }
        SweepCommand::Run {
            manifest,
            out,
            jobs,
            index,
            shard,
        } => {
            let lines = spec::read_manifest(&manifest)?;
            let selected =
                runner::Selection::resolve(index, shard.as_deref())?.lines(lines.len())?;
            let (trained, skipped) = runner::run_sweep(&manifest, &lines, &selected, &out, jobs)?;
            println!(
                "sweep: {trained} trained, {skipped} already done, of {} selected",
                selected.len()
            );
            Ok(())
        }
        SweepCommand::Collect { runs, by_setting } => {
            let (rows, unfinished) = collect::collect(&runs)?;
            if by_setting {
                print!("{}", collect::by_setting_csv(&rows));
            } else {
                print!("{}", collect::to_csv(&rows));
            }
            if unfinished > 0 {
                eprintln!("{unfinished} run(s) not finished (no DONE marker) left out");
            }
            Ok(())
        }
        SweepCommand::Plot { runs, x, y } => {
            let (rows, unfinished) = collect::collect(&runs)?;
            let drawn = report::sweep_plots::plot_sweep(&runs, &rows, x.as_deref(), y.as_deref())?;
            let page = report::sweep_plots::write_sweep_report(&runs, &rows, &drawn, unfinished)?;
            println!(
                "plots in {}; page {}",
                runs.join("plots").display(),
                page.display()
            );
            Ok(())
        }
        SweepCommand::Slurm {
            manifest,
            out,
            cpus,
            time,
            partition,
            max_parallel,
        } => {
            let lines = spec::read_manifest(&manifest)?;
            let exe = std::env::current_exe()
                .map_err(|e| GrokError::io(std::path::Path::new("groklab"), e))?;
            let opts = slurm::SlurmOptions {
                job_name: "groklab-sweep".into(),
                cpus,
                time,
                partition,
                max_parallel,
            };
            print!(
                "{}",
                slurm::sbatch_script(
                    &exe,
                    &absolute(&manifest)?,
                    &absolute(&out)?,
                    lines.len(),
                    &opts
                )
            );
            Ok(())
        }
    }
}
