//! The f32 row loops of [`super::kernels`] in AVX2 + FMA intrinsics, and the losses' vectorised
//! f64 `exp`. Every function requires a CPU with AVX2 and FMA (the callers check); slice lengths
//! are checked by the callers too, the loops then index unchecked.

use std::arch::x86_64::*;

/// Sum of the 8 lanes.
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
}

/// See [`super::Kernel::gather`]; 32 lanes per step so a broadcast coefficient serves four
/// registers.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gather(out: &mut [f32], c: &[f32], p: &[[f32; 3]], x: [&[f32]; 3], relu: bool) {
    let w = out.len();
    let (o, cp, xp) = (out.as_mut_ptr(), c.as_ptr(), x.map(|b| b.as_ptr()));
    let zero = _mm256_setzero_ps();
    let fin = |v: __m256| if relu { _mm256_max_ps(v, zero) } else { v };
    let mut j = 0;
    while j + 32 <= w {
        let mut acc = [0, 8, 16, 24].map(|k| _mm256_loadu_ps(cp.add(j + k)));
        for (h, ph) in p.iter().enumerate() {
            for pos in 0..3 {
                let s = _mm256_set1_ps(ph[pos]);
                let src = xp[pos].add(h * w + j);
                for (k, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(s, _mm256_loadu_ps(src.add(8 * k)), *a);
                }
            }
        }
        for (k, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(o.add(j + 8 * k), fin(*a));
        }
        j += 32;
    }
    while j + 8 <= w {
        let mut acc = _mm256_loadu_ps(cp.add(j));
        for (h, ph) in p.iter().enumerate() {
            for pos in 0..3 {
                let s = _mm256_set1_ps(ph[pos]);
                acc = _mm256_fmadd_ps(s, _mm256_loadu_ps(xp[pos].add(h * w + j)), acc);
            }
        }
        _mm256_storeu_ps(o.add(j), fin(acc));
        j += 8;
    }
    for j in j..w {
        let mut acc = c[j];
        for (h, ph) in p.iter().enumerate() {
            for pos in 0..3 {
                acc = ph[pos].mul_add(x[pos][h * w + j], acc);
            }
        }
        out[j] = if relu { acc.max(0.0) } else { acc };
    }
}

/// See [`super::Kernel::pass`]: the constant row's `g_c += d` first, then up to four heads per
/// sweep of `d` with their dot products in registers. The group size is a compile-time constant
/// (four for the paper's model), so the sweep compiles to straight-line loads, FMAs and stores
/// with every pointer in a register.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn pass(
    d: &[f32],
    x: &[f32],
    coef: &[f32],
    g: &mut [f32],
    g_c: Option<&mut [f32]>,
    d_x: &mut [f32],
) {
    let (w, h_n) = (d.len(), coef.len());
    let w8 = w - w % 8;
    let (dp, xp, gp) = (d.as_ptr(), x.as_ptr(), g.as_mut_ptr());
    if let Some(c) = g_c {
        let cp = c.as_mut_ptr();
        for j in (0..w8).step_by(8) {
            _mm256_storeu_ps(
                cp.add(j),
                _mm256_add_ps(_mm256_loadu_ps(cp.add(j)), _mm256_loadu_ps(dp.add(j))),
            );
        }
        (c[w8..w].iter_mut().zip(&d[w8..])).for_each(|(c, &v)| *c += v);
    }
    for h0 in (0..h_n).step_by(4) {
        let n = (h_n - h0).min(4);
        let (xh, gh, ch) = (xp.add(h0 * w), gp.add(h0 * w), &coef[h0..]);
        let sums = match n {
            4 => pass_heads::<4>(dp, xh, gh, w, w8, ch),
            3 => pass_heads::<3>(dp, xh, gh, w, w8, ch),
            2 => pass_heads::<2>(dp, xh, gh, w, w8, ch),
            _ => pass_heads::<1>(dp, xh, gh, w, w8, ch),
        };
        for (k, &sum) in sums.iter().enumerate().take(n) {
            let row = (h0 + k) * w;
            let mut sum = sum;
            for jj in w8..w {
                sum = d[jj].mul_add(x[row + jj], sum);
                let dst = gp.add(row + jj);
                *dst = coef[h0 + k].mul_add(d[jj], *dst);
            }
            d_x[h0 + k] += sum;
        }
    }
}

