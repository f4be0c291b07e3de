//! A dense row-major f64 matrix, multiplied with the `gemm` crate (the kernel under burn-flex).
//!
//! The measures work in f64 on host memory: they read whole activation tables (`[p², d_mlp]`)
//! and reduce them in ways burn's op set would need many small kernels for.

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

/// A strided read-only view for gemm: element `(r, c)` at `ptr + r·rs + c·cs`.
struct View<'a> {
    data: &'a [f64],
    rows: usize,
    cols: usize,
    rs: isize,
    cs: isize,
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

    fn view(&self, transposed: bool) -> View<'_> {
        let (rows, cols, rs, cs) = if transposed {
            (self.cols, self.rows, 1, self.cols as isize)
        } else {
            (self.rows, self.cols, self.cols as isize, 1)
        };
        View {
            data: &self.data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// `self · rhs` for a row-major `[cols, n]` slice `rhs`, written into the `[rows, n]` slice
    /// `out` (no allocation).
    pub fn matmul_slice_into(&self, rhs: &[f64], n: usize, out: &mut [f64]) {
        assert_eq!(rhs.len(), self.cols * n, "matmul inner dimensions");
        assert_eq!(out.len(), self.rows * n, "matmul output size");
        let rhs = View {
            data: rhs,
            rows: self.cols,
            cols: n,
            rs: n as isize,
            cs: 1,
        };
        gemm_into(self.view(false), rhs, out);
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
fn gemm(lhs: View, rhs: View) -> Matrix {
    let mut out = Matrix::zeros(lhs.rows, rhs.cols);
    gemm_into(lhs, rhs, &mut out.data);
    out
}

/// `out = lhs · rhs` into a row-major `[lhs.rows, rhs.cols]` slice.
fn gemm_into(lhs: View, rhs: View, out: &mut [f64]) {
    assert_eq!(lhs.cols, rhs.rows, "matmul inner dimensions");
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    assert_eq!(out.len(), m * n, "matmul output size");
    if m == 0 || n == 0 || k == 0 {
        out.fill(0.0);
        return;
    }
    // SAFETY: every view's strides address elements inside its slice (the shapes are checked
    // above), and `out` is an exclusively borrowed [m, n] row-major slice.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.data.as_ptr(),
            lhs.cs,
            lhs.rs,
            rhs.data.as_ptr(),
            rhs.cs,
            rhs.rs,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
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
