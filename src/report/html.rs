//! `report.html`: one self-contained page per run (no network: the plots are inline SVG, the
//! interactive views are drawn by the inlined `report.js`, no library).
//!
//! The page shows the run's config, the detected phases, the measure curves, the final
//! checkpoint's neurons, and a checkpoint slider that redraws the embedding and W_L Fourier norms,
//! the neuron clusters and the attention pattern for any checkpoint.

use crate::error::Result;
use crate::measures::{Measures, RunAnalysis};
use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

use super::page::{Explorer, ReportPage, Section};

/// The binary-operation explorer's views (after the shared core, [`super::page`]).
const SCRIPT: &str = include_str!("report.js");
pub(super) const STYLE: &str = include_str!("report.css");

/// The charts inlined in the page, from `plots/` (training) and `plots/measures/` (analysis):
/// line charts as SVG, heatmaps (thousands of cells) as PNG.
const CURVES: [(&str, &str); 8] = [
    (
        "measures/losses",
        "Train, test, restricted and excluded loss",
    ),
    ("accuracy", "Accuracy"),
    (
        "measures/excluded_per_freq",
        "Excluded loss per key frequency",
    ),
    ("measures/neuron_clusters", "Neuron clusters"),
    ("measures/gini", "Gini coefficients"),
    ("measures/sum_sq_weights", "Sum of squared weights"),
    (
        "measures/clock_pizza",
        "Clock or pizza: gradient symmetricity and distance irrelevance (addition only)",
    ),
    (
        "measures/embed_fourier_over_training",
        "Embedding Fourier norms over training",
    ),
];

/// Rounds to 5 significant digits, keeping the embedded data small.
pub(super) fn round(x: f64) -> Value {
    if !x.is_finite() || x == 0.0 {
        return if x == 0.0 { json!(0) } else { Value::Null };
    }
    let digits = 4 - x.abs().log10().floor() as i32;
    let text = if digits > 0 {
        format!("{:.*}", digits.min(17) as usize, x)
    } else {
        format!("{:.0}", x)
    };
    text.parse::<f64>().map_or(Value::Null, |v| json!(v))
}

pub(super) fn rounded(v: &[f64]) -> Value {
    Value::Array(v.iter().map(|&x| round(x)).collect())
}

/// The per-checkpoint data the slider views read.
fn checkpoint_data(m: &Measures) -> Value {
    let opt = |x: Option<f64>| x.map_or(Value::Null, round);
    json!({
        "step": m.step,
        "loss_train": round(m.loss_train),
        "loss_test": round(m.loss_test),
        "restricted": opt(m.restricted_loss_all),
        "excluded": opt(m.excluded_loss_train),
        "embed": rounded(&m.embed_freq_norms),
        "w_l": m.w_l_freq_norms.as_deref().map_or(Value::Null, rounded),
        "clusters": m.clusters.as_ref().map_or(Value::Null, |c| json!({"sizes": c.sizes, "none": c.none})),
        "attention": Value::Array(m.mean_attention.iter().map(|r| rounded(r)).collect()),
        "gini_w_e": round(m.gini_w_e),
        "ssw": round(m.sum_sq_weights),
    })
}

/// Per step of the run's `llc.jsonl` (absent or unreadable: none), what the slider's trace view
/// draws: `{llc_mean, llc_se, init_loss, loss_trace: [chain][draw]}`, losses in nats rounded to
/// 5 significant digits.
fn llc_traces(run_dir: &Path) -> std::collections::BTreeMap<u64, Value> {
    let Ok(text) = std::fs::read_to_string(run_dir.join("llc.jsonl")) else {
        return Default::default();
    };
    (text.lines())
        .filter_map(|l| serde_json::from_str::<crate::measures::llc_run::LlcRow>(l).ok())
        .map(|r| {
            let e = &r.estimate;
            let traces: Vec<Value> = e.loss_trace.iter().map(|t| rounded(t)).collect();
            let row = json!({
                "llc_mean": round(e.llc_mean),
                "llc_se": round(e.llc_se),
                "init_loss": round(e.init_loss),
                "loss_trace": traces,
            });
            (r.step, row)
        })
        .collect()
}

