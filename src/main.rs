//! The `groklab` command line: parses arguments and hands over to the library.

use clap::{Parser, Subcommand};
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
enum Command {
    /// Train a model; writes config, split, metrics, checkpoints and plots to the run directory.
    Train {
        /// Embedded preset to start from (see `groklab presets`).
        #[arg(long, default_value = "quick")]
        preset: String,
        /// TOML file merged over the preset (only the keys that differ need be given).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override one key, e.g. `--set train.lr=3e-3` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Run directory [default: runs/<preset>, or runs/<preset>-N if taken].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the stopped run in this directory from its latest checkpoint.
        #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["out", "config", "force"])]
        resume: Option<PathBuf>,
        /// Overwrite a non-empty run directory.
        #[arg(long)]
        force: bool,
        /// Skip drawing the plots at the end.
        #[arg(long)]
        no_plots: bool,
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
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train {
            preset,
            config,
            overrides,
            out,
            resume,
            force,
            no_plots,
        } => {
            let (cfg, out, resume) = match resume {
                Some(dir) => {
                    let path = dir.join("config.toml");
                    let text =
                        std::fs::read_to_string(&path).map_err(|e| GrokError::Checkpoint {
                            path: path.clone(),
                            reason: format!("cannot resume: {e}"),
                        })?;
                    (RunConfig::build_from_toml(&text, &overrides)?, dir, true)
                }
                None => {
                    let file = match &config {
                        Some(p) => {
                            Some(std::fs::read_to_string(p).map_err(|e| GrokError::io(p, e))?)
                        }
                        None => None,
                    };
                    let cfg = RunConfig::build(&preset, file.as_deref(), &overrides)?;
                    (cfg, out.unwrap_or_else(|| free_run_dir(&preset)), false)
                }
            };
            println!("run directory: {}", out.display());
            let opts = TrainOptions {
                out: out.clone(),
                resume,
                force,
                plots: !no_plots,
            };
            let s = train::train(&cfg, &opts)?;
            let at = |s: Option<u64>| s.map_or("never".to_string(), |s| format!("step {s}"));
            println!(
                "done: step {} train loss {:.3e} acc {:.1}% | test loss {:.3e} acc {:.1}% | train acc >= 99% at {}, test acc >= 99% at {} | {:.1} s",
                s.last.step,
                s.last.train_loss,
                100.0 * s.last.train_acc,
                s.last.test_loss,
                100.0 * s.last.test_acc,
                at(s.train_99_step),
                at(s.test_99_step),
                s.last.wall_s,
            );
            Ok(())
        }
        Command::Presets => {
            for (name, description, _) in train::PRESETS {
                println!("{name:<10} {description}");
            }
            Ok(())
        }
        Command::Plot { run_dir } => {
            let log = train::MetricsLog::load(&run_dir)?;
            groklab::report::plot_run(&run_dir, &log.rows)?;
            println!("plots written to {}", run_dir.join("plots").display());
            Ok(())
        }
        Command::Bench {
            preset,
            overrides,
            steps,
        } => {
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

/// `runs/<preset>`, or the first free `runs/<preset>-N`.
fn free_run_dir(preset: &str) -> PathBuf {
    let base = Path::new("runs");
    std::iter::once(base.join(preset))
        .chain((2..).map(|n| base.join(format!("{preset}-{n}"))))
        .find(|p| !p.exists())
        .expect("some directory is free")
}
