//! `groklab llc`'s pictures: the LLC over training beside the train and test loss, with the
//! run's phase markers when it has been analysed, and the last checkpoint's SGLD loss traces.

use super::charts::{palette, Chart, Series};
use crate::error::{GrokError, Result};
use crate::measures::llc_run::LlcRow;
use crate::rundir::MetricsLog;
use std::path::{Path, PathBuf};

/// The pictures [`plot_llc`] draws, `(path under plots/ without extension, caption)`, in the
/// order the report shows them.
pub const LLC_CHARTS: [(&str, &str); 3] = [
    ("llc/llc", "Local learning coefficient λ̂ per checkpoint (± 1 s.e. over chains; markers: phase boundaries)"),
    ("llc/losses", "Train and test loss over the same steps"),
    ("llc/trace", "SGLD loss traces at the last measured checkpoint (flat after burn-in, above L_n(w*))"),
];

/// Draws `plots/llc/llc.{png,svg}` (λ̂ ± its standard error over chains, per checkpoint) and
/// `plots/llc/losses.{png,svg}` (the run's train and test loss, log scale, the same steps), both
/// with the phase boundaries of `analysis.json` when present, and `plots/llc/trace.{png,svg}`
/// (each chain's draw losses at the last measured checkpoint against `L_n(w*)`); returns the
/// folder.
///
/// # Errors
/// [`GrokError::Io`] when the folder or a file cannot be written.
pub fn plot_llc(run_dir: &Path, rows: &[LlcRow]) -> Result<PathBuf> {
    let dir = run_dir.join("plots").join("llc");
    std::fs::create_dir_all(&dir).map_err(|e| GrokError::io(&dir, e))?;
    let markers = phase_markers(run_dir);
    let line = |f: &dyn Fn(&LlcRow) -> f64| -> Vec<(f64, f64)> {
        rows.iter().map(|r| (r.step as f64, f(r))).collect()
    };
    Chart::Lines {
        x_label: "step".into(),
        y_label: "local learning coefficient λ̂".into(),
        log_y: false,
        series: vec![
            (
                "λ̂ (mean over chains)".into(),
                palette(0),
                line(&|r| r.estimate.llc_mean),
            ),
            (
                "+ 1 s.e.".into(),
                palette(1),
                line(&|r| r.estimate.llc_mean + r.estimate.llc_se),
            ),
            (
                "− 1 s.e.".into(),
                palette(1),
                line(&|r| r.estimate.llc_mean - r.estimate.llc_se),
            ),
        ],
        markers: markers.clone(),
    }
    .save(&dir, "llc", "Local learning coefficient over training")?;
    if let Ok(log) = MetricsLog::load(run_dir) {
        let curve = |f: fn(&crate::rundir::MetricsRow) -> f64| -> Vec<(f64, f64)> {
            (log.rows.iter())
                .map(|r| (r.step as f64, f(r)))
                .filter(|(_, y)| *y > 0.0)
                .collect()
        };
        let series: Vec<Series> = vec![
            ("train loss".into(), palette(0), curve(|r| r.train_loss)),
            ("test loss".into(), palette(1), curve(|r| r.test_loss)),
        ];
        Chart::Lines {
            x_label: "step".into(),
            y_label: "loss (nats, log scale)".into(),
            log_y: true,
            series,
            markers,
        }
        .save(&dir, "losses", "Train and test loss")?;
    }
    if let Some(last) = rows.last() {
        let e = &last.estimate;
        let mut series: Vec<Series> = (e.loss_trace.iter().enumerate())
            .map(|(c, t)| {
                let pts = t.iter().enumerate().map(|(i, &l)| (i as f64, l)).collect();
                (format!("chain {c}"), palette(c), pts)
            })
            .collect();
        let draws = e.loss_trace.iter().map(Vec::len).max().unwrap_or(0);
        series.push((
            "L_n(w*)".into(),
            plotters::style::BLACK,
            vec![(0.0, e.init_loss), (draws.max(1) as f64 - 1.0, e.init_loss)],
        ));
        Chart::Lines {
            x_label: "draw".into(),
            y_label: "minibatch loss (nats)".into(),
            log_y: false,
            series,
            markers: Vec::new(),
        }
        .save(
            &dir,
            "trace",
            &format!("SGLD loss traces at step {}", last.step),
        )?;
    }
    Ok(dir)
}

/// The phase boundaries of the run's `analysis.json` as chart markers (none without one).
fn phase_markers(run_dir: &Path) -> Vec<(f64, String)> {
    (run_dir.join("analysis.json").exists())
        .then(|| crate::measures::load_measures(run_dir).ok())
        .flatten()
        .map(|(_, a, _)| super::measure_plots::phase_markers(&a.phases))
        .unwrap_or_default()
}