/// A self-contained page: `title` (escaped) as its `<title>` and `<h1>`, the reports' style
/// sheet, then `body`.
pub(super) fn page(title: &str, body: &str) -> String {
    let t = escape(title);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n{body}</body>\n</html>\n"
    )
}

pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A plot inlined: `<stem>.svg` markup without its XML prolog, or `<stem>.png` as a data URI
/// when `png`; a note when the file is missing.
pub(super) fn inline_plot(stem: &Path, png: bool) -> String {
    let missing = |p: &Path| format!("<p class=\"missing\">{} was not drawn</p>", p.display());
    if png {
        let path = stem.with_extension("png");
        return match std::fs::read(&path) {
            Ok(bytes) => format!(
                "<img alt=\"{}\" src=\"data:image/png;base64,{}\">",
                path.display(),
                base64::engine::general_purpose::STANDARD.encode(bytes)
            ),
            Err(_) => missing(&path),
        };
    }
    let path = stem.with_extension("svg");
    match std::fs::read_to_string(&path) {
        Ok(svg) => match svg.find("<svg") {
            Some(i) => svg[i..].to_string(),
            None => svg,
        },
        Err(_) => missing(&path),
    }
}

/// A run directory's name (its last component; `run` if none) and its `config.toml`.
///
/// # Errors
/// [`GrokError::Io`] when the config cannot be read.
pub(super) fn run_name_and_config(run_dir: &Path) -> Result<(String, String)> {
    let config = crate::rundir::RunDir::new(run_dir).config_text()?;
    Ok((run_name(run_dir), config))
}

/// A run directory's name: its last component, `run` if none.
pub(super) fn run_name(run_dir: &Path) -> String {
    (run_dir.file_name()).map_or("run".into(), |n| n.to_string_lossy().to_string())
}

/// The checkpoint slider and its step label, above a report's explorer views.
pub(super) const SLIDER_ROW: &str = r#"<div class="slider-row">
<input type="range" id="slider" min="0" max="0" value="0" aria-label="checkpoint">
<span id="step-label"></span>
</div>"#;

/// One captioned figure per chart of `charts` (`(file stem under plots/, title)`) that was
/// drawn, its SVG inlined; charts not drawn are left out.
pub(super) fn drawn_figures(plots: &Path, charts: &[(&str, &str)]) -> String {
    (charts.iter())
        .filter(|(file, _)| plots.join(file).with_extension("svg").exists())
        .map(|(file, title)| {
            format!(
                "<figure><figcaption>{title}</figcaption>{}</figure>\n",
                inline_plot(&plots.join(file), false)
            )
        })
        .collect()
}

