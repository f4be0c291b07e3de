//! In-context linear regression end to end (von Oswald et al. 2023): a small LSA run logs its
//! comparison with the GD learners, learns, resumes exactly, and bad combinations of task and
//! model are one-line errors.

use std::path::Path;

mod common;
use common::{assert_error, assert_success, groklab, lines_without_wall_time};

/// `icl_1layer` shrunk: d = 4, N = 6, 500 evaluation tasks, batch 128, lr 1e-2, no clipping.
const SMALL: [&str; 20] = [
    "--set",
    "task.d=4",
    "--set",
    "task.n_pairs=6",
    "--set",
    "task.n_eval=500",
    "--set",
    "train.batch_size=128",
    "--set",
    "train.lr=1e-2",
    "--set",
    "train.clip_grad_norm=0",
    "--set",
    "train.steps=300",
    "--set",
    "train.log_every=20",
    "--set",
    "train.checkpoint_every=100",
    "--set",
    "train.threads=2",
];

fn icl_train(out: &Path, preset: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "--no-plots",
        "--preset",
        preset,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(SMALL);
    args.extend(extra);
    groklab(&args).output().unwrap()
}

fn rows(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The run logs GD's line-searched loss and the comparison metrics every row; its loss falls
/// from the zero predictor's towards GD's and its query gradient turns towards GD's. A run
/// stopped early and resumed logs the same rows.
#[test]
fn icl_run_compares_with_gd_learns_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("icl");
    let r = icl_train(
        &run,
        "icl_1layer",
        &["--set", "train.steps=1000", "--set", "train.log_every=50"],
    );
    assert_success(&r);
    let rows = rows(&run);
    assert_eq!(rows.len(), 21, "steps 0, 50, ..., 1000");
    let (first, last) = (&rows[0], rows.last().unwrap());
    let f = |row: &serde_json::Value, k: &str| row[k].as_f64().unwrap_or(f64::NAN);
    let gd = f(last, "gd_loss");
    // the zero predictor's ½-MSE is d·E[x²]/2 = 4/24
    assert!((f(first, "test_loss") - 4.0 / 24.0).abs() < 0.03);
    assert!(gd < f(first, "test_loss") && gd > 0.0);
    assert!(
        f(last, "test_loss") < 0.5 * (f(first, "test_loss") + gd),
        "{last}"
    );
    assert!(f(last, "model_cos_gd") > f(first, "model_cos_gd"));
    assert!(f(last, "model_cos_gd") > 0.8, "{last}");
    assert!(f(last, "gd_eta") > 0.0);

    // a run stopped at step 400 and resumed to 1,000 logs the same rows (the fresh batch of
    // each step is drawn from the step's own stream)
    let cut = dir.path().join("cut");
    let r = icl_train(
        &cut,
        "icl_1layer",
        &["--set", "train.steps=400", "--set", "train.log_every=50"],
    );
    assert_success(&r);
    let r = groklab(&[
        "train",
        "--no-plots",
        "--resume",
        cut.to_str().unwrap(),
        "--set",
        "train.steps=1000",
    ])
    .output()
    .unwrap();
    assert_success(&r);
    assert_eq!(lines_without_wall_time(&cut), lines_without_wall_time(&run));
}

/// Two shared layers are compared with 2-step GD and with GD++, which does better.
#[test]
fn two_layer_runs_are_compared_with_gd_plus_plus() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("icl2");
    let r = icl_train(&run, "icl_2layer_recurrent", &["--set", "train.steps=20"]);
    assert_success(&r);
    let last = rows(&run).pop().unwrap();
    let f = |k: &str| last[k].as_f64().unwrap();
    assert!(f("gdpp_loss") < f("gd_loss"), "{last}");
    assert!(f("gdpp_gamma") > 0.0);
    assert!(f("model_cos_gdpp").is_finite());
}

#[test]
fn bad_icl_configs_are_one_line_errors_that_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let run = |extra: &[&str]| icl_train(&out, "icl_1layer", extra);
    let two = |extra: &[&str]| icl_train(&out, "icl_2layer_recurrent", extra);
    assert_error(
        &two(&["--set", "model.rollout_steps=3"]),
        &["model.rollout_steps", "n_layers = 1"],
    );
    assert_error(
        &run(&["--set", "task.format=sideways"]),
        &["task.format", "alternating"],
    );
    assert_error(
        &run(&["--set", "train.batch_size=0"]),
        &["train.batch_size", "fresh batch"],
    );
    assert_error(&run(&["--set", "task.d=0"]), &["task.d", "positive"]);
    assert_error(
        &run(&["--set", "train.compute_dtype=f64"]),
        &["train.compute_dtype", "f32"],
    );
    assert!(!out.exists());
}

