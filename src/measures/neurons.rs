//! Neuron frequencies, fraction of variance explained (FVE) and clusters (Nanda et al. 2023 §4.2,
//! App. C; REFERENCES §2), and the two key-frequency rules.

use super::fourier::transform_2d;
use super::matrix::Matrix;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::f64::consts::PI;

/// FVE at or above which a neuron joins its frequency's cluster (Nanda et al. 2023 §4.2).
pub const CLUSTER_FVE: f64 = 0.85;

/// Each neuron's dominant frequency and the share of its variance it explains.
#[derive(Clone, Debug)]
pub struct NeuronFreqs {
    /// `[d_mlp]` argmax frequency in 1..p/2−1 (0 for a neuron with no variance over the inputs).
    pub freq: Vec<usize>,
    /// `[d_mlp]` fraction of the centred activation's squared norm in the frequency's 3×3 block
    /// `{0, 2k−1, 2k}²` of the 2D Fourier transform (0 for a dead neuron).
    pub fve: Vec<f64>,
}

/// Frequencies of the neurons of `post` (`[p², d_mlp]`, rows a-major): centre each neuron over
/// the p² inputs, 2D-transform it with the Fourier basis, and for k = 1..(p/2 − 1) take the
/// share of its squared norm in `{0, 2k−1, 2k}²`; the argmax is the neuron's frequency, the max
/// its FVE. (k stops at p/2 − 1 as in the reference code, REFERENCES §2.)
///
/// Computed without the 2D transform: the block `{0, cos k, sin k}²` spans the complex waves
/// with frequencies `(k₁, k₂) ∈ {0, ±k}²`, so by Parseval its energy is
/// `(2/p²)·(|X̂(k,0)|² + |X̂(0,k)|² + |X̂(k,k)|² + |X̂(k,−k)|²)` (the (0, 0) term vanishes after
/// centring), and each of those coefficients is a 1D DFT of a sum of the activations: over b
/// (rows a), over a (columns b), along a + b ≡ s, along a − b ≡ d. That is ≈ 50 M operations for
/// p = 113 and 512 neurons, against ≈ 1.5 G for the transform (which the tests compare it with).
pub fn neuron_freqs(p: usize, post: &Matrix) -> NeuronFreqs {
    let n = post.cols;
    assert_eq!(post.rows, p * p, "neuron table needs p² rows");
    let means = post.col_means();
    let mut total = vec![0.0; n];
    // sums[(g, s), neuron] for the groupings g = a, b, a + b, a − b (mod p)
    let mut sums = vec![0.0; 4 * p * n];
    for r in 0..p * p {
        let (a, b) = (r / p, r % p);
        let row = post.row(r);
        for (g, s) in [a, b, (a + b) % p, (a + p - b) % p].into_iter().enumerate() {
            let dst = &mut sums[(g * p + s) * n..(g * p + s + 1) * n];
            dst.iter_mut().zip(row).for_each(|(d, x)| *d += x);
        }
        (total.iter_mut().zip(row).zip(&means)).for_each(|((t, x), m)| *t += (x - m) * (x - m));
    }
    let (cos, sin): (Vec<f64>, Vec<f64>) = (0..p)
        .map(|i| (2.0 * PI * i as f64 / p as f64).sin_cos())
        .map(|(s, c)| (c, s))
        .unzip();
    let mut freq = vec![0; n];
    let mut fve = vec![0.0; n];
    let (mut re, mut im, mut block) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    for k in 1..p / 2 {
        block.fill(0.0);
        for g in 0..4 {
            re.fill(0.0);
            im.fill(0.0);
            for s in 0..p {
                let (c, sn) = (cos[k * s % p], sin[k * s % p]);
                let src = &sums[(g * p + s) * n..(g * p + s + 1) * n];
                for ((re, im), x) in re.iter_mut().zip(im.iter_mut()).zip(src) {
                    *re += c * x;
                    *im += sn * x;
                }
            }
            (block.iter_mut().zip(&re).zip(&im)).for_each(|((e, r), i)| *e += r * r + i * i);
        }
        let scale = 2.0 / (p * p) as f64;
        for nrn in 0..n {
            let share = scale * block[nrn] / total[nrn];
            if total[nrn] > 0.0 && share > fve[nrn] {
                fve[nrn] = share;
                freq[nrn] = k;
            }
        }
    }
    NeuronFreqs { freq, fve }
}

