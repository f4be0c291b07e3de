//! `report.html` for a sequence-task run: the run's summary (memorised and generalised steps,
//! each phase change), its config and its curves (loss, accuracy, per position, per class, the
//! attention scores), self-contained as the binary-operation report is.

use super::html::{drawn_figures, escape, round};
use super::page::{Explorer, ReportPage, Section};
use crate::error::{GrokError, Result};
use crate::measures::attention_views::AttentionViews;
use crate::measures::sequence_run::SequenceAnalysis;
use crate::rundir::MetricsRow;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The sequence explorer's views (after the shared core, [`super::page`]).
const SCRIPT: &str = include_str!("sequence_report.js");

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
    let last = rows.last();
    let explorer = match std::fs::read_to_string(run_dir.join("attention.json")) {
        Ok(text) => {
            let views: AttentionViews = serde_json::from_str(&text)
                .map_err(|e| GrokError::data_file(run_dir.join("attention.json").display(), e))?;
            explorer(&views, rows)
        }
        Err(_) => None,
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
    let mut summary = vec![
        format!(
            "<table>\n{final_row}\n<tr><th>checkpoints measured</th><td>{} (measures.jsonl)</td></tr>\n</table>",
            analysis.checkpoints
        ),
        format!("<ul>{findings}</ul>"),
    ];
    if let Some(p) = &analysis.phases {
        summary.push(format!("<p class=\"note\">{}</p>", escape(&p.rule)));
    }
    let plots = run_dir.join("plots");
    ReportPage {
        summary,
        explorer,
        sections: vec![Section {
            id: "curves",
            title: "Over training".into(),
            body: drawn_figures(&plots, &CURVES),
        }],
    }
    .write(run_dir)
}

/// The checkpoint explorer: the slider, the loss with a marker, every head's pattern on the
/// fixed test sequence, the offset profiles; `None` without measured checkpoints.
fn explorer(views: &AttentionViews, rows: &[MetricsRow]) -> Option<Explorer> {
    if views.checkpoints.is_empty() {
        return None;
    }
    let mut figures = vec![(
        "view-loss".to_string(),
        "Loss (marker: selected checkpoint)".to_string(),
    )];
    let scored: Vec<usize> = (0..views.targets.len())
        .filter(|&p| views.targets[p] != crate::tasks::IGNORE)
        .collect();
    let signal = views.signal_position.map_or(String::new(), |p| {
        format!("; red outline: the signal token's column (position {p})")
    });
    for k in 0..views.n_layers * views.n_heads {
        let (l, h) = (k / views.n_heads, k % views.n_heads);
        figures.push((
            format!("view-pat-{k}"),
            format!("blocks.{l}.attn.hook_pattern, head {h}: query rows, key columns, on test sequence 0{signal}"),
        ));
    }
    if (views.checkpoints.iter()).any(|c| !c.induction_profile.is_empty()) {
        figures.push((
            "view-induction".into(),
            "Mean attention from a scored token by key offset from the earlier occurrence of its token (induction stripe: +1), rows layer.head".into(),
        ));
    }
    figures.push((
        "view-query".into(),
        "Mean attention by key offset back from the query (previous-token diagonal: −1), rows layer.head".into(),
    ));
    let loss: Vec<_> = (rows.iter())
        .map(|r| json!([r.step, round(r.train_loss), round(r.test_loss)]))
        .collect();
    Some(Explorer {
        note: format!(
            "<p class=\"note\">Test sequence 0: tokens {:?}; scored positions {scored:?}.</p>",
            views.tokens
        ),
        views: figures,
        data: json!({ "views": views, "loss": loss }),
        script: SCRIPT,
    })
}
