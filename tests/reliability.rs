//! Reliability under bad manifests, huge configs, two writers, edited run directories and NaN
//! (issue 24): one test per failure the issue lists, each run through the binary.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{assert_error, assert_success, groklab, stdout_of, train};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Overwrites the first value of tensor `name` in a safetensors file with NaN.
fn poison(path: &Path, name: &str) {
    let mut bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let t = &header[name];
    let start = 8 + n + t["data_offsets"][0].as_u64().unwrap() as usize;
    let nan: Vec<u8> = match t["dtype"].as_str().unwrap() {
        "F32" => f32::NAN.to_le_bytes().to_vec(),
        _ => f64::NAN.to_le_bytes().to_vec(),
    };
    bytes[start..start + nan.len()].copy_from_slice(&nan);
    std::fs::write(path, bytes).unwrap();
}

/// A manifest line of the tiny sweep with its `id` replaced.
fn manifest_line_with_id(dir: &Path, id: &str) -> std::path::PathBuf {
    let file = dir.join("sweep.toml");
    std::fs::write(&file, common::tiny_sweep(20, "\"model.init_seed\" = [0]")).unwrap();
    let text = stdout_of(&["sweep", "expand", s(&file)]);
    let mut line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    line["id"] = id.into();
    let path = dir.join(format!("m{}.jsonl", id.len()));
    std::fs::write(&path, format!("{line}\n")).unwrap();
    path
}

/// Point 1: a manifest id that is not its config's hash (`..`, a relative or absolute path, or
/// any other string) is refused before anything is created or deleted.
#[test]
fn a_manifest_id_cannot_reach_outside_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::create_dir_all(victim.join("RUNS")).unwrap();
    std::fs::write(victim.join("CANARY.txt"), "x").unwrap();
    let abs = dir.path().join("abs").display().to_string();
    for id in ["..", "../../x", abs.as_str(), "0123456789abcdef"] {
        let m = manifest_line_with_id(dir.path(), id);
        let out = groklab(&["sweep", "run", s(&m), "--out", s(&victim.join("RUNS"))])
            .output()
            .unwrap();
        assert_error(&out, &["line 1", "is not the run id of its config"]);
        assert!(
            !String::from_utf8_lossy(&out.stderr).starts_with("error: invalid config"),
            "a manifest is not a config"
        );
    }
    assert_eq!(
        std::fs::read_to_string(victim.join("CANARY.txt")).unwrap(),
        "x"
    );
    assert_eq!(std::fs::read_dir(victim.join("RUNS")).unwrap().count(), 0);
    assert!(!dir.path().join("abs").exists() && !dir.path().join("x").exists());
}

/// Point 1: a line's directory without checkpoints restarts only when it holds nothing but
/// that run's files; anything else stays and the line fails naming it.
#[test]
fn a_sweep_restart_never_clears_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sweep.toml");
    std::fs::write(&file, common::tiny_sweep(20, "\"model.init_seed\" = [0]")).unwrap();
    let m = dir.path().join("m.jsonl");
    std::fs::write(&m, stdout_of(&["sweep", "expand", s(&file)])).unwrap();
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&m).unwrap().lines().next().unwrap()).unwrap();
    let runs = dir.path().join("runs");
    let line_dir = runs.join(line["id"].as_str().unwrap());
    std::fs::create_dir_all(&line_dir).unwrap();
    std::fs::write(line_dir.join("notes.txt"), "mine").unwrap();
    let out = groklab(&["sweep", "run", s(&m), "--out", s(&runs)])
        .output()
        .unwrap();
    assert_error(&out, &["notes.txt", "refusing to clear"]);
    assert_eq!(
        std::fs::read_to_string(line_dir.join("notes.txt")).unwrap(),
        "mine"
    );
    // the run's own leftovers (a kill before the first checkpoint) are cleared and it trains
    std::fs::remove_file(line_dir.join("notes.txt")).unwrap();
    std::fs::write(line_dir.join("metrics.jsonl"), "garbage\n").unwrap();
    stdout_of(&["sweep", "run", s(&m), "--out", s(&runs)]);
    assert!(line_dir.join("DONE").exists());
}

