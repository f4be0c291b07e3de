//! What a trained LSA's weights are, set beside the GD construction (von Oswald et al. 2023,
//! §3 and Fig. 2–4; REFERENCES.md §5):
//!
//! - the per-head products `W_Q W_Kᵀ` and `W_V W_P`, which alone fix the layer's function
//!   (scores `H W_Q W_Kᵀ H_ctxᵀ`, output `scores · H_ctx W_V W_P`);
//! - the interpolation between trained and constructed weights, on those products;
//! - the dampened roll-out: one trained layer applied K times with its update scaled by λ.

use crate::models::lsa::{predict, LsaBlock, LsaWeights};
use crate::tasks::IclBatch;

/// Interpolation weights α of the trained model (0: the construction, 1: the trained model).
pub const ALPHAS: [f64; 11] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// `[e, e]` products of one head (f64, row-major).
#[derive(Clone, Debug, PartialEq)]
pub struct HeadProducts {
    /// `W_Q W_Kᵀ`: token i's query against token j's key is `h_i · (W_Q W_Kᵀ) h_j`.
    pub qk: Vec<f64>,
    /// `W_V W_P`: what an attended token adds to the residual, `h_j (W_V W_P)`.
    pub vp: Vec<f64>,
}

/// `a[e, e] · b[e, e]` (`b` transposed when `transpose_b`), in f64.
fn product(a: &[f32], b: &[f32], e: usize, transpose_b: bool) -> Vec<f64> {
    let mut out = vec![0.0f64; e * e];
    for i in 0..e {
        for j in 0..e {
            out[i * e + j] = (0..e)
                .map(|k| {
                    let bv = if transpose_b {
                        b[j * e + k]
                    } else {
                        b[k * e + j]
                    };
                    f64::from(a[i * e + k]) * f64::from(bv)
                })
                .sum();
        }
    }
    out
}

/// The products of every head of `block` (of width `e`), head by head.
pub fn head_products(block: &LsaBlock, e: usize) -> Vec<HeadProducts> {
    let heads = block.w_q.len() / (e * e);
    (0..heads)
        .map(|h| {
            let m = |w: &[f32]| w[h * e * e..(h + 1) * e * e].to_vec();
            HeadProducts {
                qk: product(&m(&block.w_q), &m(&block.w_k), e, true),
                vp: product(&m(&block.w_v), &m(&block.w_p), e, false),
            }
        })
        .collect()
}

/// The block whose heads compute `products` exactly: `W_Q = QK`, `W_K = I`, `W_V = VP`,
/// `W_P = I` per head.
fn block_of(products: &[HeadProducts], e: usize) -> LsaBlock {
    let eye: Vec<f32> = (0..e * e)
        .map(|i| if i / e == i % e { 1.0 } else { 0.0 })
        .collect();
    let cat = |f: &dyn Fn(&HeadProducts) -> Vec<f32>| products.iter().flat_map(f).collect();
    LsaBlock {
        w_q: cat(&|p| p.qk.iter().map(|&x| x as f32).collect()),
        w_k: cat(&|_| eye.clone()),
        w_v: cat(&|p| p.vp.iter().map(|&x| x as f32).collect()),
        w_p: cat(&|_| eye.clone()),
        ..LsaBlock::default()
    }
}

/// The gauge scale c that best maps a trained head onto a constructed one: the layer is
/// unchanged by `(QK, VP) → (c·QK, VP/c)`, and c minimises ‖c·QK_trained − QK_constructed‖_F
/// (1 where either is zero, so an untrained head is left as it is).
pub fn gauge_scale(trained: &HeadProducts, constructed: &HeadProducts) -> f64 {
    let dot: f64 = trained
        .qk
        .iter()
        .zip(&constructed.qk)
        .map(|(a, b)| a * b)
        .sum();
    let nt: f64 = trained.qk.iter().map(|a| a * a).sum();
    let c = dot / nt;
    if nt > 0.0 && c.is_finite() && c.abs() > 1e-12 {
        c
    } else {
        1.0
    }
}

