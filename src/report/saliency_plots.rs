//! Plots of the general-circuits test (`plots/saliency/`): the skewness and histogram of the
//! neurons' median saliency, top-k against random-k ablation, the gradient's key-frequency
//! share, and the attention heads' saliency and ablation, over training with the run's phase
//! markers.

use super::charts::{palette, Chart, Series};
use crate::error::{GrokError, Result};
use crate::measures::grad_split::GradShares;
use crate::measures::saliency::{Ablated, Ablation};
use crate::measures::saliency_run::SaliencyRow;
use crate::measures::RunAnalysis;
use plotters::prelude::{BLACK, BLUE, RED};
use std::path::{Path, PathBuf};

/// Histogram bins of the median-saliency heatmap.
const BINS: usize = 40;

/// The charts [`plot_saliency`] draws, `(file stem under plots/, title)`, in report order.
pub const SALIENCY_CHARTS: [(&str, &str); 10] = [
    (
        "saliency/median_hist",
        "Histogram of the neurons' median saliency over training",
    ),
    (
        "saliency/skewness",
        "Skewness of the neurons' median saliency",
    ),
    (
        "saliency/ablation_train_loss",
        "Train loss after ablating the top-k or k random neurons",
    ),
    (
        "saliency/ablation_test_loss",
        "Test loss after ablating the top-k or k random neurons",
    ),
    (
        "saliency/grad_share",
        "Share of the gradient in the key-frequency subspace",
    ),
    (
        "saliency/example_share",
        "Per-example gradient share in the key-frequency subspace",
    ),
    ("saliency/head_medians", "Attention heads' median saliency"),
    (
        "saliency/head_ablation_train_loss",
        "Train loss after ablating the top-k or k random attention heads",
    ),
    (
        "saliency/ablation_controls",
        "Controls: ranked on half the training inputs and scored on the other half; ranked by |IG|; random-k's spread",
    ),
    (
        "saliency/share_grad_weights_adam",
        "Key-subspace share of the gradient, the weights and Adam's update (W_E and W_in)",
    ),
];

