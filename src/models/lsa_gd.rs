//! Linear self-attention weights that do gradient descent in context (von Oswald et al. 2023,
//! Prop. 1 and §3; REFERENCES.md §5), the learners they equal in closed form, and the line
//! searches of their step sizes.
//!
//! GD on the context's loss `L(w) = 1/(2N) Σ_i (w·x_i − y_i)²` from w₀ = 0 with step η:
//! `w_{k+1} = w_k + (η/N) Σ_i (y_i − w_k·x_i) x_i`, predicting `ŷ = w_K·x_q`. One LSA layer with
//! `W_Q = W_K = diag(1, …, 1, 0)`, `W_V = diag(0, …, 0, −1)`, `W_P = diag(0, …, 0, η/N)` adds
//! `−(η/N) Σ_i y_i x_iᵀ x_j` to every token's last entry, so the query reads `−ŷ` and each
//! context token its residual `y_i − w₁·x_i`: K such layers are K steps.
//!
//! GD++ also moves the inputs: `W_V = diag(1, …, 1, −1)`, `W_P = diag(−γ, …, −γ, η/N)` maps
//! every x_j to `(I − γ XᵀX) x_j` (XᵀX = Σ_i x_i x_iᵀ over the context) as the labels step.

use super::lsa::{LsaBlock, LsaConfig, LsaWeights, LSA_WEIGHTS};
use super::ParamStore;
use crate::tasks::IclBatch;

/// `diag(values)` as an `[e, e]` row-major matrix.
fn diag(values: &[f32]) -> Vec<f32> {
    let e = values.len();
    let mut m = vec![0.0; e * e];
    values
        .iter()
        .enumerate()
        .for_each(|(i, &v)| m[i * e + i] = v);
    m
}

/// The block of one GD++ step with step `eta` and input step `gamma` on N = `n` pairs in d
/// dimensions; `gamma = 0` with W_V's input part zero is plain GD ([`gd_block`]).
pub fn gdpp_block(d: usize, n: usize, eta: f64, gamma: f64) -> LsaBlock {
    let ones = |last: f32| -> Vec<f32> {
        let mut v = vec![1.0; d];
        v.push(last);
        v
    };
    let mut p = vec![-gamma as f32; d];
    p.push((eta / n as f64) as f32);
    let mut v = vec![1.0; d];
    v.push(-1.0);
    LsaBlock {
        w_q: diag(&ones(0.0)),
        w_k: diag(&ones(0.0)),
        w_v: if gamma == 0.0 {
            let mut z = vec![0.0; d];
            z.push(-1.0);
            diag(&z)
        } else {
            diag(&v)
        },
        w_p: diag(&p),
        ..LsaBlock::default()
    }
}

/// The block of one GD step with step `eta` on N = `n` pairs in d dimensions.
pub fn gd_block(d: usize, n: usize, eta: f64) -> LsaBlock {
    gdpp_block(d, n, eta, 0.0)
}

/// `n_layers` layers of one shared `block`.
pub fn stacked(block: LsaBlock, n_layers: usize) -> LsaWeights {
    LsaWeights {
        e: block.w_q.len().isqrt(),
        n_heads: 1,
        softmax: false,
        n_layers,
        layer_norm: false,
        d_mlp: 0,
        blocks: vec![block],
    }
}

/// `w` as a store of `cfg`'s layout (each of `cfg`'s blocks a copy of the layer that uses it;
/// `cfg` has w's heads).
///
/// # Panics
/// When `w` has another width or layer count than `cfg` (a programming error).
pub fn to_store(cfg: &LsaConfig, w: &LsaWeights) -> ParamStore {
    assert_eq!(
        (w.e, w.n_layers, w.n_heads),
        (cfg.width(), cfg.n_layers, cfg.n_heads),
        "LSA shape"
    );
    let mut store = ParamStore::zeros_specs(cfg.param_specs());
    for b in 0..cfg.n_blocks() {
        let block = &w.blocks[b % w.blocks.len()];
        for (name, m) in LSA_WEIGHTS
            .iter()
            .zip([&block.w_q, &block.w_k, &block.w_v, &block.w_p])
        {
            let entry = store
                .get_mut(&format!("blocks.{b}.attn.{name}"))
                .expect("the config's own parameter");
            entry.data = m.iter().map(|&x| f64::from(x)).collect();
        }
    }
    store
}

