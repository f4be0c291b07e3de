//! Plots of a run's progress measures (`plots/measures/`), in the style of Nanda et al. 2023
//! Fig. 3–7, with the detected phase boundaries as vertical markers.

use super::charts::{palette, Chart, Series};
use crate::error::{GrokError, Result};
use crate::measures::neurons::NeuronViews;
use crate::measures::{Measures, RunAnalysis};
use plotters::prelude::{RGBColor, BLACK, BLUE, RED};
use std::path::{Path, PathBuf};

const GREEN: RGBColor = RGBColor(0, 150, 60);
const ORANGE: RGBColor = RGBColor(230, 120, 0);

/// Draws every measure chart of a run into `run_dir/plots/measures/` (PNG + SVG) and returns
/// the directory. `views` are the final checkpoint's neuron pictures.
///
/// # Errors
/// [`GrokError::Io`] when a file cannot be written.
pub fn plot_measures(
    run_dir: &Path,
    rows: &[Measures],
    analysis: &RunAnalysis,
    views: Option<&NeuronViews>,
) -> Result<PathBuf> {
    let dir = run_dir.join("plots").join("measures");
    std::fs::create_dir_all(&dir).map_err(|e| GrokError::io(&dir, e))?;
    let Some(last) = rows.last() else {
        return Ok(dir);
    };
    let col = |f: &dyn Fn(&Measures) -> Option<f64>| -> Vec<(f64, f64)> {
        (rows.iter())
            .filter_map(|r| f(r).map(|y| (r.step as f64, y)))
            .filter(|(_, y)| y.is_finite())
            .collect()
    };
    let markers = phase_markers(&analysis.phases);
    let lines = |y_label: &str, log_y: bool, series: Vec<Series>| {
        Chart::over_steps(y_label, log_y, series, &markers)
    };
    let keys = format!("{:?}", analysis.key_freqs);

    lines(
        "cross-entropy (nats, log scale)",
        true,
        vec![
            ("train".into(), BLUE, col(&|r| Some(r.loss_train))),
            ("test".into(), RED, col(&|r| Some(r.loss_test))),
            (
                "restricted (all)".into(),
                GREEN,
                col(&|r| r.restricted_loss_all),
            ),
            (
                "excluded (train)".into(),
                ORANGE,
                col(&|r| r.excluded_loss_train),
            ),
        ],
    )
    .save(
        &dir,
        "losses",
        &format!("Loss, restricted and excluded loss (key freqs {keys})"),
    )?;

    let key_series = |f: &dyn Fn(&Measures, usize) -> Option<f64>| -> Vec<Series> {
        (analysis.key_freqs.iter().enumerate())
            .map(|(i, &k)| (format!("k = {k}"), palette(i), col(&|r| f(r, k))))
            .collect()
    };
    let mut clusters = key_series(&|r, k| {
        r.clusters
            .as_ref()
            .map(|c| c.sizes.get(&k).copied().unwrap_or(0) as f64)
    });
    clusters.push((
        "no cluster".into(),
        BLACK,
        col(&|r| r.clusters.as_ref().map(|c| c.none as f64)),
    ));
    lines("neurons with FVE >= 0.85", false, clusters).save(
        &dir,
        "neuron_clusters",
        "Neuron cluster sizes per key frequency",
    )?;

    lines(
        "Gini coefficient",
        false,
        vec![
            ("W_E".into(), BLUE, col(&|r| Some(r.gini_w_e))),
            ("W_L".into(), RED, col(&|r| r.gini_w_l)),
        ],
    )
    .save(&dir, "gini", "Gini of the Fourier component norms")?;

    // Zhong et al. 2023's clock/pizza measures (addition only)
    if rows.iter().any(|r| r.gradient_symmetricity.is_some()) {
        lines(
            "clock/pizza measure",
            false,
            vec![
                (
                    "gradient symmetricity (1: pizza)".into(),
                    BLUE,
                    col(&|r| r.gradient_symmetricity),
                ),
                (
                    "distance irrelevance (1: clock)".into(),
                    RED,
                    col(&|r| r.distance_irrelevance),
                ),
            ],
        )
        .save(
            &dir,
            "clock_pizza",
            "Clock or pizza (Zhong et al. 2023): gradient symmetricity and distance irrelevance",
        )?;
    }

    let mut ssw: Vec<Series> = (last.sum_sq.iter())
        .filter(|(_, &v)| v > 0.0)
        .enumerate()
        .map(|(i, (name, _))| {
            let name = name.clone();
            (
                name.clone(),
                palette(i),
                col(&|r| r.sum_sq.get(&name).copied()),
            )
        })
        .collect();
    ssw.push(("total".into(), BLACK, col(&|r| Some(r.sum_sq_weights))));
    lines("sum of squared weights (log scale)", true, ssw).save(
        &dir,
        "sum_sq_weights",
        "Sum of squared weights per parameter",
    )?;

    lines(
        "excluded loss, one frequency removed (train)",
        true,
        key_series(&|r, k| r.excluded_loss_train_per_freq.get(&k).copied()),
    )
    .save(&dir, "excluded_per_freq", "Excluded loss per key frequency")?;

    // Embedding Fourier norms over training: frequency × step.
    let steps: Vec<f64> = rows.iter().map(|r| r.step as f64).collect();
    let mut x_edges = steps.clone();
    let spacing = if steps.len() > 1 {
        steps[steps.len() - 1] - steps[steps.len() - 2]
    } else {
        1.0
    };
    x_edges.push(steps[steps.len() - 1] + spacing);
    let n_freq = last.embed_freq_norms.len();
    Chart::Heatmap {
        x_label: "step".into(),
        y_label: "frequency k".into(),
        x_edges,
        y0: 1.0,
        values: (1..n_freq)
            .map(|k| rows.iter().map(|r| r.embed_freq_norms[k]).collect())
            .collect(),
    }
    .save(
        &dir,
        "embed_fourier_over_training",
        "Embedding Fourier norm per frequency",
    )?;

    let bars = |norms: &[f64]| (1..norms.len()).map(|k| (k as i64, norms[k])).collect();
    let step = last.step;
    Chart::Bars {
        x_label: "frequency k".into(),
        y_label: "norm".into(),
        bars: bars(&last.embed_freq_norms),
    }
    .save(
        &dir,
        "final_embed_fourier",
        &format!("W_E Fourier norms, step {step}"),
    )?;
    if let Some(w_l) = &last.w_l_freq_norms {
        Chart::Bars {
            x_label: "frequency k".into(),
            y_label: "norm".into(),
            bars: bars(w_l),
        }
        .save(
            &dir,
            "final_w_l_fourier",
            &format!("W_L Fourier norms, step {step}"),
        )?;
    }
    if let Some(views) = views {
        let p = (views.spectrum.len() as f64).sqrt().round() as usize;
        let grid = |v: &[f64]| v.chunks(p).map(<[f64]>::to_vec).collect();
        let square = |values, x_label: &str, y_label: &str| Chart::Heatmap {
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_edges: (0..=p).map(|x| x as f64).collect(),
            y0: 0.0,
            values,
        };
        for (i, n) in views.neurons.iter().enumerate() {
            square(grid(&n.acts), "b", "a").save(
                &dir,
                &format!("final_neuron_{i}"),
                &format!(
                    "Neuron {} (k = {}, FVE {:.2}), step {step}",
                    n.index, n.freq, n.fve
                ),
            )?;
        }
        square(
            grid(&views.spectrum),
            "component along b",
            "component along a",
        )
        .save(
            &dir,
            "final_neuron_spectrum",
            &format!("2D Fourier spectrum of the neurons (norm over neurons), step {step}"),
        )?;
    }
    Ok(dir)
}

/// The detected phase boundaries as labelled vertical chart markers `(step, label)`.
pub(super) fn phase_markers(ph: &crate::measures::phases::Phases) -> Vec<(f64, String)> {
    [
        (ph.memorisation_end, "memorised"),
        (ph.circuit_formation_end, "circuit formed"),
        (ph.cleanup_end, "cleaned up"),
    ]
    .into_iter()
    .filter_map(|(s, l)| s.map(|s| (s as f64, l.to_string())))
    .collect()
}
