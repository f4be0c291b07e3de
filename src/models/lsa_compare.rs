//! How close a trained in-context learner is to gradient descent (von Oswald et al. 2023 §3;
//! REFERENCES.md §5), on a fixed evaluation set of regression tasks:
//!
//! - `loss`: ½-MSE of the model's predictions;
//! - `preds_diff`: mean over tasks of |ŷ_model − ŷ_ref|;
//! - `model_cos`: mean cosine between ∂ŷ_model/∂x_q and ∂ŷ_ref/∂x_q (the linear models the two
//!   learners apply to the query);
//! - `model_diff`: mean ‖∂ŷ_model/∂x_q − ∂ŷ_ref/∂x_q‖₂.
//!
//! The reference is K-step GD with its line-searched step, and for K ≥ 2 also GD++ with its
//! fitted (η, γ) ([`crate::models::lsa_gd`]).

use super::lsa_heads::{head_products, HeadProducts};
use crate::models::lsa::{predict, query_gradients, LsaWeights};
use crate::models::lsa_gd::{fit_gdpp, gd_block, gdpp_block, line_search_gd, stacked};
use crate::tasks::{IclBatch, IclFormat};
use serde::{Deserialize, Serialize};

/// A learner the model is compared with, as constructed LSA weights.
#[derive(Clone, Debug)]
pub struct IclReference {
    /// Metric suffix: `gd` or `gdpp`.
    pub name: &'static str,
    /// GD step η.
    pub eta: f64,
    /// GD++ input step γ (0 for GD).
    pub gamma: f64,
    /// The construction, K layers.
    pub weights: LsaWeights,
    /// `[B]` its predictions on the evaluation set.
    pub preds: Vec<f32>,
    /// `[B, d]` its ∂ŷ/∂x_q on the evaluation set.
    pub grads: Vec<f32>,
    /// Its ½-MSE on the evaluation set.
    pub loss: f64,
}

impl IclReference {
    /// K-step GD (`gdpp = false`, η by [`line_search_gd`]) or K-step GD++ (η, γ by
    /// [`fit_gdpp`]) fitted on `eval`.
    pub fn fit(eval: &IclBatch, n_layers: usize, gdpp: bool) -> Self {
        let (d, n) = (eval.d, eval.n);
        let (name, eta, gamma, block) = if gdpp {
            let (eta, gamma, _) = fit_gdpp(eval, n_layers);
            ("gdpp", eta, gamma, gdpp_block(d, n, eta, gamma))
        } else {
            let (eta, _) = line_search_gd(eval, n_layers);
            ("gd", eta, 0.0, gd_block(d, n, eta))
        };
        let weights = stacked(block, n_layers);
        let tokens = eval.tokens(IclFormat::Paired);
        let preds = predict(&weights, &tokens, n + 1);
        let grads = query_gradients(&weights, &tokens, n + 1);
        let loss = half_mse_f32(&preds, &eval.y_q);
        Self {
            name,
            eta,
            gamma,
            weights,
            preds,
            grads,
            loss,
        }
    }
}

/// ½-MSE of `preds` against `targets`.
pub fn half_mse_f32(preds: &[f32], targets: &[f32]) -> f64 {
    (preds.iter().zip(targets))
        .map(|(p, y)| 0.5 * f64::from(p - y).powi(2))
        .sum::<f64>()
        / preds.len().max(1) as f64
}

/// A model against a reference on the evaluation set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct IclComparison {
    /// Mean |ŷ_model − ŷ_ref|.
    pub preds_diff: f64,
    /// Mean cosine of the query gradients (NaN terms, from a zero gradient, are skipped).
    pub model_cos: f64,
    /// Mean L2 distance of the query gradients.
    pub model_diff: f64,
}

/// Compares `preds` `[B]` and `grads` `[B, d]` of a model with `reference`'s.
pub fn compare(preds: &[f32], grads: &[f32], reference: &IclReference) -> IclComparison {
    let b = preds.len().max(1);
    let d = grads.len() / b;
    let preds_diff = (preds.iter().zip(&reference.preds))
        .map(|(a, r)| f64::from(a - r).abs())
        .sum::<f64>()
        / b as f64;
    let (mut cos, mut n_cos, mut diff) = (0.0, 0usize, 0.0);
    for (g, r) in grads.chunks(d).zip(reference.grads.chunks(d)) {
        let dot: f64 = g
            .iter()
            .zip(r)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        let (ng, nr) = (norm(g), norm(r));
        if ng > 0.0 && nr > 0.0 {
            cos += dot / (ng * nr);
            n_cos += 1;
        }
        diff += g
            .iter()
            .zip(r)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>()
            .sqrt();
    }
    IclComparison {
        preds_diff,
        model_cos: if n_cos == 0 {
            f64::NAN
        } else {
            cos / n_cos as f64
        },
        model_diff: diff / b as f64,
    }
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
}