/// `trained` with every head moved to the construction's gauge ([`gauge_scale`]); its
/// function is unchanged.
pub fn gauge_aligned(trained: &[HeadProducts], constructed: &[HeadProducts]) -> Vec<HeadProducts> {
    let zero = HeadProducts {
        qk: vec![0.0; trained[0].qk.len()],
        vp: vec![0.0; trained[0].qk.len()],
    };
    (trained.iter().enumerate())
        .map(|(h, t)| {
            let c = gauge_scale(t, constructed.get(h).unwrap_or(&zero));
            HeadProducts {
                qk: t.qk.iter().map(|x| x * c).collect(),
                vp: t.vp.iter().map(|x| x / c).collect(),
            }
        })
        .collect()
}

/// The linear-attention model whose products are `(1 − α)·constructed + α·trained` head by
/// head and block by block, after [`gauge_aligned`] (heads the construction lacks count as
/// zero there). `constructed` has one block per layer or one shared block.
///
/// # Panics
/// When the widths differ or `trained` is softmax attention or has LayerNorm or an MLP (its
/// products are not comparable with a linear construction): a programming error.
pub fn interpolate(trained: &LsaWeights, constructed: &LsaWeights, alpha: f64) -> LsaWeights {
    assert!(
        !trained.softmax && !trained.layer_norm && trained.d_mlp == 0 && trained.e == constructed.e,
        "interpolation of plain linear LSAs"
    );
    let e = trained.e;
    let blocks = (0..trained.blocks.len())
        .map(|b| {
            let t = head_products(&trained.blocks[b], e);
            let c = head_products(&constructed.blocks[b % constructed.blocks.len()], e);
            let t = gauge_aligned(&t, &c);
            let mix = |x: &[f64], y: Option<&[f64]>| -> Vec<f64> {
                (x.iter().enumerate())
                    .map(|(i, &v)| alpha * v + (1.0 - alpha) * y.map_or(0.0, |y| y[i]))
                    .collect()
            };
            let heads: Vec<HeadProducts> = (t.iter().enumerate())
                .map(|(h, th)| HeadProducts {
                    qk: mix(&th.qk, c.get(h).map(|c| c.qk.as_slice())),
                    vp: mix(&th.vp, c.get(h).map(|c| c.vp.as_slice())),
                })
                .collect();
            block_of(&heads, e)
        })
        .collect();
    LsaWeights {
        blocks,
        ..trained.clone()
    }
}

/// ½-MSE of `w` on `batch` (paired tokens).
pub fn loss_on(w: &LsaWeights, batch: &IclBatch) -> f64 {
    let tokens = batch.tokens(crate::tasks::IclFormat::Paired);
    let preds = predict(w, &tokens, batch.n + 1);
    super::lsa_compare::half_mse_f32(&preds, &batch.y_q)
}

/// The ½-MSE on `batch` at every α of [`ALPHAS`] ([`interpolate`]).
pub fn interpolation_losses(
    trained: &LsaWeights,
    constructed: &LsaWeights,
    batch: &IclBatch,
) -> Vec<f64> {
    (ALPHAS.iter())
        .map(|&a| loss_on(&interpolate(trained, constructed, a), batch))
        .collect()
}

/// One trained layer (the first block of `w`) applied `steps` times with its update dampened
/// by λ (`W_P → λ·W_P`): `H ← H + λ·Δ(H)` per application.
pub fn rollout(w: &LsaWeights, steps: usize, lambda: f64) -> LsaWeights {
    let mut block = w.blocks[0].clone();
    block.w_p.iter_mut().for_each(|x| *x *= lambda as f32);
    LsaWeights {
        n_layers: steps,
        blocks: vec![block],
        ..w.clone()
    }
}

/// The dampening grid of [`best_rollout`]: λ = 0.02k, k = 1, …, 75.
pub fn lambda_grid() -> impl Iterator<Item = f64> {
    (1..=75).map(|k| 0.02 * k as f64)
}

