//! Fault injection: a run, and a two-line sweep, each SIGKILLed 20 times at seeded random
//! moments and resumed after every kill, end byte-identical to an uninterrupted one: every
//! checkpoint file (weights and optimiser state), the config, the split, and the metrics (wall
//! time aside). A kill may land anywhere: before the directory exists, while a checkpoint or
//! the metrics are half-written (atomic writes leave a `.tmp`), while the lock is held.

use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{assert_success, groklab, lines_without_wall_time, stdout_of, TINY};

const KILLS: usize = 20;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `cmd` and SIGKILLs it after `delay` unless it ends first; whether it was killed.
fn kill_after(mut cmd: Command, delay: Duration) -> bool {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    true
}

/// Every file of a run directory that must match, relative: the checkpoints, config, split.
fn files(run: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| format!("checkpoints/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    names.extend(["config.toml".into(), "split.json".into()]);
    names.sort();
    names
}

fn assert_identical(a: &Path, b: &Path) {
    assert_eq!(files(a), files(b), "{} vs {}", a.display(), b.display());
    for f in files(a) {
        let (x, y) = (
            std::fs::read(a.join(&f)).unwrap(),
            std::fs::read(b.join(&f)).unwrap(),
        );
        assert!(x == y, "{f} differs after the kills");
    }
    assert_eq!(lines_without_wall_time(a), lines_without_wall_time(b));
    assert!(!a.join(".lock").exists(), "the lock outlived the run");
}

fn train_args<'a>(out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["train", "--no-plots", "--out", s(out)];
    args.extend(TINY);
    args.extend(["--set", "train.steps=2000", "--set", "train.batch_size=64"]);
    args.extend(extra);
    args
}

#[test]
fn a_run_killed_20_times_ends_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let start = Instant::now();
    assert_success(&groklab(&train_args(&whole, &[])).output().unwrap());
    let full = start.elapsed();

    let killed = dir.path().join("killed");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(24);
    let (mut kills, mut tries) = (0, 0);
    while kills < KILLS {
        tries += 1;
        assert!(tries < 10 * KILLS, "the run kept finishing before its kill");
        // a moment within the first 4% of the whole run's time (process start-up included): 20
        // such kills leave, on average, more than half of the run to go
        let delay = full.mul_f64(rng.random_range(0.0..0.04));
        // what a user does after a kill: resume, or start over when nothing can be resumed
        let cmd = if groklab::rundir::resumable_step(&killed).is_some() {
            groklab(&["train", "--no-plots", "--resume", s(&killed)])
        } else {
            groklab(&train_args(&killed, &["--force"]))
        };
        if kill_after(cmd, delay) {
            kills += 1;
        } else {
            break; // finished: the remaining kills cannot land
        }
    }
    assert_eq!(kills, KILLS, "the run finished before its last kill");
    if groklab::rundir::resumable_step(&killed).is_some() {
        assert_success(
            &groklab(&["train", "--no-plots", "--resume", s(&killed)])
                .output()
                .unwrap(),
        );
    } else {
        assert_success(
            &groklab(&train_args(&killed, &["--force"]))
                .output()
                .unwrap(),
        );
    }
    eprintln!("{kills} kills landed in {tries} tries");
    assert_identical(&killed, &whole);
}

#[test]
fn a_two_line_sweep_killed_20_times_ends_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sweep.toml");
    std::fs::write(
        &file,
        common::tiny_sweep(1000, "\"task.frac_train\" = [0.3, 0.6]"),
    )
    .unwrap();
    let m = dir.path().join("m.jsonl");
    std::fs::write(&m, stdout_of(&["sweep", "expand", s(&file)])).unwrap();
    let ids = common::manifest_ids(&std::fs::read_to_string(&m).unwrap());
    let sweep = |out: &Path| groklab(&["sweep", "run", s(&m), "--out", s(out)]);
    let whole = dir.path().join("whole");
    let start = Instant::now();
    assert_success(&sweep(&whole).output().unwrap());
    let full = start.elapsed();

    let killed = dir.path().join("killed");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2024);
    let mut kills = 0;
    for _ in 0..KILLS {
        if !kill_after(sweep(&killed), full.mul_f64(rng.random_range(0.0..0.03))) {
            break;
        }
        kills += 1;
    }
    assert_eq!(kills, KILLS, "the sweep finished before its last kill");
    assert_success(&sweep(&killed).output().unwrap());
    eprintln!("{kills} kills landed");
    for id in &ids {
        assert_identical(&killed.join(id), &whole.join(id));
        assert!(killed.join(id).join("DONE").exists());
    }
}
