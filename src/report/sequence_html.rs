//! `report.html` for a sequence-task run: the run's summary (memorised and generalised steps,
//! each phase change), its config and its curves (loss, accuracy, per position, per class, the
//! attention scores), self-contained as the binary-operation report is.

use super::html::{drawn_figures, escape, page, round, run_name_and_config, SLIDER_ROW};
use crate::error::{GrokError, Result};
use crate::measures::attention_views::AttentionViews;
use crate::measures::sequence_run::SequenceAnalysis;
use crate::rundir::{atomic_write, MetricsRow};
use serde_json::json;
use std::path::{Path, PathBuf};

const SCRIPT: &str = concat!(
    include_str!("explorer_core.js"),
    include_str!("sequence_report.js"),
);

/// The curves shown, from `plots/` ([`super::plot_run`]); those a task does not log are left out.
const CURVES: [(&str, &str); 9] = [
    ("loss", "Loss"),
    ("accuracy", "Accuracy"),
    (
        "test_loss_at",
        "Test loss per scored position (answer digit)",
    ),
    ("train_loss_at", "Training-batch loss per answer digit"),
    ("test_loss_class", "Test loss per class"),
    (
        "signal_attention",
        "Attention from END to the signal token per head",
    ),
    ("induction_score", "Induction score per head"),
    ("prev_token_score", "Previous-token score per head"),
    ("weights", "Sum of squared weights"),
];

/// Writes `run_dir/report.html` for a sequence run from its config, its metrics rows, the
/// plots in `plots/`, `analysis` and, where `analyze` wrote it, the explorer's
/// `attention.json`; returns its path.
///
/// # Errors
/// [`GrokError::Io`] when the config cannot be read or the page cannot be written;
/// [`GrokError::Config`] for a malformed `attention.json`.
pub fn write_sequence_report(
    run_dir: &Path,
    rows: &[MetricsRow],
    analysis: &SequenceAnalysis,
) -> Result<PathBuf> {
    let (name, config) = run_name_and_config(run_dir)?;
    let last = rows.last();
    let explorer = match std::fs::read_to_string(run_dir.join("attention.json")) {
        Ok(text) => {
            let views: AttentionViews = serde_json::from_str(&text)
                .map_err(|e| GrokError::data_file(run_dir.join("attention.json").display(), e))?;
            explorer(&views, rows)
        }
        Err(_) => String::new(),
    };
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
{explorer}<section id="curves">
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

/// The checkpoint explorer: the slider, the loss with a marker, every head's pattern on the
/// fixed test sequence, the offset profiles; its data and script inlined.
fn explorer(views: &AttentionViews, rows: &[MetricsRow]) -> String {
    if views.checkpoints.is_empty() {
        return String::new();
    }
    let view = |id: &str, caption: &str| {
        format!("<figure><figcaption>{caption}</figcaption><svg id=\"{id}\" class=\"view\" viewBox=\"0 0 460 260\"></svg></figure>\n")
    };
    let mut figures = view("view-loss", "Loss (marker: selected checkpoint)");
    let scored: Vec<usize> = (0..views.targets.len())
        .filter(|&p| views.targets[p] != crate::tasks::IGNORE)
        .collect();
    let signal = views.signal_position.map_or(String::new(), |p| {
        format!("; red outline: the signal token's column (position {p})")
    });
    for k in 0..views.n_layers * views.n_heads {
        let (l, h) = (k / views.n_heads, k % views.n_heads);
        figures += &view(
            &format!("view-pat-{k}"),
            &format!("blocks.{l}.attn.hook_pattern, head {h}: query rows, key columns, on test sequence 0{signal}"),
        );
    }
    if views
        .checkpoints
        .iter()
        .any(|c| !c.induction_profile.is_empty())
    {
        figures += &view(
            "view-induction",
            "Mean attention from a scored token by key offset from the earlier occurrence of its token (induction stripe: +1), rows layer.head",
        );
    }
    figures += &view(
        "view-query",
        "Mean attention by key offset back from the query (previous-token diagonal: −1), rows layer.head",
    );
    let loss: Vec<_> = (rows.iter())
        .map(|r| json!([r.step, round(r.train_loss), round(r.test_loss)]))
        .collect();
    let data = json!({ "views": views, "loss": loss });
    // `</` cannot end the script element early inside JSON strings.
    let data = data.to_string().replace("</", "<\\/");
    format!(
        r#"<section id="explorer">
<h2>Checkpoint explorer</h2>
<p class="note">Test sequence 0: tokens {tokens:?}; scored positions {scored:?}.</p>
{SLIDER_ROW}
<div class="views">
{figures}</div>
</section>
<script type="application/json" id="report-data">{data}</script>
<script>{SCRIPT}</script>
"#,
        tokens = views.tokens,
    )
}