/// Point 3: sizes and thread counts far beyond the machine are one-line errors before any
/// allocation or directory; a sweep of 10¹⁰ runs is refused before expansion.
#[test]
fn huge_configs_are_refused_before_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big");
    for (set, needles) in [
        ("task.p=100000", &["--mem-limit", "dataset"][..]),
        (
            "model.d_model=100000000",
            &["--mem-limit", "parameters"][..],
        ),
        ("model.n_layers=1000000", &["--mem-limit", "parameters"][..]),
        (
            "train.threads=100000",
            &["train.threads", "--oversubscribe"][..],
        ),
    ] {
        let r = groklab(&["train", "--no-plots", "--out", s(&out), "--set", set])
            .output()
            .unwrap();
        assert_error(&r, needles);
        assert!(!out.exists(), "{set}: the run directory was created");
    }
    let r = groklab(&["train", "--seeds", "100000", "--out", s(&out)])
        .output()
        .unwrap();
    assert_error(&r, &["100000 runs", "--mem-limit"]);
    assert!(!out.exists(), "seed directories were created");
    let keys: String = (0..10)
        .map(|k| format!("\"k{k}\" = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n"))
        .collect();
    let file = dir.path().join("huge.toml");
    std::fs::write(&file, format!("preset = \"quick\"\n[grid]\n{keys}")).unwrap();
    let r = groklab(&["sweep", "expand", s(&file)]).output().unwrap();
    assert_error(&r, &["1.000e10 runs", "at most 1000000"]);
}

/// Point 3: a checkpoint holding NaN is skipped by analyze with a warning (no `null` in
/// measures.jsonl), and report and saliency, which read those measures, work.
#[test]
fn analyze_skips_a_nan_checkpoint_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r");
    assert_success(&train(&run, &["--set", "train.steps=150"]));
    poison(
        &run.join("checkpoints/step_000050.safetensors"),
        "blocks.0.attn.W_Q",
    );
    poison(
        &run.join("checkpoints/step_000150.safetensors"),
        "embed.W_E",
    );
    let out = groklab(&["analyze", s(&run)]).output().unwrap();
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: checkpoint step 50 skipped: tensor `blocks.0.attn.W_Q`")
            && stderr.contains("warning: checkpoint step 150 skipped"),
        "{stderr}"
    );
    let measures = std::fs::read_to_string(run.join("measures.jsonl")).unwrap();
    assert!(!measures.contains("null"), "null in measures.jsonl");
    let steps: Vec<u64> = (measures.lines())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, [0, 100]);
    let analysis: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("analysis.json")).unwrap()).unwrap();
    assert_eq!(analysis["skipped"][0]["step"], 50);
    assert_success(&groklab(&["report", s(&run)]).output().unwrap());
    assert_success(&groklab(&["saliency", s(&run)]).output().unwrap());
}

