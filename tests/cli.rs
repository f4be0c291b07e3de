//! The command line end to end: bad input gives one-line errors naming the field and the allowed
//! values and writes nothing; a run killed with SIGKILL and resumed ends with the same metrics as
//! an uninterrupted one.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::{assert_error, assert_success, groklab, lines_without_wall_time, train, TINY};

fn bad_config(extra: &[&str], needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    assert_error(&train(&out, extra), needles);
    assert!(!out.exists(), "a rejected config wrote {}", out.display());
}

#[test]
fn unknown_task_names_the_allowed_tasks() {
    bad_config(
        &["--set", "task.name=addition"],
        &["task.name", "addition", "add|sub|mul|div"],
    );
}

#[test]
fn unknown_preset_names_the_presets() {
    let out = groklab(&["train", "--preset", "nanda", "--out", "/nonexistent/x"])
        .output()
        .unwrap();
    assert_error(&out, &["--preset", "nanda", "quick|nanda2023"]);
}

#[test]
fn non_prime_modulus_is_rejected_for_division() {
    bad_config(
        &["--set", "task.name=div", "--set", "task.p=24"],
        &["task.p", "24", "prime"],
    );
}

#[test]
fn fraction_outside_unit_interval_is_rejected() {
    bad_config(
        &["--set", "task.frac_train=1.5"],
        &["task.frac_train", "(0, 1]"],
    );
    bad_config(
        &["--set", "task.frac_train=0"],
        &["task.frac_train", "(0, 1]"],
    );
}

#[test]
fn unknown_config_key_names_the_allowed_keys() {
    bad_config(
        &["--set", "train.learning_rate=1"],
        &["train.learning_rate", "train.lr", "task.p"],
    );
}

#[test]
fn wrongly_typed_value_names_the_field() {
    bad_config(
        &["--set", "model.act_fn=tanh"],
        &["model.act_fn", "relu", "gelu"],
    );
}

#[test]
fn existing_output_directory_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "data").unwrap();
    assert_error(
        &train(dir.path(), &["--set", "train.steps=5"]),
        &["not empty", "--resume", "--force"],
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
        "data"
    );
}

#[test]
fn nan_loss_stops_and_names_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let r = train(
        &out,
        &[
            "--set",
            "train.lr=1e30",
            "--set",
            "train.steps=200",
            "--set",
            "train.checkpoint_every=1",
        ],
    );
    assert_error(
        &r,
        &[
            "train loss is",
            "at step",
            "last good checkpoint",
            "step_0000",
        ],
    );
    let stderr = String::from_utf8_lossy(&r.stderr);
    let ckpt = stderr
        .rsplit("last good checkpoint (finite weights): ")
        .next()
        .unwrap()
        .trim();
    assert!(Path::new(ckpt).exists(), "{ckpt} missing");
}

