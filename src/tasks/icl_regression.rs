//! In-context linear regression (von Oswald et al. 2023 §2; REFERENCES.md §5): each sequence is
//! its own task `y = wᵀx (+ noise)`, with N context pairs and a query whose label the model
//! predicts from the context alone. The tokens are real vectors, not ids.
//!
//! - Paired format: token i = (x_i, y_i) ∈ R^{d+1}, the query (x_q, 0); T = N + 1.
//! - Alternating format: x and y in separate tokens, (x_i, 0) then (0, y_i), then (x_q, 0);
//!   T = 2N + 1.
//!
//! Batch `s` of training is drawn from stream `s` of the task seed (a fresh batch of tasks
//! every step, the same one whenever it is drawn), the evaluation set from its own stream.

use super::batch::stream_rng;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Stream of the fixed evaluation set (training batches use streams 0, 1, 2, … by step).
const EVAL_STREAM: u64 = u64::MAX;

/// How the pairs are laid out as tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IclFormat {
    /// One token per pair, (x_i, y_i); the query (x_q, 0).
    Paired,
    /// (x_i, 0) and (0, y_i) as two tokens; the query (x_q, 0).
    Alternating,
}

/// The task distribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IclRegression {
    /// Input dimension d.
    pub d: usize,
    /// Context pairs N.
    pub n_pairs: usize,
    /// Inputs are uniform on `[−range/2, range/2]^d` (the paper's code: range 1).
    pub x_range: f64,
    /// Weights are `w_scale · N(0, I)`.
    pub w_scale: f64,
    /// Standard deviation of Gaussian label noise (0: noiseless).
    pub noise: f64,
    /// Token layout.
    pub format: IclFormat,
    /// Seed of every batch and of the evaluation set.
    pub seed: u64,
}

/// A batch of B regression tasks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IclBatch {
    /// Input dimension d.
    pub d: usize,
    /// Context pairs N.
    pub n: usize,
    /// `[B, N, d]` context inputs.
    pub x: Vec<f32>,
    /// `[B, N]` context labels.
    pub y: Vec<f32>,
    /// `[B, d]` query inputs.
    pub x_q: Vec<f32>,
    /// `[B]` query labels (the targets).
    pub y_q: Vec<f32>,
}

impl IclBatch {
    /// Number of tasks B.
    pub fn len(&self) -> usize {
        self.y_q.len()
    }

    /// Whether the batch holds no task.
    pub fn is_empty(&self) -> bool {
        self.y_q.is_empty()
    }

    /// Task `b`'s `[N, d]` context inputs.
    pub fn x_of(&self, b: usize) -> &[f32] {
        &self.x[b * self.n * self.d..(b + 1) * self.n * self.d]
    }

    /// Task `b`'s `[N]` context labels.
    pub fn y_of(&self, b: usize) -> &[f32] {
        &self.y[b * self.n..(b + 1) * self.n]
    }

    /// Task `b`'s `[d]` query input.
    pub fn x_q_of(&self, b: usize) -> &[f32] {
        &self.x_q[b * self.d..(b + 1) * self.d]
    }

    /// `[B, T, d+1]` tokens in `format` (T = N + 1 paired, 2N + 1 alternating), the query last
    /// with label slot 0.
    pub fn tokens(&self, format: IclFormat) -> Vec<f32> {
        let (d, e) = (self.d, self.d + 1);
        let mut out = Vec::with_capacity(self.len() * tokens_per_task(format, self.n) * e);
        for b in 0..self.len() {
            let (x, y) = (self.x_of(b), self.y_of(b));
            for i in 0..self.n {
                let xi = &x[i * d..(i + 1) * d];
                match format {
                    IclFormat::Paired => {
                        out.extend_from_slice(xi);
                        out.push(y[i]);
                    }
                    IclFormat::Alternating => {
                        out.extend_from_slice(xi);
                        out.push(0.0);
                        out.extend(std::iter::repeat_n(0.0, d));
                        out.push(y[i]);
                    }
                }
            }
            out.extend_from_slice(self.x_q_of(b));
            out.push(0.0);
        }
        out
    }
}

/// Tokens per task: N + 1 paired, 2N + 1 alternating.
pub fn tokens_per_task(format: IclFormat, n: usize) -> usize {
    match format {
        IclFormat::Paired => n + 1,
        IclFormat::Alternating => 2 * n + 1,
    }
}

