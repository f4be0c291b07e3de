//! `report.html` for an in-context regression run: the findings of `analyze` (references, the
//! last checkpoint against them, interpolation, roll-out), a checkpoint slider that redraws
//! the first block's `W_Q W_Kᵀ` and `W_V W_P` heatmaps beside the construction's and the
//! interpolation curve, and the charts of [`super::icl_plots`]; self-contained as the other
//! reports are.

use super::html::{drawn_figures, escape, page, round, rounded, run_name_and_config, SLIDER_ROW};
use super::icl_plots::ICL_CHARTS;
use crate::error::Result;
use crate::measures::icl_run::{IclAnalysis, IclRow};
use crate::rundir::atomic_write;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const SCRIPT: &str = concat!(
    include_str!("explorer_core.js"),
    include_str!("icl_report.js"),
);

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
    let (name, config) = run_name_and_config(run_dir)?;
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
    // `</` cannot end the script element early inside JSON strings.
    let data = data.to_string().replace("</", "<\\/");
    let findings: String = (analysis.summary_lines(rows.last()).iter())
        .map(|l| format!("<li>{}</li>", escape(l)))
        .collect();
    let heads = rows.last().map_or(0, |r| r.qk.len());
    let view = |id: String, caption: String| {
        format!("<figure><figcaption>{caption}</figcaption><svg id=\"{id}\" class=\"view\" viewBox=\"0 0 460 260\"></svg></figure>\n")
    };
    let mut views = view(
        "view-loss".into(),
        "Loss (marker: selected checkpoint)".into(),
    );
    if rows.last().is_some_and(|r| !r.interpolation.is_empty()) {
        views += &view(
            "view-interp".into(),
            format!("Loss from {c} (α = 0) to the trained weights (α = 1), gauge-aligned products"),
        );
    }
    for h in 0..heads {
        views += &view(
            format!("view-qk-{h}"),
            format!("Block 0, head {h}: W_Q W_Kᵀ"),
        );
        views += &view(
            format!("view-vp-{h}"),
            format!("Block 0, head {h}: W_V W_P"),
        );
    }
    views += &view("view-c-qk".into(), format!("{c} construction: W_Q W_Kᵀ"));
    views += &view("view-c-vp".into(), format!("{c} construction: W_V W_P"));
    let plots = run_dir.join("plots");
    let curves = drawn_figures(&plots, &ICL_CHARTS);
    let html = page(
        &format!("groklab report: {name}"),
        &format!(
            r#"<section id="summary">
<ul>{findings}</ul>
<p class="note">Each heatmap is coloured on its own scale (blue negative, red positive, white 0): a
trained block may carry the construction's products times c and 1/c, which compute the same
function.</p>
<details><summary>config.toml</summary><pre>{config}</pre></details>
</section>
<section id="explorer">
<h2>Checkpoint explorer</h2>
{SLIDER_ROW}
<div class="views">
{views}</div>
</section>
<section id="curves">
<h2>Over training and at the last checkpoint</h2>
{curves}
</section>
<script type="application/json" id="report-data">{data}</script>
<script>{SCRIPT}</script>
"#,
            config = escape(&config),
        ),
    );
    let path = run_dir.join("report.html");
    atomic_write(&path, html.as_bytes())?;
    Ok(path)
}
