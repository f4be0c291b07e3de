//! PNG and SVG plots of a run's metrics: loss on a log scale, accuracy, sum of squared weights.

use super::charts::Chart;
use crate::error::{GrokError, Result};
use crate::rundir::MetricsRow;
use plotters::prelude::{BLACK, BLUE, RED};
use std::path::Path;

/// Draws `plots/{loss,accuracy,weights}.{png,svg}` in `run_dir` from the metrics rows.
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
    .save(&dir, "weights", "Sum of squared weights")
}
