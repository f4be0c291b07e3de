//! `analyze` for an in-context regression run (von Oswald et al. 2023; REFERENCES.md §5): at
//! every checkpoint the metrics the run logs against GD (and GD++), the first block's
//! products `W_Q W_Kᵀ` and `W_V W_P` per head, and the loss along the interpolation between the
//! construction and the trained weights; at the last checkpoint the out-of-distribution sweeps
//! over the input range and the weight scale, the dampened roll-out (when the config asks for
//! it) and GD++ trained by the diagonal-only rule. Writes `measures.jsonl` / `measures.csv` and
//! `analysis.json`.

use super::analyze::{analyze_checkpoints, CheckpointAnalysis};
use super::icl::{half_mse_f32, icl_metrics};
use super::icl_weights::{best_rollout, head_products, interpolation_losses, ALPHAS};
use super::run::SkippedCheckpoint;
use crate::config::{IclTaskSection, LsaSection};
use crate::error::{GrokError, Result};
use crate::models::lsa::LsaConfig;
use crate::models::lsa::{predict, LsaWeights};
use crate::models::lsa_compare::IclReference;
use crate::models::lsa_gd::{gdpp_predictions, half_mse, line_search_gd, train_gdpp_diagonal};
use crate::models::lsa_heads::HeadProducts;
use crate::models::{ParamSpec, ParamStore};
use crate::rundir::model_path;
use crate::rundir::RunDir;
use crate::tasks::icl_regression::tokens_per_task;
use crate::tasks::IclBatch;
use crate::tasks::{IclFormat, IclRegression};
use crate::train::IclData;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// Scales of the out-of-distribution sweeps, × the training `x_range` or `w_scale`.
pub const OOD_SCALES: [f64; 9] = [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0];

/// Tasks per point of the out-of-distribution sweeps.
pub const OOD_TASKS: usize = 2000;

/// One checkpoint's measures (a line of `measures.jsonl`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IclRow {
    /// Training step.
    pub step: u64,
    /// ½-MSE on the evaluation set.
    pub test_loss: f64,
    /// [`icl_metrics`] by name (`gd_loss`, `preds_diff_gd`, `model_cos_gd`, …); NaN as null.
    pub metrics: BTreeMap<String, Option<f64>>,
    /// ½-MSE at each α of [`ALPHAS`] along the interpolation from the construction (α = 0) to
    /// the trained weights (α = 1) ([`super::icl_weights::interpolate`]); empty for softmax
    /// attention, LayerNorm, an MLP or the alternating layout, which have no linear
    /// construction to compare.
    pub interpolation: Vec<f64>,
    /// `[h][e·e]` the first block's `W_Q W_Kᵀ` per head.
    pub qk: Vec<Vec<f64>>,
    /// `[h][e·e]` the first block's `W_V W_P` per head.
    pub vp: Vec<Vec<f64>>,
}

/// A learner's loss at one scale of an out-of-distribution sweep.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OodPoint {
    /// The factor on the training `x_range` or `w_scale`.
    pub scale: f64,
    /// The trained model's ½-MSE.
    pub model: f64,
    /// Each reference's ½-MSE (its step fitted in distribution), by name (`gd`, `gdpp`).
    pub references: BTreeMap<String, f64>,
}

/// The dampened roll-out of the trained layer at one number of applications.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RolloutPoint {
    /// Applications K of the layer.
    pub steps: usize,
    /// The best dampening λ ([`best_rollout`]).
    pub lambda: f64,
    /// Its ½-MSE on the evaluation set.
    pub loss: f64,
    /// K-step GD's ½-MSE with its own line-searched η.
    pub gd_loss: f64,
    /// That η.
    pub gd_eta: f64,
}

/// A reference learner as `analysis.json` records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReferenceSummary {
    /// `gd`, `gdpp` or `gdpp_trained`.
    pub name: String,
    /// GD step η.
    pub eta: f64,
    /// GD++ input step γ (0 for GD).
    pub gamma: f64,
    /// ½-MSE on the evaluation set.
    pub loss: f64,
}

/// What `analyze` writes for an in-context regression run (`analysis.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IclAnalysis {
    /// K-step GD (line search), GD++ (pattern search) for K ≥ 2, and GD++ trained by the
    /// diagonal-only rule ([`train_gdpp_diagonal`]) for K ≥ 2 linear models.
    pub references: Vec<ReferenceSummary>,
    /// The reference the interpolation and heatmaps use: the lowest-loss of GD and GD++.
    pub construction: String,
    /// `[e·e]` its `W_Q W_Kᵀ` and `W_V W_P` (one head).
    pub construction_qk: Vec<f64>,
    /// See `construction_qk`.
    pub construction_vp: Vec<f64>,
    /// Token width e.
    pub e: usize,
    /// [`ALPHAS`].
    pub alphas: Vec<f64>,
    /// The last checkpoint against the references with `x_range` scaled ([`OOD_SCALES`]).
    pub ood_x_range: Vec<OodPoint>,
    /// The same with `w_scale` scaled.
    pub ood_w_scale: Vec<OodPoint>,
    /// The dampened roll-out of the last checkpoint (`model.rollout_steps` > 0).
    pub rollout: Vec<RolloutPoint>,
    /// Number of checkpoints measured.
    pub checkpoints: usize,
    /// Wall-clock seconds the analysis took.
    pub seconds: f64,
    /// Checkpoints left out: non-finite weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<super::run::SkippedCheckpoint>,
}

