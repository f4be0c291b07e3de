//! The position-wise pieces of the sequence step, forward beside backward: matrix products on
//! row-major buffers (the `gemm` crate's AVX-512 kernels where the CPU has them), LayerNorm, the MLP activation, and gathering the query rows.

use crate::models::linalg::{matmul_into_shaped as matmul_into, Real, View};
use crate::models::Activation;

/// LayerNorm epsilon (TransformerLens default, as the burn model).
const LN_EPS: f64 = 1e-5;

/// `out (+)= a · b`, all row-major: `a` `[r, k]`, `b` `[k, n]`, `out` `[r, n]`.
pub fn mm<T: Real>(out: &mut [T], a: &[T], b: &[T], (r, k, n): (usize, usize, usize), acc: bool) {
    matmul_into(out, n, View::new(a, r, k), View::new(b, k, n), acc);
}

/// `out (+)= aᵀ · b` with `a` `[r, k]`, `b` `[r, n]`, `out` `[k, n]` (a weight's gradient).
pub fn mm_tn<T: Real>(out: &mut [T], a: &[T], b: &[T], (r, k, n): (usize, usize, usize)) {
    matmul_into(out, n, View::new(a, r, k).t(), View::new(b, r, n), true);
}

/// `out (+)= a · bᵀ` with `a` `[r, n]`, `b` `[k, n]`, `out` `[r, k]` (an input's gradient).
pub fn mm_nt<T: Real>(
    out: &mut [T],
    a: &[T],
    b: &[T],
    (r, n, k): (usize, usize, usize),
    acc: bool,
) {
    matmul_into(out, k, View::new(a, r, n), View::new(b, k, n).t(), acc);
}

/// Adds `bias` `[w]` to every row of `x` `[rows, w]`.
pub fn add_bias<T: Real>(x: &mut [T], bias: &[T]) {
    x.chunks_exact_mut(bias.len())
        .for_each(|row| row.iter_mut().zip(bias).for_each(|(v, &b)| *v += b));
}

/// `g += Σ_rows x` for `x` `[rows, w]`, `g` `[w]` (a bias's gradient).
pub fn add_col_sums<T: Real>(g: &mut [T], x: &[T]) {
    x.chunks_exact(g.len())
        .for_each(|row| g.iter_mut().zip(row).for_each(|(g, &v)| *g += v));
}

/// The rows `seq·t + p` for every sequence and every `p` in `positions`: `[B·P, w]` from
/// `x` `[B·t, w]`.
pub fn gather_rows<T: Real>(x: &[T], t: usize, w: usize, positions: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len() / t * positions.len());
    for seq in x.chunks_exact(t * w) {
        positions
            .iter()
            .for_each(|&p| out.extend_from_slice(&seq[p * w..(p + 1) * w]));
    }
    out
}

/// The backward of [`gather_rows`]: `dst[seq·t + p] += src[seq·P + i]` for `p = positions[i]`.
pub fn scatter_add_rows<T: Real>(
    dst: &mut [T],
    src: &[T],
    t: usize,
    w: usize,
    positions: &[usize],
) {
    let p = positions.len();
    for (seq, rows) in dst.chunks_exact_mut(t * w).zip(src.chunks_exact(p * w)) {
        for (&pos, row) in positions.iter().zip(rows.chunks_exact(w)) {
            let d = &mut seq[pos * w..(pos + 1) * w];
            d.iter_mut().zip(row).for_each(|(d, &s)| *d += s);
        }
    }
}

/// What the backward of a LayerNorm needs: the normalised rows `x̂ = (x − μ)/σ` `[rows, D]` and
/// `1/σ` per row, `σ = √(Var(x) + ε)` (biased variance).
pub struct LnCache<T> {
    xhat: Vec<T>,
    rstd: Vec<T>,
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

/// The MLP activation in place: ReLU, or the exact GELU `x·Φ(x)` (f64 `erf`, as burn's).
pub fn activate<T: Real>(x: &mut [T], act: Activation) {
    match act {
        Activation::Relu => x.iter_mut().for_each(|v| *v = v.max(T::zero())),
        Activation::Gelu => x.iter_mut().for_each(|v| {
            let u = v.f64();
            *v = T::of(0.5 * u * (1.0 + libm::erf(u * std::f64::consts::FRAC_1_SQRT_2)));
        }),
    }
}

/// The backward of [`activate`] in place: `d *= act'(pre)`, with `GELU'(x) = Φ(x) + x·φ(x)`.
pub fn activate_backward<T: Real>(d: &mut [T], pre: &[T], act: Activation) {
    let pairs = d.iter_mut().zip(pre);
    match act {
        Activation::Relu => pairs.for_each(|(d, &x)| {
            if x <= T::zero() {
                *d = T::zero();
            }
        }),
        Activation::Gelu => pairs.for_each(|(d, &x)| {
            let u = x.f64();
            let cdf = 0.5 * (1.0 + libm::erf(u * std::f64::consts::FRAC_1_SQRT_2));
            let pdf = (-0.5 * u * u).exp() / (2.0 * std::f64::consts::PI).sqrt();
            *d = T::of(d.f64() * (cdf + u * pdf));
        }),
    }
}
