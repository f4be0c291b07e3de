//! Neuron saliency over training, the test of "gradient descent prefers general circuits"
//! (seed 001's proposals, REFERENCES.md §4): per MLP neuron and training input, integrated
//! gradients (Sundararajan et al. 2017, eq. 1) of the correct-class logit with respect to the
//! neuron's activation (`blocks.0.mlp.hook_post` at the last position); per neuron the median
//! over inputs; the medians' histogram and skewness per checkpoint; and the loss after ablating
//! the k most salient neurons against k random ones (many draws, with their spread).
//!
//! Controls for the ranking (issue 27): neurons ranked by the median of |IG| beside the signed
//! median, and neurons ranked on one half of the training inputs and scored on the other half
//! and on the test set, so that a ranking cannot look good only because it was scored on the
//! inputs it was chosen on.

use super::activations::run_all_inputs;
use super::logits::Scores;
use super::matrix::Matrix;
use super::snapshot::Analyzer;
use super::weights::neuron_logit_map;
use crate::error::{GrokError, Result};
use crate::models::{Normalization, ParamStore};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// Integrated gradients of `f` from `baseline` to `x` (Sundararajan et al. 2017, eq. 1) with
/// the midpoint rule over `steps` points: attribution_i = (x_i − x'_i) · (1/m) Σ_k
/// ∂f/∂x_i(x' + α_k (x − x')), α_k = (k − ½)/m. `f` returns its value and gradient.
/// Completeness, Σ_i attribution_i = f(x) − f(x'), holds up to the rule's O(1/m²) error.
pub fn integrated_gradients(
    f: impl Fn(&[f64]) -> (f64, Vec<f64>),
    x: &[f64],
    baseline: &[f64],
    steps: usize,
) -> Vec<f64> {
    let m = steps.max(1);
    let mut sum = vec![0.0; x.len()];
    let mut point = vec![0.0; x.len()];
    for k in 0..m {
        let alpha = (k as f64 + 0.5) / m as f64;
        for ((p, &xi), &bi) in point.iter_mut().zip(x).zip(baseline) {
            *p = bi + alpha * (xi - bi);
        }
        let (_, grad) = f(&point);
        sum.iter_mut().zip(&grad).for_each(|(s, g)| *s += g);
    }
    (sum.iter().zip(x).zip(baseline))
        .map(|((s, xi), bi)| (xi - bi) * s / m as f64)
        .collect()
}

/// The activation IG starts from, which is also what an ablated neuron is set to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaliencyBaseline {
    /// Zero activation.
    Zero,
    /// Each neuron's mean activation over the training inputs.
    Mean,
}

/// Loss and accuracy on both sides of the split after an ablation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ablated {
    /// Train loss (nats).
    pub train_loss: f64,
    /// Train accuracy.
    pub train_acc: f64,
    /// Test loss (nats).
    pub test_loss: f64,
    /// Test accuracy.
    pub test_acc: f64,
}

impl Ablated {
    /// The mean of `draws` field by field (NaN for none).
    pub fn mean(draws: &[Ablated]) -> Self {
        Self::map(|f| {
            let n = draws.len() as f64;
            draws.iter().map(f).sum::<f64>() / n
        })
    }

