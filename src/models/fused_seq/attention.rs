//! Causal attention of every head of every sequence, forward beside backward, on row-major
//! `[B·rows, H·Dh]` buffers (head h in columns `h·Dh..(h+1)·Dh`).
//!
//! Per (sequence, head), with queries already scaled by 1/√Dh (Vaswani et al. 2017, eq. 1):
//! `S = Q·Kᵀ` over the keys up to the last query's position, `P = softmax(S + causal mask)`
//! row-wise, `Z = P·V`. Each softmax row exponentiates only its unmasked keys, with a
//! vectorised `exp` for f32 ([`SoftmaxExp`]); masked entries of `P` are exact zeros, so the
//! products over the padded columns add nothing. Backward (the softmax Jacobian):
//! `∂P = ∂Z·Vᵀ`, `∂V = Pᵀ·∂Z`, `∂S = P ⊙ (∂P − rowsum(P ⊙ ∂P))`, `∂Q = ∂S·K`, `∂K = ∂Sᵀ·Q`.

use crate::numerics::linalg::Real;

/// `exp` over a slice in place, per float type: f32 runs a branch-free polynomial the compiler
/// vectorises (AVX2 + FMA where the CPU has them); f64 calls `f64::exp`.
pub trait SoftmaxExp: Real {
    /// `x ← exp(x)` for every entry.
    fn exp_in_place(x: &mut [Self]);
}

impl SoftmaxExp for f64 {
    fn exp_in_place(x: &mut [f64]) {
        x.iter_mut().for_each(|v| *v = v.exp());
    }
}

impl SoftmaxExp for f32 {
    fn exp_in_place(x: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA were detected on this CPU.
            return unsafe { exp_avx2(x) };
        }
        x.iter_mut().for_each(|v| *v = exp_f32(*v));
    }
}

/// The same loop compiled for AVX2 + FMA (8 lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_avx2(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = exp_f32(*v));
}

/// `exp(x)` in f32 within 2 ulp for x in [−87, 88] (Cephes `expf`: x = n·ln 2 + r with
/// |r| ≤ ln 2 / 2, a degree-6 polynomial for e^r, 2ⁿ built in the exponent bits); inputs are
/// clamped to that range (below it the result is ≈ 1.6e-38 instead of a subnormal or 0).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // adding and subtracting 1.5·2²³ rounds to the nearest integer without a branch or a call
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    // the integer n sits in the low bits of `shifted`: 2ⁿ's exponent field without a conversion
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(n_int.wrapping_add(127) << 23)
}

/// Shapes of one attention call: `b` sequences of `t` positions, `h` heads of width `dh`, and
/// the query positions (ascending; every position for all but the last block).
#[derive(Clone, Copy)]
pub struct Dims<'a> {
    pub b: usize,
    pub t: usize,
    pub h: usize,
    pub dh: usize,
    pub queries: &'a [usize],
}

/// Derived sizes: `tq` queries, `kn` keys read (up to the last query), `hd` = H·Dh, `tp` the
/// pattern's padded row length, `kp` the padded key count of the per-head buffers.
struct Sizes {
    tq: usize,
    kn: usize,
    hd: usize,
    tp: usize,
    kp: usize,
}

impl Dims<'_> {
    fn tq(&self) -> usize {
        self.queries.len()
    }
    /// Keys any query reads: up to the last query's position.
    fn keys(&self) -> usize {
        self.queries.last().map_or(0, |&q| q + 1)
    }
    fn sizes(&self) -> Sizes {
        let (tq, kn) = (self.tq(), self.keys());
        Sizes {
            tq,
            kn,
            hd: self.h * self.dh,
            tp: tiled(self.t),
            kp: tiled(kn),
        }
    }

    fn offset(&self, s: usize, hh: usize, per_seq: usize) -> usize {
        s * per_seq * self.h * self.dh + hh * self.dh
    }
}

/// Vector width of the attention loops: keys are processed in blocks of `L`, each head's
/// transposed keys and values and each pattern row padded with zeros to a multiple of `L`, so
/// every loop runs whole blocks (8 f32 = one AVX2 register).
const L: usize = 8;

/// `n` rounded up to a multiple of [`L`].
fn padded(n: usize) -> usize {
    n.div_ceil(L) * L
}

/// Keys per tile of the score loops (4 blocks); key rows and pattern rows are padded to it.
const TILE: usize = 4 * L;

/// `n` rounded up to a multiple of [`TILE`].
fn tiled(n: usize) -> usize {
    n.div_ceil(TILE) * TILE
}

