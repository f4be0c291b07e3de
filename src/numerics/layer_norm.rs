//! LayerNorm forward and backward on row-major rows, generic over f32 and f64: the one
//! implementation the fused sequence step and the batched LSA share (TransformerLens `LayerNorm`:
//! biased variance, ε = 1e-5 inside the square root).

use super::linalg::Real;

/// ε of every LayerNorm (TransformerLens' `cfg.eps` default).
pub const LN_EPS: f64 = 1e-5;

/// What the backward of a LayerNorm needs: the normalised rows `x̂ = (x − μ)/σ` `[rows, D]` and
/// `1/σ` per row, `σ = √(Var(x) + ε)` (biased variance).
pub struct LnCache<T> {
    /// `x̂` `[rows, D]`.
    pub xhat: Vec<T>,
    /// `1/σ` `[rows]`.
    pub rstd: Vec<T>,
}

/// LayerNorm of every row of `x` `[rows, D]`: `x̂·w + b` (TransformerLens `LayerNorm`).
pub fn layer_norm<T: Real>(x: &[T], w: &[T], b: &[T]) -> (Vec<T>, LnCache<T>) {
    let d = w.len();
    let inv_d = T::of(1.0 / d as f64);
    let mut xhat = x.to_vec();
    let mut rstd = Vec::with_capacity(x.len() / d);
    for row in xhat.chunks_exact_mut(d) {
        let mean = row.iter().copied().sum::<T>() * inv_d;
        row.iter_mut().for_each(|v| *v = *v - mean);
        let var = row.iter().map(|&v| v * v).sum::<T>() * inv_d;
        let r = (var + T::of(LN_EPS)).sqrt().recip();
        row.iter_mut().for_each(|v| *v = *v * r);
        rstd.push(r);
    }
    let mut out = xhat.clone();
    for row in out.chunks_exact_mut(d) {
        (row.iter_mut().zip(w).zip(b)).for_each(|((v, &w), &b)| *v = *v * w + b);
    }
    (out, LnCache { xhat, rstd })
}

/// The backward of [`layer_norm`]: returns `∂L/∂x` `[rows, D]` from `dy` `[rows, D]` and adds
/// the scale's and bias's gradients to `gw`, `gb`:
/// `∂x = (1/σ)·(∂x̂ − mean(∂x̂) − x̂·mean(∂x̂·x̂))` with `∂x̂ = dy·w`.
pub fn layer_norm_backward<T: Real>(
    dy: &[T],
    cache: &LnCache<T>,
    w: &[T],
    gw: &mut [T],
    gb: &mut [T],
) -> Vec<T> {
    let d = w.len();
    let inv_d = T::of(1.0 / d as f64);
    let mut dx = vec![T::zero(); dy.len()];
    let rows = dy.chunks_exact(d).zip(cache.xhat.chunks_exact(d));
    for (((dy, xh), dx), &r) in rows.zip(dx.chunks_exact_mut(d)).zip(&cache.rstd) {
        let (mut mean_d, mut mean_dx) = (T::zero(), T::zero());
        for j in 0..d {
            gw[j] += dy[j] * xh[j];
            gb[j] += dy[j];
            let dxh = dy[j] * w[j];
            mean_d += dxh;
            mean_dx += dxh * xh[j];
        }
        let (mean_d, mean_dx) = (mean_d * inv_d, mean_dx * inv_d);
        for j in 0..d {
            dx[j] = r * (dy[j] * w[j] - mean_d - xh[j] * mean_dx);
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic, unevenly spread rows.
    fn input(rows: usize, d: usize) -> Vec<f64> {
        (0..rows * d)
            .map(|i| ((i * 37 % 11) as f64 - 4.0) * 0.3 + (i as f64).sin())
            .collect()
    }

    #[test]
    fn normalised_rows_have_mean_zero_and_unit_variance() {
        let (rows, d) = (3, 7);
        let x = input(rows, d);
        let (w, b) = (vec![1.0; d], vec![0.0; d]);
        let (y, cache) = layer_norm(&x, &w, &b);
        assert_eq!(y, cache.xhat);
        for (r, row) in y.chunks_exact(d).enumerate() {
            let mean = row.iter().sum::<f64>() / d as f64;
            let var = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
            assert!(mean.abs() < 1e-12, "{mean}");
            // Var(x̂) = Var(x) / (Var(x) + ε)
            let xr = &x[r * d..(r + 1) * d];
            let mx = xr.iter().sum::<f64>() / d as f64;
            let vx = xr.iter().map(|v| (v - mx) * (v - mx)).sum::<f64>() / d as f64;
            assert!((var - vx / (vx + LN_EPS)).abs() < 1e-12, "{var}");
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (rows, d) = (2, 5);
        let x = input(rows, d);
        let w: Vec<f64> = (0..d).map(|j| 0.5 + 0.2 * j as f64).collect();
        let b: Vec<f64> = (0..d).map(|j| 0.1 * j as f64 - 0.2).collect();
        // L = Σ c ⊙ y with fixed weights c, so ∂L/∂y = c
        let c: Vec<f64> = (0..rows * d)
            .map(|i| ((i * 5 % 7) as f64 - 3.0) / 3.0)
            .collect();
        let loss = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
            let (y, _) = layer_norm(x, w, b);
            y.iter().zip(&c).map(|(y, c)| y * c).sum()
        };
        let (_, cache) = layer_norm(&x, &w, &b);
        let (mut gw, mut gb) = (vec![0.0; d], vec![0.0; d]);
        let dx = layer_norm_backward(&c, &cache, &w, &mut gw, &mut gb);
        let h = 1e-6;
        let fd = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
        for i in 0..x.len() {
            let num = fd(&|e| {
                let mut x2 = x.clone();
                x2[i] += e;
                loss(&x2, &w, &b)
            });
            assert!((num - dx[i]).abs() < 1e-7, "dx[{i}]: {num} vs {}", dx[i]);
        }
        for j in 0..d {
            let nw = fd(&|e| {
                let mut w2 = w.clone();
                w2[j] += e;
                loss(&x, &w2, &b)
            });
            let nb = fd(&|e| {
                let mut b2 = b.clone();
                b2[j] += e;
                loss(&x, &w, &b2)
            });
            assert!((nw - gw[j]).abs() < 1e-7, "gw[{j}]: {nw} vs {}", gw[j]);
            assert!((nb - gb[j]).abs() < 1e-7, "gb[{j}]: {nb} vs {}", gb[j]);
        }
    }
}
