//! Plots of an in-context regression run's analysis (`plots/icl/`): the loss against GD and
//! GD++ over training, model cos, preds and model diff, how the first block's products fit the
//! construction, the interpolation between constructed and trained weights, the
//! out-of-distribution sweeps, the dampened roll-out, and the final products beside the
//! construction's.

use super::charts::{palette, Chart, Series};
use crate::error::{GrokError, Result};
use crate::measures::icl_run::{IclAnalysis, IclRow, OodPoint};
use plotters::prelude::{BLACK, BLUE, RED};
use std::path::{Path, PathBuf};

/// The charts [`plot_icl`] draws, `(file stem under plots/, title)`, in report order; those a
/// run has no data for are not drawn.
pub const ICL_CHARTS: [(&str, &str); 9] = [
    ("icl/loss", "Loss against GD and GD++"),
    (
        "icl/model_cos",
        "Model cos: ∂ŷ/∂x_q against the reference's",
    ),
    ("icl/diffs", "Preds diff and model diff"),
    (
        "icl/construction_fit",
        "First block against the construction",
    ),
    (
        "icl/interpolation",
        "Interpolation from the construction (α = 0) to the trained weights (α = 1)",
    ),
    (
        "icl/ood_x_range",
        "Out of distribution: input range × scale",
    ),
    (
        "icl/ood_w_scale",
        "Out of distribution: weight scale × scale",
    ),
    (
        "icl/rollout",
        "Dampened roll-out of the trained layer against K-step GD",
    ),
    (
        "icl/products",
        "Final W_Q W_Kᵀ and W_V W_P beside the construction",
    ),
];

