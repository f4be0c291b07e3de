//! `report.html` for a sequence-task run: the run's summary (memorised and generalised steps,
//! each phase change), its config and its curves (loss, accuracy, per position, per class, the
//! attention scores), self-contained as the binary-operation report is.

use super::html::{drawn_figures, escape, page, run_name_and_config};
use crate::error::Result;
use crate::measures::sequence_run::SequenceAnalysis;
use crate::rundir::{atomic_write, MetricsRow};
use std::path::{Path, PathBuf};

/// The curves shown, from `plots/` ([`super::plot_run`]); those a task does not log are left out.
const CURVES: [(&str, &str); 7] = [
    ("loss", "Loss"),
    ("accuracy", "Accuracy"),
    ("test_loss_at", "Test loss per scored position"),
    ("test_loss_class", "Test loss per class"),
    ("induction_score", "Induction score per head"),
    ("prev_token_score", "Previous-token score per head"),
    ("weights", "Sum of squared weights"),
];

/// Writes `run_dir/report.html` for a sequence run from its config, its last metrics row, the
/// plots in `plots/` and `analysis`, and returns its path.
///
/// # Errors
/// [`GrokError::Io`] when the config cannot be read or the page cannot be written.
pub fn write_sequence_report(
    run_dir: &Path,
    last: Option<&MetricsRow>,
    analysis: &SequenceAnalysis,
) -> Result<PathBuf> {
    let (name, config) = run_name_and_config(run_dir)?;
    let final_row = last.map_or(String::new(), |m| {
        format!(
            "<tr><th>final step</th><td>{}</td></tr>\
             <tr><th>train / test loss</th><td>{:.3e} / {:.3e}</td></tr>\
             <tr><th>train / test accuracy</th><td>{:.2}% / {:.2}%</td></tr>",
            m.step,
            m.train_loss,
            m.test_loss,
            100.0 * m.train_acc,
            100.0 * m.test_acc
        )
    });
    let findings: String = (analysis.summary_lines().iter())
        .map(|l| format!("<li>{}</li>", escape(l)))
        .collect();
    let plots = run_dir.join("plots");
    let curves = drawn_figures(&plots, &CURVES);
    let html = page(
        &format!("groklab report: {name}"),
        &format!(
            r#"<section id="summary">
<table>
{final_row}
<tr><th>checkpoints measured</th><td>{checkpoints} (measures.jsonl)</td></tr>
</table>
<ul>{findings}</ul>
{rule}
<details><summary>config.toml</summary><pre>{config}</pre></details>
</section>
<section id="curves">
<h2>Over training</h2>
{curves}
</section>
"#,
            checkpoints = analysis.checkpoints,
            rule = (analysis.phases.as_ref()).map_or(String::new(), |p| format!(
                "<p class=\"note\">{}</p>",
                escape(&p.rule)
            )),
            config = escape(&config),
        ),
    );
    let path = run_dir.join("report.html");
    atomic_write(&path, html.as_bytes())?;
    Ok(path)
}
