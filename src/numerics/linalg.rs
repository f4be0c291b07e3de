//! Strided matrix products on host slices (`matrixmultiply`: on the fused step's thin shapes,
//! `[1915, 512]·[512, 114]` and its transposes, it runs ≈ 5–10% faster than the `gemm` crate
//! under burn-flex, measured side by side), single-threaded unless asked: the fused step
//! parallelises over row chunks, the measures over checkpoints.

use num_traits::Float;

/// The float types the fused step runs in (f32, f64).
pub trait Real:
    Float + Default + Send + Sync + std::iter::Sum + std::ops::AddAssign + 'static
{
    /// From f64 (rounding for f32).
    fn of(x: f64) -> Self;
    /// To f64.
    fn f64(self) -> f64;
    /// `c = a·b + beta·c` on raw strided operands (`matrixmultiply`'s `sgemm` / `dgemm`: `a`
    /// `[m, k]`, `b` `[k, n]`, `c` `[m, n]`, strides in elements; `c` is not read when `beta`
    /// is 0).
    ///
    /// # Safety
    /// Every addressed element lies inside its allocation and `c` aliases neither input.
    unsafe fn gemm(
        mkn: (usize, usize, usize),
        a: (*const Self, isize, isize),
        b: (*const Self, isize, isize),
        beta: Self,
        c: (*mut Self, isize, isize),
    );
}

impl Real for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    unsafe fn gemm(
        (m, k, n): (usize, usize, usize),
        a: (*const f32, isize, isize),
        b: (*const f32, isize, isize),
        beta: f32,
        c: (*mut f32, isize, isize),
    ) {
        matrixmultiply::sgemm(
            m, k, n, 1.0, a.0, a.1, a.2, b.0, b.1, b.2, beta, c.0, c.1, c.2,
        );
    }
}

impl Real for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
    unsafe fn gemm(
        (m, k, n): (usize, usize, usize),
        a: (*const f64, isize, isize),
        b: (*const f64, isize, isize),
        beta: f64,
        c: (*mut f64, isize, isize),
    ) {
        matrixmultiply::dgemm(
            m, k, n, 1.0, a.0, a.1, a.2, b.0, b.1, b.2, beta, c.0, c.1, c.2,
        );
    }
}

/// A read-only `[rows, cols]` view: element `(r, c)` at `data[r·rs + c·cs]`.
#[derive(Clone, Copy)]
pub struct View<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> View<'a, T> {
    /// Row-major `[rows, cols]`.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// Arbitrary strides (checked against the slice length).
    pub fn strided(data: &'a [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        if rows > 0 && cols > 0 {
            assert!(
                (rows - 1) * rs + (cols - 1) * cs < data.len(),
                "view outside its slice"
            );
        }
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// `out (+)= lhs · rhs` into a row-major `[lhs.rows, rhs.cols]` slice with row stride `out_rs`;
/// `accumulate` adds to what `out` holds instead of overwriting it.
pub fn matmul_into<T: Real>(
    out: &mut [T],
    out_rs: usize,
    lhs: View<T>,
    rhs: View<T>,
    accumulate: bool,
) {
    assert_eq!(lhs.cols, rhs.rows, "matmul inner dimensions");
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * out_rs + n <= out.len(),
        "matmul output outside its slice"
    );
    if k == 0 {
        if !accumulate {
            (0..m).for_each(|r| out[r * out_rs..r * out_rs + n].fill(T::zero()));
        }
        return;
    }
    // SAFETY: all three views were checked to lie inside their slices, and `out` is borrowed
    // mutably for the call.
    unsafe {
        T::gemm(
            (m, k, n),
            (lhs.data.as_ptr(), lhs.rs as isize, lhs.cs as isize),
            (rhs.data.as_ptr(), rhs.rs as isize, rhs.cs as isize),
            if accumulate { T::one() } else { T::zero() },
            (out.as_mut_ptr(), out_rs as isize, 1),
        );
    }
}