    /// The sample standard deviation of `draws` field by field (n − 1 in the denominator; NaN
    /// for fewer than two).
    pub fn sd(draws: &[Ablated]) -> Self {
        Self::map(|f| {
            let n = draws.len() as f64;
            let mean = draws.iter().map(f).sum::<f64>() / n;
            (draws.iter().map(|x| (f(x) - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        })
    }

    fn map(stat: impl Fn(fn(&Ablated) -> f64) -> f64) -> Self {
        Ablated {
            train_loss: stat(|x| x.train_loss),
            train_acc: stat(|x| x.train_acc),
            test_loss: stat(|x| x.test_loss),
            test_acc: stat(|x| x.test_acc),
        }
    }
}

/// The activation IG starts from for each unit (column) of `acts` `[inputs, units]`: zero, or
/// its mean over the `train` rows.
pub fn baseline_of(kind: SaliencyBaseline, acts: &Matrix, train: &[usize]) -> Vec<f64> {
    let mut m = vec![0.0; acts.cols];
    if kind == SaliencyBaseline::Mean {
        for &r in train {
            m.iter_mut().zip(acts.row(r)).for_each(|(m, x)| *m += x);
        }
        m.iter_mut().for_each(|m| *m /= train.len() as f64);
    }
    m
}

/// Ablating k neurons: the k most salient (by median saliency), and k random ones (mean over
/// the draws, and their spread).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ablation {
    /// Neurons ablated.
    pub k: usize,
    /// The k with the largest median saliency.
    pub top: Ablated,
    /// k drawn at random (mean over [`SaliencyOptions::random_draws`] draws).
    pub random: Ablated,
    /// The standard deviation of the random draws, field by field.
    pub random_sd: Ablated,
    /// The k with the largest median |IG| (how much a neuron moves the correct logit, either way).
    pub top_abs: Ablated,
    /// The k with the largest median saliency over half A of the training inputs, scored on the
    /// other half: `train_*` is half B, `test_*` the test set (neurons only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_heldout: Option<Ablated>,
    /// The random draws scored the same way (`train_*` on half B; mean over draws; neurons only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_heldout: Option<Ablated>,
}

/// The saliency measures of one checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuronSaliency {
    /// Training step of the checkpoint.
    pub step: u64,
    /// `[d_mlp]` each neuron's median integrated gradient over the training inputs (logit units;
    /// signed: its contribution to the correct logit).
    pub medians: Vec<f64>,
    /// `[d_mlp]` each neuron's mean integrated gradient over the training inputs.
    pub means: Vec<f64>,
    /// `[d_mlp]` each neuron's median |integrated gradient| over the training inputs.
    pub medians_abs: Vec<f64>,
    /// Sample skewness of [`Self::medians_abs`].
    pub skewness_abs: f64,
    /// Training inputs in half A (ranked on), of [`Self::ablation`]'s held-out scores; the
    /// others are half B. A seeded split of the training set.
    pub heldout_rank_inputs: usize,
    /// Fraction of neurons whose median is not zero: with the zero baseline, the neurons that
    /// fire on more than half of the training inputs.
    pub nonzero_medians: f64,
    /// Sample skewness of the medians, `m₃ / m₂^{3/2}` (Fisher–Pearson g₁); > 0: right-skewed;
    /// NaN when every median is equal (e.g. all zero).
    pub skewness: f64,
    /// Sum over neurons of the mean attribution: by completeness, the mean over training inputs
    /// of logit_c(a) − logit_c(baseline).
    pub total_attribution: f64,
    /// Ablations for k = 1, 2, 4, …, d_mlp/2, and the unablated model (k = 0); neurons ranked by
    /// median, ties by mean.
    pub ablation: Vec<Ablation>,
}

/// How the saliency of one checkpoint is measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SaliencyOptions {
    /// IG baseline and ablation value.
    pub baseline: SaliencyBaseline,
    /// IG interpolation points m.
    pub steps: usize,
    /// Random draws averaged for random-k ablation (their standard deviation is reported too;
    /// at least 2, [`SaliencyOptions::validate`]).
    pub random_draws: usize,
    /// Seed of the random draws.
    pub seed: u64,
}

impl SaliencyOptions {
    /// Checks the options.
    ///
    /// # Errors
    /// [`GrokError::InvalidValue`] for fewer than 2 random draws (their spread needs two).
    pub fn validate(&self) -> Result<()> {
        if self.random_draws < 2 {
            return Err(GrokError::invalid(
                "random_draws",
                self.random_draws,
                "an integer of at least 2 (their spread needs two)",
            ));
        }
        Ok(())
    }
}

impl Default for SaliencyOptions {
    fn default() -> Self {
        Self {
            baseline: SaliencyBaseline::Mean,
            steps: 20,
            random_draws: 20,
            seed: 0,
        }
    }
}

/// Checks that the downstream map from the last block's `hook_post` to the logits is what
/// [`neuron_saliency`] differentiates: one block with an MLP and no LayerNorm, where
/// `logits = resid_mid + hook_post · W_out + b_out` through `W_U`.
///
/// # Errors
/// [`GrokError::InvalidValue`] naming the model field that differs.
pub fn check_saliency_model(a: &Analyzer) -> Result<()> {
    let c = &a.cfg;
    if c.attn_only {
        return Err(GrokError::invalid(
            "model.attn_only",
            true,
            "false (saliency reads MLP neurons)",
        ));
    }
    if c.n_layers != 1 || c.normalization != Normalization::None {
        return Err(GrokError::invalid(
            "model.n_layers",
            c.n_layers,
            "1 with normalization = \"none\" (saliency supports the one-block model of Nanda et al. 2023 so far)",
        ));
    }
    Ok(())
}

