//! Neuron saliency over training, the test of "gradient descent prefers general circuits"
//! (seed 001's proposals, REFERENCES.md §4): per MLP neuron and training input, integrated
//! gradients (Sundararajan et al. 2017, eq. 1) of the correct-class logit with respect to the
//! neuron's activation (`blocks.0.mlp.hook_post` at the last position); per neuron the median
//! over inputs; the medians' histogram and skewness per checkpoint; and the loss after ablating
//! the k most salient neurons against k random ones.

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
        let n = draws.len() as f64;
        let mean = |f: fn(&Ablated) -> f64| draws.iter().map(f).sum::<f64>() / n;
        Ablated {
            train_loss: mean(|x| x.train_loss),
            train_acc: mean(|x| x.train_acc),
            test_loss: mean(|x| x.test_loss),
            test_acc: mean(|x| x.test_acc),
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
/// the draws).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ablation {
    /// Neurons ablated.
    pub k: usize,
    /// The k with the largest median saliency.
    pub top: Ablated,
    /// k drawn at random (mean over draws).
    pub random: Ablated,
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
    /// Random draws averaged for random-k ablation.
    pub random_draws: usize,
    /// Seed of the random draws.
    pub seed: u64,
}

impl Default for SaliencyOptions {
    fn default() -> Self {
        Self {
            baseline: SaliencyBaseline::Mean,
            steps: 20,
            random_draws: 3,
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
    let (means, medians, rank) = summarize(per_neuron);
    NeuronSaliency {
        step,
        skewness: skewness(&medians),
        nonzero_medians: medians.iter().filter(|&&m| m != 0.0).count() as f64 / d_mlp as f64,
        total_attribution: total / a.train.len() as f64,
        ablation: ablations(a, &acts.logits, &post, &w_l, &base, &rank, opts),
        medians,
        means,
    }
}

/// Loss and accuracy after zeroing (setting to `base`) growing sets of neurons: the first ones
/// of `top` (neurons, most salient first), and `random_draws` random orders; at k = 0 and k = 1, 2, 4, …, d_mlp/2. Logits
/// are linear in `hook_post`, so each added neuron n subtracts `(a_n − a'_n) W_L[n, :]`.
fn ablations(
    a: &Analyzer,
    logits: &Matrix,
    post: &Matrix,
    w_l: &Matrix,
    base: &[f64],
    top: &[usize],
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
    let curve = |order: &[usize]| -> Vec<Ablated> {
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
            let (train_loss, train_acc) = s.mean(&a.train);
            let (test_loss, test_acc) = s.mean(&a.test);
            out.push(Ablated {
                train_loss,
                train_acc,
                test_loss,
                test_acc,
            });
        }
        out
    };
    let top_curve = curve(top);
    let random_curves: Vec<Vec<Ablated>> = randoms.iter().map(|o| curve(o)).collect();
    (ks.iter().enumerate())
        .map(|(i, &k)| {
            let draws: Vec<Ablated> = random_curves.iter().map(|c| c[i]).collect();
            Ablation {
                k,
                top: top_curve[i],
                random: Ablated::mean(&draws),
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