/// Point 4: while a run trains, a second `train --resume` and an `analyze` are refused naming
/// the holder's pid; after the holder is killed its stale lock is taken over.
#[test]
fn a_second_writer_is_refused_and_a_stale_lock_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r");
    let mut args = vec!["train", "--no-plots", "--out", s(&run)];
    args.extend(common::TINY);
    args.extend(["--set", "train.steps=1000000"]);
    let mut child = groklab(&args).stdout(Stdio::null()).spawn().unwrap();
    let ckpt = run.join("checkpoints/step_000050.safetensors");
    let start = Instant::now();
    while !ckpt.exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = child.id().to_string();
    for cmd in [
        vec![
            "train",
            "--no-plots",
            "--resume",
            s(&run),
            "--set",
            "train.lr=1e-2",
        ],
        vec!["analyze", s(&run)],
    ] {
        let out = groklab(&cmd).output().unwrap();
        assert_error(
            &out,
            &["is in use by `groklab train`", &format!("pid {pid}")],
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(run.join(".lock").exists(), "a killed run leaves its lock");
    let out = groklab(&[
        "train",
        "--no-plots",
        "--resume",
        s(&run),
        "--set",
        "train.steps=100",
    ])
    .output()
    .unwrap();
    assert_success(&out);
    assert!(!run.join(".lock").exists(), "the lock is released");
}

/// Point 4: two `sweep run`s of one manifest at once share its lines: both succeed and every
/// run is trained once, to its last step.
#[test]
fn two_sweep_runs_of_one_manifest_share_the_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sweep.toml");
    std::fs::write(
        &file,
        common::tiny_sweep(150, "\"task.frac_train\" = [0.3, 0.5, 0.7, 0.9]"),
    )
    .unwrap();
    let m = dir.path().join("m.jsonl");
    std::fs::write(&m, stdout_of(&["sweep", "expand", s(&file)])).unwrap();
    let runs = dir.path().join("runs");
    let spawn = || {
        groklab(&["sweep", "run", s(&m), "--out", s(&runs)])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_success(&a);
    assert_success(&b);
    let text = String::from_utf8_lossy(&a.stdout).to_string() + &String::from_utf8_lossy(&b.stdout);
    let trained = text.matches(" done step 150").count();
    assert_eq!(trained, 4, "each line trained once:\n{text}");
    for id in common::manifest_ids(&std::fs::read_to_string(&m).unwrap()) {
        let rows = std::fs::read_to_string(runs.join(&id).join("metrics.jsonl")).unwrap();
        assert_eq!(
            rows.lines().count(),
            16,
            "{id}: steps 0, 10, ..., 150 once each"
        );
        assert!(runs.join(&id).join("DONE").exists());
    }
}

/// Point 5: `--resume --set` is written to config.toml with a `resumed_with` record (a later
/// plain resume goes on from there); a changed data or model key, by `--set` or by editing
/// config.toml, and a split.json that no longer matches, are refused naming the key or file.
#[test]
fn resume_records_its_overrides_and_refuses_changed_data() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r");
    assert_success(&train(&run, &["--set", "train.steps=100"]));
    let resume = |extra: &[&str]| {
        let mut args = vec!["train", "--no-plots", "--resume", s(&run)];
        args.extend(extra);
        groklab(&args).output().unwrap()
    };
    assert_success(&resume(&["--set", "train.steps=150"]));
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("steps = 150"), "{config}");
    assert!(
        config.contains("[[resumed_with]]\nstep = 100\nset = [\"train.steps=150\"]"),
        "{config}"
    );
    let out = resume(&[]);
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("done: step 150"));

    assert_error(
        &resume(&["--set", "model.d_model=64"]),
        &["`model.d_model` was 32", "is 64 now"],
    );
    assert_error(
        &resume(&["--set", "train.batch_size=7"]),
        &["`train.batch_size`", "fixed for a run's life"],
    );
    let edited = config.replace("split_seed = 0", "split_seed = 5");
    assert_ne!(edited, config);
    std::fs::write(run.join("config.toml"), &edited).unwrap();
    assert_error(&resume(&[]), &["`task.split_seed` was 0", "is 5 now"]);
    std::fs::write(run.join("config.toml"), &config).unwrap();
    let split = std::fs::read_to_string(run.join("split.json")).unwrap();
    std::fs::write(run.join("split.json"), split.replacen('1', "2", 1)).unwrap();
    assert_error(&resume(&[]), &["split.json", "restore config.toml"]);
}

