//! The per-row loops of the row stage, specialised per float type: AVX2 + FMA intrinsics for
//! f32 where the CPU has them (the crate itself targets baseline x86-64), portable loops
//! otherwise.
//!
//! A row reads three `[H, W]` blocks of a `[n_tab, H, W]` table (its a, b and `=` rows; W =
//! d_mlp or d_vocab_out). Each loop walks the row once, in chunks of 8 lanes, keeping every
//! partial sum of a chunk in registers, so a table row is read once and an output row written
//! once, instead of one pass per (head, position) term.

use crate::models::linalg::{dot, Real};

/// The row loops for one float type. Shapes: `p` `[H][3]` the row's attention pattern over
/// (a, b, `=`); `x` the three `[H, W]` table blocks; `d` `[W]` a gradient row.
pub trait Kernel: Real {
    /// `out = c + Σ_h Σ_pos p[h][pos]·x[pos][h]`, rectified when `relu` (forward).
    fn gather(out: &mut [Self], c: &[Self], p: &[[Self; 3]], x: [&[Self]; 3], relu: bool);
    /// `d_p[h][pos] += d · x[pos][h]` (backward to the pattern).
    fn dots(d: &[Self], x: [&[Self]; 3], d_p: &mut [[Self; 3]]);
    /// `g_a[h] += p[h][0]·d`, `g_b[h] += p[h][1]·d`, `g_c += d` (backward to the a and b
    /// blocks `[H, W]` and to the constant row `[W]`).
    fn scatter(d: &[Self], p: &[[Self; 3]], g_a: &mut [Self], g_b: &mut [Self], g_c: &mut [Self]);
    /// `d = 0` where `post <= 0` (backward through ReLU).
    fn relu_backward(d: &mut [Self], post: &[Self]);
}

/// Whether this CPU runs the AVX2 + FMA loops.
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

impl Kernel for f32 {
    fn gather(out: &mut [f32], c: &[f32], p: &[[f32; 3]], x: [&[f32]; 3], relu: bool) {
        check(out.len(), c.len(), p.len(), &x);
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: AVX2 and FMA were detected; the slice lengths were checked.
            return unsafe { avx2_f32::gather(out, c, p, x, relu) };
        }
        portable::gather(out, c, p, x, relu)
    }

    fn dots(d: &[f32], x: [&[f32]; 3], d_p: &mut [[f32; 3]]) {
        check(d.len(), d.len(), d_p.len(), &x);
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: as above.
            return unsafe { avx2_f32::dots(d, x, d_p) };
        }
        portable::dots(d, x, d_p)
    }

    fn scatter(d: &[f32], p: &[[f32; 3]], g_a: &mut [f32], g_b: &mut [f32], g_c: &mut [f32]) {
        let hw = p.len() * d.len();
        assert!(g_a.len() >= hw && g_b.len() >= hw && g_c.len() >= d.len());
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: as above.
            return unsafe { avx2_f32::scatter(d, p, g_a, g_b, g_c) };
        }
        portable::scatter(d, p, g_a, g_b, g_c)
    }

    fn relu_backward(d: &mut [f32], post: &[f32]) {
        portable::relu_backward(d, post)
    }
}

impl Kernel for f64 {
    fn gather(out: &mut [f64], c: &[f64], p: &[[f64; 3]], x: [&[f64]; 3], relu: bool) {
        check(out.len(), c.len(), p.len(), &x);
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: AVX2 and FMA were detected.
            return unsafe { gather_f64_avx2(out, c, p, x, relu) };
        }
        portable::gather(out, c, p, x, relu)
    }

    fn dots(d: &[f64], x: [&[f64]; 3], d_p: &mut [[f64; 3]]) {
        portable::dots(d, x, d_p)
    }

    fn scatter(d: &[f64], p: &[[f64; 3]], g_a: &mut [f64], g_b: &mut [f64], g_c: &mut [f64]) {
        portable::scatter(d, p, g_a, g_b, g_c)
    }

    fn relu_backward(d: &mut [f64], post: &[f64]) {
        portable::relu_backward(d, post)
    }
}

/// The f64 forward (the measures' path) compiled for AVX2: the portable loop vectorises.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gather_f64_avx2(out: &mut [f64], c: &[f64], p: &[[f64; 3]], x: [&[f64]; 3], relu: bool) {
    portable::gather(out, c, p, x, relu)
}

/// Panics unless `c` has `w` entries and every block `h·w`: the intrinsics read unchecked.
fn check<T>(w: usize, c: usize, h: usize, x: &[&[T]; 3]) {
    assert!(c >= w && x.iter().all(|b| b.len() >= h * w), "row kernel shapes");
}

mod portable {
    use super::*;

    const L: usize = 8;