/// Forward: returns `z` `[B·Tq, H·Dh]` and the pattern `[B, H, Tq, Tp]` (rows padded with
/// zeros to `Tp` = T rounded up to a multiple of [`TILE`]; `blocks.{l}.attn.hook_pattern` in its first
/// T columns) from `q` `[B·Tq, H·Dh]` (scaled) and `k`, `v` `[B·T, H·Dh]`.
pub fn forward<T: SoftmaxExp>(q: &[T], k: &[T], v: &[T], dims: Dims) -> (Vec<T>, Vec<T>) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA were detected on this CPU.
        return unsafe { forward_avx2(q, k, v, dims) };
    }
    forward_impl(q, k, v, dims)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2<T: SoftmaxExp>(q: &[T], k: &[T], v: &[T], dims: Dims) -> (Vec<T>, Vec<T>) {
    forward_impl(q, k, v, dims)
}

/// Head `hh` of sequence `s`'s first `n` rows of `x` `[B·rows, H·Dh]` (from element `at`),
/// transposed into `out` `[Dh, np]` (`np` ≥ n; the columns past n stay as they are): each
/// feature's values over positions are contiguous, so the loops over keys run along rows.
#[inline(always)]
fn transpose_head<T: Real>(out: &mut [T], x: &[T], at: usize, hd: usize, dh: usize, n: usize) {
    let np = out.len() / dh;
    for j in 0..n {
        let row = &x[at + j * hd..][..dh];
        for e in 0..dh {
            out[e * np + j] = row[e];
        }
    }
}

/// The inverse of [`transpose_head`]: `x[at + j·hd + e] = t[e·np + j]` for j < n.
#[inline(always)]
fn untranspose_head<T: Real>(x: &mut [T], t: &[T], at: usize, hd: usize, dh: usize, n: usize) {
    let np = t.len() / dh;
    for j in 0..n {
        let row = &mut x[at + j * hd..][..dh];
        for e in 0..dh {
            row[e] = t[e * np + j];
        }
    }
}

/// A block of [`L`] entries as an array: fixed-length loops over it vectorise.
#[inline(always)]
fn lanes<T>(x: &[T]) -> &[T; L] {
    x.try_into().expect("L lanes")
}

/// `out[r][..m] = Σ_e c[r][e]·rows[e][..m]` for R output rows at once, `rows` `[Dh, np]`, m a
/// multiple of [`TILE`]: each tile keeps 4·R blocks in registers (4·R independent FMA chains)
/// and reads each block of `rows` once for all R outputs.
#[inline(always)]
fn combine_rows<T: Real, const R: usize>(
    mut out: [&mut [T]; R],
    c: [&[T]; R],
    rows: &[T],
    np: usize,
) {
    const U: usize = TILE / L;
    let m = out[0].len();
    for tile in 0..m / TILE {
        let mut acc = [[[T::zero(); L]; U]; R];
        for e in 0..c[0].len() {
            let r = &rows[e * np + tile * TILE..][..TILE];
            for (ar, cr) in acc.iter_mut().zip(&c) {
                let ce = cr[e];
                for (u, a) in ar.iter_mut().enumerate() {
                    let r = lanes(&r[u * L..(u + 1) * L]);
                    for l in 0..L {
                        a[l] = ce.mul_add(r[l], a[l]);
                    }
                }
            }
        }
        for (o, a) in out.iter_mut().zip(&acc) {
            o[tile * TILE..(tile + 1) * TILE].copy_from_slice(a.as_flattened());
        }
    }
}

/// `out[..dh] = Σ_j x[j]·rows[j][..dh]` for `rows` `[x.len(), dp]` (dp = dh rounded up to a
/// multiple of [`L`], padded with zeros): the whole output row stays in registers.
#[inline(always)]
fn combine_cols<T: Real>(out: &mut [T], x: &[T], rows: &[T], dp: usize) {
    match dp / L {
        1 => combine_cols_n::<T, 1, 8>(out, x, rows),
        2 => combine_cols_n::<T, 2, 4>(out, x, rows),
        3 => combine_cols_n::<T, 3, 2>(out, x, rows),
        4 => combine_cols_n::<T, 4, 2>(out, x, rows),
        _ => {
            let mut acc = vec![T::zero(); dp];
            for (j, &xj) in x.iter().enumerate() {
                let r = &rows[j * dp..(j + 1) * dp];
                (acc.iter_mut().zip(r)).for_each(|(a, &r)| *a = xj.mul_add(r, *a));
            }
            let dh = out.len();
            out.copy_from_slice(&acc[..dh]);
        }
    }
}