/// Draws the charts of [`ICL_CHARTS`] into `run_dir/plots/icl/`.
///
/// # Errors
/// [`GrokError::Io`] when a file cannot be written.
pub fn plot_icl(run_dir: &Path, rows: &[IclRow], analysis: &IclAnalysis) -> Result<PathBuf> {
    let dir = run_dir.join("plots").join("icl");
    std::fs::create_dir_all(&dir).map_err(|e| GrokError::io(&dir, e))?;
    let Some(last) = rows.last() else {
        return Ok(dir);
    };
    let name = |i: usize| ICL_CHARTS[i].0.trim_start_matches("icl/");
    let metric = |key: &str| -> Vec<(f64, f64)> {
        (rows.iter())
            .filter_map(|r| Some((r.step as f64, r.metrics.get(key).copied().flatten()?)))
            .filter(|(_, y)| y.is_finite())
            .collect()
    };
    let refs: Vec<&str> = (analysis.references.iter())
        .map(|r| r.name.as_str())
        .filter(|n| !n.ends_with("_trained"))
        .collect();
    let x_end = last.step as f64;
    let flat = |y: f64| vec![(0.0, y), (x_end, y)];

    let mut loss: Vec<Series> = vec![(
        "trained".into(),
        BLACK,
        rows.iter().map(|r| (r.step as f64, r.test_loss)).collect(),
    )];
    for (i, r) in analysis.references.iter().enumerate() {
        loss.push((
            format!("{} (η {:.2})", r.name, r.eta),
            palette(i + 1),
            flat(r.loss),
        ));
    }
    Chart::over_steps("½-MSE on the evaluation set (log scale)", true, loss, &[]).save(
        &dir,
        name(0),
        ICL_CHARTS[0].1,
    )?;

    let per_ref = |prefix: &str| -> Vec<Series> {
        (refs.iter().enumerate())
            .map(|(i, r)| {
                (
                    format!("{prefix}{r}"),
                    palette(i + 1),
                    metric(&format!("{prefix}{r}")),
                )
            })
            .collect()
    };
    Chart::over_steps("mean cosine", false, per_ref("model_cos_"), &[]).save(
        &dir,
        name(1),
        ICL_CHARTS[1].1,
    )?;
    let mut diffs = per_ref("preds_diff_");
    diffs.extend(
        per_ref("model_diff_")
            .into_iter()
            .map(|(l, _, p)| (l, RED, p)),
    );
    diffs
        .iter_mut()
        .enumerate()
        .for_each(|(i, s)| s.1 = palette(i + 1));
    Chart::over_steps(
        "mean |Δŷ| and mean ‖Δ∂ŷ/∂x_q‖ (log scale)",
        true,
        diffs,
        &[],
    )
    .save(&dir, name(2), ICL_CHARTS[2].1)?;
    let fit = vec![
        ("qk_offdiag".into(), BLUE, metric("qk_offdiag")),
        ("vp_offlast".into(), RED, metric("vp_offlast")),
    ];
    Chart::over_steps(
        "ratio to the construction's entries (log scale)",
        true,
        fit,
        &[],
    )
    .save(&dir, name(3), ICL_CHARTS[3].1)?;

    if !last.interpolation.is_empty() {
        // the first checkpoint, the middle one and the last
        let picks = [0, rows.len() / 2, rows.len() - 1];
        let mut series: Vec<Series> = Vec::new();
        for (i, &k) in picks.iter().enumerate() {
            let r = &rows[k];
            if series.iter().any(|s| s.0 == format!("step {}", r.step)) {
                continue;
            }
            let pts = analysis
                .alphas
                .iter()
                .copied()
                .zip(r.interpolation.iter().copied());
            series.push((format!("step {}", r.step), palette(i), pts.collect()));
        }
        Chart::Lines {
            x_label: "α".into(),
            y_label: "½-MSE (log scale)".into(),
            log_y: true,
            series,
            markers: Vec::new(),
        }
        .save(&dir, name(4), ICL_CHARTS[4].1)?;
    }

    let ood = |points: &[OodPoint], x_label: &str, stem: usize| -> Result<()> {
        let mut series: Vec<Series> = vec![(
            "trained".into(),
            BLACK,
            points.iter().map(|p| (p.scale, p.model)).collect(),
        )];
        for (i, r) in refs.iter().enumerate() {
            let pts = (points.iter())
                .filter_map(|p| Some((p.scale, *p.references.get(*r)?)))
                .collect();
            series.push(((*r).into(), palette(i + 1), pts));
        }
        Chart::Lines {
            x_label: x_label.into(),
            y_label: "½-MSE (log scale)".into(),
            log_y: true,
            series,
            markers: vec![(1.0, "training".into())],
        }
        .save(&dir, name(stem), ICL_CHARTS[stem].1)
    };
    ood(&analysis.ood_x_range, "x_range ÷ training x_range", 5)?;
    ood(&analysis.ood_w_scale, "w_scale ÷ training w_scale", 6)?;

    if !analysis.rollout.is_empty() {
        let k = |f: fn(&crate::measures::icl_run::RolloutPoint) -> f64| {
            analysis
                .rollout
                .iter()
                .map(|r| (r.steps as f64, f(r)))
                .collect()
        };
        Chart::Lines {
            x_label: "applications / steps K".into(),
            y_label: "½-MSE (log scale)".into(),
            log_y: true,
            series: vec![
                ("trained layer, best λ".into(), BLACK, k(|r| r.loss)),
                ("K-step GD, best η".into(), palette(1), k(|r| r.gd_loss)),
            ],
            markers: Vec::new(),
        }
        .save(&dir, name(7), ICL_CHARTS[7].1)?;
    }

    let e = analysis.e;
    let mut panels = Vec::new();
    for (h, (qk, vp)) in last.qk.iter().zip(&last.vp).enumerate() {
        panels.push((format!("head {h}: W_Q W_Kᵀ"), e, qk.clone()));
        panels.push((format!("head {h}: W_V W_P"), e, vp.clone()));
    }
    panels.push((
        format!("{}: W_Q W_Kᵀ", analysis.construction),
        e,
        analysis.construction_qk.clone(),
    ));
    panels.push((
        format!("{}: W_V W_P", analysis.construction),
        e,
        analysis.construction_vp.clone(),
    ));
    Chart::Matrices { columns: 2, panels }.save(
        &dir,
        name(8),
        &format!("{} (step {})", ICL_CHARTS[8].1, last.step),
    )?;
    Ok(dir)
}