/// Writes `run_dir/report.html` from the run's config, metrics plots and measures, and returns
/// its path.
///
/// # Errors
/// [`GrokError::Io`] when the config cannot be read or the page cannot be written.
pub fn write_report(run_dir: &Path, rows: &[Measures], analysis: &RunAnalysis) -> Result<PathBuf> {
    let name = run_name(run_dir);
    let plots = run_dir.join("plots");
    let data = json!({
        "run": name,
        "key_freqs": analysis.key_freqs,
        "phases": analysis.phases,
        "checkpoints": rows.iter().map(checkpoint_data).collect::<Vec<_>>(),
    });
    let mut data = data;
    let llc = llc_traces(run_dir);
    if !llc.is_empty() {
        // the SGLD traces of the checkpoint under the slider, where `groklab llc` measured it
        for c in data["checkpoints"].as_array_mut().expect("an array") {
            let step = c["step"].as_u64().expect("a step");
            c["llc"] = llc.get(&step).cloned().unwrap_or(Value::Null);
        }
    }
    let ph = &analysis.phases;
    let at = |s: Option<u64>| s.map_or("not detected".to_string(), |s| format!("step {s}"));
    let last = rows.last();
    let final_rows = last.map_or(String::new(), |m| {
        format!(
            "<tr><th>final step</th><td>{}</td></tr>\
             <tr><th>train / test loss</th><td>{:.3e} / {:.3e}</td></tr>\
             <tr><th>test accuracy</th><td>{:.2}%</td></tr>",
            m.step,
            m.loss_train,
            m.loss_test,
            100.0 * m.acc_test
        )
    });
    let summary = format!(
        r#"<table>
<tr><th>key frequencies</th><td>{keys:?} <span class="note">({rule}, from step {key_step})</span></td></tr>
<tr><th>phases</th><td>memorisation ends {m}, circuit formation ends {c}, clean-up ends {u}
<div class="note">{phase_rule}</div></td></tr>
{final_rows}
</table>"#,
        keys = analysis.key_freqs,
        rule = escape(&analysis.key_freq_rule),
        key_step = analysis.key_freq_step,
        m = at(ph.memorisation_end),
        c = at(ph.circuit_formation_end),
        u = at(ph.cleanup_end),
        phase_rule = escape(&ph.rule),
    );
    let curves: String = CURVES
        .iter()
        .filter(|(file, _)| {
            // drawn for addition only
            *file != "measures/clock_pizza" || plots.join(file).with_extension("svg").exists()
        })
        .map(|(file, title)| {
            format!(
                "<figure><figcaption>{title}</figcaption>{}</figure>\n",
                inline_plot(&plots.join(file), file.contains("over_training"))
            )
        })
        .collect();
    // the general-circuits test, where `groklab saliency` has drawn it
    let saliency: String = (super::saliency_plots::SALIENCY_CHARTS.iter())
        .filter(|(file, _)| plots.join(file).with_extension("svg").exists())
        .map(|(file, title)| {
            format!(
                "<figure><figcaption>{title}</figcaption>{}</figure>\n",
                inline_plot(&plots.join(file), file.ends_with("median_hist"))
            )
        })
        .collect();
    // the local learning coefficient, where `groklab llc` has drawn it
    let llc: String = (super::llc_plots::LLC_CHARTS.iter())
        .filter(|(file, _)| plots.join(file).with_extension("svg").exists())
        .map(|(file, title)| {
            format!(
                "<figure><figcaption>{title}</figcaption>{}</figure>\n",
                inline_plot(&plots.join(file), false)
            )
        })
        .collect();
    let neurons: String = (0..4)
        .map(|i| plots.join(format!("measures/final_neuron_{i}")))
        .chain([plots.join("measures/final_neuron_spectrum")])
        .filter(|p| p.with_extension("png").exists())
        .map(|p| format!("<figure>{}</figure>\n", inline_plot(&p, true)))
        .collect();
    let mut views = vec![
        ("view-loss", "Loss (marker: selected checkpoint)"),
        ("view-embed", "Embedding Fourier norm per frequency"),
        ("view-wl", "W_L Fourier norm per frequency"),
        (
            "view-clusters",
            "Neuron clusters (FVE &ge; 0.85) per frequency",
        ),
        ("view-attention", "Mean attention from the last position"),
    ];
    if !llc.is_empty() {
        views.push((
            "view-llc",
            "SGLD loss traces of the local learning coefficient at this checkpoint",
        ));
    }
    ReportPage {
        summary: vec![summary],
        explorer: Some(Explorer {
            note: String::new(),
            views: (views.iter())
                .map(|(id, c)| (id.to_string(), c.to_string()))
                .collect(),
            data,
            script: SCRIPT,
        }),
        sections: vec![
            Section {
                id: "curves",
                title: "Over training".into(),
                body: curves,
            },
            Section {
                id: "saliency",
                title: "Saliency and the gradient's circuits".into(),
                body: saliency,
            },
            Section {
                id: "llc",
                title: "Local learning coefficient".into(),
                body: llc,
            },
            Section {
                id: "neurons",
                title: "Final checkpoint: neurons".into(),
                body: neurons,
            },
        ],
    }
    .write(run_dir)
}
