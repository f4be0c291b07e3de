//! Restricted and excluded loss, and the logit trig fit (Nanda et al. 2023 §5.1, App. D;
//! REFERENCES §2), on the `[p², p]` logits of all inputs (rows a-major).
//!
//! For the task `c = a ± b` the algorithm's output lives on the directions `cos(w_k(a ± b))`
//! and `sin(w_k(a ± b))` (w_k = 2πk/p) of the input space. As unit vectors over the p² inputs
//! they are `√2/p · cos(w_k(a ± b))` and `√2/p · sin(w_k(a ± b))` — for addition exactly the
//! REFERENCES' `(B_{2k−1}⊗B_{2k−1} − B_{2k}⊗B_{2k})/√2` and `(B_{2k}⊗B_{2k−1} + B_{2k−1}⊗B_{2k})/√2`.

use super::matrix::Matrix;
use crate::models::fused::log_sum_exp;
use std::f64::consts::PI;

/// How the answer combines the inputs: `c = a + b` or `c = a − b` (mod p).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// `a + b`.
    Sum,
    /// `a − b`.
    Difference,
}

impl Combine {
    fn residue(self, a: usize, b: usize, p: usize) -> usize {
        match self {
            Combine::Sum => (a + b) % p,
            Combine::Difference => (a + p - b) % p,
        }
    }
}

/// `Σ_k` of the projections of every class's logit column (`logits` `[p², p]`) onto the two
/// unit directions `cos(w_k(a ± b))`, `sin(w_k(a ± b))` of each frequency in `freqs` (1..=p/2).
pub fn trig_part(logits: &Matrix, freqs: &[usize], combine: Combine) -> Matrix {
    let p = logits.cols;
    let scale = 2f64.sqrt() / p as f64;
    let residues: Vec<usize> = (0..p * p)
        .map(|i| combine.residue(i / p, i % p, p))
        .collect();
    let mut dirs: Vec<Vec<f64>> = Vec::with_capacity(2 * freqs.len());
    for &k in freqs {
        let w = |s: usize| 2.0 * PI * ((k * s) % p) as f64 / p as f64;
        dirs.push(residues.iter().map(|&s| scale * w(s).cos()).collect());
        dirs.push(residues.iter().map(|&s| scale * w(s).sin()).collect());
    }
    let dirs = Matrix::from_vec(dirs.len(), p * p, dirs.concat()); // (direction, input)
    let coef = dirs.matmul(logits); // (direction, class)
    dirs.t_matmul(&coef) // (input, class)
}

/// Restricted logits: the key-frequency part `trig` (from [`trig_part`]) plus each class's mean
/// over inputs of the rest, `trig + mean_inputs(L − trig)` (REFERENCES §2).
pub fn restricted_logits(logits: &Matrix, trig: &Matrix) -> Matrix {
    let rest = excluded_logits(logits, trig);
    let means = rest.col_means();
    let mut out = trig.clone();
    for row in out.data.chunks_mut(logits.cols) {
        row.iter_mut().zip(&means).for_each(|(x, m)| *x += m);
    }
    out
}

/// Excluded logits: `L − trig` with no mean added back (REFERENCES §2).
pub fn excluded_logits(logits: &Matrix, trig: &Matrix) -> Matrix {
    let mut out = logits.clone();
    out.data
        .iter_mut()
        .zip(&trig.data)
        .for_each(|(l, t)| *l -= t);
    out
}

/// Fraction of the logits' variance over inputs (each class centred over the p² inputs) that
/// lies in the key directions: `‖trig‖² / ‖L − mean_inputs(L)‖²`. The directions have zero
/// mean, so `trig` is also the projection of the centred logits.
pub fn key_direction_fve(logits: &Matrix, trig: &Matrix) -> f64 {
    let means = logits.col_means();
    let centred: f64 = (logits.data.chunks(logits.cols))
        .flat_map(|row| row.iter().zip(&means).map(|(x, m)| (x - m).powi(2)))
        .sum();
    trig.sum_squares() / centred
}

/// Per-row cross-entropy (nats, log-softmax in f64) and correctness of chosen rows of `logits`
/// (`[n, classes]`) against `labels` (`[n]`; `usize::MAX` marks a row without label).
pub struct Scores {
    loss: Vec<f64>,
    correct: Vec<bool>,
}

impl Scores {
    /// Scores the labelled rows among `rows` once (others score NaN), so that several subsets
    /// of them can be averaged cheaply.
    pub fn new(logits: &Matrix, labels: &[usize], rows: &[usize]) -> Self {
        let mut wanted = vec![false; logits.rows];
        rows.iter().for_each(|&r| wanted[r] = true);
        let (loss, correct) = (0..logits.rows)
            .map(|r| {
                let Some(&label) = labels.get(r).filter(|&&l| l != usize::MAX && wanted[r]) else {
                    return (f64::NAN, false);
                };
                let row = logits.row(r);
                let (lse, argmax) = log_sum_exp(row);
                (lse - row[label], argmax == label)
            })
            .unzip();
        Self { loss, correct }
    }

    /// Mean loss and accuracy over `rows` (NaN for no rows or rows not scored).
    pub fn mean(&self, rows: &[usize]) -> (f64, f64) {
        if rows.is_empty() {
            return (f64::NAN, f64::NAN);
        }
        let n = rows.len() as f64;
        let loss = rows.iter().map(|&r| self.loss[r]).sum::<f64>() / n;
        let correct = rows.iter().filter(|&&r| self.correct[r]).count() as f64;
        (loss, correct / n)
    }
}

/// Mean cross-entropy (nats, log-softmax in f64) and accuracy of the given `rows` of `logits`
/// (`[n, classes]`) against `labels` (`[n]`). NaN for no rows.
pub fn cross_entropy(logits: &Matrix, labels: &[usize], rows: &[usize]) -> (f64, f64) {
    Scores::new(logits, labels, rows).mean(rows)
}