/// Pictures of the MLP at one checkpoint: a few neurons' activations over (a, b) and the 2D
/// Fourier spectrum of all neurons (Nanda et al. 2023 Fig. 3–4).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NeuronViews {
    /// Shown neurons: the highest-FVE neuron of each of the most common frequencies.
    pub neurons: Vec<NeuronView>,
    /// `[p·p]` (row i·p + j: basis component i along a, j along b) norm over neurons of the
    /// centred activations' 2D Fourier components.
    pub spectrum: Vec<f64>,
}

/// One neuron's activation table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NeuronView {
    /// Neuron index in `mlp.hook_post`.
    pub index: usize,
    /// Its frequency.
    pub freq: usize,
    /// Its FVE.
    pub fve: f64,
    /// `[p·p]` activations, a-major.
    pub acts: Vec<f64>,
}

/// [`NeuronViews`] of `post` (`[p², d_mlp]`) showing up to `count` neurons.
pub fn neuron_views(basis: &Matrix, post: &Matrix, count: usize) -> NeuronViews {
    let nf = neuron_freqs(basis.rows, post);
    let mut order: Vec<usize> = (0..post.cols).collect();
    order.sort_by(|&a, &b| nf.fve[b].total_cmp(&nf.fve[a]));
    let mut neurons: Vec<NeuronView> = Vec::new();
    for i in order {
        if neurons.len() == count || nf.fve[i] == 0.0 {
            break;
        }
        if neurons.iter().all(|n| n.freq != nf.freq[i]) {
            neurons.push(NeuronView {
                index: i,
                freq: nf.freq[i],
                fve: nf.fve[i],
                acts: (0..post.rows).map(|r| post.at(r, i)).collect(),
            });
        }
    }
    let f = transform_2d(basis, &centred(post));
    let spectrum = (0..f.rows)
        .map(|r| f.row(r).iter().map(|x| x * x).sum::<f64>().sqrt())
        .collect();
    NeuronViews { neurons, spectrum }
}

/// Each neuron (column) minus its mean over the inputs.
fn centred(post: &Matrix) -> Matrix {
    let mut centred = post.clone();
    let means = post.col_means();
    for row in centred.data.chunks_mut(post.cols) {
        row.iter_mut().zip(&means).for_each(|(x, m)| *x -= m);
    }
    centred
}

/// Cluster sizes: for each frequency with at least one neuron at FVE ≥ [`CLUSTER_FVE`], its
/// neuron count; `none` counts the rest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Clusters {
    /// Frequency → number of neurons in its cluster.
    pub sizes: BTreeMap<usize, usize>,
    /// Neurons below the threshold (dead neurons included).
    pub none: usize,
}

impl NeuronFreqs {
    /// Cluster sizes at FVE ≥ [`CLUSTER_FVE`].
    pub fn clusters(&self) -> Clusters {
        let mut c = Clusters::default();
        for (&k, &fve) in self.freq.iter().zip(&self.fve) {
            if fve >= CLUSTER_FVE {
                *c.sizes.entry(k).or_default() += 1;
            } else {
                c.none += 1;
            }
        }
        c
    }

    /// Key frequencies by the reference code's rule: the distinct argmax frequencies of all
    /// live neurons, no FVE threshold (over-counts on noisy models; read the clusters too).
    pub fn argmax_key_freqs(&self) -> Vec<usize> {
        let mut k: Vec<usize> = (self.freq.iter().zip(&self.fve))
            .filter(|(_, &fve)| fve > 0.0)
            .map(|(&k, _)| k)
            .collect();
        k.sort_unstable();
        k.dedup();
        k
    }
}

/// A cluster counts toward the key frequencies when it holds at least this share of the largest
/// cluster's neurons: a handful of high-FVE neurons at a stray frequency is noise, not a circuit.
pub const MIN_CLUSTER_SHARE: f64 = 0.1;

/// What each key-frequency rule finds on one checkpoint, and the default choice
/// ([`KeyFreqVotes::consensus`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyFreqVotes {
    /// The reference code's rule: distinct argmax frequencies of all live neurons.
    pub neuron_argmax: Vec<usize>,
    /// Frequencies whose FVE ≥ 0.85 cluster holds ≥ [`MIN_CLUSTER_SHARE`] of the largest one's
    /// neurons (Nanda et al. 2023 §4.2).
    pub neuron_clusters: Vec<usize>,
    /// Frequencies whose `W_E` Fourier norm is ≥ the threshold × the largest (§4.1).
    pub embed_norm: Vec<usize>,
    /// Set when the cluster and embedding rules disagree: which frequencies only one finds.
    pub disagreement: Option<String>,
}