/// `N` consecutive heads of [`pass`] (`x`, `g` at the first one's row of `w` entries, `coef`
/// from its coefficient) over the first `w8` lanes: `g[h] += coef[h]·d`; returns the lane sums of
/// `d · x[h]` (entries past `N` zero).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn pass_heads<const N: usize>(
    d: *const f32,
    x: *const f32,
    g: *mut f32,
    w: usize,
    w8: usize,
    coef: &[f32],
) -> [f32; 4] {
    let x: [*const f32; N] = std::array::from_fn(|k| x.add(k * w));
    let g: [*mut f32; N] = std::array::from_fn(|k| g.add(k * w));
    let s: [__m256; N] = std::array::from_fn(|k| _mm256_set1_ps(coef[k]));
    let mut acc = [_mm256_setzero_ps(); N];
    for j in (0..w8).step_by(8) {
        let dv = _mm256_loadu_ps(d.add(j));
        for k in 0..N {
            acc[k] = _mm256_fmadd_ps(dv, _mm256_loadu_ps(x[k].add(j)), acc[k]);
            let dst = g[k].add(j);
            _mm256_storeu_ps(dst, _mm256_fmadd_ps(s[k], dv, _mm256_loadu_ps(dst)));
        }
    }
    let mut sums = [0.0; 4];
    for (s, a) in sums.iter_mut().zip(acc) {
        *s = hsum(a);
    }
    sums
}

/// See [`super::Kernel::relu_backward`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn relu_backward(d: &mut [f32], post: &[f32]) {
    let (n, dp, pp) = (d.len(), d.as_mut_ptr(), post.as_ptr());
    let zero = _mm256_setzero_ps();
    let mut j = 0;
    while j + 8 <= n {
        let live = _mm256_cmp_ps(_mm256_loadu_ps(pp.add(j)), zero, _CMP_GT_OQ);
        _mm256_storeu_ps(dp.add(j), _mm256_and_ps(_mm256_loadu_ps(dp.add(j)), live));
        j += 8;
    }
    for j in j..n {
        d[j] = if post[j] > 0.0 { d[j] } else { 0.0 };
    }
}

/// `exp(x)` for `x <= 0` in 4 f64 lanes, within 2 ulp of the correctly rounded value above
/// −708 and tiny (not 0) below it; NaN stays NaN. Cody–Waite reduction `x = k·ln2 + r`,
/// `|r| <= ln2/2`, then the degree-13 Taylor polynomial of `exp(r)` (truncation error
/// `< r¹⁴/14! ≈ 4e-18`) and a scale by `2^k` built in the exponent bits.
#[target_feature(enable = "avx2,fma")]
pub fn exp_nonpositive(x: __m256d) -> __m256d {
    // ln 2 split so that k·LN2_HI is exact (fdlibm's ln2HI / ln2LO)
    const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
    // max(-708, x) returns x when x is NaN, so NaN propagates.
    let x = _mm256_max_pd(_mm256_set1_pd(-708.0), x);
    let k = _mm256_round_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_pd(
        x,
        _mm256_set1_pd(std::f64::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_pd(k, _mm256_set1_pd(LN2_HI), x);
    let r = _mm256_fnmadd_pd(k, _mm256_set1_pd(LN2_LO), r);
    let mut p = _mm256_set1_pd(INV_FACT[13]);
    for &c in INV_FACT[..13].iter().rev() {
        p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(c));
    }
    let k64 = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(k));
    let two_k = _mm256_slli_epi64::<52>(_mm256_add_epi64(k64, _mm256_set1_epi64x(1023)));
    _mm256_mul_pd(p, _mm256_castsi256_pd(two_k))
}

/// `1/i!` for i = 0..=13.
const INV_FACT: [f64; 14] = {
    let mut f = [1.0; 14];
    let mut i = 1;
    while i < 14 {
        f[i] = f[i - 1] / i as f64;
        i += 1;
    }
    f
};