/// [`combine_cols`] for dp = B·L, with J independent accumulator sets (rows j, j + 1, …, taken
/// J at a time) so consecutive FMAs do not wait on each other.
#[inline(always)]
fn combine_cols_n<T: Real, const B: usize, const J: usize>(out: &mut [T], x: &[T], rows: &[T]) {
    let mut acc = [[[T::zero(); L]; B]; J];
    let whole = x.len() - x.len() % J;
    for (j0, xs) in x[..whole].chunks_exact(J).enumerate() {
        let r = &rows[j0 * J * B * L..][..J * B * L];
        for (jj, (&xj, aj)) in xs.iter().zip(acc.iter_mut()).enumerate() {
            for (u, a) in aj.iter_mut().enumerate() {
                let r = lanes(&r[(jj * B + u) * L..][..L]);
                for l in 0..L {
                    a[l] = xj.mul_add(r[l], a[l]);
                }
            }
        }
    }
    for (j, &xj) in x.iter().enumerate().skip(whole) {
        for (u, a) in acc[0].iter_mut().enumerate() {
            let r = lanes(&rows[(j * B + u) * L..][..L]);
            for l in 0..L {
                a[l] = xj.mul_add(r[l], a[l]);
            }
        }
    }
    let mut sum = acc[0];
    for aj in &acc[1..] {
        for (s, a) in sum.iter_mut().zip(aj) {
            (s.iter_mut().zip(a)).for_each(|(s, &a)| *s += a);
        }
    }
    let dh = out.len();
    out.copy_from_slice(&sum.as_flattened()[..dh]);
}

/// Head rows `[n, Dh]` of `x` (from element `at`, row stride `hd`) into `out` `[np, dp]`, each
/// row padded with zeros to dp.
#[inline(always)]
fn pad_head<T: Real>(out: &mut [T], x: &[T], at: usize, hd: usize, dh: usize, n: usize) {
    let dp = padded(dh);
    for j in 0..n {
        out[j * dp..j * dp + dh].copy_from_slice(&x[at + j * hd..][..dh]);
    }
}

/// `rows[e][..m] += Σ_r c[r][e]·x[r][..m]` for every row e of `rows` `[Dh, np]`, m = x[r].len()
/// a multiple of [`L`]: each block of `rows` is loaded and stored once for all R inputs.
#[inline(always)]
fn scatter_rows<T: Real, const R: usize>(rows: &mut [T], c: [&[T]; R], x: [&[T]; R], np: usize) {
    let m = x[0].len();
    for e in 0..c[0].len() {
        let ce: [T; R] = std::array::from_fn(|r| c[r][e]);
        for (jb, rb) in rows[e * np..][..m].chunks_exact_mut(L).enumerate() {
            let rb: &mut [T; L] = rb.try_into().expect("L lanes");
            let mut acc = *rb;
            for r in 0..R {
                let xb = lanes(&x[r][jb * L..(jb + 1) * L]);
                for l in 0..L {
                    acc[l] = ce[r].mul_add(xb[l], acc[l]);
                }
            }
            *rb = acc;
        }
    }
}

#[inline(always)]
fn forward_impl<T: SoftmaxExp>(q: &[T], k: &[T], v: &[T], dims: Dims) -> (Vec<T>, Vec<T>) {
    let Dims {
        b,
        t,
        h,
        dh,
        queries,
    } = dims;
    let Sizes { tq, kn, hd, tp, kp } = dims.sizes();
    let mut z = vec![T::zero(); b * tq * hd];
    let mut pattern = vec![T::zero(); b * h * tq * tp];
    let dp = padded(dh);
    let (mut kt, mut vp) = (vec![T::zero(); dh * kp], vec![T::zero(); kp * dp]);
    for s in 0..b {
        for hh in 0..h {
            transpose_head(&mut kt, k, dims.offset(s, hh, t), hd, dh, kn);
            pad_head(&mut vp, v, dims.offset(s, hh, t), hd, dh, kn);
            let p = &mut pattern[(s * h + hh) * tq * tp..][..tq * tp];
            let base = dims.offset(s, hh, tq);
            // S[i, :n] = Σ_e q[i, e]·Kᵀ[e, :n] for two queries at a time (sharing each Kᵀ load)
            for (pair, rows) in p.chunks_mut(2 * tp).enumerate() {
                let (i, at) = (2 * pair, base + 2 * pair * hd);
                let m = tiled(queries[(i + 1).min(tq - 1)] + 1);
                match rows.split_at_mut_checked(tp) {
                    Some((a, b)) if !b.is_empty() => combine_rows(
                        [&mut a[..m], &mut b[..m]],
                        [&q[at..at + dh], &q[at + hd..at + hd + dh]],
                        &kt,
                        kp,
                    ),
                    _ => combine_rows([&mut rows[..m]], [&q[at..at + dh]], &kt, kp),
                }
            }
            for (i, (row, &qp)) in p.chunks_exact_mut(tp).zip(queries).enumerate() {
                let (n, at) = (qp + 1, base + i * hd);
                softmax_prefix(row, n);
                // Z[i] = Σ_j P[i, j]·V[j]
                combine_cols(&mut z[at..at + dh], &row[..n], &vp, dp);
            }
        }
    }
    (z, pattern)
}

