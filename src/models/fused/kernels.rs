//! The per-row loops of the row stage, specialised per float type: AVX2 + FMA intrinsics for
//! f32 where the CPU has them ([`super::avx2`]; the crate itself targets baseline x86-64),
//! portable loops otherwise.
//!
//! A row reads three `[H, W]` blocks of a `[n_tab, H, W]` table (its a, b and `=` rows; W =
//! d_mlp or d_vocab_out). Each loop walks the row once, in chunks of 8 lanes, keeping every
//! partial sum of a chunk in registers, so a table row is read once and an output row written
//! once, instead of one pass per (head, position) term.

use crate::numerics::linalg::{dot, Real};

/// The row loops for one float type. Shapes: `p` `[H][3]` the row's attention pattern over
/// (a, b, `=`); `x` the three `[H, W]` table blocks; `d` `[W]` a gradient row.
pub trait Kernel: Real {
    /// `out = c + Σ_h Σ_pos p[h][pos]·x[pos][h]`, rectified when `relu` (forward).
    fn gather(out: &mut [Self], c: &[Self], p: &[[Self; 3]], x: [&[Self]; 3], relu: bool);
    /// `d = 0` where `post <= 0`: the backward through the ReLU of a `[W]` row.
    fn relu_backward(d: &mut [Self], post: &[Self]);
    /// The backward of [`Kernel::gather`] through one of its three table rows: for every head
    /// `h`, `d_x[h] += d · x[h]` (to the pattern entry that weighted `x[h]`) and
    /// `g[h] += coef[h]·d` (to the table row, `coef[h]` = that pattern entry), and `g_c += d`
    /// when given (the constant row). Shapes: `d` `[W]`; `x`, `g` `[H, W]`; `coef`, `d_x` `[H]`;
    /// `g_c` `[W]`.
    fn pass(
        d: &[Self],
        x: &[Self],
        coef: &[Self],
        g: &mut [Self],
        g_c: Option<&mut [Self]>,
        d_x: &mut [Self],
    );
    /// Cross-entropy of one row of `logits` `[Vo]` against `label`, log-softmax in f64:
    /// returns `(max + ln Σ_c exp(x_c − max) − x_label, arg-max)` (nats; the first arg-max). With
    /// `backward`, overwrites the row with `∂L/∂x = (softmax − onehot)·inv_n`. `exps` `[Vo]` is
    /// scratch.
    fn cross_entropy(
        logits: &mut [Self],
        label: usize,
        inv_n: f64,
        backward: bool,
        exps: &mut [f64],
    ) -> (f64, usize);
}

/// `(ln Σ_c exp(x_c), first arg-max)` of a row of f64 logits `[classes]`, shifted by the row's
/// max before `exp` (log-softmax's normaliser; the cross-entropy of class `c` is the first
/// value minus `x[c]`). With AVX2 the `exp`s run 4 lanes at a time, each within 2 ulp of the
/// correctly rounded value.
/// A NaN entry makes the value NaN.
pub fn log_sum_exp(x: &[f64]) -> (f64, usize) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: AVX2 and FMA were detected; the function reads only within `x`.
        return unsafe { super::avx2::log_sum_exp(x) };
    }
    portable::log_sum_exp(x)
}