/// Saliency, its median histogram statistics and the top-k / random-k ablations of `store`.
/// The model must pass [`check_saliency_model`].
///
/// Downstream of `hook_post` the correct logit is `f_c(a) = a · W_L[:, c] + const` (W_L =
/// W_out W_U), so its gradient is `W_L[:, c]` at every point of the path: IG equals
/// `(a − a') ⊙ W_L[:, c]` for any m, as [`integrated_gradients`] computes.
pub fn neuron_saliency(
    a: &Analyzer,
    store: &ParamStore,
    step: u64,
    opts: &SaliencyOptions,
) -> NeuronSaliency {
    let p = a.p;
    let acts = run_all_inputs(&a.cfg, store, p);
    let post = acts.mlp_post.expect("checked: the model has an MLP");
    let w_l = neuron_logit_map(store, &a.cfg, p).expect("checked: the model has an MLP");
    let d_mlp = post.cols;
    let base = baseline_of(opts.baseline, &post, &a.train);
    // [d_mlp, p] → per class c the column W_L[:, c]
    let w_l_t: Vec<Vec<f64>> = (0..p)
        .map(|c| (0..d_mlp).map(|n| w_l.at(n, c)).collect())
        .collect();
    // per_neuron[n][j]: neuron n's attribution on a.train[j]
    let mut per_neuron: Vec<Vec<f64>> = vec![Vec::with_capacity(a.train.len()); d_mlp];
    let mut total = 0.0;
    for &r in &a.train {
        let w = &w_l_t[a.labels[r]];
        let f = |x: &[f64]| (x.iter().zip(w).map(|(x, w)| x * w).sum(), w.clone());
        let attr = integrated_gradients(f, post.row(r), &base, opts.steps);
        total += attr.iter().sum::<f64>();
        per_neuron
            .iter_mut()
            .zip(&attr)
            .for_each(|(v, x)| v.push(*x));
    }
    let (half_a, half_b) = halves(a.train.len(), opts.seed);
    let on = |idx: &[usize]| -> Vec<Vec<f64>> {
        (per_neuron.iter())
            .map(|v| idx.iter().map(|&j| v[j]).collect())
            .collect()
    };
    let rank_heldout = summarize(on(&half_a)).2;
    let (medians_abs, rank_abs) = summarize_abs(&per_neuron);
    let (means, medians, rank) = summarize(per_neuron);
    let rows_b: Vec<usize> = half_b.iter().map(|&j| a.train[j]).collect();
    let ranks = Rankings {
        top: &rank,
        top_abs: &rank_abs,
        top_heldout: &rank_heldout,
        half_b: &rows_b,
    };
    NeuronSaliency {
        step,
        skewness: skewness(&medians),
        skewness_abs: skewness(&medians_abs),
        nonzero_medians: medians.iter().filter(|&&m| m != 0.0).count() as f64 / d_mlp as f64,
        total_attribution: total / a.train.len() as f64,
        ablation: ablations(a, &acts.logits, &post, &w_l, &base, &ranks, opts),
        heldout_rank_inputs: half_a.len(),
        medians,
        medians_abs,
        means,
    }
}

/// A seeded split of `0..n` into half A (⌈n/2⌉ positions, ranked on) and half B (scored on),
/// each in increasing order.
pub fn halves(n: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    // a stream apart from the random-k draws' (which use `seed` itself)
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(
        seed ^ 0x68616c766573,
    ));
    let (mut a, mut b) = (
        order[..n.div_ceil(2)].to_vec(),
        order[n.div_ceil(2)..].to_vec(),
    );
    a.sort_unstable();
    b.sort_unstable();
    (a, b)
}

/// The neuron orders [`ablations`] ablates, most salient first, and the held-out rows.
struct Rankings<'a> {
    top: &'a [usize],
    top_abs: &'a [usize],
    /// Ranked on half A of the training inputs.
    top_heldout: &'a [usize],
    /// Half B: the training rows (indices into the p² inputs) the held-out ranking is scored on.
    half_b: &'a [usize],
}

