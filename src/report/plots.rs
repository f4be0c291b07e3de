//! PNG and SVG plots of a run's metrics: loss on a log scale, accuracy, sum of squared weights.

use super::charts::{Chart, Series};
use crate::error::{GrokError, Result};
use crate::rundir::MetricsRow;
use plotters::prelude::{Color, Palette, Palette99, RGBColor, BLACK, BLUE, RED};
use std::path::Path;

/// Draws `plots/{loss,accuracy,weights}.{png,svg}` in `run_dir` from the metrics rows, and for
/// sequence tasks `test_loss_at` (test loss per scored position; per answer digit s₀ … s₅ for
/// digit addition), `train_loss_at` (the training batch's), `test_loss_class`,
/// `signal_attention`, `induction_score` and `prev_token_score` (per head) where the rows have
/// them.
///
/// # Errors
/// [`GrokError::Io`] when the directory or a file cannot be written.
pub fn plot_run(run_dir: &Path, rows: &[MetricsRow]) -> Result<()> {
    let dir = run_dir.join("plots");
    std::fs::create_dir_all(&dir).map_err(|e| GrokError::io(&dir, e))?;
    let col = |f: fn(&MetricsRow) -> f64| -> Vec<(f64, f64)> {
        rows.iter()
            .map(|r| (r.step as f64, f(r)))
            .filter(|(_, y)| y.is_finite())
            .collect()
    };
    let lines = |y_label: &str, log_y, series| Chart::Lines {
        x_label: "step".into(),
        y_label: y_label.into(),
        log_y,
        series,
        markers: Vec::new(),
    };
    lines(
        "cross-entropy (nats, log scale)",
        true,
        vec![
            ("train".into(), BLUE, col(|r| r.train_loss)),
            ("test".into(), RED, col(|r| r.test_loss)),
        ],
    )
    .save(&dir, "loss", "Loss")?;
    lines(
        "accuracy",
        false,
        vec![
            ("train".into(), BLUE, col(|r| r.train_acc)),
            ("test".into(), RED, col(|r| r.test_acc)),
        ],
    )
    .save(&dir, "accuracy", "Accuracy")?;
    lines(
        "sum of squared weights",
        false,
        vec![("total".into(), BLACK, col(|r| r.sum_sq_weights))],
    )
    .save(&dir, "weights", "Sum of squared weights")?;
    // a sequence task may name its scored positions (digit addition: the answer digits)
    let config = crate::rundir::RunDir::new(run_dir).try_config();
    let task = (config.as_ref())
        .and_then(|c| c.task.get::<crate::config::SeqTaskSection>())
        .map(|t| t.task());
    let positions = task
        .as_ref()
        .map_or("scored position", |t| t.position_name());
    for (prefix, name, title, y_label, log_y) in [
        (
            "test_loss_at.",
            "test_loss_at",
            format!("Test loss per {positions}"),
            "cross-entropy (nats, log scale)",
            true,
        ),
        (
            "train_loss_at.",
            "train_loss_at",
            format!("Training-batch loss per {positions}"),
            "cross-entropy (nats, log scale)",
            true,
        ),
        (
            "signal_attention.",
            "signal_attention",
            "Attention from END to the signal token per head (layer.head)".into(),
            "attention",
            false,
        ),
        (
            "test_loss_class.",
            "test_loss_class",
            "Test loss per class".into(),
            "cross-entropy (nats, log scale)",
            true,
        ),
        (
            "induction_score.",
            "induction_score",
            "Induction score per head (layer.head)".into(),
            "attention to the token after an earlier occurrence",
            false,
        ),
        (
            "prev_token_score.",
            "prev_token_score",
            "Previous-token score per head (layer.head)".into(),
            "attention to the previous position",
            false,
        ),
    ] {
        let mut series = task_series(rows, prefix);
        if let Some(t) = task.as_ref().filter(|_| prefix.ends_with("_loss_at.")) {
            for (i, (label, _, _)) in series.iter_mut().enumerate() {
                if let Some(l) = t.position_label(i) {
                    *label = l;
                }
            }
        }
        if !series.is_empty() {
            lines(y_label, log_y, series).save(&dir, name, &title)?;
        }
    }
    Ok(())
}

/// One line per task metric whose key starts with `prefix` (labelled by the rest of the key), in
/// the order of the last row's keys.
fn task_series(rows: &[MetricsRow], prefix: &str) -> Vec<Series> {
    let Some(last) = rows.last() else {
        return Vec::new();
    };
    let keys: Vec<&String> = (last.task_metrics.iter())
        .map(|(k, _)| k)
        .filter(|k| k.starts_with(prefix))
        .collect();
    (keys.iter().enumerate())
        .map(|(i, key)| {
            let points = (rows.iter())
                .filter_map(|r| {
                    let v = r.task_metrics.iter().find(|(k, _)| k == *key)?.1;
                    v.is_finite().then_some((r.step as f64, v))
                })
                .collect();
            let label = key[prefix.len()..].to_string();
            let c = Palette99::pick(i).to_rgba();
            (label, RGBColor(c.0, c.1, c.2), points)
        })
        .collect()
}
