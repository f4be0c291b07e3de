//! Sweeps end to end: expansion is deterministic, a sweep runs in parallel workers, a finished
//! sweep reruns as a no-op, a killed sweep completes on rerun with every run once and exactly
//! as an unbroken one, schedulers' index variables pick one line, and collect/plot summarise.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::{groklab, lines_without_wall_time, stdout_of as out_of};

/// 2 fractions × 2 seeds, 150 steps.
fn sweep_file() -> String {
    common::tiny_sweep(
        150,
        "\"task.frac_train\" = [0.3, 0.8]\n\"model.init_seed\" = [0, 1]",
    )
}

/// Writes the sweep file and its manifest under `dir`; returns the manifest and its ids.
fn manifest(dir: &Path) -> (PathBuf, Vec<String>) {
    let file = dir.join("sweep.toml");
    std::fs::write(&file, sweep_file()).unwrap();
    let text = out_of(&["sweep", "expand", file.to_str().unwrap()]);
    assert_eq!(
        text,
        out_of(&["sweep", "expand", file.to_str().unwrap()]),
        "deterministic"
    );
    let path = dir.join("manifest.jsonl");
    std::fs::write(&path, &text).unwrap();
    (path, common::manifest_ids(&text))
}

fn done_dirs(runs: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(runs)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            p.join("DONE")
                .exists()
                .then(|| p.file_name().unwrap().to_string_lossy().to_string())
        })
        .collect();
    v.sort();
    v
}