/// Loss and accuracy after zeroing (setting to `base`) growing sets of neurons: the first ones
/// of each of `ranks`' orders (most salient first), and `random_draws` random orders; at k = 0
/// and k = 1, 2, 4, …, d_mlp/2. Logits are linear in `hook_post`, so each added neuron n
/// subtracts `(a_n − a'_n) W_L[n, :]`. Each order is scored on the training set, on half B of it
/// and on the test set.
fn ablations(
    a: &Analyzer,
    logits: &Matrix,
    post: &Matrix,
    w_l: &Matrix,
    base: &[f64],
    ranks: &Rankings<'_>,
    opts: &SaliencyOptions,
) -> Vec<Ablation> {
    let d_mlp = post.cols;
    let ks: Vec<usize> = std::iter::once(0)
        .chain((0..).map(|i| 1usize << i).take_while(|&k| k <= d_mlp / 2))
        .collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    let randoms: Vec<Vec<usize>> = (0..opts.random_draws)
        .map(|_| {
            let mut order: Vec<usize> = (0..d_mlp).collect();
            order.shuffle(&mut rng);
            order
        })
        .collect();
    // per k: (scored on the training set, scored on half B); test on the test set in both
    let curve = |order: &[usize]| -> Vec<(Ablated, Ablated)> {
        let mut l = logits.clone();
        let mut out = Vec::new();
        let mut done = 0;
        for &k in &ks {
            for &n in &order[done..k] {
                let w = w_l.row(n);
                for r in 0..l.rows {
                    let d = post.at(r, n) - base[n];
                    if d != 0.0 {
                        let row = &mut l.data[r * l.cols..(r + 1) * l.cols];
                        row.iter_mut().zip(w).for_each(|(x, w)| *x -= d * w);
                    }
                }
            }
            done = k;
            let s = Scores::new(&l, &a.labels, &a.all);
            let (test_loss, test_acc) = s.mean(&a.test);
            let scored = |rows: &[usize]| {
                let (train_loss, train_acc) = s.mean(rows);
                Ablated {
                    train_loss,
                    train_acc,
                    test_loss,
                    test_acc,
                }
            };
            out.push((scored(&a.train), scored(ranks.half_b)));
        }
        out
    };
    let (top, top_abs, top_heldout) = (
        curve(ranks.top),
        curve(ranks.top_abs),
        curve(ranks.top_heldout),
    );
    let random_curves: Vec<Vec<(Ablated, Ablated)>> = randoms.iter().map(|o| curve(o)).collect();
    (ks.iter().enumerate())
        .map(|(i, &k)| {
            let draws: Vec<Ablated> = random_curves.iter().map(|c| c[i].0).collect();
            let draws_b: Vec<Ablated> = random_curves.iter().map(|c| c[i].1).collect();
            Ablation {
                k,
                top: top[i].0,
                random: Ablated::mean(&draws),
                random_sd: Ablated::sd(&draws),
                top_abs: top_abs[i].0,
                top_heldout: Some(top_heldout[i].1),
                random_heldout: Some(Ablated::mean(&draws_b)),
            }
        })
        .collect()
}

/// Per unit (neuron or head) the mean and median of its attributions `[units][inputs]`, and
/// the units ranked most salient first: by median, ties by mean.
pub fn summarize(per_unit: Vec<Vec<f64>>) -> (Vec<f64>, Vec<f64>, Vec<usize>) {
    let means: Vec<f64> = (per_unit.iter())
        .map(|v| v.iter().sum::<f64>() / v.len().max(1) as f64)
        .collect();
    let medians: Vec<f64> = per_unit.into_iter().map(median).collect();
    let mut rank: Vec<usize> = (0..medians.len()).collect();
    rank.sort_by(|&x, &y| (medians[y].total_cmp(&medians[x])).then(means[y].total_cmp(&means[x])));
    (means, medians, rank)
}

/// Per unit the median of its |attributions| `[units][inputs]`, and the units ranked by it,
/// largest first (ties by the mean |attribution|).
pub fn summarize_abs(per_unit: &[Vec<f64>]) -> (Vec<f64>, Vec<usize>) {
    let abs = (per_unit.iter())
        .map(|v| v.iter().map(|x| x.abs()).collect())
        .collect();
    let (_, medians, rank) = summarize(abs);
    (medians, rank)
}