impl IclAnalysis {
    /// One line per finding, for the terminal and the report.
    pub fn summary_lines(&self, last: Option<&IclRow>) -> Vec<String> {
        let mut lines: Vec<String> = (self.references.iter())
            .map(|r| match r.name.as_str() {
                "gd" => format!("GD: line-searched η = {:.3}, loss {:.4}", r.eta, r.loss),
                name => format!(
                    "{name}: η = {:.3}, γ = {:.4}, loss {:.4}",
                    r.eta, r.gamma, r.loss
                ),
            })
            .collect();
        if let Some(row) = last {
            let get = |k: &str| row.metrics.get(k).copied().flatten().unwrap_or(f64::NAN);
            let c = &self.construction;
            lines.push(format!(
                "step {}: loss {:.4}; against {c}: model cos {:.4}, preds diff {:.4}, model diff {:.4}",
                row.step,
                row.test_loss,
                get(&format!("model_cos_{c}")),
                get(&format!("preds_diff_{c}")),
                get(&format!("model_diff_{c}")),
            ));
            if let Some(mid) = row.interpolation.get(ALPHAS.len() / 2) {
                lines.push(format!(
                    "interpolation {c} → trained: loss {:.4} at α = 0, {mid:.4} at α = 0.5, {:.4} at α = 1",
                    row.interpolation[0],
                    row.interpolation[ALPHAS.len() - 1]
                ));
            }
        }
        for r in &self.rollout {
            lines.push(format!(
                "roll-out ×{}: λ = {:.2}, loss {:.4} ({}-step GD, η = {:.3}: {:.4})",
                r.steps, r.lambda, r.loss, r.steps, r.gd_eta, r.gd_loss
            ));
        }
        lines
    }
}

/// The model's and each reference's ½-MSE on `OOD_TASKS` tasks of `task`.
fn ood_point(model: &LsaWeights, data: &IclData, task: &IclRegression, scale: f64) -> OodPoint {
    let eval = task.eval_set(OOD_TASKS);
    let t = tokens_per_task(task.format, task.n_pairs);
    let preds = predict(model, &eval.tokens(task.format), t);
    let paired = eval.tokens(IclFormat::Paired);
    OodPoint {
        scale,
        model: half_mse_f32(&preds, &eval.y_q),
        references: (data.references.iter())
            .map(|r| {
                let p = predict(&r.weights, &paired, eval.n + 1);
                (r.name.to_string(), half_mse_f32(&p, &eval.y_q))
            })
            .collect(),
    }
}

/// Measures every checkpoint of the in-context regression run `run_dir` and writes
/// `measures.jsonl`, `measures.csv` and `analysis.json` atomically; returns the rows and the
/// analysis.
///
/// # Errors
/// A run directory without config or checkpoints; a config of another task (`task.name`); an
/// unreadable checkpoint; I/O errors.
pub fn analyze_icl_run(run_dir: &Path) -> Result<(Vec<IclRow>, IclAnalysis)> {
    let start = Instant::now();
    let cfg = RunDir::new(run_dir).config()?;
    let model = cfg.model_spec();
    let lsa = model.as_any().downcast_ref::<LsaConfig>();
    let (Some(task), Some(section), Some(lsa)) = (
        cfg.task.get::<IclTaskSection>(),
        cfg.model.get::<LsaSection>(),
        lsa,
    ) else {
        return Err(GrokError::invalid(
            "task.name",
            cfg.task.name(),
            "linear_regression_icl (other tasks have their own analysis)",
        ));
    };
    let (steps, skipped) = super::run::finite_checkpoints(run_dir)?;
    let data = IclData::new(task, lsa.n_layers);
    let eval = data.task.eval_set(task.n_eval);
    let best = (data.references.iter())
        .min_by(|a, b| a.loss.total_cmp(&b.loss))
        .expect("GD is always a reference");
    let e = lsa.width();
    let constructed = head_products(&best.weights.blocks[0], e).swap_remove(0);
    // the construction is a plain linear LSA on paired tokens
    let comparable =
        !lsa.softmax && !lsa.layer_norm && lsa.d_mlp == 0 && task.format == IclFormat::Paired;
    let measures = IclMeasures {
        specs: model.param_specs(),
        run_dir,
        last: *steps.last().expect("finite_checkpoints returns some"),
        lsa,
        section,
        data: &data,
        eval: &eval,
        best,
        constructed,
        comparable,
    };
    analyze_checkpoints(run_dir, &steps, skipped, &measures, start)
}

