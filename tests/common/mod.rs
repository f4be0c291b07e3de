//! Helpers shared by the end-to-end tests: the binary, the tiny-model overrides, the one-line
//! error check.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `--set` overrides for a tiny model on (a + b) mod 23, checkpoints every 50 steps.
pub const TINY: [&str; 14] = [
    "--set",
    "task.p=23",
    "--set",
    "model.d_model=32",
    "--set",
    "model.d_head=8",
    "--set",
    "model.d_mlp=64",
    "--set",
    "train.log_every=10",
    "--set",
    "train.checkpoint_every=50",
    "--set",
    "train.dense_checkpoints_until=0",
];

/// The `groklab` binary with `args`.
pub fn groklab(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_groklab"));
    cmd.args(args);
    cmd
}

/// `groklab train --no-plots --out OUT` on the tiny model, with `extra` arguments.
pub fn train(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--no-plots", "--out", out.to_str().unwrap()];
    args.extend(TINY);
    args.extend(extra);
    groklab(&args).output().unwrap()
}

/// Asserts failure with a single stderr line containing every `needle`.
pub fn assert_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "not one line: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "`{n}` missing from: {stderr}");
    }
}

/// `../shared/golden` beside the repository, or `None` (saying the test skips) when absent.
pub fn golden_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/golden");
    if dir.exists() {
        return Some(dir);
    }
    eprintln!(
        "SKIPPED: {} is absent (the fixtures live beside the repo)",
        dir.display()
    );
    None
}

/// Asserts that a `groklab` command succeeded, showing its stderr otherwise.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `groklab train --resume RUN --set train.steps=STEPS`, asserting success.
pub fn resume_to(run: &Path, steps: u64) {
    let steps = format!("train.steps={steps}");
    let out = groklab(&[
        "train",
        "--no-plots",
        "--resume",
        run.to_str().unwrap(),
        "--set",
        &steps,
    ])
    .output()
    .unwrap();
    assert_success(&out);
}

/// The lines of `metrics.jsonl` as written, each with its `"wall_s":…` field cut out of the text
/// (the only field that differs between two runs); no re-parsing, so a changed last bit shows.
pub fn lines_without_wall_time(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let at = l.find("\"wall_s\":").expect("every row logs wall_s");
            let end = l[at..].find([',', '}']).unwrap() + at;
            format!("{}{}", &l[..at], &l[end..])
        })
        .collect()
}

/// max |a − b| / max |b|: the relative error of `a` against the reference `b`.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// A tensor's values as f64.
pub fn to_vec<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f64> {
    t.into_data().try_into_vec_as::<f64>().unwrap()
}

/// Chromium from the system, if installed (`.ci/run` installs Debian's `chromium`).
pub fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let out = Command::new("which").arg(name).output().ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        });
    if found.is_none() {
        assert!(
            std::env::var("GROKLAB_REQUIRE_BROWSER").is_err(),
            "GROKLAB_REQUIRE_BROWSER is set but no chromium is installed"
        );
        eprintln!("SKIPPED: no chromium on PATH (apt-get install chromium; .ci/run does)");
    }
    found
}

/// What headless Chromium saw of a report opened at `#selftest`.
pub struct SelfTest {
    /// The DOM after the page's scripts ran.
    pub dom: String,
    /// The attributes of `<body>`, where the self-test records its result.
    pub body: String,
    /// The browser's log.
    pub log: String,
}

/// Opens `page` at `#selftest` in headless Chromium (profile under `scratch`) and returns what
/// it saw, after checking the log has no JavaScript error; `None` (skipped) without Chromium.
pub fn self_test(page: &Path, scratch: &Path) -> Option<SelfTest> {
    let browser = chromium()?;
    let url = format!("file://{}#selftest", page.display());
    let profile = scratch.join("chromium-profile");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            &url,
        ])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let body = (dom.split("<body").nth(1))
        .and_then(|b| b.split('>').next())
        .unwrap_or_else(|| panic!("no <body> in the dumped DOM; browser log:\n{log}"))
        .to_string();
    let js_errors: Vec<&str> = (log.lines())
        .filter(|l| l.contains("Uncaught") || (l.contains("CONSOLE") && l.contains("rror")))
        .collect();
    assert!(js_errors.is_empty(), "JavaScript errors: {js_errors:?}");
    Some(SelfTest { dom, body, log })
}

/// The stdout of a `groklab` command that must succeed (its stderr shown otherwise).
pub fn stdout_of(args: &[&str]) -> String {
    let out = groklab(args).output().unwrap();
    assert_success(&out);
    String::from_utf8(out.stdout).unwrap()
}

/// The run ids of a manifest's lines, in order.
pub fn manifest_ids(manifest_text: &str) -> Vec<String> {
    (manifest_text.lines())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// A sweep file over a tiny transformer on (a+b) mod 23 (`quick` shrunk, one thread per run,
/// a checkpoint every 20 steps): `steps` steps, then the `[grid]` lines given.
pub fn tiny_sweep(steps: u64, grid: &str) -> String {
    format!(
        r#"preset = "quick"
[set]
"task.p" = 23
"model.d_model" = 32
"model.d_head" = 8
"model.d_mlp" = 64
"train.steps" = {steps}
"train.log_every" = 10
"train.checkpoint_every" = 20
"train.dense_checkpoints_until" = 0
"train.threads" = 1
[grid]
{grid}
"#
    )
}