/// Cross-entropy of one row of `logits` `[Vo]` against `label` with the log-softmax in **f32**,
/// as PyTorch's `log_softmax` on a float32 tensor computes it: `s = x − max`,
/// `log p = s − ln Σ_c exp(s_c)`, every operation rounded to f32. Returns `(−log p[label], first
/// arg-max)`; a row whose label has p = 1 in f32 has loss 0 and gradient 0 there, the rounding
/// behind the f32 "slingshots" (Nanda et al. 2023, appendix; REFERENCES.md §3). With
/// `backward`, overwrites the row with `∂L/∂x = (exp(log p) − onehot)·inv_n` in f32 (autograd's
/// log-softmax backward, `g − softmax·Σg`).
pub fn cross_entropy_f32<T: Real>(
    x: &mut [T],
    label: usize,
    inv_n: f64,
    backward: bool,
) -> (f64, usize) {
    let argmax = (0..x.len()).fold(0, |b, c| if x[c] > x[b] { c } else { b });
    let max = x[argmax].f64() as f32;
    let shifted = |v: T| v.f64() as f32 - max;
    let z: f32 = x.iter().map(|&v| shifted(v).exp()).sum();
    let lz = z.ln();
    let log_p_label = shifted(x[label]) - lz;
    if backward {
        let g = inv_n as f32;
        for v in x.iter_mut() {
            *v = T::of(f64::from((shifted(*v) - lz).exp() * g));
        }
        x[label] = T::of(f64::from((log_p_label.exp() - 1.0) * g));
    }
    (-f64::from(log_p_label), argmax)
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
            return unsafe { super::avx2::gather(out, c, p, x, relu) };
        }
        portable::gather(out, c, p, x, relu)
    }

    fn relu_backward(d: &mut [f32], post: &[f32]) {
        assert!(post.len() >= d.len());
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: as above.
            return unsafe { super::avx2::relu_backward(d, post) };
        }
        portable::relu_backward(d, post)
    }

    fn pass(
        d: &[f32],
        x: &[f32],
        coef: &[f32],
        g: &mut [f32],
        g_c: Option<&mut [f32]>,
        d_x: &mut [f32],
    ) {
        check_pass(d.len(), x, coef.len(), g, &g_c, d_x.len());
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: as above.
            return unsafe { super::avx2::pass(d, x, coef, g, g_c, d_x) };
        }
        portable::pass(d, x, coef, g, g_c, d_x)
    }

    fn cross_entropy(
        logits: &mut [f32],
        label: usize,
        inv_n: f64,
        backward: bool,
        exps: &mut [f64],
    ) -> (f64, usize) {
        assert!(label < logits.len() && exps.len() >= logits.len());
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: as above.
            return unsafe { super::avx2::cross_entropy(logits, label, inv_n, backward, exps) };
        }
        portable::cross_entropy(logits, label, inv_n, backward, exps)
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

    fn relu_backward(d: &mut [f64], post: &[f64]) {
        portable::relu_backward(d, post)
    }

    fn pass(
        d: &[f64],
        x: &[f64],
        coef: &[f64],
        g: &mut [f64],
        g_c: Option<&mut [f64]>,
        d_x: &mut [f64],
    ) {
        check_pass(d.len(), x, coef.len(), g, &g_c, d_x.len());
        portable::pass(d, x, coef, g, g_c, d_x)
    }

    fn cross_entropy(
        logits: &mut [f64],
        label: usize,
        inv_n: f64,
        backward: bool,
        exps: &mut [f64],
    ) -> (f64, usize) {
        portable::cross_entropy(logits, label, inv_n, backward, exps)
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
    assert!(
        c >= w && x.iter().all(|b| b.len() >= h * w),
        "row kernel shapes"
    );
}