/// Predictions `[B]` of `steps` GD++ steps (`gamma = 0`: plain GD) in f64, from the update rule
/// itself: per step, every token's label slot `r_j ← r_j − (η/N) Σ_i r_i x_iᵀ x_j` (the query's
/// starts at 0; ŷ = −r_q) and every input `x_j ← (I − γ XᵀX) x_j`.
pub fn gdpp_predictions(batch: &IclBatch, eta: f64, gamma: f64, steps: usize) -> Vec<f64> {
    use rayon::prelude::*;
    let (d, n) = (batch.d, batch.n);
    if gamma == 0.0 {
        // plain GD leaves the inputs alone: one Gram matrix per task serves every step
        return (0..batch.len())
            .into_par_iter()
            .with_min_len(256)
            .map_init(Vec::new, |scratch, b| {
                gd_from_gram(batch, b, eta, steps, scratch)
            })
            .collect();
    }
    (0..batch.len())
        .into_par_iter()
        .with_min_len(256)
        .map(|b| {
            // tokens: n context rows then the query
            let mut x: Vec<Vec<f64>> = (0..n)
                .map(|i| {
                    batch.x_of(b)[i * d..(i + 1) * d]
                        .iter()
                        .map(|&v| v.into())
                        .collect()
                })
                .chain(std::iter::once(
                    batch.x_q_of(b).iter().map(|&v| v.into()).collect(),
                ))
                .collect();
            let mut r: Vec<f64> = batch.y_of(b).iter().map(|&v| v.into()).collect();
            r.push(0.0);
            let dot = |a: &[f64], c: &[f64]| a.iter().zip(c).map(|(a, c)| a * c).sum::<f64>();
            for s in 0..steps {
                // the last step needs only the query's label slot
                let first = if s + 1 == steps { n } else { 0 };
                let mut new_r = r.clone();
                for j in first..=n {
                    new_r[j] -=
                        eta / n as f64 * (0..n).map(|i| r[i] * dot(&x[i], &x[j])).sum::<f64>();
                }
                if gamma != 0.0 && s + 1 < steps {
                    let new_x: Vec<Vec<f64>> = (0..=n)
                        .map(|j| {
                            let mut v = x[j].clone();
                            for i in 0..n {
                                let s = gamma * dot(&x[i], &x[j]);
                                v.iter_mut().zip(&x[i]).for_each(|(v, xi)| *v -= s * xi);
                            }
                            v
                        })
                        .collect();
                    x = new_x;
                }
                r = new_r;
            }
            -r[n]
        })
        .collect()
}

/// Task `b`'s prediction after `steps` GD steps, [`gdpp_predictions`]' update rule with γ = 0
/// on the task's Gram matrix `g[j][i] = x_jᵀ x_i` (j over the context and the query).
fn gd_from_gram(batch: &IclBatch, b: usize, eta: f64, steps: usize, scratch: &mut Vec<f64>) -> f64 {
    let (d, n) = (batch.d, batch.n);
    let (x, x_q) = (batch.x_of(b), batch.x_q_of(b));
    let row = |j: usize| if j < n { &x[j * d..(j + 1) * d] } else { x_q };
    // scratch: the Gram matrix [n + 1, n], then r and its update [n + 1] each
    scratch.resize((n + 1) * n + 2 * (n + 1), 0.0);
    let (g, rs) = scratch.split_at_mut((n + 1) * n);
    let (r, new_r) = rs.split_at_mut(n + 1);
    for j in 0..=n {
        for i in 0..n {
            g[j * n + i] = (row(j).iter().zip(row(i)))
                .map(|(a, c)| f64::from(*a) * f64::from(*c))
                .sum();
        }
    }
    (r.iter_mut().zip(batch.y_of(b))).for_each(|(r, &y)| *r = y.into());
    r[n] = 0.0;
    let step = eta / n as f64;
    for s in 0..steps {
        let first = if s + 1 == steps { n } else { 0 };
        for j in first..=n {
            let dot: f64 = (0..n).map(|i| r[i] * g[j * n + i]).sum();
            new_r[j] = r[j] - step * dot;
        }
        r[first..].copy_from_slice(&new_r[first..]);
    }
    -r[n]
}

