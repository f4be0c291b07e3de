//! Helpers shared by the end-to-end tests: the binary, the tiny-model overrides, the one-line
//! error check.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::Path;
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