/// `analyze` and `report` on a small run of the roll-out preset: every checkpoint is measured;
/// the interpolation starts at the construction's loss and ends at the checkpoint's own; the
/// best-λ roll-out of one application is no worse than the layer itself (λ = 1 is on the grid);
/// out of distribution, larger inputs cost the model and GD more; the page's slider redraws
/// every view in headless Chromium (where installed).
#[test]
fn icl_analyze_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("icl");
    let r = icl_train(
        &run,
        "icl_dampened_rollout",
        &["--set", "model.rollout_steps=3"],
    );
    assert_success(&r);
    let out = groklab(&["analyze", run.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("roll-out ×3"), "{text}");
    let measures: Vec<serde_json::Value> = std::fs::read_to_string(run.join("measures.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(measures.len(), 4, "checkpoints 0, 100, 200, 300");
    let a: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("analysis.json")).unwrap()).unwrap();
    let gd = a["references"][0]["loss"].as_f64().unwrap();
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    for m in &measures {
        let interp = m["interpolation"].as_array().unwrap();
        assert_eq!(interp.len(), 11);
        assert!((f(&interp[0]) - gd).abs() < 1e-4 * gd, "{m}");
        let own = f(&m["test_loss"]);
        assert!((f(&interp[10]) - own).abs() < 1e-4 * own, "{m}");
        assert_eq!(m["qk"][0].as_array().unwrap().len(), 25, "e² = 5²");
    }
    let last = measures.last().unwrap();
    let rollout = a["rollout"].as_array().unwrap();
    assert_eq!(rollout.len(), 3);
    assert!(
        f(&rollout[0]["loss"]) <= f(&last["test_loss"]) * (1.0 + 1e-6),
        "{a}"
    );
    let ood = a["ood_x_range"].as_array().unwrap();
    for pair in ood.windows(2) {
        assert!(f(&pair[1]["model"]) > f(&pair[0]["model"]), "{a}");
        assert!(
            f(&pair[1]["references"]["gd"]) > f(&pair[0]["references"]["gd"]),
            "{a}"
        );
    }
    assert!(run.join("plots/icl/products.svg").exists());
    assert!(run.join("plots/icl/rollout.svg").exists());

    let out = groklab(&["report", run.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out);
    let page = run.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("view-qk-0") && html.contains("view-interp"));
    if let Some(common::SelfTest { body, .. }) = common::self_test(&page, dir.path()) {
        assert!(body.contains("data-selftest=\"pass\""), "self-test: {body}");
        assert!(
            body.contains("data-views=\"4\""),
            "loss, interpolation, QK, VP: {body}"
        );
    }
}

/// The alternating layout (x_i and y_i in separate tokens, T = 2N + 1) trains and is compared
/// with GD; one linear layer cannot pair x_i with y_i there, so it stays far from GD.
#[test]
fn alternating_tokens_train() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("alt");
    let r = icl_train(&run, "icl_1layer", &["--set", "task.format=alternating"]);
    assert_success(&r);
    let rows = rows(&run);
    let last = rows.last().unwrap();
    let f = |k: &str| last[k].as_f64().unwrap();
    assert!(f("test_loss").is_finite() && f("gd_loss") > 0.0, "{last}");
    assert!(f("test_loss") > 2.0 * f("gd_loss"), "{last}");
}

/// Softmax attention with LayerNorm and an MLP trains (its loss falls from the zero
/// predictor's), stores TransformerLens names, and `analyze` measures it without the
/// construction's interpolation (no linear construction has its layout).
#[test]
fn softmax_with_layer_norm_and_mlp() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("ln");
    let r = icl_train(
        &run,
        "icl_softmax_2heads",
        &["--set", "model.layer_norm=true", "--set", "model.d_mlp=16"],
    );
    assert_success(&r);
    let rows = rows(&run);
    let f = |row: &serde_json::Value, k: &str| row[k].as_f64().unwrap();
    let (first, last) = (&rows[0], rows.last().unwrap());
    assert!(
        f(last, "test_loss") < 0.8 * f(first, "test_loss"),
        "{first} → {last}"
    );
    let ckpt = std::fs::read(run.join("checkpoints/step_000300.safetensors")).unwrap();
    let header = String::from_utf8_lossy(&ckpt[..ckpt.len().min(4096)]);
    for name in [
        "blocks.0.ln1.w",
        "blocks.0.ln2.b",
        "blocks.0.mlp.W_in",
        "blocks.0.mlp.b_out",
    ] {
        assert!(header.contains(name), "{name} missing from {header}");
    }
    let out = groklab(&["analyze", "--no-plots", run.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out);
    let m = std::fs::read_to_string(run.join("measures.jsonl")).unwrap();
    assert!(m.lines().all(|l| l.contains("\"interpolation\":[]")), "{m}");
}