/// Point 7: unclear or silent cases get one-line errors that name the thing.
#[test]
fn unclear_inputs_get_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r");
    assert_success(&train(&run, &["--set", "train.steps=60"]));
    let last = run.join("checkpoints/step_000060.safetensors");
    // analyze --checkpoint: a p its vocabulary does not fit, NaN weights, a sequence model
    let out = groklab(&["analyze", "--checkpoint", s(&last), "--p", "31"])
        .output()
        .unwrap();
    assert_error(&out, &["`--p`: 31", "allowed: 23"]);
    let seq = dir.path().join("seq");
    let out = groklab(&[
        "train",
        "--no-plots",
        "--preset",
        "max_element_infinite",
        "--set",
        "train.steps=1",
        "--out",
        s(&seq),
    ])
    .output()
    .unwrap();
    assert_success(&out);
    let seq_ckpt = seq.join("checkpoints/step_000001.safetensors");
    let out = groklab(&[
        "analyze",
        "--checkpoint",
        s(&seq_ckpt),
        "--task",
        "add",
        "--p",
        "113",
    ])
    .output()
    .unwrap();
    assert_error(&out, &["n_ctx", "binary-operation model"]);
    // compare: a metric no run logs
    let out = groklab(&[
        "compare",
        s(&run),
        "--metrics",
        "nonexistent",
        "--out",
        s(&dir.path().join("c")),
    ])
    .output()
    .unwrap();
    assert_error(&out, &["`--metrics`: nonexistent", "test_loss"]);
    // --preset with --resume
    let out = groklab(&["train", "--resume", s(&run), "--preset", "nanda2023"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
    // an integer above i64::MAX; a deeply nested TOML file
    let out = groklab(&["train", "--set", "train.steps=18446744073709551615"])
        .output()
        .unwrap();
    assert_error(&out, &["`train.steps`", "9223372036854775807"]);
    let deep = dir.path().join("deep.toml");
    std::fs::write(
        &deep,
        format!("[task]\na = {}{}\n", "[".repeat(20000), "]".repeat(20000)),
    )
    .unwrap();
    let out = groklab(&["train", "--config", s(&deep)]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        out.stderr.len() < 600,
        "{} bytes of error",
        out.stderr.len()
    );
    // a garbage metrics file is not an "invalid config"
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(run.join("config.toml"), copy.join("config.toml")).unwrap();
    std::fs::write(copy.join("metrics.jsonl"), "{not json\n").unwrap();
    let out = groklab(&["compare", s(&copy), "--out", s(&dir.path().join("c2"))])
        .output()
        .unwrap();
    assert_error(&out, &["metrics.jsonl line 1", "not a metrics row"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("invalid config"));
    // a checkpoints/ symlink is not followed (nothing in its target is deleted)
    let linked = dir.path().join("linked");
    std::fs::create_dir_all(&linked).unwrap();
    for f in ["config.toml", "split.json", "metrics.jsonl"] {
        std::fs::copy(run.join(f), linked.join(f)).unwrap();
    }
    std::os::unix::fs::symlink(run.join("checkpoints"), linked.join("checkpoints")).unwrap();
    let before = std::fs::read_dir(run.join("checkpoints")).unwrap().count();
    let out = groklab(&[
        "train",
        "--no-plots",
        "--resume",
        s(&linked),
        "--set",
        "train.steps=90",
    ])
    .output()
    .unwrap();
    assert_error(&out, &["checkpoints", "symbolic link"]);
    assert_eq!(
        std::fs::read_dir(run.join("checkpoints")).unwrap().count(),
        before
    );
    // a NaN checkpoint is not resumed from (nor called good)
    poison(&last, "unembed.W_U");
    let out = groklab(&["train", "--no-plots", "--resume", s(&run)])
        .output()
        .unwrap();
    assert_error(
        &out,
        &["step_000060.safetensors", "`unembed.W_U` holds NaN"],
    );
    let out = groklab(&["analyze", "--checkpoint", s(&last)])
        .output()
        .unwrap();
    assert_error(&out, &["holds NaN or infinity"]);
}