/// Acceptance 1: the manifest is stable; `--jobs 2` runs all 4; a rerun trains nothing and
/// touches no run; collect has one row per run with its phase; plot draws the diagram.
#[test]
fn sweep_runs_in_parallel_and_reruns_as_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let (m, mut ids) = manifest(dir.path());
    assert_eq!(ids.len(), 4);
    let runs = dir.path().join("runs");
    let m = m.to_str().unwrap();
    let r = runs.to_str().unwrap();
    let first = out_of(&["sweep", "run", m, "--out", r, "--jobs", "2"]);
    assert!(
        first.contains("sweep: 4 trained, 0 already done"),
        "{first}"
    );
    ids.sort();
    assert_eq!(done_dirs(&runs), ids);
    let stamp = |id: &str| {
        std::fs::metadata(runs.join(id).join("metrics.jsonl"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before: Vec<_> = ids.iter().map(|i| stamp(i)).collect();
    let again = out_of(&["sweep", "run", m, "--out", r]);
    assert!(
        again.contains("sweep: 0 trained, 4 already done"),
        "{again}"
    );
    assert!(
        !again.contains(" start ") && !again.contains(" resume "),
        "{again}"
    );
    assert_eq!(before, ids.iter().map(|i| stamp(i)).collect::<Vec<_>>());

    let csv = out_of(&["sweep", "collect", r]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(
        lines[0].starts_with("id,model.init_seed,task.frac_train,steps,"),
        "{}",
        lines[0]
    );
    for l in &lines[1..] {
        let phase = l.rsplit(',').next().unwrap();
        assert!(
            ["comprehension", "grokking", "memorisation", "confusion"].contains(&phase),
            "{l}"
        );
        assert!(ids.iter().any(|id| l.starts_with(id.as_str())));
    }
    let plot = out_of(&["sweep", "plot", r]);
    assert!(plot.contains("sweep.html"), "{plot}");
    assert!(runs.join("plots/phase_diagram.svg").exists());
    assert!(runs.join("plots/time_to_grok.svg").exists());
    let page = std::fs::read_to_string(runs.join("sweep.html")).unwrap();
    assert!(page.contains("<svg") && page.matches("<tr>").count() == 5);
}

/// Acceptance 2: a sweep killed while its second run trains completes on rerun; every run is
/// there once, finished, and the interrupted run logs what an unbroken run of its line logs.
#[test]
fn killed_sweep_completes_with_no_lost_or_duplicated_run() {
    let dir = tempfile::tempdir().unwrap();
    let (m, ids) = manifest(dir.path());
    let runs = dir.path().join("runs");
    let mut child = Command::new(env!("CARGO_BIN_EXE_groklab"))
        .args([
            "sweep",
            "run",
            m.to_str().unwrap(),
            "--out",
            runs.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // wait until the first run is done and the second has a checkpoint past step 0
    let second = runs.join(&ids[1]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        // resumable: weights and optimiser state both written (counting files would also count
        // an optimiser file whose weights are still a temporary)
        let past_step_0 = groklab::rundir::resumable_step(&second).is_some_and(|s| s > 0);
        if runs.join(&ids[0]).join("DONE").exists() && past_step_0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep did not progress"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !runs.join(&ids[1]).join("DONE").exists(),
        "killed before the second run finished"
    );
    let rerun = out_of(&[
        "sweep",
        "run",
        m.to_str().unwrap(),
        "--out",
        runs.to_str().unwrap(),
    ]);
    assert!(rerun.contains(&format!("{} skip", ids[0])), "{rerun}");
    assert!(rerun.contains(&format!("{} resume", ids[1])), "{rerun}");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(done_dirs(&runs), sorted);
    for id in &ids {
        let steps: Vec<u64> = std::fs::read_to_string(runs.join(id).join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert!(steps.windows(2).all(|w| w[0] < w[1]), "{id}: {steps:?}");
        assert_eq!(*steps.last().unwrap(), 150);
    }
    // the interrupted run against the same line run alone, unbroken
    let alone = dir.path().join("alone");
    out_of(&[
        "sweep",
        "run",
        m.to_str().unwrap(),
        "--out",
        alone.to_str().unwrap(),
        "--index",
        "1",
    ]);
    let (resumed, unbroken) = (
        lines_without_wall_time(&runs.join(&ids[1])),
        lines_without_wall_time(&alone.join(&ids[1])),
    );
    assert_eq!(resumed.len(), unbroken.len());
    for (a, b) in resumed.iter().zip(&unbroken) {
        assert_eq!(a, b, "the interrupted run departs from the unbroken one");
    }
}

/// A scheduler's index variable picks one line; `--shard` picks every n-th; a bad shard is a
/// one-line error naming it; in one process the seeds of a grid point train side by side.
#[test]
fn scheduler_indices_and_shards() {
    let dir = tempfile::tempdir().unwrap();
    let (m, ids) = manifest(dir.path());
    let m = m.to_str().unwrap();
    for (var, i) in [
        ("SLURM_ARRAY_TASK_ID", 2),
        ("JOB_COMPLETION_INDEX", 0),
        ("HQ_TASK_ID", 3),
    ] {
        let runs = dir.path().join(var);
        let out = groklab(&["sweep", "run", m, "--out", runs.to_str().unwrap()])
            .env(var, i.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(done_dirs(&runs), vec![ids[i].clone()], "{var}");
    }
    let runs = dir.path().join("shard");
    out_of(&[
        "sweep",
        "run",
        m,
        "--out",
        runs.to_str().unwrap(),
        "--shard",
        "1/2",
    ]);
    let mut want = vec![ids[1].clone(), ids[3].clone()];
    want.sort();
    assert_eq!(done_dirs(&runs), want);
    let out = groklab(&[
        "sweep",
        "run",
        m,
        "--out",
        runs.to_str().unwrap(),
        "--shard",
        "2/2",
    ])
    .output()
    .unwrap();
    common::assert_error(&out, &["--shard", "k/n"]);
    // in one process, fresh lines that differ only in the seed train side by side
    let batched = dir.path().join("batched");
    let text = out_of(&["sweep", "run", m, "--out", batched.to_str().unwrap()]);
    assert_eq!(text.matches("(batched, 2 seeds)").count(), 4, "{text}");
    let mut all = ids.clone();
    all.sort();
    assert_eq!(done_dirs(&batched), all);
    let script = out_of(&["sweep", "slurm", m, "--out", runs.to_str().unwrap()]);
    assert!(
        script.contains("#SBATCH --array=0-3") && script.contains("sweep run"),
        "{script}"
    );
}

/// `train.stop_at_test_acc` ends a run at its first logged step at that test accuracy, with a
/// checkpoint after it; resuming the stopped run changes nothing.
#[test]
fn runs_stop_at_a_test_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("stop");
    let mut args = vec!["train", "--no-plots", "--out", run.to_str().unwrap()];
    args.extend(common::TINY);
    args.extend([
        "--set",
        "task.frac_train=0.8",
        "--set",
        "train.steps=400",
        "--set",
        "train.stop_at_test_acc=0.8",
    ]);
    out_of(&args);
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let acc = |r: &serde_json::Value| r["test_acc"].as_f64().unwrap();
    let last = rows.last().unwrap();
    assert!(acc(last) >= 0.8 && rows[..rows.len() - 1].iter().all(|r| acc(r) < 0.8));
    let step = last["step"].as_u64().unwrap();
    assert!(step < 400, "stopped early");
    assert!(run
        .join(format!(
            "checkpoints/step_{:06}.optim.safetensors",
            step + 1
        ))
        .exists());
    let before = lines_without_wall_time(&run);
    out_of(&["train", "--no-plots", "--resume", run.to_str().unwrap()]);
    assert_eq!(lines_without_wall_time(&run), before);
}

/// Two sweep files run into one directory, the second setting `train.weight_decay` for all its
/// runs (so no run has it among its swept keys): collect still tells the settings apart, by the
/// config key that differs, and `--by-setting` pools only runs of the same configuration.
#[test]
fn collect_separates_sweeps_that_share_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let grid = "\"model.init_seed\" = [0, 1]";
    let plain = common::tiny_sweep(40, grid);
    let no_decay = plain.replace("[set]\n", "[set]\n\"train.weight_decay\" = 0.0\n");
    for (name, text) in [("a", &plain), ("b", &no_decay)] {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, text).unwrap();
        let manifest = dir.path().join(format!("{name}.jsonl"));
        std::fs::write(
            &manifest,
            out_of(&["sweep", "expand", file.to_str().unwrap()]),
        )
        .unwrap();
        out_of(&[
            "sweep",
            "run",
            manifest.to_str().unwrap(),
            "--out",
            runs.to_str().unwrap(),
        ]);
    }
    let csv = out_of(&["sweep", "collect", runs.to_str().unwrap(), "--by-setting"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("train.weight_decay,runs,"), "{csv}");
    let mut settings: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    settings.sort_unstable();
    assert_eq!(settings, ["0.0", "1.0"], "{csv}");
    assert!(
        lines[1..].iter().all(|l| l.split(',').nth(1) == Some("2")),
        "two seeds each: {csv}"
    );
}