/// The λ of [`lambda_grid`] with the lowest ½-MSE of [`rollout`] on `batch`, as the paper's
/// line search picks GD's η: `(λ, loss)`.
pub fn best_rollout(w: &LsaWeights, steps: usize, batch: &IclBatch) -> (f64, f64) {
    lambda_grid()
        .map(|l| (l, loss_on(&rollout(w, steps, l), batch)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("a non-empty grid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::lsa_gd::{gd_block, stacked};
    use crate::tasks::{IclFormat, IclRegression};

    fn eval() -> IclBatch {
        IclRegression {
            d: 5,
            n_pairs: 7,
            x_range: 1.0,
            w_scale: 1.0,
            noise: 0.0,
            format: IclFormat::Paired,
            seed: 4,
        }
        .eval_set(400)
    }

    /// The products of the GD block are the construction's diag(1, …, 1, 0) and
    /// diag(0, …, 0, −η/N); a block rebuilt from products predicts as the original; a gauge
    /// change (W_Q·c, W_P/c) leaves predictions unchanged and is undone by the alignment, so
    /// interpolating a re-gauged construction with itself gives its loss at every α.
    #[test]
    fn products_gauge_and_interpolation() {
        let (d, n, eta) = (5, 7, 2.5);
        let e = d + 1;
        let c = stacked(gd_block(d, n, eta), 1);
        let p = &head_products(&c.blocks[0], e)[0];
        for i in 0..e {
            for j in 0..e {
                let qk = if i == j && i < d { 1.0 } else { 0.0 };
                let vp = if i == d && j == d {
                    -eta / n as f64
                } else {
                    0.0
                };
                assert!((p.qk[i * e + j] - qk).abs() < 1e-7);
                assert!((p.vp[i * e + j] - vp).abs() < 1e-7);
            }
        }
        let batch = eval();
        let base = loss_on(&c, &batch);
        let mut rebuilt = c.clone();
        rebuilt.blocks[0] = block_of(&head_products(&c.blocks[0], e), e);
        assert!((loss_on(&rebuilt, &batch) - base).abs() < 1e-6 * base);
        let mut regauged = c.clone();
        regauged.blocks[0].w_q.iter_mut().for_each(|x| *x *= -3.0);
        regauged.blocks[0].w_p.iter_mut().for_each(|x| *x /= -3.0);
        let c_scale = gauge_scale(&head_products(&regauged.blocks[0], e)[0], p);
        assert!((c_scale + 1.0 / 3.0).abs() < 1e-6, "{c_scale}");
        for l in interpolation_losses(&regauged, &c, &batch) {
            assert!((l - base).abs() < 1e-5 * base, "{l} against {base}");
        }
        // without the alignment the midpoint would be the zero-ish model: far worse
        let naive_mid = {
            let mut m = c.clone();
            for (a, b) in m.blocks[0].w_q.iter_mut().zip(&regauged.blocks[0].w_q) {
                *a = 0.5 * *a + 0.5 * b;
            }
            for (a, b) in m.blocks[0].w_p.iter_mut().zip(&regauged.blocks[0].w_p) {
                *a = 0.5 * *a + 0.5 * b;
            }
            loss_on(&m, &batch)
        };
        assert!(naive_mid > base * 1.2, "{naive_mid} against {base}");
    }

    /// Rolling the 1-step GD block out K times with λ = 1 is K GD steps with the same η; the
    /// best λ for one step of a block built with 2η is ≈ 1/2.
    #[test]
    fn rollout_of_gd_is_gd() {
        let (d, n, eta) = (5, 7, 2.0);
        let batch = eval();
        let one = stacked(gd_block(d, n, eta), 1);
        let three = stacked(gd_block(d, n, eta), 3);
        assert!((loss_on(&rollout(&one, 3, 1.0), &batch) - loss_on(&three, &batch)).abs() < 1e-7);
        let (eta_best, _) = crate::models::lsa_gd::line_search_gd(&batch, 1);
        let doubled = stacked(gd_block(d, n, 2.0 * eta_best), 1);
        let (lambda, loss) = best_rollout(&doubled, 1, &batch);
        assert!((lambda - 0.5).abs() <= 0.03, "λ = {lambda}");
        let gd = loss_on(&stacked(gd_block(d, n, eta_best), 1), &batch);
        assert!(loss <= gd * 1.01, "{loss} against {gd}");
    }
}