/// `[B, d]` the weights `w_K` of `steps` GD steps from zero on each task's context, by the
/// textbook update (f64).
pub fn gd_weights(batch: &IclBatch, eta: f64, steps: usize) -> Vec<f64> {
    let (d, n) = (batch.d, batch.n);
    (0..batch.len())
        .flat_map(|b| {
            let (x, y) = (batch.x_of(b), batch.y_of(b));
            let mut w = vec![0.0f64; d];
            for _ in 0..steps {
                let mut g = vec![0.0f64; d];
                for i in 0..n {
                    let xi = &x[i * d..(i + 1) * d];
                    let res = f64::from(y[i])
                        - w.iter()
                            .zip(xi)
                            .map(|(w, x)| w * f64::from(*x))
                            .sum::<f64>();
                    g.iter_mut()
                        .zip(xi)
                        .for_each(|(g, x)| *g += res * f64::from(*x));
                }
                w.iter_mut()
                    .zip(&g)
                    .for_each(|(w, g)| *w += eta / n as f64 * g);
            }
            w
        })
        .collect()
}

/// ½-MSE of `preds` against the batch's query labels.
pub fn half_mse(preds: &[f64], batch: &IclBatch) -> f64 {
    (preds.iter().zip(&batch.y_q))
        .map(|(p, y)| 0.5 * (p - f64::from(*y)).powi(2))
        .sum::<f64>()
        / preds.len().max(1) as f64
}

