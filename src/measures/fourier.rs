//! The Fourier basis over ℤ_p and the 1D/2D transforms of Nanda et al. 2023 (§4.1, App. C).
//!
//! Basis `B` (`[p, p]`, rows = basis vectors, columns = residue x): row 0 = 1/√p; for
//! k = 1..p/2, row 2k−1 = cos(2πkx/p) and row 2k = sin(2πkx/p), each scaled to unit norm.
//! For odd p the rows are orthonormal (REFERENCES §2).

use super::matrix::Matrix;
use std::f64::consts::PI;

/// The `[p, p]` Fourier basis (rows: constant, cos 1, sin 1, cos 2, …; columns: x = 0..p).
pub fn fourier_basis(p: usize) -> Matrix {
    let mut b = Matrix::zeros(p, p);
    for x in 0..p {
        b.data[x] = 1.0;
    }
    for k in 1..=p / 2 {
        for x in 0..p {
            let angle = 2.0 * PI * (k * x % p) as f64 / p as f64;
            b.data[(2 * k - 1) * p + x] = angle.cos();
            if 2 * k < p {
                b.data[2 * k * p + x] = angle.sin();
            }
        }
    }
    for row in b.data.chunks_mut(p) {
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        row.iter_mut().for_each(|v| *v /= norm);
    }
    b
}

/// Human name of basis row `i`: `const`, `cos k` or `sin k`.
pub fn component_name(i: usize) -> String {
    match i {
        0 => "const".into(),
        i if i % 2 == 1 => format!("cos {}", i.div_ceil(2)),
        i => format!("sin {}", i / 2),
    }
}

/// The frequency of basis row `i` (0 for the constant).
pub fn component_freq(i: usize) -> usize {
    i.div_ceil(2)
}

/// 2D transform of a table over all p² inputs: `acts` is `[p·p (a-major: a·p + b), n]`, the
/// result `[p·p (i·p + j), n]` holds `Σ_{a,b} B[i,a]·B[j,b]·acts[a·p + b]` — the basis applied
/// along both input axes.
pub fn transform_2d(basis: &Matrix, acts: &Matrix) -> Matrix {
    let p = basis.rows;
    let n = acts.cols;
    assert_eq!(acts.rows, p * p, "2D transform needs p² rows");
    // Along a: acts as [p (a), p·n (b, n)].
    let mut along_a = vec![0.0; p * p * n]; // (i, (b, n))
    basis.matmul_slice_into(&acts.data, p * n, &mut along_a);
    // Along b: for each i, the [p (b), n] block.
    let mut out = Matrix::zeros(p * p, n);
    for i in 0..p {
        let rows = i * p * n..(i + 1) * p * n;
        basis.matmul_slice_into(&along_a[rows.clone()], n, &mut out.data[rows]);
    }
    out
}

/// Per-frequency norms from per-component norms `c` (`[p]`, basis order): index 0 is the
/// constant's |c₀|, index k ≥ 1 is `√(c_{2k−1}² + c_{2k}²)`. Returns `[p/2 + 1]`.
pub fn freq_norms(c: &[f64]) -> Vec<f64> {
    let p = c.len();
    let mut out = vec![c[0].abs()];
    for k in 1..=p / 2 {
        let sin = c.get(2 * k).copied().unwrap_or(0.0);
        out.push((c[2 * k - 1].powi(2) + sin * sin).sqrt());
    }
    out
}

/// Gini coefficient of non-negative values (Hurley & Rickard 2009, as in Nanda et al. 2023
/// §5.1): with `c` sorted ascending and N entries, `1 − 2·Σ_k (c_k/‖c‖₁)·(N − k + ½)/N`
/// (k from 1). 0 for equal values, → 1 − 1/N when one value holds everything; NaN when all are 0.
pub fn gini(values: &[f64]) -> f64 {
    let mut c: Vec<f64> = values.iter().map(|v| v.abs()).collect();
    c.sort_by(f64::total_cmp);
    let n = c.len() as f64;
    let l1: f64 = c.iter().sum();
    let s: f64 = (c.iter().enumerate())
        .map(|(i, v)| v / l1 * (n - (i + 1) as f64 + 0.5) / n)
        .sum();
    1.0 - 2.0 * s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basis_is_orthonormal() {
        for p in [5, 23, 113] {
            let b = fourier_basis(p);
            let g = b.matmul_t(&b);
            for i in 0..p {
                for j in 0..p {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((g.at(i, j) - want).abs() < 1e-12, "p {p} ({i},{j})");
                }
            }
        }
    }

    #[test]
    fn rows_are_the_named_waves() {
        let p = 7;
        let b = fourier_basis(p);
        let s = (2.0 / p as f64).sqrt();
        assert!((b.at(0, 3) - 1.0 / (p as f64).sqrt()).abs() < 1e-15);
        assert!((b.at(3, 2) - s * (2.0 * PI * 2.0 * 2.0 / 7.0).cos()).abs() < 1e-15);
        assert!((b.at(4, 2) - s * (2.0 * PI * 2.0 * 2.0 / 7.0).sin()).abs() < 1e-15);
        assert_eq!(component_name(3), "cos 2");
        assert_eq!(component_name(4), "sin 2");
        assert_eq!(component_freq(4), 2);
    }

    #[test]
    fn transform_2d_of_a_product_wave_is_one_component() {
        // acts(a, b) = B[3, a]·B[4, b] transforms to the single component (3, 4).
        let p = 11;
        let b = fourier_basis(p);
        let acts = Matrix::from_vec(
            p * p,
            1,
            (0..p * p)
                .map(|i| b.at(3, i / p) * b.at(4, i % p))
                .collect(),
        );
        let f = transform_2d(&b, &acts);
        for i in 0..p * p {
            let want = if i == 3 * p + 4 { 1.0 } else { 0.0 };
            assert!((f.data[i] - want).abs() < 1e-12);
        }
    }

    #[test]
    fn gini_extremes() {
        assert!(gini(&[1.0; 8]).abs() < 1e-15);
        let mut one_hot = vec![0.0; 8];
        one_hot[2] = 5.0;
        assert!((gini(&one_hot) - (1.0 - 1.0 / 8.0)).abs() < 1e-15);
    }
}