/// Draws every chart of [`SALIENCY_CHARTS`] into `run_dir/plots/saliency/`.
///
/// # Errors
/// [`GrokError::Io`] when a file cannot be written.
pub fn plot_saliency(
    run_dir: &Path,
    rows: &[SaliencyRow],
    analysis: &RunAnalysis,
) -> Result<PathBuf> {
    let dir = run_dir.join("plots").join("saliency");
    std::fs::create_dir_all(&dir).map_err(|e| GrokError::io(&dir, e))?;
    if rows.is_empty() {
        return Ok(dir);
    }
    let markers = super::measure_plots::phase_markers(&analysis.phases);
    let lines = |y_label: &str, log_y: bool, series: Vec<Series>| {
        Chart::over_steps(y_label, log_y, series, &markers)
    };
    let col = |f: &dyn Fn(&SaliencyRow) -> f64| -> Vec<(f64, f64)> {
        (rows.iter())
            .map(|r| (r.saliency.step as f64, f(r)))
            .filter(|(_, y)| y.is_finite())
            .collect()
    };
    let name = |i: usize| SALIENCY_CHARTS[i].0.trim_start_matches("saliency/");

    // median histogram: columns = checkpoints, rows = bins over the run's range of medians
    let (lo, hi) = (rows.iter().flat_map(|r| &r.saliency.medians))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let width = ((hi - lo) / BINS as f64).max(f64::MIN_POSITIVE);
    let mut values = vec![vec![0.0f64; rows.len()]; BINS];
    for (c, r) in rows.iter().enumerate() {
        for &m in &r.saliency.medians {
            let b = (((m - lo) / width) as usize).min(BINS - 1);
            values[b][c] += 1.0;
        }
    }
    let mut x_edges: Vec<f64> = rows.iter().map(|r| r.saliency.step as f64).collect();
    let spacing = if x_edges.len() > 1 {
        x_edges[1] - x_edges[0]
    } else {
        1.0
    };
    let end = x_edges.last().copied().unwrap_or(0.0) + spacing;
    x_edges.push(end);
    // log colour scale: the zero bin holds most neurons, the tails the few that matter
    values
        .iter_mut()
        .flatten()
        .for_each(|v| *v = (1.0 + *v).log10());
    Chart::Heatmap {
        x_label: "step".into(),
        y_label: format!("median saliency bin ({lo:.3} .. {hi:.3}); colour log10(1 + neurons)"),
        x_edges,
        y0: 0.0,
        values,
    }
    .save(&dir, name(0), SALIENCY_CHARTS[0].1)?;

    lines(
        "skewness g1 of the medians",
        false,
        vec![("skewness".into(), BLACK, col(&|r| r.saliency.skewness))],
    )
    .save(&dir, name(1), SALIENCY_CHARTS[1].1)?;

    let d_half = rows[0].saliency.ablation.last().map_or(1, |a| a.k);
    let ks: Vec<usize> = [1, 4, 16, 64, d_half]
        .into_iter()
        .filter(|&k| k <= d_half)
        .collect();
    for (i, (what, get)) in [
        ("train", (|a: &Ablated| a.train_loss) as fn(&Ablated) -> f64),
        ("test", |a: &Ablated| a.test_loss),
    ]
    .into_iter()
    .enumerate()
    {
        let series = ablation_series(rows, &ks, |r| &r.saliency.ablation, get);
        lines(
            &format!("{what} loss after ablation (nats, log scale)"),
            true,
            series,
        )
        .save(&dir, name(2 + i), SALIENCY_CHARTS[2 + i].1)?;
    }

    let weights = ["W_E", "W_U", "W_L", "W_in", "W_out"];
    let mut series: Vec<Series> = (weights.iter().enumerate())
        .map(|(i, w)| {
            let s = col(&|r: &SaliencyRow| r.grad.share.get(*w).copied().unwrap_or(f64::NAN));
            (w.to_string(), palette(i), s)
        })
        .collect();
    for (i, (w, axis)) in [("W_E", "token/class axis"), ("W_in", "neuron axis")]
        .iter()
        .enumerate()
    {
        let chance = rows[0].grad.chance.get(*w).copied().unwrap_or(f64::NAN);
        let colour = if i == 0 {
            BLACK
        } else {
            plotters::prelude::RGBColor(140, 140, 140)
        };
        series.push((
            format!("chance, {axis}: {chance:.3}"),
            colour,
            col(&|_| chance),
        ));
    }
    lines("share of ‖gradient‖² in the key subspace", false, series).save(
        &dir,
        name(4),
        SALIENCY_CHARTS[4].1,
    )?;

    let quantile = |r: &SaliencyRow, q: f64| {
        let mut v = r.example_key_share.clone();
        v.sort_by(f64::total_cmp);
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    lines(
        "key-subspace share of ‖gradient‖² (W_E, W_U, W_in, W_out)",
        false,
        vec![
            ("full batch".into(), BLACK, col(&|r| r.key_share)),
            ("examples: median".into(), BLUE, col(&|r| quantile(r, 0.5))),
            ("examples: 25%".into(), RED, col(&|r| quantile(r, 0.25))),
            ("examples: 75%".into(), RED, col(&|r| quantile(r, 0.75))),
        ],
    )
    .save(&dir, name(5), SALIENCY_CHARTS[5].1)?;

    let heads = rows[0].heads.medians.len();
    lines(
        "median integrated gradient of the correct logit (logits)",
        false,
        (0..heads)
            .map(|h| {
                let s = col(&|r: &SaliencyRow| r.heads.medians.get(h).copied().unwrap_or(f64::NAN));
                (format!("head {h}"), palette(h), s)
            })
            .collect(),
    )
    .save(&dir, name(6), SALIENCY_CHARTS[6].1)?;

    let head_ks: Vec<usize> = (rows[0].heads.ablation.iter())
        .map(|a| a.k)
        .filter(|&k| k > 0)
        .collect();
    let series = ablation_series(rows, &head_ks, |r| &r.heads.ablation, |a| a.train_loss);
    lines(
        "train loss after head ablation (nats, log scale)",
        true,
        series,
    )
    .save(&dir, name(7), SALIENCY_CHARTS[7].1)?;

    // the ranking controls at one k: a quarter of the neurons
    let k = (d_half / 2).max(1);
    let pick = |f: fn(&Ablation) -> Option<f64>| {
        col(&move |r: &SaliencyRow| {
            (r.saliency.ablation.iter().find(|a| a.k == k))
                .and_then(f)
                .unwrap_or(f64::NAN)
        })
    };
    lines(
        &format!("train loss after ablating {k} neurons (nats, log scale)"),
        true,
        vec![
            (
                format!("top-{k}"),
                palette(0),
                pick(|a| Some(a.top.train_loss)),
            ),
            (
                format!("top-{k} by |IG|"),
                palette(2),
                pick(|a| Some(a.top_abs.train_loss)),
            ),
            (
                format!("top-{k} ranked on half A, on half B"),
                palette(4),
                pick(|a| a.top_heldout.map(|x| x.train_loss)),
            ),
            (
                format!("random-{k} on half B"),
                palette(5),
                pick(|a| a.random_heldout.map(|x| x.train_loss)),
            ),
            (
                format!("random-{k}: mean"),
                palette(1),
                pick(|a| Some(a.random.train_loss)),
            ),
            (
                format!("random-{k}: mean ± sd"),
                palette(3),
                pick(|a| Some(a.random.train_loss + a.random_sd.train_loss)),
            ),
            (
                String::new(),
                palette(3),
                pick(|a| Some(a.random.train_loss - a.random_sd.train_loss)),
            ),
        ],
    )
    .save(&dir, name(8), SALIENCY_CHARTS[8].1)?;

    let share = |s: Option<&GradShares>, w: &str| {
        s.and_then(|s| s.share.get(w).copied()).unwrap_or(f64::NAN)
    };
    let mut series: Vec<Series> = Vec::new();
    for (i, w) in ["W_E", "W_in"].into_iter().enumerate() {
        series.push((
            format!("{w}: gradient"),
            palette(3 * i),
            col(&|r| share(Some(&r.grad), w)),
        ));
        series.push((
            format!("{w}: weights"),
            palette(3 * i + 1),
            col(&|r| share(Some(&r.weights), w)),
        ));
        series.push((
            format!("{w}: Adam update"),
            palette(3 * i + 2),
            col(&|r| share(r.adam_update.as_ref(), w)),
        ));
    }
    lines(
        "share of the squared norm in the key subspace",
        false,
        series,
    )
    .save(&dir, name(9), SALIENCY_CHARTS[9].1)?;
    Ok(dir)
}

/// The lines of an ablation chart: `get` of the unablated model (k = 0, black), then per k of
/// `ks` the top-k and random-k curves, over the rows' steps (non-finite values dropped).
fn ablation_series(
    rows: &[SaliencyRow],
    ks: &[usize],
    ablation: fn(&SaliencyRow) -> &[Ablation],
    get: fn(&Ablated) -> f64,
) -> Vec<Series> {
    let curve = |k: usize, top: bool| -> Vec<(f64, f64)> {
        (rows.iter())
            .map(|r| {
                let y = (ablation(r).iter().find(|a| a.k == k))
                    .map_or(f64::NAN, |a| get(if top { &a.top } else { &a.random }));
                (r.saliency.step as f64, y)
            })
            .filter(|(_, y)| y.is_finite())
            .collect()
    };
    let mut series = vec![("none".to_string(), BLACK, curve(0, true))];
    for (j, &k) in ks.iter().enumerate() {
        series.push((format!("top-{k}"), palette(2 * j), curve(k, true)));
        series.push((format!("random-{k}"), palette(2 * j + 1), curve(k, false)));
    }
    series
}