impl KeyFreqVotes {
    /// Votes of a model's neurons (`None` without MLP) and its embedding's Fourier norms
    /// (`[p/2 + 1]`, index = frequency) at the embedding `threshold`.
    pub fn new(neurons: Option<&NeuronFreqs>, embed_freq_norms: &[f64], threshold: f64) -> Self {
        let embed_norm = embed_key_freqs(embed_freq_norms, threshold);
        let Some(nf) = neurons else {
            return Self {
                embed_norm,
                ..Self::default()
            };
        };
        let sizes = nf.clusters().sizes;
        let largest = sizes.values().copied().max().unwrap_or(0);
        let neuron_clusters: Vec<usize> = (sizes.iter())
            .filter(|&(_, &n)| n as f64 >= MIN_CLUSTER_SHARE * largest as f64)
            .map(|(&k, _)| k)
            .collect();
        let only = |a: &[usize], b: &[usize]| -> Vec<usize> {
            a.iter().filter(|k| !b.contains(k)).copied().collect()
        };
        let (in_clusters, in_embed) = (
            only(&neuron_clusters, &embed_norm),
            only(&embed_norm, &neuron_clusters),
        );
        let disagreement = (!in_clusters.is_empty() || !in_embed.is_empty()).then(|| {
            format!(
                "neuron clusters {neuron_clusters:?} and W_E norms {embed_norm:?} differ: \
                 {in_clusters:?} only in the clusters, {in_embed:?} only in W_E"
            )
        });
        Self {
            neuron_argmax: nf.argmax_key_freqs(),
            neuron_clusters,
            embed_norm,
            disagreement,
        }
    }

    /// The default key frequencies: the union of the cluster and embedding rules. Both are the
    /// paper's own readings of a finished model (§4.1–4.2); the union keeps a frequency that the
    /// embedding carries strongly but few neurons isolate (the f32-loss checkpoint's 3), and
    /// drops stray neurons that the reference code's argmax rule counts.
    pub fn consensus(&self) -> Vec<usize> {
        let mut k: Vec<usize> = self.neuron_clusters.clone();
        k.extend(&self.embed_norm);
        k.sort_unstable();
        k.dedup();
        k
    }
}