/// Median (mean of the middle two for an even count; NaN for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Fisher–Pearson sample skewness g₁ = m₃ / m₂^{3/2} with central moments m_k = mean((x − x̄)^k)
/// (NaN for fewer than 2 values or zero spread).
pub fn skewness(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    if v.len() < 2 {
        return f64::NAN;
    }
    let mean = v.iter().sum::<f64>() / n;
    let m2 = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let m3 = v.iter().map(|x| (x - mean).powi(3)).sum::<f64>() / n;
    if m2 == 0.0 {
        f64::NAN
    } else {
        m3 / m2.powf(1.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small non-linear model, f(x) = Σ_j v_j tanh(Σ_i W_ji x_i), and its gradient.
    fn tiny(x: &[f64]) -> (f64, Vec<f64>) {
        let w = [
            [0.8, -1.3, 0.4],
            [0.2, 0.9, -0.7],
            [-1.1, 0.3, 1.5],
            [0.6, 0.6, 0.6],
        ];
        let v = [1.0, -2.0, 0.5, 1.5];
        let mut f = 0.0;
        let mut g = vec![0.0; 3];
        for (wj, vj) in w.iter().zip(v) {
            let z: f64 = wj.iter().zip(x).map(|(a, b)| a * b).sum();
            f += vj * z.tanh();
            let dz = vj * (1.0 - z.tanh().powi(2));
            g.iter_mut().zip(wj).for_each(|(g, w)| *g += dz * w);
        }
        (f, g)
    }

    /// Completeness (Sundararajan et al. 2017, Prop. 1): attributions sum to f(x) − f(x'), up to
    /// the midpoint rule's error, which falls about 4x per doubling of m.
    #[test]
    fn integrated_gradients_are_complete_up_to_the_riemann_error() {
        let (x, base) = ([1.2, -0.7, 2.0], [0.1, 0.3, -0.4]);
        let want = tiny(&x).0 - tiny(&base).0;
        let err = |m| (integrated_gradients(tiny, &x, &base, m).iter().sum::<f64>() - want).abs();
        let (e8, e16, e256) = (err(8), err(16), err(256));
        assert!(e256 < 1e-4, "m = 256: error {e256}");
        assert!(e16 < e8 / 3.0, "errors {e8} -> {e16} do not fall as 1/m²");
        assert!(
            e8 > 1e-6,
            "the test model is too linear to test the rule: {e8}"
        );
    }

    /// On a linear function IG is exact for any m: (x − x') ⊙ w.
    #[test]
    fn integrated_gradients_of_a_linear_map_are_exact() {
        let w = vec![2.0, -1.0];
        let f = |x: &[f64]| (x[0] * w[0] + x[1] * w[1], w.clone());
        assert_eq!(
            integrated_gradients(f, &[3.0, 1.0], &[1.0, 1.0], 1),
            vec![4.0, 0.0]
        );
    }

    /// The two halves partition the positions, A holding the extra one, and the split is seeded.
    #[test]
    fn halves_partition_the_inputs() {
        let (a, b) = halves(11, 3);
        assert_eq!((a.len(), b.len()), (6, 5));
        let mut all: Vec<usize> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..11).collect::<Vec<_>>());
        assert_eq!((a.clone(), b), halves(11, 3));
        assert_ne!(a, halves(11, 4).0);
    }

    /// Field-by-field mean and sample standard deviation (n − 1) by hand.
    #[test]
    fn ablated_mean_and_sd_by_hand() {
        let x = |l: f64| Ablated {
            train_loss: l,
            train_acc: 1.0,
            test_loss: 2.0 * l,
            test_acc: 0.5,
        };
        let draws = [x(1.0), x(2.0), x(6.0)];
        let (m, sd) = (Ablated::mean(&draws), Ablated::sd(&draws));
        assert_eq!((m.train_loss, m.test_loss, m.train_acc), (3.0, 6.0, 1.0));
        // deviations −2, −1, 3: sum of squares 14 over n − 1 = 2
        assert!((sd.train_loss - 7f64.sqrt()).abs() < 1e-12);
        assert!((sd.test_loss - 2.0 * 7f64.sqrt()).abs() < 1e-12);
        assert_eq!((sd.train_acc, sd.test_acc), (0.0, 0.0));
    }

    #[test]
    fn median_and_skewness_by_hand() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(skewness(&[1.0, 2.0, 3.0]).abs() < 1e-15);
        // one large value: right-skewed; mirrored: left-skewed by the same amount
        let right = skewness(&[0.0, 0.0, 0.0, 1.0]);
        // mean 1/4: m2 = 3/16, m3 = 3/32, g1 = (3/32)/(3/16)^{3/2} = 2/√3
        assert!((right - 2.0 / 3f64.sqrt()).abs() < 1e-12, "{right}");
        assert!((skewness(&[0.0, 0.0, 0.0, -1.0]) + right).abs() < 1e-12);
    }
}