#[test]
fn corrupt_or_missing_checkpoint_is_reported_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    assert!(train(&out, &["--set", "train.steps=60"]).status.success());
    // the latest checkpoint: the last step's (every run ends with one)
    let ckpt = out.join("checkpoints/step_000060.safetensors");
    std::fs::write(&ckpt, b"not a checkpoint").unwrap();
    let r = groklab(&["train", "--no-plots", "--resume", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_error(
        &r,
        &["step_000060.safetensors", "not a valid safetensors file"],
    );
    let missing = dir.path().join("nothing");
    let r = groklab(&["train", "--resume", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_error(&r, &["config.toml", "cannot resume"]);
}

#[test]
fn killed_and_resumed_run_matches_uninterrupted_run() {
    killed_and_resumed_matches(&[]);
}

/// SGD with Nesterov momentum, Grokfast MA, a cosine schedule with a jump, clipping, decay toward
/// the initial weights and sampling with replacement all carry state or draw per step: a
/// resumed run still equals the unbroken one.
#[test]
fn resume_is_exact_with_sgd_grokfast_ma_and_schedules() {
    killed_and_resumed_matches(&[
        "--set",
        "train.optimizer=sgd",
        "--set",
        "train.lr=0.1",
        "--set",
        "train.momentum=0.9",
        "--set",
        "train.nesterov=true",
        "--set",
        "train.weight_decay=1e-3",
        "--set",
        "train.decay_to=init",
        "--set",
        "train.grokfast=ma",
        "--set",
        "train.grokfast_window=20",
        "--set",
        "train.schedule=cosine",
        "--set",
        "train.lr_jumps=[[700, 2.0]]",
        "--set",
        "train.clip_grad_norm=1.0",
        "--set",
        "train.sampling=with_replacement",
    ]);
}

/// Grokfast EMA, ⊥Grad and the norm constraint over AdamW with a StableMax loss (the burn graph).
#[test]
fn resume_is_exact_with_grokfast_ema_orthograd_and_stablemax() {
    killed_and_resumed_matches(&[
        "--set",
        "train.grokfast=ema",
        "--set",
        "train.orthograd=true",
        "--set",
        "train.constrain_norm=1.0",
        "--set",
        "train.loss_fn=stablemax",
    ]);
}

fn killed_and_resumed_matches(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut steps = vec!["--set", "train.steps=1500", "--set", "train.batch_size=64"];
    steps.extend(extra);
    let whole = dir.path().join("whole");
    let r = train(&whole, &steps);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));

    let killed = dir.path().join("killed");
    let mut args = vec!["train", "--no-plots", "--out", killed.to_str().unwrap()];
    args.extend(TINY);
    args.extend(&steps);
    let mut child = groklab(&args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // the weights are written after the optimiser state: step 300 is then resumable
    let marker = killed.join("checkpoints/step_000300.safetensors");
    let start = Instant::now();
    while !marker.exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = std::fs::read_to_string(killed.join("metrics.jsonl")).unwrap();
    // a finished run logs 151 rows: steps 0, 10, ..., 1500
    assert!(before.lines().count() < 151, "run finished before the kill");
    // the checkpoint a resume starts from: the latest whose weights and optimiser state are
    // both written (a kill between the two writes leaves the optimiser file alone)
    let resumed_from = groklab::rundir::resumable_step(&killed).unwrap();

    let r = groklab(&["train", "--no-plots", "--resume", killed.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // History is not rewritten: rows logged before the resumed checkpoint keep their bytes
    // (wall time included) ...
    let after = std::fs::read_to_string(killed.join("metrics.jsonl")).unwrap();
    let kept = (resumed_from / 10) as usize; // rows 0, 10, ... below the checkpoint's step
    assert!(kept >= 30, "resumed from step {resumed_from}");
    assert_eq!(
        before.lines().take(kept).collect::<Vec<_>>(),
        after.lines().take(kept).collect::<Vec<_>>()
    );
    // ... and every row equals the uninterrupted run's, byte for byte but for the wall time.
    assert_eq!(
        lines_without_wall_time(&killed),
        lines_without_wall_time(&whole)
    );
}

/// `train --seeds 2` writes one ordinary run per seed, and each equals the run trained alone
/// with that `init_seed` on one thread (the same row chunking, so bit for bit); with
/// `train.stop_at_test_acc` each seed stops where it would alone, with the same checkpoints.
#[test]
fn batched_seeds_equal_single_runs() {
    seeds_equal_single_runs(&[], true);
    // p = 23 (chance 4.3%): seed 1 reaches 6% test accuracy at step 80 and stops, seed 0 never
    // does and runs on
    seeds_equal_single_runs(&["--set", "train.stop_at_test_acc=0.06"], false);
}

fn seeds_equal_single_runs(extra: &[&str], full_length: bool) {
    let dir = tempfile::tempdir().unwrap();
    let batched = dir.path().join("sweep");
    let mut args = vec![
        "train",
        "--no-plots",
        "--seeds",
        "2",
        "--out",
        batched.to_str().unwrap(),
    ];
    args.extend(TINY);
    args.extend(["--set", "train.steps=120"]);
    args.extend(extra);
    let out = groklab(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lengths = Vec::new();
    for seed in 0..2 {
        let single = dir.path().join(format!("single_{seed}"));
        let init = format!("model.init_seed={seed}");
        let mut set = vec![
            "--set",
            "train.steps=120",
            "--set",
            "train.threads=1",
            "--set",
            &init,
        ];
        set.extend(extra);
        let out = train(&single, &set);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let strip = |p: &Path| -> Vec<String> {
            std::fs::read_to_string(p.join("metrics.jsonl"))
                .unwrap()
                .lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v.as_object_mut().unwrap().remove("wall_s");
                    v.to_string()
                })
                .collect()
        };
        let seed_dir = batched.join(format!("seed_{seed}"));
        assert_eq!(strip(&seed_dir), strip(&single), "seed {seed}");
        let ckpts = |p: &Path| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(p.join("checkpoints"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(ckpts(&seed_dir), ckpts(&single), "seed {seed}");
        lengths.push(strip(&single).len());
    }
    if full_length {
        assert!(lengths.iter().all(|&n| n == 13), "{lengths:?}");
    } else {
        assert_eq!(
            lengths,
            [13, 9],
            "seed 1 stops at step 80, seed 0 runs to 120"
        );
    }
}

/// `compare` overlays two runs that differ in one key: the legend names that key's two values
/// and nothing else, every asked-for chart exists, and the page inlines them.
#[test]
fn compare_labels_runs_by_their_differing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    assert!(train(&a, &["--set", "train.steps=30"]).status.success());
    assert!(
        train(&b, &["--set", "train.steps=30", "--set", "train.lr=0.01"])
            .status
            .success()
    );
    let out = dir.path().join("cmp");
    let r = groklab(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--metrics",
        "test_acc,train_loss,softmax_collapse",
        "--out",
        out.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let page = std::fs::read_to_string(out.join("compare.html")).unwrap();
    for chart in ["test_acc", "train_loss", "softmax_collapse"] {
        assert!(out.join(format!("{chart}.png")).exists(), "{chart}.png");
        assert!(
            page.contains(&format!("<h2>{chart}</h2>")),
            "{chart} section"
        );
    }
    assert!(page.contains("train.lr=0.003") && page.contains("train.lr=0.01"));
    assert!(!page.contains("train.steps="), "an equal key in the legend");
    // 30 steps reach no threshold: each setting's figures are censored at its budget
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(lines.len(), 3, "{summary}");
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for line in &lines[1..] {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[col("test_99_reached")], "0", "{line}");
        assert_eq!(cells[col("test_99_per_run")], ">30", "{line}");
        assert_eq!(cells[col("test_99_mean")], "30", "{line}");
    }
    assert!(
        page.contains("≥ 30 [30, 30] (0/1)"),
        "censored figure on the page"
    );
}

/// A run whose length is not a multiple of the checkpoint interval still ends with a checkpoint
/// of its final weights and optimiser state: `train.steps = 55` with checkpoints every 50 leaves
/// steps 0, 50 and 55, and resuming the finished run trains nothing more.
#[test]
fn the_last_step_is_always_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r");
    assert_success(&train(&run, &["--set", "train.steps=55"]));
    assert_eq!(groklab::rundir::list_steps(&run), [0, 50, 55]);
    assert!(run
        .join("checkpoints/step_000055.optim.safetensors")
        .exists());
    let before = std::fs::read(run.join("checkpoints/step_000055.safetensors")).unwrap();
    let out = groklab(&["train", "--no-plots", "--resume", run.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(groklab::rundir::list_steps(&run), [0, 50, 55]);
    let after = std::fs::read(run.join("checkpoints/step_000055.safetensors")).unwrap();
    assert_eq!(before, after);
}

/// Two identical runs write identical files, byte for byte, wall time aside: every checkpoint
/// (weights and optimiser state: sorted safetensors headers, no wall-clock values), the config
/// and the metrics without their `wall_s`.
#[test]
fn identical_runs_write_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for run in [&a, &b] {
        assert_success(&train(run, &["--set", "train.steps=60"]));
    }
    let files = |run: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
            .unwrap()
            .map(|e| format!("checkpoints/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        names.sort();
        names
    };
    assert_eq!(files(&a), files(&b));
    assert!(files(&a).iter().any(|f| f.ends_with(".optim.safetensors")));
    for f in files(&a)
        .iter()
        .map(String::as_str)
        .chain(["config.toml", "split.json"])
    {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(x == y, "{f} differs between identical runs");
    }
    assert_eq!(lines_without_wall_time(&a), lines_without_wall_time(&b));
}

/// `llc` on a tiny run: one row per chosen checkpoint with its chains' traces, the estimates in
/// `llc.csv`, the pictures drawn and shown in the report; a step without a checkpoint is a one-line error naming
/// `--steps` and the steps there are; a non-positive ε is refused by name.
#[test]
fn llc_measures_the_chosen_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r");
    assert_success(&train(&run, &["--set", "train.steps=100"]));
    let llc = |extra: &[&str]| {
        let mut args = vec![
            "llc",
            run.to_str().unwrap(),
            "--num-chains",
            "3",
            "--num-draws",
            "15",
            "--num-burnin-steps",
            "5",
            "--batch-size",
            "64",
        ];
        args.extend(extra);
        groklab(&args).output().unwrap()
    };
    assert_success(&llc(&["--steps", "0,100"]));
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(run.join("llc.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["step"].as_u64(), rows[1]["step"].as_u64()),
        (Some(0), Some(100))
    );
    for r in &rows {
        let traces = r["loss_trace"].as_array().unwrap();
        assert_eq!(traces.len(), 3);
        assert!(traces.iter().all(|t| t.as_array().unwrap().len() == 15));
        let per_chain: Vec<f64> = (r["llc_per_chain"].as_array().unwrap().iter())
            .map(|v| v.as_f64().unwrap())
            .collect();
        let mean = per_chain.iter().sum::<f64>() / 3.0;
        assert!((r["llc_mean"].as_f64().unwrap() - mean).abs() < 1e-9 * mean.abs().max(1.0));
    }
    let csv = std::fs::read_to_string(run.join("llc.csv")).unwrap();
    assert!(csv.starts_with("step,") || csv.lines().next().unwrap().contains("llc_mean"));
    assert!(
        !csv.lines().next().unwrap().contains("loss_trace"),
        "traces stay in the JSONL"
    );
    for f in ["llc.png", "losses.png", "trace.png"] {
        assert!(run.join("plots/llc").join(f).exists(), "{f}");
    }
    // the report shows the LLC section once llc has run
    assert_success(
        &groklab(&["report", run.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    let page = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        page.contains("Local learning coefficient"),
        "no LLC section"
    );
    // the slider's trace view draws the selected checkpoint's chains (the self-test leaves the
    // slider on the last checkpoint, step 100, which llc measured)
    if let Some(t) = common::self_test(&run.join("report.html"), dir.path()) {
        assert!(t.body.contains("data-selftest=\"pass\""), "{}", t.body);
        let view = t.dom.split("id=\"view-llc\"").nth(1).expect("a trace view");
        let view = view.split("</svg>").next().unwrap();
        assert_eq!(
            view.matches("<path").count(),
            4,
            "3 chains and L_n(w*): {view}"
        );
        assert!(view.contains("chain 2") && view.contains("λ̂ = "), "{view}");
    }
    common::assert_error(&llc(&["--steps", "30"]), &["--steps", "30", "0, 50, 100"]);
    common::assert_error(&llc(&["--lr", "0"]), &["--lr", "a positive number"]);
}