/// The LSA's checkpoints against the reference learners: per checkpoint the evaluation loss,
/// the comparison metrics, the interpolation from the construction and the first block's head
/// products; at the last checkpoint the out-of-distribution sweeps and the roll-out.
struct IclMeasures<'a> {
    specs: Vec<ParamSpec>,
    run_dir: &'a Path,
    last: u64,
    lsa: &'a LsaConfig,
    section: &'a LsaSection,
    data: &'a IclData,
    eval: &'a IclBatch,
    best: &'a IclReference,
    constructed: HeadProducts,
    comparable: bool,
}

impl CheckpointAnalysis for IclMeasures<'_> {
    type Row = IclRow;
    type Summary = IclAnalysis;

    fn param_specs(&self) -> Vec<ParamSpec> {
        self.specs.clone()
    }

    fn row(&self, step: u64, store: &ParamStore) -> Result<IclRow> {
        let w = LsaWeights::from_store(self.lsa, store);
        let data = self.data;
        let (test_loss, metrics) = icl_metrics(
            &w,
            &data.eval_tokens,
            &data.eval_targets,
            data.task.n_pairs,
            &data.references,
        );
        let products = head_products(&w.blocks[0], self.lsa.width());
        Ok(IclRow {
            step,
            test_loss,
            metrics: (metrics.into_iter())
                .map(|(k, v)| (k, v.is_finite().then_some(v)))
                .collect(),
            interpolation: if self.comparable {
                interpolation_losses(&w, &self.best.weights, self.eval)
            } else {
                Vec::new()
            },
            qk: products.iter().map(|p| p.qk.clone()).collect(),
            vp: products.iter().map(|p| p.vp.clone()).collect(),
        })
    }

    fn jsonl_only(&self) -> &'static [&'static str] {
        &["qk", "vp"]
    }

    fn summary(
        &self,
        rows: &[IclRow],
        skipped: Vec<SkippedCheckpoint>,
        seconds: f64,
    ) -> Result<IclAnalysis> {
        let (data, eval, lsa) = (self.data, self.eval, self.lsa);
        let store = ParamStore::from_safetensors_specs(
            &model_path(self.run_dir, self.last),
            self.specs.clone(),
        )?;
        let last = LsaWeights::from_store(lsa, &store);
        let sweep = |f: &dyn Fn(&mut IclRegression, f64)| -> Vec<OodPoint> {
            (OOD_SCALES.iter())
                .map(|&s| {
                    let mut t = data.task.clone();
                    f(&mut t, s);
                    ood_point(&last, data, &t, s)
                })
                .collect()
        };
        let ood_x_range = sweep(&|t, s| t.x_range *= s);
        let ood_w_scale = sweep(&|t, s| t.w_scale *= s);
        let rollout = (1..=self.section.rollout_steps)
            .map(|k| {
                let (lambda, loss) = best_rollout(&last, k, eval);
                let (gd_eta, gd_loss) = line_search_gd(eval, k);
                RolloutPoint {
                    steps: k,
                    lambda,
                    loss,
                    gd_loss,
                    gd_eta,
                }
            })
            .collect();
        let mut references: Vec<ReferenceSummary> = (data.references.iter())
            .map(|r| ReferenceSummary {
                name: r.name.into(),
                eta: r.eta,
                gamma: r.gamma,
                loss: r.loss,
            })
            .collect();
        if lsa.n_layers >= 2 && !lsa.softmax {
            let (eta, gamma, _) = train_gdpp_diagonal(&data.task, lsa.n_layers, 1000, 2048, 0.1);
            let loss = half_mse(&gdpp_predictions(eval, eta, gamma, lsa.n_layers), eval);
            references.push(ReferenceSummary {
                name: "gdpp_trained".into(),
                eta,
                gamma,
                loss,
            });
        }
        Ok(IclAnalysis {
            references,
            construction: self.best.name.into(),
            construction_qk: self.constructed.qk.clone(),
            construction_vp: self.constructed.vp.clone(),
            e: lsa.width(),
            alphas: ALPHAS.to_vec(),
            ood_x_range,
            ood_w_scale,
            rollout,
            checkpoints: rows.len(),
            seconds,
            skipped,
        })
    }
}

/// Reads what [`analyze_icl_run`] wrote.
///
/// # Errors
/// [`GrokError::Io`] when absent (run `groklab analyze` first), [`GrokError::Config`] when
/// malformed.
pub fn load_icl_analysis(run_dir: &Path) -> Result<(Vec<IclRow>, IclAnalysis)> {
    super::run::read_rows_and_analysis(run_dir)
}