/// Panics unless `x` and `g` hold `h` rows of `w`, `d_x` `h` entries and `g_c` `w`: the
/// intrinsics index unchecked.
fn check_pass<T>(w: usize, x: &[T], h: usize, g: &[T], g_c: &Option<&mut [T]>, d_x: usize) {
    assert!(
        x.len() >= h * w
            && g.len() >= h * w
            && d_x >= h
            && g_c.as_ref().is_none_or(|c| c.len() >= w),
        "row kernel shapes"
    );
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

    pub fn relu_backward<T: Real>(d: &mut [T], post: &[T]) {
        for (g, &x) in d.iter_mut().zip(post) {
            *g = if x > T::zero() { *g } else { T::zero() };
        }
    }

    pub fn pass<T: Real>(
        d: &[T],
        x: &[T],
        coef: &[T],
        g: &mut [T],
        g_c: Option<&mut [T]>,
        d_x: &mut [T],
    ) {
        let w = d.len();
        if let Some(g_c) = g_c {
            g_c[..w].iter_mut().zip(d).for_each(|(g, &v)| *g += v);
        }
        for (h, &c) in coef.iter().enumerate() {
            d_x[h] += dot(d, &x[h * w..(h + 1) * w]);
            (g[h * w..(h + 1) * w].iter_mut())
                .zip(d)
                .for_each(|(g, &v)| *g += c * v);
        }
    }

    pub use crate::numerics::softmax::log_sum_exp;

    pub fn cross_entropy<T: Real>(
        x: &mut [T],
        label: usize,
        inv_n: f64,
        backward: bool,
        exps: &mut [f64],
    ) -> (f64, usize) {
        let argmax = (0..x.len()).fold(0, |b, c| if x[c] > x[b] { c } else { b });
        let max = x[argmax].f64();
        for (e, &v) in exps.iter_mut().zip(x.iter()) {
            *e = (v.f64() - max).exp();
        }
        let z: f64 = exps[..x.len()].iter().sum();
        let loss = max + z.ln() - x[label].f64();
        if backward {
            let scale = inv_n / z;
            for (v, &e) in x.iter_mut().zip(exps.iter()) {
                *v = T::of(e * scale);
            }
            x[label] = T::of(exps[label] * scale - inv_n);
        }
        (loss, argmax)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The f32 log-softmax: uniform logits give ln Vo rounded to f32 and the gradient
    /// (1/Vo − onehot)·inv_n; a row whose label leads by 30 nats has p = 1 in f32, so loss 0 and
    /// no gradient at the label (the rounding behind the slingshots), where the f64 kernel still
    /// sees e^−30·(Vo − 1); and on random rows it agrees with the f64 kernel to f32 rounding.
    #[test]
    fn f32_cross_entropy_rounds_as_float32() {
        let vo = 113;
        let mut x = vec![0.5f64; vo];
        let (loss, _) = cross_entropy_f32(&mut x, 7, 0.5, true);
        assert_eq!(loss, f64::from((vo as f32).ln()));
        assert!((x[3] - 0.5 / vo as f64).abs() < 1e-8 && (x[7] + 0.5 * 112.0 / 113.0).abs() < 1e-7);
        let mut sure = vec![0.0f32; vo];
        sure[7] = 30.0;
        let mut sure64 = sure.clone();
        let (loss, argmax) = cross_entropy_f32(&mut sure, 7, 1.0, true);
        assert_eq!((loss, argmax, sure[7]), (0.0, 7, 0.0));
        let mut exps = vec![0.0; vo];
        let (loss64, _) = portable::cross_entropy(&mut sure64, 7, 1.0, true, &mut exps);
        assert!(loss64 > 1e-11, "{loss64}");
        for trial in 0..50 {
            let x: Vec<f32> = noise(vo, trial).iter().map(|v| v * 8.0).collect();
            let (mut a, mut b) = (x.clone(), x.clone());
            let (la, ia) = cross_entropy_f32(&mut a, 5, 0.25, true);
            let (lb, ib) = portable::cross_entropy(&mut b, 5, 0.25, true, &mut exps);
            assert_eq!(ia, ib);
            assert!((la - lb).abs() <= 1e-5 * lb.max(1.0), "{la} vs {lb}");
            for (u, v) in a.iter().zip(&b) {
                assert!((u - v).abs() <= 1e-6, "{u} vs {v}");
            }
        }
    }

    #[test]
    fn cross_entropy_kernels_agree_and_uniform_logits_give_ln_vo() {
        let vo = 113;
        let mut exps = vec![0.0; vo];
        for trial in 0..200 {
            let x: Vec<f32> = noise(vo, trial as u64).iter().map(|v| v * 60.0).collect();
            let label = trial % vo;
            let (mut a, mut b) = (x.clone(), x.clone());
            let (la, ia) = f32::cross_entropy(&mut a, label, 0.25, true, &mut exps);
            let (lb, ib) = portable::cross_entropy(&mut b, label, 0.25, true, &mut exps);
            assert_eq!(ia, ib);
            assert!((la - lb).abs() <= 1e-13 * lb.abs().max(1.0), "{la} vs {lb}");
            for (u, v) in a.iter().zip(&b) {
                assert!((u - v).abs() <= 1e-7 * v.abs().max(1e-30), "{u} vs {v}");
            }
        }
        let mut uniform = vec![3.5f32; vo];
        let (l, _) = f32::cross_entropy(&mut uniform, 7, 1.0, false, &mut exps);
        assert!((l - (vo as f64).ln()).abs() < 1e-14);
    }

    /// Lengths around the 4-lane width, spreads up to ±300 nats, ties for the arg-max.
    #[test]
    fn log_sum_exp_matches_portable_and_uniform_logits_give_ln_n() {
        for (trial, n) in [1usize, 3, 4, 5, 113, 114].into_iter().enumerate() {
            for scale in [1.0, 60.0, 600.0] {
                let mut x: Vec<f64> = noise(n, trial as u64)
                    .iter()
                    .map(|&v| scale * f64::from(v))
                    .collect();
                if n > 2 {
                    x[n - 1] = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                }
                let (got, at) = log_sum_exp(&x);
                let (want, want_at) = portable::log_sum_exp(&x);
                assert_eq!(at, want_at, "n {n}");
                assert!(x[at] >= x.iter().copied().fold(f64::NEG_INFINITY, f64::max));
                assert!(
                    (got - want).abs() <= 1e-14 * want.abs().max(1.0),
                    "{got} vs {want}"
                );
            }
            let (l, at) = log_sum_exp(&vec![-2.25; n]);
            assert!((l - (-2.25 + (n as f64).ln())).abs() < 1e-14, "n {n}: {l}");
            assert_eq!(at, 0);
        }
        let mut x = vec![0.5; 9];
        x[6] = f64::NAN;
        assert!(log_sum_exp(&x).0.is_nan());
    }

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f32]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    /// The f32 row loops (AVX2 where the CPU has it) against the portable ones, on shapes that
    /// reach every remainder: 5 heads (one past a group of 4), widths 37 and 512.
    #[test]
    fn f32_row_kernels_match_portable() {
        for &(h, w) in &[(5usize, 37usize), (4, 512), (1, 8)] {
            let hw = h * w;
            let tab = noise(7 * hw, 1);
            let p: Vec<[f32; 3]> = noise(3 * h, 2)
                .chunks(3)
                .map(|c| [c[0], c[1], c[2]])
                .collect();
            let c = noise(w, 3);
            let x = [1usize, 4, 6].map(|i| &tab[i * hw..(i + 1) * hw]);
            let (mut got, mut want) = (vec![0.0; w], vec![0.0; w]);
            f32::gather(&mut got, &c, &p, x, true);
            portable::gather(&mut want, &c, &p, x, true);
            close(&got, &want);

            let post = noise(w, 4);
            let (mut d1, mut d2) = (noise(w, 5), noise(w, 5));
            f32::relu_backward(&mut d1, &post);
            portable::relu_backward(&mut d2, &post);
            assert_eq!(d1, d2);
            assert!(d1.iter().zip(&post).all(|(d, p)| *p > 0.0 || *d == 0.0));

            let coef = noise(h, 6);
            let g0 = noise(hw + w, 7);
            let (mut g1, mut g2) = (g0.clone(), g0);
            let (mut dx1, mut dx2) = (noise(h, 8), noise(h, 8));
            for with_c in [false, true] {
                let (b1, c1) = g1.split_at_mut(hw);
                f32::pass(&d1, x[1], &coef, b1, with_c.then_some(c1), &mut dx1);
                let (b2, c2) = g2.split_at_mut(hw);
                portable::pass(&d1, x[1], &coef, b2, with_c.then_some(c2), &mut dx2);
                close(&g1, &g2);
                close(&dx1, &dx2);
            }
        }
    }
}
