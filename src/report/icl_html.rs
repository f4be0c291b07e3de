//! `report.html` for an in-context regression run: the findings of `analyze` (references, the
//! last checkpoint against them, interpolation, roll-out), a checkpoint slider that redraws
//! the first block's `W_Q W_Kᵀ` and `W_V W_P` heatmaps beside the construction's and the
//! interpolation curve, and the charts of [`super::icl_plots`]; self-contained as the other
//! reports are.

use super::html::{drawn_figures, escape, round, rounded, run_name};
use super::icl_plots::ICL_CHARTS;
use super::page::{Explorer, ReportPage, Section};
use crate::error::Result;
use crate::measures::icl_run::{IclAnalysis, IclRow};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The in-context regression explorer's views (after the shared core, [`super::page`]).
const SCRIPT: &str = include_str!("icl_report.js");

/// Writes `run_dir/report.html` from the run's config, the rows and analysis of
/// [`crate::measures::icl_run::analyze_icl_run`] and the plots in `plots/`; returns its path.
///
/// # Errors
/// [`GrokError::Io`] when the config cannot be read or the page cannot be written.
pub fn write_icl_report(
    run_dir: &Path,
    rows: &[IclRow],
    analysis: &IclAnalysis,
) -> Result<PathBuf> {
    let name = run_name(run_dir);
    let c = &analysis.construction;
    let metric = |r: &IclRow, k: String| {
        r.metrics
            .get(&k)
            .copied()
            .flatten()
            .map_or(Value::Null, round)
    };
    let checkpoints: Vec<Value> = (rows.iter())
        .map(|r| {
            json!({
                "step": r.step,
                "test_loss": round(r.test_loss),
                "model_cos": metric(r, format!("model_cos_{c}")),
                "preds_diff": metric(r, format!("preds_diff_{c}")),
                "interp": rounded(&r.interpolation),
                "qk": r.qk.iter().map(|m| rounded(m)).collect::<Vec<_>>(),
                "vp": r.vp.iter().map(|m| rounded(m)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let data = json!({
        "run": name,
        "e": analysis.e,
        "construction": c,
        "construction_qk": rounded(&analysis.construction_qk),
        "construction_vp": rounded(&analysis.construction_vp),
        "alphas": analysis.alphas,
        "references": (analysis.references.iter())
            .map(|r| json!({"name": r.name, "loss": r.loss}))
            .collect::<Vec<_>>(),
        "checkpoints": checkpoints,
    });
    let findings: String = (analysis.summary_lines(rows.last()).iter())
        .map(|l| format!("<li>{}</li>", escape(l)))
        .collect();
    let heads = rows.last().map_or(0, |r| r.qk.len());
    let mut views = vec![(
        "view-loss".to_string(),
        "Loss (marker: selected checkpoint)".to_string(),
    )];
    if rows.last().is_some_and(|r| !r.interpolation.is_empty()) {
        views.push((
            "view-interp".into(),
            format!("Loss from {c} (α = 0) to the trained weights (α = 1), gauge-aligned products"),
        ));
    }
    for h in 0..heads {
        views.push((
            format!("view-qk-{h}"),
            format!("Block 0, head {h}: W_Q W_Kᵀ"),
        ));
        views.push((
            format!("view-vp-{h}"),
            format!("Block 0, head {h}: W_V W_P"),
        ));
    }
    views.push(("view-c-qk".into(), format!("{c} construction: W_Q W_Kᵀ")));
    views.push(("view-c-vp".into(), format!("{c} construction: W_V W_P")));
    let plots = run_dir.join("plots");
    ReportPage {
        summary: vec![
            format!("<ul>{findings}</ul>"),
            r#"<p class="note">Each heatmap is coloured on its own scale (blue negative, red positive, white 0): a
trained block may carry the construction's products times c and 1/c, which compute the same
function.</p>"#
                .into(),
        ],
        explorer: Some(Explorer {
            note: String::new(),
            views,
            data,
            script: SCRIPT,
        }),
        sections: vec![Section {
            id: "curves",
            title: "Over training and at the last checkpoint".into(),
            body: drawn_figures(&plots, &ICL_CHARTS),
        }],
    }
    .write(run_dir)
}
