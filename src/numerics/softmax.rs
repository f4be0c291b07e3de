//! Softmax and log-sum-exp on rows, the plain references: the LSA's attention uses
//! [`softmax_rows`]; the fused kernels' SIMD softmax and log-sum-exp are tested against these.

use super::linalg::Real;

/// Row-wise softmax of `s` `[rows, cols]` in place, shifted by each row's max before `exp`.
pub fn softmax_rows<T: Real>(s: &mut [T], cols: usize) {
    for row in s.chunks_mut(cols) {
        let max = row.iter().copied().fold(T::neg_infinity(), T::max);
        let mut z = T::zero();
        row.iter_mut().for_each(|x| {
            *x = (*x - max).exp();
            z += *x;
        });
        row.iter_mut().for_each(|x| *x = *x / z);
    }
}

/// `(ln Σ_c exp(x_c), first arg-max)` of a row `[classes]`, shifted by the row's max before
/// `exp`: log-softmax's normaliser, so the cross-entropy of class `c` is the first value minus
/// `x[c]`. A NaN entry makes the value NaN.
pub fn log_sum_exp(x: &[f64]) -> (f64, usize) {
    let argmax = (0..x.len()).fold(0, |b, c| if x[c] > x[b] { c } else { b });
    let max = x[argmax];
    (
        max + x.iter().map(|v| (v - max).exp()).sum::<f64>().ln(),
        argmax,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_logits_give_ln_n_and_rows_sum_to_one() {
        let (lse, at) = log_sum_exp(&[2.5; 7]);
        assert!((lse - (2.5 + 7f64.ln())).abs() < 1e-14);
        assert_eq!(at, 0);
        // large logits do not overflow: the shift by the max keeps exp ≤ 1
        let (lse, at) = log_sum_exp(&[1000.0, 0.0, 999.0]);
        assert!((lse - (1000.0 + (1.0 + (-1.0f64).exp() + (-1000.0f64).exp()).ln())).abs() < 1e-12);
        assert_eq!(at, 0);
        let mut s = vec![0.3f64, -1.0, 2.0, 800.0, 800.0, -5.0];
        softmax_rows(&mut s, 3);
        for row in s.chunks(3) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        }
        assert!((s[3] - 0.5).abs() < 1e-15 && (s[4] - 0.5).abs() < 1e-15);
        // softmax = exp(x − lse)
        let x = [0.3f64, -1.0, 2.0];
        let (lse, _) = log_sum_exp(&x);
        for (p, v) in s[..3].iter().zip(x) {
            assert!((p - (v - lse).exp()).abs() < 1e-15);
        }
    }
}