/// The paper's line search of the GD step: η over `0.001 + 0.1k` (k = 0, 1, …, 200), the one
/// with the lowest ½-MSE of `steps` GD steps on `batch`; returns `(η, loss)`.
pub fn line_search_gd(batch: &IclBatch, steps: usize) -> (f64, f64) {
    (0..=200)
        .map(|k| {
            let eta = 0.001 + 0.1 * k as f64;
            (
                eta,
                half_mse(&gdpp_predictions(batch, eta, 0.0, steps), batch),
            )
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("a non-empty grid")
}

/// GD++'s `(η, γ)` for `steps` layers, fitted on `batch` by pattern search (a coarse grid,
/// then each coordinate moved by a halving step while the loss falls); returns
/// `(η, γ, loss)`. Searched, not trained: the loss surface of the two scalars is smooth and
/// low-dimensional.
pub fn fit_gdpp(batch: &IclBatch, steps: usize) -> (f64, f64, f64) {
    let loss = |eta: f64, gamma: f64| half_mse(&gdpp_predictions(batch, eta, gamma, steps), batch);
    let mut best = (0.0, 0.0, f64::INFINITY);
    for i in 0..=20 {
        for j in 0..=10 {
            let (eta, gamma) = (i as f64, 0.05 * j as f64);
            let l = loss(eta, gamma);
            if l < best.2 {
                best = (eta, gamma, l);
            }
        }
    }
    let (mut de, mut dg) = (0.5, 0.025);
    while de > 1e-3 {
        let mut moved = false;
        for (e, g) in [(de, 0.0), (-de, 0.0), (0.0, dg), (0.0, -dg)] {
            let (eta, gamma) = (best.0 + e, best.1 + g);
            let l = loss(eta, gamma);
            if l < best.2 {
                best = (eta, gamma, l);
                moved = true;
            }
        }
        if !moved {
            de /= 2.0;
            dg /= 2.0;
        }
    }
    best
}

/// GD++'s `(η, γ)` trained as the paper trains GD++: the block kept in GD++'s diagonal form
/// (`W_Q = W_K = diag(1, …, 1, 0)`, `W_V = diag(1, …, 1, −1)`, `W_P = diag(−γ, …, −γ, η/N)`,
/// shared by `n_layers` layers) and only its two free scalars moved, by Adam (β 0.9 / 0.999,
/// no decay, lr decayed linearly to 0) on fresh batches of `batch` tasks of `task` (batch s from stream s). The gradient
/// is the chain rule through the LSA's own backward: ∂L/∂(η/N) = ∂L/∂W_P[d, d] and
/// ∂L/∂γ = −Σ_{i<d} ∂L/∂W_P[i, i]. Starts at η = γ = 0; returns the final `(η, γ)` and the
/// batch loss of every step.
pub fn train_gdpp_diagonal(
    task: &crate::tasks::IclRegression,
    n_layers: usize,
    steps: usize,
    batch: usize,
    lr: f64,
) -> (f64, f64, Vec<f64>) {
    let (d, n) = (task.d, task.n_pairs);
    let e = d + 1;
    let threads = rayon::current_num_threads();
    // θ = (η/N, γ) with Adam's moments
    let (mut theta, mut m, mut v) = ([0.0f64; 2], [0.0f64; 2], [0.0f64; 2]);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    let mut losses = Vec::with_capacity(steps);
    for s in 0..steps {
        let mut block = gdpp_block(d, n, theta[0] * n as f64, theta[1]);
        let mut full_v = vec![1.0f32; d];
        full_v.push(-1.0);
        block.w_v = diag(&full_v);
        let w = stacked(block, n_layers);
        let data = task.train_batch(s as u64, batch);
        let tokens = data.tokens(crate::tasks::IclFormat::Paired);
        let (loss, grads) = super::lsa::loss_and_grads(&w, &tokens, &data.y_q, n + 1, threads);
        losses.push(loss);
        let g_p = &grads[3];
        let g = [g_p[d * e + d], -(0..d).map(|i| g_p[i * e + i]).sum::<f64>()];
        let t = (s + 1) as i32;
        for i in 0..2 {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let (mh, vh) = (m[i] / (1.0 - b1.powi(t)), v[i] / (1.0 - b2.powi(t)));
            theta[i] -= lr * (1.0 - s as f64 / steps as f64) * mh / (vh.sqrt() + eps);
        }
    }
    (theta[0] * n as f64, theta[1], losses)
}

#[cfg(test)]
mod tests {
    use super::super::lsa::{predict, query_gradients};
    use super::*;
    use crate::tasks::{IclFormat, IclRegression};

    fn task(d: usize, n: usize) -> IclRegression {
        IclRegression {
            d,
            n_pairs: n,
            x_range: 1.0,
            w_scale: 1.0,
            noise: 0.0,
            format: IclFormat::Paired,
            seed: 3,
        }
    }

    /// Acceptance 1: with the constructed weights, one LSA layer predicts (η/N) Σ y_i x_iᵀ x_q
    /// to 1e-6 (f32) on random tasks, and K layers predict K GD steps.
    #[test]
    fn lsa_with_gd_weights_is_gradient_descent() {
        let (d, n, eta) = (10, 10, 6.0);
        let batch = task(d, n).eval_set(200);
        let tokens = batch.tokens(IclFormat::Paired);
        for steps in [1, 2, 3] {
            let lsa = predict(&stacked(gd_block(d, n, eta), steps), &tokens, n + 1);
            let w = gd_weights(&batch, eta, steps);
            for (b, &got) in lsa.iter().enumerate() {
                let want: f64 = (w[b * d..(b + 1) * d].iter().zip(batch.x_q_of(b)))
                    .map(|(w, x)| w * f64::from(*x))
                    .sum();
                let tol = if steps == 1 { 1e-6 } else { 1e-5 };
                assert!(
                    (f64::from(got) - want).abs() <= tol * want.abs().max(1.0),
                    "{steps} steps, task {b}: {got} vs {want}"
                );
            }
            // the update rule's form agrees with the textbook one
            let rule = gdpp_predictions(&batch, eta, 0.0, steps);
            assert!((rule[0] - f64::from(lsa[0])).abs() < 1e-5);
        }
        // one step by the formula of the acceptance criterion
        let one = predict(&stacked(gd_block(d, n, eta), 1), &tokens, n + 1);
        let b = 7;
        let want: f64 = (0..n)
            .map(|i| {
                let xi = &batch.x_of(b)[i * d..(i + 1) * d];
                f64::from(batch.y_of(b)[i])
                    * xi.iter()
                        .zip(batch.x_q_of(b))
                        .map(|(a, c)| f64::from(*a) * f64::from(*c))
                        .sum::<f64>()
            })
            .sum::<f64>()
            * eta
            / n as f64;
        assert!((f64::from(one[b]) - want).abs() < 1e-6 * want.abs().max(1.0));
    }

    /// GD++ weights equal their closed form; the GD model's ∂ŷ/∂x_q is w₁.
    #[test]
    fn gdpp_weights_match_the_closed_form_and_gd_gradient_is_w() {
        let (d, n) = (4, 6);
        let batch = task(d, n).eval_set(50);
        let tokens = batch.tokens(IclFormat::Paired);
        for steps in [1, 2, 3] {
            let lsa = predict(&stacked(gdpp_block(d, n, 2.0, 0.1), steps), &tokens, n + 1);
            let want = gdpp_predictions(&batch, 2.0, 0.1, steps);
            for (g, w) in lsa.iter().zip(&want) {
                assert!(
                    (f64::from(*g) - w).abs() < 1e-5 * w.abs().max(1.0),
                    "{g} vs {w}"
                );
            }
        }
        let grads = query_gradients(&stacked(gd_block(d, n, 2.0), 1), &tokens, n + 1);
        let w = gd_weights(&batch, 2.0, 1);
        for (g, w) in grads.iter().zip(&w) {
            assert!((f64::from(*g) - w).abs() < 1e-6, "{g} vs {w}");
        }
    }

    /// Acceptance 2: on the paper's 10,000 evaluation tasks (d = N = 10, x ~ U(−½, ½)), the
    /// line search finds η ≈ 6 and 1-step GD's ½-MSE ≈ 0.205 (the zero predictor's: d/24 ≈
    /// 0.417); 2 steps ≈ 0.155.
    #[test]
    fn line_search_finds_the_papers_step() {
        let batch = task(10, 10).eval_set(10_000);
        let (eta, loss) = line_search_gd(&batch, 1);
        assert!((eta - 6.0).abs() <= 0.35, "eta {eta}");
        assert!((loss - 0.205).abs() < 0.006, "loss {loss}");
        let zero = half_mse(&vec![0.0; batch.len()], &batch);
        assert!((zero - 10.0 / 24.0).abs() < 0.015, "zero predictor {zero}");
    }

    /// to_store puts the construction where the model reads it.
    #[test]
    fn constructed_weights_round_trip_through_a_store() {
        let cfg = LsaConfig {
            d: 3,
            n_layers: 2,
            shared: false,
            n_heads: 1,
            softmax: false,
            init_scale: 0.002,
            layer_norm: false,
            d_mlp: 0,
        };
        let w = stacked(gdpp_block(3, 5, 1.5, 0.2), 2);
        let back = LsaWeights::from_store(&cfg, &to_store(&cfg, &w));
        assert_eq!(back.blocks.len(), 2);
        assert_eq!(back.blocks[1].w_p, w.blocks[0].w_p);
        assert_eq!(back.blocks[0].w_v, w.blocks[0].w_v);
    }

    /// The diagonal-only rule's gradient is the derivative of the loss of GD++'s closed form
    /// in (η/N, γ) (central differences in f64), and training it reaches the pattern search's
    /// optimum on held-out tasks.
    #[test]
    fn gdpp_trained_by_the_diagonal_rule() {
        let (d, n, layers) = (4, 6, 2);
        let t = task(d, n);
        // one step from (η, γ) = (0, 0) with lr = 0: the loss is the zero predictor's, and the
        // first Adam update moves η up (more step helps) — checked through the gradient
        let batch = t.train_batch(0, 512);
        let loss_at =
            |p: f64, g: f64| half_mse(&gdpp_predictions(&batch, p * n as f64, g, layers), &batch);
        let (p0, g0) = (0.3, 0.05);
        let mut block = gdpp_block(d, n, p0 * n as f64, g0);
        let mut full_v = vec![1.0f32; d];
        full_v.push(-1.0);
        block.w_v = diag(&full_v);
        let tokens = batch.tokens(IclFormat::Paired);
        let (_, grads) = super::super::lsa::loss_and_grads(
            &stacked(block, layers),
            &tokens,
            &batch.y_q,
            n + 1,
            2,
        );
        let e = d + 1;
        let g = [
            grads[3][d * e + d],
            -(0..d).map(|i| grads[3][i * e + i]).sum::<f64>(),
        ];
        let h = 1e-5;
        let fd = [
            (loss_at(p0 + h, g0) - loss_at(p0 - h, g0)) / (2.0 * h),
            (loss_at(p0, g0 + h) - loss_at(p0, g0 - h)) / (2.0 * h),
        ];
        for i in 0..2 {
            assert!(
                (g[i] - fd[i]).abs() < 2e-3 * fd[i].abs().max(1e-2),
                "{g:?} vs {fd:?}"
            );
        }
        let (eta, gamma, losses) = train_gdpp_diagonal(&t, layers, 800, 512, 0.1);
        let eval = t.eval_set(2000);
        let (_, _, best) = fit_gdpp(&eval, layers);
        let trained = half_mse(&gdpp_predictions(&eval, eta, gamma, layers), &eval);
        assert!(
            trained < best * 1.02,
            "trained {trained} (η {eta}, γ {gamma}) against {best}"
        );
        assert!(
            losses[losses.len() - 1] < 0.5 * losses[0],
            "{} → {}",
            losses[0],
            losses[losses.len() - 1]
        );
    }
}