/// Least-squares fit `L_c ≈ Σ_k α_k cos(w_k(a ± b − c))` of the logits centred over classes
/// (softmax-invariant), Nanda et al. 2023 §4.3 / App. D. Returns `(α [len freqs], fraction of
/// the centred logits' squared norm explained)`. The functions `cos(w_k(a ± b − c))` are
/// orthogonal with squared norm p³/2, so each α_k is a projection.
pub fn trig_fit(logits: &Matrix, freqs: &[usize], combine: Combine) -> (Vec<f64>, f64) {
    let p = logits.cols;
    // S[s, c] = Σ_{(a,b): a±b ≡ s} L_c[(a,b), c]
    let mut s = vec![0.0; p * p];
    let mut total = 0.0;
    for i in 0..p * p {
        let row = logits.row(i);
        let mean = row.iter().sum::<f64>() / p as f64;
        let r = combine.residue(i / p, i % p, p);
        for c in 0..p {
            s[r * p + c] += row[c] - mean;
            total += (row[c] - mean).powi(2);
        }
    }
    let norm2 = (p * p * p) as f64 / 2.0;
    let alphas: Vec<f64> = freqs
        .iter()
        .map(|&k| {
            let mut dot = 0.0;
            for r in 0..p {
                for c in 0..p {
                    let angle = 2.0 * PI * ((k * (r + p - c)) % p) as f64 / p as f64;
                    dot += s[r * p + c] * angle.cos();
                }
            }
            dot / norm2
        })
        .collect();
    let explained = alphas.iter().map(|a| a * a * norm2).sum::<f64>() / total;
    (alphas, explained)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits `Σ_k scale·cos(w_k(a + b − c))` for p = 13, key frequencies 2 and 5.
    fn synthetic(p: usize, scale: f64, combine: Combine) -> (Matrix, Vec<usize>) {
        let freqs = [2, 5];
        let mut l = Matrix::zeros(p * p, p);
        let labels: Vec<usize> = (0..p * p)
            .map(|i| combine.residue(i / p, i % p, p))
            .collect();
        for (i, &s) in labels.iter().enumerate() {
            for c in 0..p {
                l.data[i * p + c] = freqs
                    .iter()
                    .map(|&k| scale * (2.0 * PI * (k * (s + p - c) % p) as f64 / p as f64).cos())
                    .sum();
            }
        }
        (l, labels)
    }

    #[test]
    fn restricted_equals_full_and_excluded_is_chance_or_worse_on_pure_trig_logits() {
        let p = 13;
        for combine in [Combine::Sum, Combine::Difference] {
            let (l, labels) = synthetic(p, 4.0, combine);
            let freqs = [2, 5];
            let all: Vec<usize> = (0..p * p).collect();
            let full = cross_entropy(&l, &labels, &all);
            let trig = trig_part(&l, &freqs, combine);
            let restricted = cross_entropy(&restricted_logits(&l, &trig), &labels, &all);
            assert!(
                (full.0 - restricted.0).abs() < 1e-12,
                "{full:?} {restricted:?}"
            );
            assert_eq!(full.1, 1.0);
            let excluded = cross_entropy(&excluded_logits(&l, &trig), &labels, &all);
            assert!(excluded.0 >= (p as f64).ln() - 1e-9, "{excluded:?}");
            let (alphas, fve) = trig_fit(&l, &freqs, combine);
            assert!(alphas.iter().all(|a| (a - 4.0).abs() < 1e-12));
            assert!((fve - 1.0).abs() < 1e-12);
            assert!((key_direction_fve(&l, &trig) - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn uniform_logits_give_ln_p() {
        let p = 7;
        let l = Matrix::zeros(p * p, p);
        let labels = vec![3; p * p];
        let rows: Vec<usize> = (0..p * p).collect();
        let (loss, acc) = cross_entropy(&l, &labels, &rows);
        assert!((loss - (p as f64).ln()).abs() < 1e-14, "{loss}");
        // ties go to class 0, label 3
        assert_eq!(acc, 0.0);
    }

    #[test]
    fn excluded_loss_equals_train_loss_on_a_random_label_table() {
        // A memorised random table has no Fourier structure in a + b: removing the key
        // directions leaves the loss unchanged up to the small projection of noise.
        use crate::tasks::{ModularDataset, Operation};
        let p = 113;
        let data = ModularDataset::new(Operation::RandomTable, p as u64, 3).unwrap();
        let labels: Vec<usize> = data.labels.iter().map(|&c| c as usize).collect();
        let mut l = Matrix::zeros(p * p, p);
        for (i, &c) in labels.iter().enumerate() {
            l.data[i * p + c] = 8.0;
        }
        let rows: Vec<usize> = (0..p * p).collect();
        let train = cross_entropy(&l, &labels, &rows).0;
        let trig = trig_part(&l, &[3, 6, 23, 39], Combine::Sum);
        let excluded = cross_entropy(&excluded_logits(&l, &trig), &labels, &rows).0;
        assert!(
            (excluded / train - 1.0).abs() < 0.02,
            "{excluded} vs {train}"
        );
        // while on structured logits the same removal is catastrophic
        let (s, s_labels) = synthetic(p, 4.0, Combine::Sum);
        let trig = trig_part(&s, &[2, 5], Combine::Sum);
        let s_train = cross_entropy(&s, &s_labels, &rows).0;
        let s_excl = cross_entropy(&excluded_logits(&s, &trig), &s_labels, &rows).0;
        assert!(s_excl > 2.0 * s_train, "{s_excl} vs {s_train}");
    }
}