/// `Σ_l f(x_l, y_l)` over blocks of [`L`] (x.len() a multiple of L), one partial sum per lane.
#[inline(always)]
fn sum_lanes<T: Real>(x: &[T], y: &[T], f: impl Fn(T, T) -> T) -> T {
    let mut acc = [T::zero(); L];
    for (xb, yb) in x.chunks_exact(L).zip(y.chunks_exact(L)) {
        let (xb, yb) = (lanes(xb), lanes(yb));
        for l in 0..L {
            acc[l] += f(xb[l], yb[l]);
        }
    }
    acc.iter().fold(T::zero(), |a, &b| a + b)
}

/// `row[..n] ← softmax(row[..n])`, `row[n..] ← 0` (the causal mask); `row` holds at least n
/// rounded up to a multiple of [`L`] entries.
#[inline(always)]
fn softmax_prefix<T: SoftmaxExp>(row: &mut [T], n: usize) {
    let n8 = padded(n);
    row[n..n8].fill(T::neg_infinity());
    let mut max = [T::neg_infinity(); L];
    for b in row[..n8].chunks_exact(L) {
        let b = lanes(b);
        for l in 0..L {
            max[l] = if b[l] > max[l] { b[l] } else { max[l] };
        }
    }
    let max = max.iter().copied().fold(T::neg_infinity(), T::max);
    row[..n8].iter_mut().for_each(|x| *x = *x - max);
    T::exp_in_place(&mut row[..n8]);
    row[n..].fill(T::zero());
    let inv = sum_lanes(&row[..n8], &row[..n8], |x, _| x).recip();
    row[..n8].iter_mut().for_each(|x| *x = *x * inv);
}

/// Backward: `(∂q, ∂k, ∂v)` (shaped as `q`, `k`, `v`; ∂q with respect to the scaled queries)
/// from `dz` `[B·Tq, H·Dh]` and the forward's tensors (`pattern` as [`forward`] returns it).
pub fn backward<T: Real>(
    dz: &[T],
    q: &[T],
    k: &[T],
    v: &[T],
    pattern: &[T],
    dims: Dims,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA were detected on this CPU.
        return unsafe { backward_avx2(dz, q, k, v, pattern, dims) };
    }
    backward_impl(dz, q, k, v, pattern, dims)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_avx2<T: Real>(
    dz: &[T],
    q: &[T],
    k: &[T],
    v: &[T],
    pattern: &[T],
    dims: Dims,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    backward_impl(dz, q, k, v, pattern, dims)
}