/// How the first block's products compare with the GD construction, whose
/// `W_Q W_Kᵀ = diag(1, …, 1, 0)` and `W_V W_P` is zero but for `[d, d] = −η/N`:
/// - `qk_offdiag`: ‖off-diagonal‖_F / ‖diagonal‖_F of the x-block `(W_Q W_Kᵀ)[:d, :d]`;
/// - `vp_offlast`: ‖`W_V W_P` without its `[d, d]` entry‖_F / |`(W_V W_P)[d, d]`|;
/// - `eta_eff`: `−N · mean diag((W_Q W_Kᵀ)[:d, :d]) · (W_V W_P)[d, d]`, the GD step the block
///   takes where the two ratios are 0 (then ŷ = (η_eff/N) Σ_i y_i x_iᵀ x_q).
///
/// For GD++ the x-part of `W_V W_P` is −γ·I by design, so `vp_offlast` is not small there.
/// Only the first head is read.
pub fn construction_fit(w: &LsaWeights, n: usize) -> Vec<(String, f64)> {
    let e = w.e;
    let d = e - 1;
    let HeadProducts { qk, vp } = head_products(&w.blocks[0], e).swap_remove(0);
    let (mut diag, mut off) = (0.0, 0.0);
    for i in 0..d {
        for j in 0..d {
            let v = qk[i * e + j].powi(2);
            if i == j {
                diag += v;
            } else {
                off += v;
            }
        }
    }
    let last = vp[e * e - 1];
    let vp_rest = (vp.iter().map(|x| x * x).sum::<f64>() - last * last)
        .max(0.0)
        .sqrt();
    let mean_diag = (0..d).map(|i| qk[i * e + i]).sum::<f64>() / d as f64;
    vec![
        ("qk_offdiag".into(), (off / diag).sqrt()),
        ("vp_offlast".into(), vp_rest / last.abs()),
        ("eta_eff".into(), -(n as f64) * mean_diag * last),
    ]
}

/// The metrics a run logs for `model` on the evaluation set (`tokens` `[B, T, e]` in the run's
/// layout, `targets` `[B]`, `n_pairs` context pairs per task): `test_loss` is returned first,
/// then per reference `<name>_loss`, `<name>_eta`, (`gdpp_gamma`), `preds_diff_<name>`,
/// `model_cos_<name>`, `model_diff_<name>`, then [`construction_fit`] of the first block.
pub fn icl_metrics(
    model: &LsaWeights,
    tokens: &[f32],
    targets: &[f32],
    n_pairs: usize,
    references: &[IclReference],
) -> (f64, Vec<(String, f64)>) {
    let t = tokens.len() / (targets.len().max(1) * model.e);
    let preds = predict(model, tokens, t);
    let grads = query_gradients(model, tokens, t);
    let loss = half_mse_f32(&preds, targets);
    let mut out = Vec::new();
    for r in references {
        let c = compare(&preds, &grads, r);
        out.push((format!("{}_loss", r.name), r.loss));
        out.push((format!("{}_eta", r.name), r.eta));
        if r.name == "gdpp" {
            out.push(("gdpp_gamma".into(), r.gamma));
        }
        out.push((format!("preds_diff_{}", r.name), c.preds_diff));
        out.push((format!("model_cos_{}", r.name), c.model_cos));
        out.push((format!("model_diff_{}", r.name), c.model_diff));
    }
    out.extend(construction_fit(model, n_pairs));
    (loss, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::IclRegression;

    /// The reference against itself: no difference, cosine 1; against a scaled copy of
    /// itself (W_P doubled: ŷ and ∂ŷ/∂x_q double), cosine still 1 and the differences equal
    /// the reference's own mean |ŷ| and ‖∂ŷ/∂x_q‖.
    #[test]
    fn comparison_invariants() {
        let task = IclRegression {
            d: 4,
            n_pairs: 6,
            x_range: 1.0,
            w_scale: 1.0,
            noise: 0.0,
            format: IclFormat::Paired,
            seed: 1,
        };
        let eval = task.eval_set(300);
        let r = IclReference::fit(&eval, 1, false);
        let c = compare(&r.preds, &r.grads, &r);
        assert_eq!((c.preds_diff, c.model_diff), (0.0, 0.0));
        assert!((c.model_cos - 1.0).abs() < 1e-6);
        let mut doubled = r.weights.clone();
        doubled.blocks[0].w_p.iter_mut().for_each(|x| *x *= 2.0);
        let tokens = eval.tokens(IclFormat::Paired);
        let (loss, m) = icl_metrics(&doubled, &tokens, &eval.y_q, 6, std::slice::from_ref(&r));
        let get = |k: &str| m.iter().find(|(n, _)| n == k).unwrap().1;
        assert!((get("model_cos_gd") - 1.0).abs() < 1e-6);
        let mean_abs = r.preds.iter().map(|p| f64::from(p.abs())).sum::<f64>() / 300.0;
        assert!((get("preds_diff_gd") - mean_abs).abs() < 1e-5 * mean_abs);
        let mean_norm = r.grads.chunks(4).map(norm).sum::<f64>() / 300.0;
        assert!((get("model_diff_gd") - mean_norm).abs() < 1e-5 * mean_norm);
        assert!(loss > r.loss, "the line-searched step beats twice it");
        // the construction fits itself exactly, with its own step (doubled: twice it)
        let fit = construction_fit(&r.weights, 6);
        assert_eq!((fit[0].1, fit[1].1), (0.0, 0.0));
        assert!((fit[2].1 - r.eta).abs() < 1e-5 * r.eta, "{fit:?}");
        assert!((get("eta_eff") - 2.0 * r.eta).abs() < 1e-5 * r.eta);
    }
}
