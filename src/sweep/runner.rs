//! Running a manifest's runs, idempotently: run `id` lives in `<out>/<id>/`; a finished run has
//! a `DONE` marker (written last, atomically) and is skipped; a stopped one resumes from its
//! latest checkpoint (exactly: the trainer's resume); a run stopped before its first
//! checkpoint starts over. One line of progress per run and event, for wrappers:
//! `sweep <i>/<n> <id> start|resume|skip|done ...`.

use super::spec::ManifestLine;
use crate::error::{GrokError, Result};
use crate::rundir::{atomic_write, prepare_dir, resumable_step, RunLock};
use crate::train::{train, train_side_by_side, RunConfig, RunSummary, TrainOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Environment variables a scheduler sets to a task's index, in the order they are read:
/// Slurm job arrays, Kubernetes Indexed Jobs, HyperQueue.
pub const INDEX_VARS: [&str; 3] = ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX", "HQ_TASK_ID"];

/// Which lines of a manifest a `sweep run` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Every line.
    All,
    /// Line `i` (0-based).
    Index(usize),
    /// Lines `i` with `i mod n = k`.
    Shard {
        /// This shard, 0-based.
        k: usize,
        /// Shards in all.
        n: usize,
    },
}

impl Selection {
    /// `--index`, else `--shard k/n`, else the first of [`INDEX_VARS`] set, else all.
    ///
    /// # Errors
    /// A malformed `--shard` or index variable, naming it and the expected form.
    pub fn resolve(index: Option<usize>, shard: Option<&str>) -> Result<Self> {
        if let Some(i) = index {
            return Ok(Self::Index(i));
        }
        if let Some(s) = shard {
            let parsed = s
                .split_once('/')
                .and_then(|(k, n)| Some((k.parse().ok()?, n.parse().ok()?)))
                .filter(|&(k, n): &(usize, usize)| n > 0 && k < n);
            return parsed
                .map(|(k, n)| Self::Shard { k, n })
                .ok_or_else(|| GrokError::invalid("--shard", s, "k/n with 0 ≤ k < n, e.g. 0/4"));
        }
        for var in INDEX_VARS {
            if let Ok(v) = std::env::var(var) {
                return v.trim().parse().map(Self::Index).map_err(|_| {
                    GrokError::invalid(var, v, "a non-negative integer (the task index)")
                });
            }
        }
        Ok(Self::All)
    }

    /// The selected line numbers of a manifest of `len` lines.
    ///
    /// # Errors
    /// An index past the manifest's end.
    pub fn lines(self, len: usize) -> Result<Vec<usize>> {
        match self {
            Self::All => Ok((0..len).collect()),
            Self::Index(i) if i < len => Ok(vec![i]),
            Self::Index(i) => Err(GrokError::invalid(
                "--index",
                i,
                format!("0..{} (the manifest has {len} runs)", len.saturating_sub(1)),
            )),
            Self::Shard { k, n } => Ok((k..len).step_by(n).collect()),
        }
    }
}

/// `<out>/<id>`.
pub fn run_dir(out: &Path, id: &str) -> PathBuf {
    out.join(id)
}

/// Whether run `id` finished (its `DONE` marker exists).
pub fn is_done(out: &Path, id: &str) -> bool {
    run_dir(out, id).join("DONE").exists()
}

/// What happened to one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Finished before: nothing done.
    Skipped,
    /// Another process holds the line's run directory (a second `sweep run` of the manifest
    /// trains it): nothing done.
    Busy,
    /// Trained (fresh or resumed) to its last step.
    Trained,
}

