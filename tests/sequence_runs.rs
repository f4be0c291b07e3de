//! Sequence tasks through `groklab train`: a tiny digit-addition run logs per-answer-digit
//! metrics, resumes exactly, and bad task keys get one-line errors.

mod common;

use common::{assert_error, assert_success, groklab, lines_without_wall_time, resume_to};
use std::path::Path;

const TINY_DIGITS: [&str; 16] = [
    "--set",
    "task.n_digits=2",
    "--set",
    "task.n_test=64",
    "--set",
    "model.d_model=16",
    "--set",
    "model.d_head=4",
    "--set",
    "model.d_mlp=32",
    "--set",
    "train.batch_size=32",
    "--set",
    "train.checkpoint_every=20",
    "--set",
    "train.log_every=10",
];

fn train(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "--no-plots",
        "--preset",
        "nanda_digit_add5_infinite",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(TINY_DIGITS);
    args.extend(extra);
    groklab(&args).output().unwrap()
}

#[test]
fn digit_addition_logs_each_answer_digit_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let out = train(&whole, &["--set", "train.steps=60"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(whole.join("metrics.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = (text.lines())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 7);
    // 2 digits: `a a + b b = s s s`, answer digits predicted at positions 5, 6, 7
    for row in &rows {
        for t in 5..8 {
            let acc = row[format!("test_acc_at.{t}")].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&acc));
        }
        assert!(row.get("test_acc_at.4").is_none() && row.get("test_acc_at.8").is_none());
        // the overall test loss is the mean of the per-digit ones (each digit scored once)
        let mean: f64 = (5..8)
            .map(|t| row[format!("test_loss_at.{t}")].as_f64().unwrap())
            .sum::<f64>()
            / 3.0;
        let loss = row["test_loss"].as_f64().unwrap();
        assert!((mean - loss).abs() < 1e-9 * loss, "{mean} vs {loss}");
    }
    assert!(!whole.join("split.json").exists());

    let part = dir.path().join("part");
    assert!(train(&part, &["--set", "train.steps=30"]).status.success());
    resume_to(&part, 60);
    // the resumed config says 60 steps; the data stream and the metrics are the same
    assert_eq!(
        lines_without_wall_time(&part),
        lines_without_wall_time(&whole)
    );
}

#[test]
fn bad_sequence_task_keys_get_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r");
    assert_error(
        &train(&run, &["--set", "task.regime=finite"]),
        &["task.n_train", "finite"],
    );
    assert_error(
        &train(&run, &["--set", "task.n_digits=0"]),
        &["task.n_digits", "positive"],
    );
    assert_error(
        &train(&run, &["--set", "train.batch_size=0"]),
        &["train.batch_size", "infinite"],
    );
    let out = groklab(&[
        "train",
        "--preset",
        "nanda_induction_infinite",
        "--set",
        "task.copies=9",
        "--out",
        run.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_error(&out, &["task.n_ctx", "copies x sub_len"]);
    let out = groklab(&[
        "train",
        "--set",
        "task.name=digit_ad",
        "--out",
        run.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_error(&out, &["task.name", "digit_add"]);
}

/// `analyze` re-evaluates every checkpoint of a sequence run: each row equals the metrics the run
/// logged at that step (the same weights, evaluated again on one thread), and `analysis.json`
/// holds the run's phase changes; `report` writes a page with the per-digit curve.
#[test]
fn analyze_and_report_measure_every_checkpoint_of_a_sequence_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = train(&run, &["--set", "train.steps=60"]);
    assert_success(&out);
    let out = groklab(&["analyze", run.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("4 checkpoints measured"), "{stdout}");
    let read = |name: &str| -> Vec<serde_json::Value> {
        (std::fs::read_to_string(run.join(name)).unwrap().lines())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (measured, logged) = (read("measures.jsonl"), read("metrics.jsonl"));
    let steps: Vec<u64> = measured
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [0, 20, 40, 60]);
    for row in &measured {
        let log = (logged.iter())
            .find(|l| l["step"] == row["step"])
            .expect("a checkpoint step is logged");
        for key in [
            "test_loss",
            "test_loss_at.5",
            "test_loss_at.7",
            "test_acc_at.6",
        ] {
            let (m, l) = (row[key].as_f64().unwrap(), log[key].as_f64().unwrap());
            assert!((m - l).abs() <= 1e-9 * l.max(1.0), "{key}: {m} vs {l}");
        }
    }
    let analysis: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("analysis.json")).unwrap()).unwrap();
    assert_eq!(analysis["checkpoints"], 4);
    assert!(
        analysis["phases"].is_null(),
        "no memorisation phases without a training set"
    );
    assert!(run.join("measures.csv").exists());

    let out = groklab(&["report", run.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out);
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("Test loss per scored position") && html.contains("<svg"));
    assert!(html.contains("memorised (train accuracy"));
}