#[inline(always)]
fn backward_impl<T: Real>(
    dz: &[T],
    q: &[T],
    k: &[T],
    v: &[T],
    pattern: &[T],
    dims: Dims,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let Dims {
        b,
        t,
        h,
        dh,
        queries,
    } = dims;
    let Sizes { tq, kn, hd, tp, kp } = dims.sizes();
    let (mut dq, mut dk, mut dv) = (
        vec![T::zero(); b * tq * hd],
        vec![T::zero(); b * t * hd],
        vec![T::zero(); b * t * hd],
    );
    let dp = padded(dh);
    let (mut kt, mut vt) = (vec![T::zero(); dh * kp], vec![T::zero(); dh * kp]);
    let mut kpad = vec![T::zero(); kp * dp];
    let (mut dkt, mut dvt) = (vec![T::zero(); dh * kp], vec![T::zero(); dh * kp]);
    let mut ds = vec![T::zero(); 2 * kp];
    for s in 0..b {
        for hh in 0..h {
            transpose_head(&mut kt, k, dims.offset(s, hh, t), hd, dh, kn);
            transpose_head(&mut vt, v, dims.offset(s, hh, t), hd, dh, kn);
            pad_head(&mut kpad, k, dims.offset(s, hh, t), hd, dh, kn);
            dkt.fill(T::zero());
            dvt.fill(T::zero());
            let p = &pattern[(s * h + hh) * tq * tp..][..tq * tp];
            let base = dims.offset(s, hh, tq);
            // two query rows at a time: each Kᵀ, Vᵀ, ∂Kᵀ, ∂Vᵀ block is read (and written) once
            // for both
            for (pair, prs) in p.chunks(2 * tp).enumerate() {
                let i = 2 * pair;
                let r = prs.len() / tp;
                let n: [usize; 2] = std::array::from_fn(|j| queries[(i + j).min(tq - 1)] + 1);
                let m = tiled(n[1]);
                let at: [usize; 2] = std::array::from_fn(|j| base + (i + j).min(tq - 1) * hd);
                let dzi: [&[T]; 2] = at.map(|a| &dz[a..a + dh]);
                let (da, db) = ds.split_at_mut(kp);
                // ∂P[i] = Σ_e ∂Z[i, e]·Vᵀ[e]
                if r == 2 {
                    combine_rows([&mut da[..m], &mut db[..m]], dzi, &vt, kp);
                } else {
                    combine_rows([&mut da[..m]], [dzi[0]], &vt, kp);
                }
                // ∂S = P ⊙ (∂P − P·∂P): zero past n, where P is
                let n8 = padded(n[r - 1]);
                let prs: [&[T]; 2] = std::array::from_fn(|j| &prs[(j % r) * tp..][..n8]);
                for (d, pr) in [&mut da[..n8], &mut db[..n8]].into_iter().zip(prs).take(r) {
                    let pd = sum_lanes(pr, d, |x, y| x * y);
                    d.iter_mut().zip(pr).for_each(|(x, &y)| *x = y * (*x - pd));
                }
                let qi: [&[T]; 2] = at.map(|a| &q[a..a + dh]);
                let (da, db) = (&da[..n8], &db[..n8]);
                // ∂Vᵀ[e] += ∂Z[i, e]·P[i];  ∂Kᵀ[e] += Q[i, e]·∂S[i];  ∂Q[i] = Σ_j ∂S[i, j]·K[j]
                if r == 2 {
                    scatter_rows(&mut dvt, dzi, prs, kp);
                    scatter_rows(&mut dkt, qi, [da, db], kp);
                } else {
                    scatter_rows(&mut dvt, [dzi[0]], [prs[0]], kp);
                    scatter_rows(&mut dkt, [qi[0]], [da], kp);
                }
                for (j, d) in [da, db].into_iter().enumerate().take(r) {
                    combine_cols(&mut dq[at[j]..at[j] + dh], &d[..n[j]], &kpad, dp);
                }
            }
            untranspose_head(&mut dk, &dkt, dims.offset(s, hh, t), hd, dh, kn);
            untranspose_head(&mut dv, &dvt, dims.offset(s, hh, t), hd, dh, kn);
        }
    }
    (dq, dk, dv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_f32_is_within_2_ulp_of_the_rounded_exp() {
        let mut worst = 0u32;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let (got, want) = (exp_f32(x), (x as f64).exp() as f32);
            worst = worst.max(got.to_bits().abs_diff(want.to_bits()));
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        let mut xs: Vec<f32> = (0..37).map(|i| -30.0 + 0.77 * i as f32).collect();
        let want: Vec<f32> = xs.iter().map(|&x| exp_f32(x)).collect();
        f32::exp_in_place(&mut xs);
        for (g, w) in xs.iter().zip(&want) {
            assert!(g.to_bits().abs_diff(w.to_bits()) <= 1, "{g} vs {w}");
        }
        assert_eq!(exp_f32(0.0), 1.0);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_mask_the_future() {
        let mut row = vec![0.3f32, -1.0, 2.0, 0.5, 9.0, 1.0, 1.0, 1.0];
        softmax_prefix(&mut row, 3);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(&row[3..], &[0.0; 5]);
        // the prefix equals the plain softmax of the first n entries
        let mut x = vec![
            0.7f64, -3.0, 1.5, 0.0, 2.2, -0.4, 5.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        let mut want = x[..7].to_vec();
        crate::numerics::softmax::softmax_rows(&mut want, 7);
        softmax_prefix(&mut x, 7);
        for (p, w) in x[..7].iter().zip(&want) {
            assert!((p - w).abs() < 1e-14, "{p} vs {w}");
        }
        let mut flat = vec![-2.0f32; 8];
        softmax_prefix(&mut flat, 4);
        assert!(flat[..4].iter().all(|&p| (p - 0.25).abs() < 1e-7));
        assert_eq!(&flat[4..], &[0.0; 4]);
    }
}