/// Takes line `id`'s lock for this process, or says who holds it.
fn lock_line(dir: &Path, tag: &str) -> Result<Option<RunLock>> {
    std::fs::create_dir_all(dir).map_err(|e| GrokError::io(dir, e))?;
    match RunLock::acquire(dir, "sweep") {
        Ok(lock) => Ok(Some(lock)),
        Err(GrokError::Locked { pid, .. }) => {
            println!("{tag} busy (pid {pid} holds it)");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Readies line `line`'s directory under its lock: whether to resume (a checkpoint with its
/// optimiser state), else the directory emptied of this run's own files — refused when it holds
/// anything else, or a `config.toml` that is not the line's.
fn ready_line(line: &ManifestLine, dir: &Path) -> Result<bool> {
    if resumable_step(dir).is_some() {
        return Ok(true);
    }
    if let Ok(text) = crate::rundir::RunDir::new(dir).config_text() {
        if text != line.config {
            return Err(GrokError::data_file(
                dir.join("config.toml").display(),
                format!(
                    "not the config of sweep line {}; refusing to restart over it",
                    line.id
                ),
            ));
        }
    }
    prepare_dir(dir, true)?;
    Ok(false)
}

/// Runs manifest line `i` of `lines` into `out` (see the module docs) under the line's lock;
/// prints its progress lines.
///
/// # Errors
/// The run's own errors (config, I/O, training); a directory holding files that are not the
/// line's run's.
pub fn run_line(lines: &[ManifestLine], i: usize, out: &Path) -> Result<Outcome> {
    let line = &lines[i];
    let tag = format!("sweep {}/{} {}", i + 1, lines.len(), line.id);
    let dir = run_dir(out, &line.id);
    if dir.join("DONE").exists() {
        println!("{tag} skip (done)");
        return Ok(Outcome::Skipped);
    }
    let cfg = RunConfig::from_toml(&line.config)?;
    let Some(_lock) = lock_line(&dir, &tag)? else {
        return Ok(Outcome::Busy);
    };
    // another process may have finished it while this one waited for the lock
    if dir.join("DONE").exists() {
        println!("{tag} skip (done)");
        return Ok(Outcome::Skipped);
    }
    let resume = ready_line(line, &dir)?;
    let swept: Vec<String> = line.swept.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "{tag} {} {}",
        if resume { "resume" } else { "start" },
        swept.join(" ")
    );
    let start = Instant::now();
    let opts = TrainOptions {
        out: dir.clone(),
        resume,
        force: false,
        plots: None,
        quiet: true,
        set: Vec::new(),
        limits: Default::default(),
    };
    let summary = train(&cfg, &opts)?;
    finish_line(line, &dir, &summary, &tag, start.elapsed().as_secs_f64())?;
    Ok(Outcome::Trained)
}

/// Writes a trained line's `sweep.json` and, last, its `DONE`; prints its done line.
fn finish_line(
    line: &ManifestLine,
    dir: &Path,
    summary: &RunSummary,
    tag: &str,
    secs: f64,
) -> Result<()> {
    let sweep_json =
        serde_json::json!({ "id": line.id, "preset": line.preset, "swept": line.swept });
    atomic_write(&dir.join("sweep.json"), sweep_json.to_string().as_bytes())?;
    let last = &summary.last;
    atomic_write(
        &dir.join("DONE"),
        format!("step {}\n", last.step).as_bytes(),
    )?;
    println!(
        "{tag} done step {} train_loss {:.3e} test_loss {:.3e} test_acc {:.4} in {secs:.1} s",
        last.step, last.train_loss, last.test_loss, last.test_acc,
    );
    Ok(())
}

/// The selected lines in groups to train together: fresh lines (no `DONE`, no checkpoint)
/// whose configs differ only in `model.init_seed` form one group, trained side by side as
/// batched seeds; every other line is a group of its own. Groups keep the order of their
/// first lines.
///
/// # Errors
/// A line whose config does not parse.
pub fn seed_groups(
    lines: &[ManifestLine],
    selected: &[usize],
    out: &Path,
) -> Result<Vec<Vec<usize>>> {
    let mut groups: Vec<(Option<String>, Vec<usize>)> = Vec::new();
    for &i in selected {
        let dir = run_dir(out, &lines[i].id);
        let fresh = !dir.join("DONE").exists() && resumable_step(&dir).is_none();
        let mut cfg = RunConfig::from_toml(&lines[i].config)?;
        // early stopping ends runs at different steps: those run alone
        let key = (fresh && cfg.train.stop_at_test_acc == 0.0).then(|| {
            cfg.model.set_init_seed(0);
            cfg.to_toml()
        });
        match groups.iter_mut().find(|(k, _)| key.is_some() && *k == key) {
            Some((_, g)) => g.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    Ok(groups.into_iter().map(|(_, g)| g).collect())
}

/// Trains the fresh lines `group` (configs equal but for the seed) side by side, each under its
/// lock; lines another process holds (or finished meanwhile) are left out. Returns how many
/// trained.
fn run_group(lines: &[ManifestLine], group: &[usize], out: &Path) -> Result<usize> {
    let start = Instant::now();
    let (mut runs, mut kept, mut locks) = (Vec::new(), Vec::new(), Vec::new());
    for &i in group {
        let line = &lines[i];
        let tag = format!("sweep {}/{} {}", i + 1, lines.len(), line.id);
        let dir = run_dir(out, &line.id);
        let Some(lock) = lock_line(&dir, &tag)? else {
            continue;
        };
        if dir.join("DONE").exists() || ready_line(line, &dir)? {
            // finished or started by another process meanwhile: left to the next sweep run
            println!("{tag} skip (taken by another process)");
            continue;
        }
        let swept: Vec<String> = line.swept.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{tag} start (batched, {} seeds) {}",
            group.len(),
            swept.join(" ")
        );
        runs.push((RunConfig::from_toml(&line.config)?, dir));
        kept.push(i);
        locks.push(lock);
    }
    let summaries = train_side_by_side(&runs, false, None, true, &Default::default())?;
    for (&i, summary) in kept.iter().zip(&summaries) {
        let tag = format!("sweep {}/{} {}", i + 1, lines.len(), lines[i].id);
        let secs = start.elapsed().as_secs_f64();
        finish_line(&lines[i], &run_dir(out, &lines[i].id), summary, &tag, secs)?;
    }
    Ok(kept.len())
}

/// Runs the `selected` lines of the manifest at `manifest` into `out`: in this process when
/// `jobs` is 1 (fresh lines that differ only in the seed side by side, as batched seeds:
/// [`seed_groups`]), else in up to `jobs` child processes of this binary (`sweep run --index
/// i`), started in line order. Returns how many runs were trained and how many skipped.
///
/// # Errors
/// The first failing run's error (in-process), or which child runs failed.
pub fn run_sweep(
    manifest: &Path,
    lines: &[ManifestLine],
    selected: &[usize],
    out: &Path,
    jobs: usize,
) -> Result<(usize, usize)> {
    std::fs::create_dir_all(out).map_err(|e| GrokError::io(out, e))?;
    let (mut trained, mut skipped) = (0, 0);
    if jobs <= 1 {
        for group in seed_groups(lines, selected, out)? {
            if group.len() > 1 {
                let n = run_group(lines, &group, out)?;
                trained += n;
                skipped += group.len() - n;
                continue;
            }
            match run_line(lines, group[0], out)? {
                Outcome::Trained => trained += 1,
                Outcome::Skipped | Outcome::Busy => skipped += 1,
            }
        }
        return Ok((trained, skipped));
    }
    let exe = std::env::current_exe().map_err(|e| GrokError::io(Path::new("groklab"), e))?;
    let mut pending: Vec<usize> = selected
        .iter()
        .copied()
        .filter(|&i| {
            let done = is_done(out, &lines[i].id);
            if done {
                println!(
                    "sweep {}/{} {} skip (done)",
                    i + 1,
                    lines.len(),
                    lines[i].id
                );
                skipped += 1;
            }
            !done
        })
        .rev()
        .collect();
    let mut running: Vec<(usize, std::process::Child)> = Vec::new();
    let mut failed = Vec::new();
    while !pending.is_empty() || !running.is_empty() {
        while running.len() < jobs {
            let Some(i) = pending.pop() else { break };
            let child = Command::new(&exe)
                .args(["sweep", "run"])
                .arg(manifest)
                .arg("--out")
                .arg(out)
                .args(["--index", &i.to_string(), "--jobs", "1"])
                .spawn()
                .map_err(|e| GrokError::io(&exe, e))?;
            running.push((i, child));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut k = 0;
        while k < running.len() {
            match running[k]
                .1
                .try_wait()
                .map_err(|e| GrokError::io(&exe, e))?
            {
                Some(status) => {
                    let (i, _) = running.swap_remove(k);
                    if status.success() {
                        trained += 1;
                    } else {
                        failed.push(lines[i].id.clone());
                    }
                }
                None => k += 1,
            }
        }
    }
    if failed.is_empty() {
        Ok((trained, skipped))
    } else {
        Err(GrokError::data_file(
            manifest.display(),
            format!(
                "{} sweep run(s) failed: {} (rerun the sweep to retry them)",
                failed.len(),
                failed.join(", ")
            ),
        ))
    }
}