/// [`matmul_into`] through the `gemm` crate's AVX-512 kernels where the CPU has AVX-512F
/// (else `matrixmultiply`, as [`matmul_into`]): on the 2-core AVX-512 Xeon (2026-11-30) the
/// induction step took 44–47 ms with them against 61–66 ms.
///
/// A row's value depends on the product's shape here (the `gemm` crate sums a single-row
/// product in another order), so callers must not split a product into blocks whose boundaries
/// vary between runs, as [`par_rows`] does; the fused sequence step's shapes depend only on its
/// batch and chunking.
pub fn matmul_into_shaped<T: Real>(
    out: &mut [T],
    out_rs: usize,
    lhs: View<T>,
    rhs: View<T>,
    accumulate: bool,
) {
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    if !avx512() || m == 0 || n == 0 || k == 0 {
        return matmul_into(out, out_rs, lhs, rhs, accumulate);
    }
    assert_eq!(lhs.cols, rhs.rows, "matmul inner dimensions");
    assert!(
        (m - 1) * out_rs + n <= out.len(),
        "matmul output outside its slice"
    );
    // SAFETY: both views were checked to lie inside their slices, `out` is borrowed mutably and
    // holds the addressed rows. The gemm convention: dst = alpha·dst + beta·lhs·rhs, strides as
    // (column, row); dst is read only when accumulating.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            out_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Whether this CPU has AVX-512F (detected once).
fn avx512() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        return is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Fills `out` (rows of `row_len` entries) in one contiguous block of rows per rayon thread:
/// `fill(first_row, block)`. The block boundaries do not change any entry's value.
pub fn par_rows<T: Real>(out: &mut [T], row_len: usize, fill: impl Fn(usize, &mut [T]) + Sync) {
    use rayon::prelude::*;
    let rows = out.len() / row_len.max(1);
    let per = rows.div_ceil(rayon::current_num_threads().clamp(1, rows.max(1)));
    out.par_chunks_mut((per * row_len).max(1))
        .enumerate()
        .for_each(|(i, block)| fill(i * per, block));
}

/// `lhs · rhs` as a new row-major buffer.
pub fn matmul<T: Real>(lhs: View<T>, rhs: View<T>) -> Vec<T> {
    let mut out = vec![T::zero(); lhs.rows * rhs.cols];
    matmul_into(&mut out, rhs.cols, lhs, rhs, false);
    out
}

/// `y += a·x` (the inner loop of the row stage).
#[inline(always)]
pub fn axpy<T: Real>(y: &mut [T], a: T, x: &[T]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y += a * x);
}

/// `x · y` with 16 independent partial sums, so the compiler can keep them in vector registers
/// (a single running sum is a serial chain of dependent adds).
#[inline(always)]
pub fn dot<T: Real>(x: &[T], y: &[T]) -> T {
    const LANES: usize = 16;
    let n = x.len().min(y.len());
    let (xa, xb) = x[..n].split_at(n - n % LANES);
    let (ya, yb) = y[..n].split_at(n - n % LANES);
    let mut acc = [T::zero(); LANES];
    for (xc, yc) in xa.chunks_exact(LANES).zip(ya.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += xc[l] * yc[l];
        }
    }
    let tail = xb.iter().zip(yb).fold(T::zero(), |s, (&a, &b)| s + a * b);
    acc.iter().fold(tail, |s, &a| s + a)
}

/// A TransformerLens `[H, D, Dh]` weight (`W_Q`, `W_K`, `W_V`) as `[D, H·Dh]`, the heads side by
/// side, so one product projects every head.
pub fn heads_side_by_side<T: Real>(w: &[T], h: usize, d: usize, dh: usize) -> Vec<T> {
    let mut out = vec![T::zero(); d * h * dh];
    for hh in 0..h {
        for i in 0..d {
            for j in 0..dh {
                out[i * h * dh + hh * dh + j] = w[(hh * d + i) * dh + j];
            }
        }
    }
    out
}

/// `[D, H·Dh]` → `[H, D, Dh]` in f64: the inverse of [`heads_side_by_side`], for gradients.
pub fn heads_stacked<T: Real>(w: &[T], h: usize, d: usize, dh: usize) -> Vec<f64> {
    let mut out = vec![0.0; d * h * dh];
    for hh in 0..h {
        for i in 0..d {
            for j in 0..dh {
                out[(hh * d + i) * dh + j] = w[i * h * dh + hh * dh + j].f64();
            }
        }
    }
    out
}