/// Key frequencies by the embedding rule: frequencies k ≥ 1 whose embedding Fourier norm
/// (`freq_norms`, `[p/2 + 1]`, index = frequency) is at least `threshold` times the largest.
/// Nanda et al. 2023 §4.1 read the key frequencies off the embedding's sparse Fourier norms.
pub fn embed_key_freqs(freq_norms: &[f64], threshold: f64) -> Vec<usize> {
    let max = freq_norms[1..].iter().copied().fold(0.0, f64::max);
    (1..freq_norms.len())
        .filter(|&k| freq_norms[k] >= threshold * max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measures::fourier::fourier_basis;

    #[test]
    fn a_pure_wave_neuron_has_fve_one_at_its_frequency() {
        let p = 13;
        // neuron 0: cos(w3 (a+b)); neuron 1: relu(cos(w5 a) + cos(w5 b)) (harmonics leak);
        // neuron 2: dead.
        let w = |k: usize| 2.0 * PI * k as f64 / p as f64;
        let mut data = Vec::new();
        for a in 0..p {
            for b in 0..p {
                let (a, b) = (a as f64, b as f64);
                data.push((w(3) * (a + b)).cos());
                data.push(((w(5) * a).cos() + (w(5) * b).cos()).max(0.0));
                data.push(0.0);
            }
        }
        let nf = neuron_freqs(p, &Matrix::from_vec(p * p, 3, data));
        assert_eq!(nf.freq[0], 3);
        assert!((nf.fve[0] - 1.0).abs() < 1e-12);
        assert_eq!(nf.freq[1], 5);
        assert!(nf.fve[1] < 1.0 && nf.fve[1] > 0.5);
        assert_eq!((nf.freq[2], nf.fve[2]), (0, 0.0));
        assert_eq!(nf.argmax_key_freqs(), vec![3, 5]);
        let c = nf.clusters();
        assert_eq!(c.sizes.get(&3), Some(&1));
        assert_eq!(c.none + c.sizes.values().sum::<usize>(), 3);
    }

    /// The definition: shares of the 3×3 blocks of the full 2D transform of the centred neuron.
    fn reference_shares(basis: &Matrix, post: &Matrix) -> Vec<Vec<f64>> {
        let p = basis.rows;
        let f = transform_2d(basis, &centred(post));
        (0..post.cols)
            .map(|nrn| {
                let total: f64 = (0..p * p).map(|r| f.at(r, nrn).powi(2)).sum();
                (1..p / 2)
                    .map(|k| {
                        let idx = [0, 2 * k - 1, 2 * k];
                        let e: f64 = (idx.iter())
                            .flat_map(|&i| idx.iter().map(move |&j| (i, j)))
                            .map(|(i, j)| f.at(i * p + j, nrn).powi(2))
                            .sum();
                        e / total
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn diagonal_sums_give_the_2d_transform_block_shares() {
        let p = 17;
        let basis = fourier_basis(p);
        // Rectified mixtures of waves: every grouping (a, b, a + b, a − b) carries energy.
        let mut data = Vec::new();
        for a in 0..p {
            for b in 0..p {
                let w = |k: usize, x: usize| (2.0 * PI * (k * x % p) as f64 / p as f64).cos();
                data.push((w(3, a + b) + 0.5 * w(5, a) + 0.2).max(0.0));
                data.push((w(2, a + p - b) - 0.4 * w(7, b)).max(0.0) + 0.1 * w(4, a * b));
                data.push((w(6, a) * w(6, b) + 0.3 * w(1, a + b)).max(-0.2));
            }
        }
        let post = Matrix::from_vec(p * p, 3, data);
        let nf = neuron_freqs(p, &post);
        for (nrn, shares) in reference_shares(&basis, &post).iter().enumerate() {
            let (k, best) =
                (shares.iter().enumerate())
                    .fold((0, 0.0), |m, (i, &s)| if s > m.1 { (i + 1, s) } else { m });
            assert_eq!(nf.freq[nrn], k, "neuron {nrn}");
            assert!(
                (nf.fve[nrn] - best).abs() < 1e-12,
                "neuron {nrn}: {} vs {best}",
                nf.fve[nrn]
            );
        }
    }

    /// A constructed model: 60 neurons in three frequency clusters (20 each at 4, 9, 13), four
    /// stray pure-wave neurons at 2, 6, 7 and 11, a few mixed ones, and an embedding that carries
    /// 4, 9, 13 strongly and every other frequency weakly. The argmax rule counts the strays;
    /// the consensus finds exactly the circuit.
    #[test]
    fn consensus_ignores_stray_neurons_at_other_frequencies() {
        let p = 29;
        let wave = |k: usize, x: usize| (2.0 * PI * (k * x % p) as f64 / p as f64).cos();
        let mut freqs: Vec<usize> = [4, 9, 13].iter().flat_map(|&k| [k; 20]).collect();
        freqs.extend([2, 6, 7, 11]);
        let n = freqs.len() + 3;
        let mut data = Vec::with_capacity(p * p * n);
        for a in 0..p {
            for b in 0..p {
                for (i, &k) in freqs.iter().enumerate() {
                    let phase = i as f64 * 0.37;
                    let s = 2.0 * PI * (k * (a + b) % p) as f64 / p as f64;
                    data.push((s + phase).cos());
                }
                // mixed neurons: no frequency dominates
                data.push(wave(3, a) + wave(5, b) + wave(8, a + b));
                data.push((wave(10, a) - wave(12, b)).max(0.0));
                data.push(wave(1, a + 2 * b) + wave(14, a));
            }
        }
        let nf = neuron_freqs(p, &Matrix::from_vec(p * p, n, data));
        let mut embed = vec![0.3; p / 2 + 1];
        for k in [4, 9, 13] {
            embed[k] = 5.0 + k as f64 / 10.0;
        }
        let votes = KeyFreqVotes::new(Some(&nf), &embed, 0.5);
        assert!(votes.neuron_argmax.len() > 3, "{:?}", votes.neuron_argmax);
        for k in [2, 6, 7, 11] {
            assert!(
                votes.neuron_argmax.contains(&k),
                "{:?}",
                votes.neuron_argmax
            );
        }
        assert_eq!(votes.neuron_clusters, vec![4, 9, 13]);
        assert_eq!(votes.embed_norm, vec![4, 9, 13]);
        assert_eq!(votes.consensus(), vec![4, 9, 13]);
        assert_eq!(votes.disagreement, None);

        // The embedding alone carries a fourth frequency: kept, and the disagreement said.
        embed[6] = 4.0;
        let votes = KeyFreqVotes::new(Some(&nf), &embed, 0.5);
        assert_eq!(votes.consensus(), vec![4, 6, 9, 13]);
        assert!(votes.disagreement.unwrap().contains("[6] only in W_E"));
    }

    #[test]
    fn embed_rule_keeps_frequencies_near_the_largest() {
        let norms = [9.0, 1.0, 8.0, 0.5, 4.1, 3.9];
        assert_eq!(embed_key_freqs(&norms, 0.5), vec![2, 4]);
    }
}
