//! The position-wise pieces of the sequence step, forward beside backward: matrix products on
//! row-major buffers (the `gemm` crate's AVX-512 kernels where the CPU has them), LayerNorm, the MLP activation, and gathering the query rows.

use crate::models::Activation;
pub use crate::numerics::layer_norm::{layer_norm, layer_norm_backward, LnCache};
use crate::numerics::linalg::{matmul_into_shaped as matmul_into, Real, View};

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