impl IclRegression {
    /// `b` tasks drawn from `rng`: per task w, then N context inputs, the query input, and the
    /// labels with their noise.
    pub fn sample(&self, rng: &mut ChaCha8Rng, b: usize) -> IclBatch {
        let (d, n) = (self.d, self.n_pairs);
        let mut batch = IclBatch {
            d,
            n,
            ..IclBatch::default()
        };
        let half = self.x_range / 2.0;
        batch.x.reserve(b * n * d);
        batch.x_q.reserve(b * d);
        batch.y.reserve(b * n);
        let normal = |rng: &mut ChaCha8Rng| -> f64 { StandardNormal.sample(rng) };
        // per task: w, then per pair x and its label's noise (the draw order fixes the data)
        let (mut w, mut x) = (vec![0.0f64; d], vec![0.0f64; d]);
        for _ in 0..b {
            w.iter_mut().for_each(|v| *v = self.w_scale * normal(rng));
            for i in 0..=n {
                x.iter_mut()
                    .for_each(|v| *v = rng.random_range(-half..=half));
                let clean: f64 = w.iter().zip(&x).map(|(w, x)| w * x).sum();
                let noise = if self.noise > 0.0 {
                    self.noise * normal(rng)
                } else {
                    0.0
                };
                let y = (clean + noise) as f32;
                let xs = x.iter().map(|&v| v as f32);
                if i < n {
                    batch.x.extend(xs);
                    batch.y.push(y);
                } else {
                    batch.x_q.extend(xs);
                    batch.y_q.push(y);
                }
            }
        }
        batch
    }

    /// Training batch of `step`: `b` fresh tasks from stream `step`.
    pub fn train_batch(&self, step: u64, b: usize) -> IclBatch {
        self.sample(&mut stream_rng(self.seed, step), b)
    }

    /// The fixed evaluation set of `n` tasks (the paper: 10,000).
    pub fn eval_set(&self, n: usize) -> IclBatch {
        self.sample(&mut stream_rng(self.seed, EVAL_STREAM), n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> IclRegression {
        IclRegression {
            d: 3,
            n_pairs: 4,
            x_range: 1.0,
            w_scale: 1.0,
            noise: 0.0,
            format: IclFormat::Paired,
            seed: 7,
        }
    }

    /// Inputs lie in [−r/2, r/2]; a batch is the same when redrawn and differs between steps;
    /// noiseless labels are one linear map per task (recovered from d context pairs and checked
    /// on the rest and the query).
    #[test]
    fn samples_are_linear_tasks_in_range_and_reproducible() {
        let t = task();
        let b = t.train_batch(3, 50);
        assert_eq!(b, t.train_batch(3, 50));
        assert_ne!(b, t.train_batch(4, 50));
        assert!(b.x.iter().chain(&b.x_q).all(|v| v.abs() <= 0.5));
        for i in 0..b.len() {
            // solve the 3×3 system of the first 3 pairs by Cramer's rule
            let x = b.x_of(i);
            let y = b.y_of(i);
            let m = |r: usize, c: usize| f64::from(x[r * 3 + c]);
            let det = |a: [[f64; 3]; 3]| {
                a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
                    - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
                    + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
            };
            let a = [
                [m(0, 0), m(0, 1), m(0, 2)],
                [m(1, 0), m(1, 1), m(1, 2)],
                [m(2, 0), m(2, 1), m(2, 2)],
            ];
            let w: Vec<f64> = (0..3)
                .map(|c| {
                    let mut ac = a;
                    (0..3).for_each(|r| ac[r][c] = f64::from(y[r]));
                    det(ac) / det(a)
                })
                .collect();
            let pred = |xs: &[f32]| -> f64 { (0..3).map(|k| w[k] * f64::from(xs[k])).sum() };
            assert!((pred(&x[9..12]) - f64::from(y[3])).abs() < 1e-3);
            assert!((pred(b.x_q_of(i)) - f64::from(b.y_q[i])).abs() < 1e-3);
        }
    }

    /// Token layouts: paired (x_i, y_i) then (x_q, 0); alternating (x_i, 0), (0, y_i), …, (x_q, 0).
    #[test]
    fn token_layouts() {
        let b = task().eval_set(2);
        let paired = b.tokens(IclFormat::Paired);
        assert_eq!(paired.len(), 2 * 5 * 4);
        assert_eq!(&paired[0..3], &b.x[0..3]);
        assert_eq!(paired[3], b.y[0]);
        assert_eq!(&paired[16..19], &b.x_q[0..3]);
        assert_eq!(paired[19], 0.0);
        let alt = b.tokens(IclFormat::Alternating);
        assert_eq!(alt.len(), 2 * 9 * 4);
        assert_eq!(&alt[0..4], &[b.x[0], b.x[1], b.x[2], 0.0]);
        assert_eq!(&alt[4..8], &[0.0, 0.0, 0.0, b.y[0]]);
        assert_eq!(&alt[32..35], &b.x_q[0..3]);
    }
}