/// See [`super::log_sum_exp`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn log_sum_exp(x: &[f64]) -> (f64, usize) {
    let (n, xp) = (x.len(), x.as_ptr());
    let mut mv = _mm256_set1_pd(f64::NEG_INFINITY);
    let mut j = 0;
    while j + 4 <= n {
        mv = _mm256_max_pd(mv, _mm256_loadu_pd(xp.add(j)));
        j += 4;
    }
    let mut lanes = [0.0f64; 4];
    _mm256_storeu_pd(lanes.as_mut_ptr(), mv);
    let max = lanes
        .iter()
        .chain(&x[j..])
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    let argmax = x.iter().position(|&v| v == max).unwrap_or(0);
    let m = _mm256_set1_pd(max);
    let mut zv = _mm256_setzero_pd();
    let mut j = 0;
    while j + 4 <= n {
        zv = _mm256_add_pd(
            zv,
            exp_nonpositive(_mm256_sub_pd(_mm256_loadu_pd(xp.add(j)), m)),
        );
        j += 4;
    }
    _mm256_storeu_pd(lanes.as_mut_ptr(), zv);
    let z = lanes.iter().sum::<f64>() + x[j..].iter().map(|v| (v - max).exp()).sum::<f64>();
    (max + z.ln(), argmax)
}

/// See [`super::Kernel::cross_entropy`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn cross_entropy(
    x: &mut [f32],
    label: usize,
    inv_n: f64,
    backward: bool,
    exps: &mut [f64],
) -> (f64, usize) {
    let (n, xp, ep) = (x.len(), x.as_mut_ptr(), exps.as_mut_ptr());
    let mut mv = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut j = 0;
    while j + 8 <= n {
        mv = _mm256_max_ps(mv, _mm256_loadu_ps(xp.add(j)));
        j += 8;
    }
    let mut lanes = [0.0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), mv);
    let max = lanes
        .iter()
        .chain(&x[j..])
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let argmax = x.iter().position(|&v| v == max).unwrap_or(0);
    let m = _mm256_set1_pd(f64::from(max));
    let mut zv = _mm256_setzero_pd();
    let mut j = 0;
    while j + 4 <= n {
        let v = _mm256_cvtps_pd(_mm_loadu_ps(xp.add(j)));
        let e = exp_nonpositive(_mm256_sub_pd(v, m));
        _mm256_storeu_pd(ep.add(j), e);
        zv = _mm256_add_pd(zv, e);
        j += 4;
    }
    let mut zl = [0.0f64; 4];
    _mm256_storeu_pd(zl.as_mut_ptr(), zv);
    let mut z = zl.iter().sum::<f64>();
    for c in j..n {
        exps[c] = (f64::from(x[c]) - f64::from(max)).exp();
        z += exps[c];
    }
    let loss = f64::from(max) + z.ln() - f64::from(x[label]);
    if backward {
        let scale = inv_n / z;
        let s = _mm256_set1_pd(scale);
        let mut j = 0;
        while j + 4 <= n {
            let d = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_loadu_pd(ep.add(j)), s));
            _mm_storeu_ps(xp.add(j), d);
            j += 4;
        }
        for c in j..n {
            x[c] = (exps[c] * scale) as f32;
        }
        x[label] = (exps[label] * scale - inv_n) as f32;
    }
    (loss, argmax)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_exp_matches_libm() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            eprintln!("skipped: no AVX2/FMA on this CPU");
            return;
        }
        let mut worst = 0.0f64;
        for i in 0..200_000 {
            let x = -708.0 * (i as f64 / 200_000.0).powi(3);
            let mut out = [0.0; 4];
            // SAFETY: AVX2 and FMA were detected.
            unsafe {
                let v = exp_nonpositive(_mm256_set1_pd(x));
                _mm256_storeu_pd(out.as_mut_ptr(), v);
            }
            let want = x.exp();
            worst = worst.max((out[0] - want).abs() / want);
        }
        assert!(worst < 4.5e-16, "worst relative error {worst}");
        let mut out = [0.0; 4];
        // SAFETY: as above.
        unsafe {
            let v = exp_nonpositive(_mm256_set_pd(f64::NAN, -1e6, -0.0, 0.0));
            _mm256_storeu_pd(out.as_mut_ptr(), v);
        }
        assert_eq!(out[0], 1.0);
        assert_eq!(out[1], 1.0);
        assert!(out[2] < 1e-300);
        assert!(out[3].is_nan());
    }
}