    #[inline(always)]
    pub fn gather<T: Real>(out: &mut [T], c: &[T], p: &[[T; 3]], x: [&[T]; 3], relu: bool) {
        let w = out.len();
        let full = w - w % L;
        let finish = |acc: T| if relu { acc.max(T::zero()) } else { acc };
        for j0 in (0..full).step_by(L) {
            let mut acc: [T; L] = c[j0..j0 + L].try_into().expect("L lanes");
            for (h, ph) in p.iter().enumerate() {
                for (pos, xp) in x.iter().enumerate() {
                    let src = &xp[h * w + j0..h * w + j0 + L];
                    for l in 0..L {
                        acc[l] += ph[pos] * src[l];
                    }
                }
            }
            for l in 0..L {
                out[j0 + l] = finish(acc[l]);
            }
        }
        for j in full..w {
            let mut acc = c[j];
            for (h, ph) in p.iter().enumerate() {
                for pos in 0..3 {
                    acc += ph[pos] * x[pos][h * w + j];
                }
            }
            out[j] = finish(acc);
        }
    }

    pub fn dots<T: Real>(d: &[T], x: [&[T]; 3], d_p: &mut [[T; 3]]) {
        let w = d.len();
        for (h, dh) in d_p.iter_mut().enumerate() {
            for pos in 0..3 {
                dh[pos] += dot(d, &x[pos][h * w..(h + 1) * w]);
            }
        }
    }

    pub fn scatter<T: Real>(d: &[T], p: &[[T; 3]], g_a: &mut [T], g_b: &mut [T], g_c: &mut [T]) {
        let w = d.len();
        g_c[..w].iter_mut().zip(d).for_each(|(g, &x)| *g += x);
        for (h, ph) in p.iter().enumerate() {
            let rows = h * w..(h + 1) * w;
            g_a[rows.clone()]
                .iter_mut()
                .zip(d)
                .for_each(|(g, &x)| *g += ph[0] * x);
            g_b[rows].iter_mut().zip(d).for_each(|(g, &x)| *g += ph[1] * x);
        }
    }

    pub fn relu_backward<T: Real>(d: &mut [T], post: &[T]) {
        for (g, &x) in d.iter_mut().zip(post) {
            *g = if x > T::zero() { *g } else { T::zero() };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2_f32 {
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

    /// See [`super::Kernel::dots`]; four heads per pass: 12 accumulators in registers.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dots(d: &[f32], x: [&[f32]; 3], d_p: &mut [[f32; 3]]) {
        let (w, h_n) = (d.len(), d_p.len());
        let (dp, xp) = (d.as_ptr(), x.map(|b| b.as_ptr()));
        for h0 in (0..h_n).step_by(4) {
            // Heads past the last one repeat it; their sums are dropped.
            let heads = [0, 1, 2, 3].map(|g| (h0 + g).min(h_n - 1) * w);
            let mut acc = [[_mm256_setzero_ps(); 3]; 4];
            let mut j = 0;
            while j + 8 <= w {
                let dv = _mm256_loadu_ps(dp.add(j));
                for (g, acc_g) in acc.iter_mut().enumerate() {
                    for (pos, a) in acc_g.iter_mut().enumerate() {
                        let src = _mm256_loadu_ps(xp[pos].add(heads[g] + j));
                        *a = _mm256_fmadd_ps(dv, src, *a);
                    }
                }
                j += 8;
            }
            for (g, acc_g) in acc.iter().enumerate().take(h_n - h0) {
                for (pos, a) in acc_g.iter().enumerate() {
                    let mut s = hsum(*a);
                    for jj in j..w {
                        s = d[jj].mul_add(x[pos][heads[g] + jj], s);
                    }
                    d_p[h0 + g][pos] += s;
                }
            }
        }
    }

    /// See [`super::Kernel::scatter`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn scatter(
        d: &[f32],
        p: &[[f32; 3]],
        g_a: &mut [f32],
        g_b: &mut [f32],
        g_c: &mut [f32],
    ) {
        let w = d.len();
        let (dp, ga, gb, gc) = (
            d.as_ptr(),
            g_a.as_mut_ptr(),
            g_b.as_mut_ptr(),
            g_c.as_mut_ptr(),
        );
        let mut j = 0;
        while j + 8 <= w {
            let dv = _mm256_loadu_ps(dp.add(j));
            _mm256_storeu_ps(gc.add(j), _mm256_add_ps(_mm256_loadu_ps(gc.add(j)), dv));
            for (h, ph) in p.iter().enumerate() {
                let (a, b) = (ga.add(h * w + j), gb.add(h * w + j));
                let (sa, sb) = (_mm256_set1_ps(ph[0]), _mm256_set1_ps(ph[1]));
                _mm256_storeu_ps(a, _mm256_fmadd_ps(sa, dv, _mm256_loadu_ps(a)));
                _mm256_storeu_ps(b, _mm256_fmadd_ps(sb, dv, _mm256_loadu_ps(b)));
            }
            j += 8;
        }
        for j in j..w {
            g_c[j] += d[j];
            for (h, ph) in p.iter().enumerate() {
                g_a[h * w + j] = ph[0].mul_add(d[j], g_a[h * w + j]);
                g_b[h * w + j] = ph[1].mul_add(d[j], g_b[h * w + j]);
            }
        }
    }
}
