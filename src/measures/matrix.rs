//! A dense row-major f64 matrix, multiplied through [`crate::numerics::linalg`] (`matrixmultiply`).
//!
//! The measures work in f64 on host memory: they read whole activation tables (`[p², d_mlp]`)
//! and reduce them in ways burn's op set would need many small kernels for.

use crate::numerics::linalg::{matmul_into, View};

/// `[rows, cols]` row-major f64 matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// `rows·cols` values, row-major.
    pub data: Vec<f64>,
}

impl Matrix {
    /// A `[rows, cols]` matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// Wraps row-major `data`.
    ///
    /// # Panics
    /// When `data.len() != rows·cols` (a programming error, not bad input).
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f64>) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix data length");
        Self { rows, cols, data }
    }

    /// Element `(r, c)`.
    pub fn at(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.cols + c]
    }

    /// Row `r` as a slice of `cols` values.
    pub fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// The first `cols` columns.
    pub fn first_cols(&self, cols: usize) -> Matrix {
        let data = self.data.chunks(self.cols).flat_map(|r| &r[..cols]);
        Matrix::from_vec(self.rows, cols, data.copied().collect())
    }

    /// The mean of each column over the rows, `[cols]`.
    pub fn col_means(&self) -> Vec<f64> {
        let mut m = vec![0.0; self.cols];
        for row in self.data.chunks(self.cols) {
            m.iter_mut().zip(row).for_each(|(m, x)| *m += x);
        }
        m.iter_mut().for_each(|m| *m /= self.rows as f64);
        m
    }

    /// The Euclidean norm of each column, `[cols]`.
    pub fn col_norms(&self) -> Vec<f64> {
        let mut s = vec![0.0; self.cols];
        for row in self.data.chunks(self.cols) {
            s.iter_mut().zip(row).for_each(|(s, x)| *s += x * x);
        }
        s.into_iter().map(f64::sqrt).collect()
    }

    /// Sum of squares of every element (squared Frobenius norm).
    pub fn sum_squares(&self) -> f64 {
        self.data.iter().map(|x| x * x).sum()
    }

    fn view(&self, transposed: bool) -> View<'_, f64> {
        let v = View::new(&self.data, self.rows, self.cols);
        if transposed {
            v.t()
        } else {
            v
        }
    }

    /// `self · rhs` for a row-major `[cols, n]` slice `rhs`, written into the `[rows, n]` slice
    /// `out` (no allocation).
    pub fn matmul_slice_into(&self, rhs: &[f64], n: usize, out: &mut [f64]) {
        assert_eq!(rhs.len(), self.cols * n, "matmul inner dimensions");
        assert_eq!(out.len(), self.rows * n, "matmul output size");
        matmul_into(
            out,
            n,
            self.view(false),
            View::new(rhs, self.cols, n),
            false,
        );
    }

    /// `self · rhs`: `[m, k] × [k, n] → [m, n]`.
    pub fn matmul(&self, rhs: &Matrix) -> Matrix {
        gemm(self.view(false), rhs.view(false))
    }

    /// `selfᵀ · rhs`: `[k, m]ᵀ × [k, n] → [m, n]`.
    pub fn t_matmul(&self, rhs: &Matrix) -> Matrix {
        gemm(self.view(true), rhs.view(false))
    }

    /// `self · rhsᵀ`: `[m, k] × [n, k]ᵀ → [m, n]`.
    pub fn matmul_t(&self, rhs: &Matrix) -> Matrix {
        gemm(self.view(false), rhs.view(true))
    }
}

/// `lhs · rhs` on one thread (the measures parallelise over checkpoints instead).
fn gemm(lhs: View<f64>, rhs: View<f64>) -> Matrix {
    let (rows, cols) = (lhs.rows(), rhs.cols());
    let mut out = Matrix::zeros(rows, cols);
    matmul_into(&mut out.data, cols, lhs, rhs, false);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &Matrix, b: &Matrix) -> Matrix {
        let mut out = Matrix::zeros(a.rows, b.cols);
        for i in 0..a.rows {
            for j in 0..b.cols {
                out.data[i * b.cols + j] = (0..a.cols).map(|k| a.at(i, k) * b.at(k, j)).sum();
            }
        }
        out
    }

    fn transpose(a: &Matrix) -> Matrix {
        let mut t = Matrix::zeros(a.cols, a.rows);
        for i in 0..a.rows {
            for j in 0..a.cols {
                t.data[j * a.rows + i] = a.at(i, j);
            }
        }
        t
    }

    #[test]
    fn products_match_the_definition() {
        let a = Matrix::from_vec(3, 4, (0..12).map(|x| (x as f64 * 0.7).sin()).collect());
        let b = Matrix::from_vec(4, 5, (0..20).map(|x| (x as f64 * 1.3).cos()).collect());
        let close = |x: &Matrix, y: &Matrix| {
            assert_eq!((x.rows, x.cols), (y.rows, y.cols));
            x.data
                .iter()
                .zip(&y.data)
                .for_each(|(p, q)| assert!((p - q).abs() < 1e-12));
        };
        close(&a.matmul(&b), &naive(&a, &b));
        close(&transpose(&a).t_matmul(&b), &naive(&a, &b));
        close(&a.matmul_t(&transpose(&b)), &naive(&a, &b));
    }
}
