//! Attention-head saliency, the per-head half of the general-circuits test (seed 001's proposals,
//! REFERENCES.md §4): per head and training input, integrated gradients (Sundararajan et al.
//! 2017, eq. 1) of the correct-class logit with respect to the head's output at the last
//! position (`blocks.0.attn.hook_z[:, -1, h]`, summed over its d_head components), all heads
//! moving together from the baseline; per head the median over inputs; and the loss after
//! ablating the k most salient heads against k random ones.
//!
//! Downstream of the heads the model is not linear (the MLP's ReLU), so unlike the neurons'
//! case the path matters: along it the residual stream moves on a straight line, and with it
//! every neuron's pre-activation, so the IG integrand at α is
//! `W_U[:, c] + W_in (1[pre(α) > 0] ⊙ W_L[:, c])`, averaged over the m midpoints.

use super::activations::grid_tokens;
use super::logits::Scores;
use super::matrix::Matrix;
use super::saliency::{baseline_of, summarize, summarize_abs, Ablated, Ablation, SaliencyOptions};
use super::snapshot::Analyzer;
use crate::models::{fused, ParamStore, TransformerConfig};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Largest number of k-subsets over which random-k ablation is averaged exactly; above it,
/// [`SaliencyOptions::random_draws`] random subsets are.
const EXACT_SUBSETS: usize = 128;

/// The head-saliency measures of one checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadSaliency {
    /// `[n_heads]` each head's median integrated gradient over the training inputs (logit
    /// units; signed).
    pub medians: Vec<f64>,
    /// `[n_heads]` each head's mean integrated gradient over the training inputs.
    pub means: Vec<f64>,
    /// Sum over heads of the mean attribution: by completeness, the mean over training inputs
    /// of logit_c(heads) − logit_c(heads at the baseline), up to the midpoint rule's error.
    pub total_attribution: f64,
    /// Ablations (heads set to the baseline) for k = 0 and k = 1, 2, 4, …, n_heads/2; heads
    /// ranked by median, ties by mean. `random` is the mean over every k-subset (over random
    /// draws when there are more than 128).
    pub ablation: Vec<Ablation>,
}

/// The weights downstream of the attention layer: `resid_mid → logits`.
struct Downstream {
    /// `[D, M]`.
    w_in: Matrix,
    /// `[M]`.
    b_in: Vec<f64>,
    /// `[M, D]`.
    w_out: Matrix,
    /// `[D]`.
    b_out: Vec<f64>,
    /// `[D, Vo]`.
    w_u: Matrix,
    /// `[Vo]`.
    b_u: Vec<f64>,
}

fn param(store: &ParamStore, name: &str) -> Vec<f64> {
    (store.get(name).map(|e| e.data.clone()))
        .unwrap_or_else(|| panic!("parameter `{name}` exists for this config"))
}

impl Downstream {
    fn new(store: &ParamStore, cfg: &TransformerConfig) -> Self {
        let (d, m, vo) = (cfg.d_model, cfg.d_mlp, cfg.d_vocab_out);
        Self {
            w_in: Matrix::from_vec(d, m, param(store, "blocks.0.mlp.W_in")),
            b_in: param(store, "blocks.0.mlp.b_in"),
            w_out: Matrix::from_vec(m, d, param(store, "blocks.0.mlp.W_out")),
            b_out: param(store, "blocks.0.mlp.b_out"),
            w_u: Matrix::from_vec(d, vo, param(store, "unembed.W_U")),
            b_u: param(store, "unembed.b_U"),
        }
    }

    /// `[R, M]` MLP pre-activations `resid W_in + b_in` of `resid` `[R, D]`.
    fn pre(&self, resid: &Matrix) -> Matrix {
        let mut pre = resid.matmul(&self.w_in);
        add_rows(&mut pre, &self.b_in);
        pre
    }

    /// `[R, p]` residue logits of `resid` `[R, D]` (`resid_mid` at the last position).
    fn logits(&self, resid: &Matrix, p: usize) -> Matrix {
        let mut post = self.pre(resid);
        post.data.iter_mut().for_each(|x| *x = x.max(0.0));
        let mut out = post.matmul(&self.w_out);
        add_rows(&mut out, &self.b_out);
        out.data
            .iter_mut()
            .zip(&resid.data)
            .for_each(|(o, r)| *o += r);
        let mut logits = out.matmul(&self.w_u);
        add_rows(&mut logits, &self.b_u);
        logits.first_cols(p)
    }
}

fn add_rows(m: &mut Matrix, v: &[f64]) {
    m.data
        .chunks_mut(m.cols)
        .for_each(|row| row.iter_mut().zip(v).for_each(|(x, b)| *x += b));
}

/// The attention layer's output on all p² inputs at the last position.
pub struct HeadOutputs {
    /// `[p², D]` `blocks.0.hook_resid_mid[:, -1]`.
    pub resid_mid: Matrix,
    /// `[n_heads]` of `[p², D]`: each head's `hook_z[:, -1, h] · W_O[h]`, its write to the
    /// residual stream (`b_O` is in `resid_mid`, in no head).
    pub results: Vec<Matrix>,
}

/// Each head's output on every input `[a, b, =]` (a-major rows) from the fused forward's
/// attention pattern and the OV circuit:
/// `Σ_pos pattern[h, pos] · ((W_E[tok] + W_pos[pos]) W_V[h] + b_V[h]) W_O[h]`.
/// The model must be one block without LayerNorm (as [`super::saliency`] checks).
pub fn head_outputs(cfg: &TransformerConfig, store: &ParamStore, p: usize) -> HeadOutputs {
    let (d, h, dh) = (cfg.d_model, cfg.n_heads, cfg.d_head);
    let f = fused::forward::<f64>(cfg, store, &grid_tokens(p, 3)).expect("every input ends in `=`");
    let (w_e, w_pos) = (param(store, "embed.W_E"), param(store, "pos_embed.W_pos"));
    let (w_v, b_v) = (
        param(store, "blocks.0.attn.W_V"),
        param(store, "blocks.0.attn.b_V"),
    );
    let (w_o, b_o) = (
        param(store, "blocks.0.attn.W_O"),
        param(store, "blocks.0.attn.b_O"),
    );
    // ov[head][pos][tok] = ((W_E[tok] + W_pos[pos]) W_V[h] + b_V[h]) W_O[h], [D]
    let ov_row = |head: usize, pos: usize, tok: usize| -> Vec<f64> {
        let x: Vec<f64> = (0..d)
            .map(|i| w_e[tok * d + i] + w_pos[pos * d + i])
            .collect();
        let v: Vec<f64> = (0..dh)
            .map(|j| {
                b_v[head * dh + j]
                    + (0..d)
                        .map(|i| x[i] * w_v[(head * d + i) * dh + j])
                        .sum::<f64>()
            })
            .collect();
        (0..d)
            .map(|k| (0..dh).map(|j| v[j] * w_o[(head * dh + j) * d + k]).sum())
            .collect()
    };
    let ov: Vec<[Vec<Vec<f64>>; 3]> = (0..h)
        .map(|head| {
            [
                (0..p).map(|t| ov_row(head, 0, t)).collect(),
                (0..p).map(|t| ov_row(head, 1, t)).collect(),
                vec![ov_row(head, 2, p)],
            ]
        })
        .collect();
    let rows = p * p;
    let mut results = vec![Matrix::zeros(rows, d); h];
    for r in 0..rows {
        let toks = [r / p, r % p, 0];
        for (head, out) in results.iter_mut().enumerate() {
            let pattern = f.pattern[r * h + head];
            let row = &mut out.data[r * d..(r + 1) * d];
            for pos in 0..3 {
                let v = &ov[head][pos][toks[pos]];
                row.iter_mut()
                    .zip(v)
                    .for_each(|(o, x)| *o += pattern[pos] * x);
            }
        }
    }
    let eq: Vec<f64> = (0..d)
        .map(|i| w_e[p * d + i] + w_pos[2 * d + i] + b_o[i])
        .collect();
    let mut resid_mid = Matrix::zeros(rows, d);
    for row in resid_mid.data.chunks_mut(d) {
        row.copy_from_slice(&eq);
    }
    for res in &results {
        resid_mid
            .data
            .iter_mut()
            .zip(&res.data)
            .for_each(|(x, y)| *x += y);
    }
    HeadOutputs { resid_mid, results }
}

/// Head saliency and the top-k / random-k head ablations of `store`; the model must pass
/// [`super::saliency::check_saliency_model`]. The baseline of a head is zero output or its
/// mean output over the training inputs ([`SaliencyBaseline`]); an ablated head is set to it.
pub fn head_saliency(a: &Analyzer, store: &ParamStore, opts: &SaliencyOptions) -> HeadSaliency {
    let (cfg, p) = (&a.cfg, a.p);
    let (d, n_heads) = (cfg.d_model, cfg.n_heads);
    let out = head_outputs(cfg, store, p);
    let down = Downstream::new(store, cfg);
    let base: Vec<Vec<f64>> = (out.results.iter())
        .map(|res| baseline_of(opts.baseline, res, &a.train))
        .collect();
    // resid_mid with every head at its baseline: the same for every input (the last token is `=`)
    let first = out.resid_mid.row(0);
    let resid0: Vec<f64> = (0..d)
        .map(|i| {
            first[i]
                + (out.results.iter().zip(&base))
                    .map(|(res, b)| b[i] - res.at(0, i))
                    .sum::<f64>()
        })
        .collect();
    let pre0 = down.pre(&Matrix::from_vec(1, d, resid0)).data;
    let train_resid = Matrix::from_vec(
        a.train.len(),
        d,
        (a.train.iter())
            .flat_map(|&r| out.resid_mid.row(r).to_vec())
            .collect(),
    );
    let pre = down.pre(&train_resid);
    let w_l = down.w_out.matmul(&down.w_u); // [M, Vo]
    let m = opts.steps.max(1);
    let d_mlp = cfg.d_mlp;
    // v[i, n] = mean over the midpoints of 1[pre(α) > 0] · W_L[n, c_i]
    let mut v = Matrix::zeros(a.train.len(), d_mlp);
    for (i, &r) in a.train.iter().enumerate() {
        let c = a.labels[r];
        for (n, (&lo, &hi)) in pre0.iter().zip(pre.row(i)).enumerate() {
            let on = (0..m)
                .filter(|&k| lo + (k as f64 + 0.5) / m as f64 * (hi - lo) > 0.0)
                .count();
            v.data[i * d_mlp + n] = on as f64 / m as f64 * w_l.at(n, c);
        }
    }
    let g = v.matmul_t(&down.w_in); // [n_train, D]
    let mut per_head = vec![Vec::with_capacity(a.train.len()); n_heads];
    let mut total = 0.0;
    for (i, &r) in a.train.iter().enumerate() {
        let c = a.labels[r];
        for (head, res) in out.results.iter().enumerate() {
            let attr: f64 = (0..d)
                .map(|k| (res.at(r, k) - base[head][k]) * (g.at(i, k) + down.w_u.at(k, c)))
                .sum();
            total += attr;
            per_head[head].push(attr);
        }
    }
    let rank_abs = summarize_abs(&per_head).1;
    let (means, medians, rank) = summarize(per_head);
    let mut cache: HashMap<Vec<usize>, Ablated> = HashMap::new();
    let mut ablate = |heads: &[usize]| -> Ablated {
        let mut key = heads.to_vec();
        key.sort_unstable();
        *cache.entry(key).or_insert_with(|| {
            let mut resid = out.resid_mid.clone();
            for &h in heads {
                for (row, res) in resid.data.chunks_mut(d).zip(out.results[h].data.chunks(d)) {
                    (row.iter_mut().zip(res).zip(&base[h])).for_each(|((x, r), b)| *x += b - r);
                }
            }
            let s = Scores::new(&down.logits(&resid, p), &a.labels, &a.all);
            let (train_loss, train_acc) = s.mean(&a.train);
            let (test_loss, test_acc) = s.mean(&a.test);
            Ablated {
                train_loss,
                train_acc,
                test_loss,
                test_acc,
            }
        })
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    let ablation = std::iter::once(0)
        .chain((0..).map(|i| 1usize << i).take_while(|&k| k <= n_heads / 2))
        .map(|k| {
            let top = ablate(&rank[..k]);
            let top_abs = ablate(&rank_abs[..k]);
            let subsets = if binomial(n_heads, k) <= EXACT_SUBSETS {
                k_subsets(n_heads, k)
            } else {
                (0..opts.random_draws.max(1))
                    .map(|_| {
                        let mut order: Vec<usize> = (0..n_heads).collect();
                        order.shuffle(&mut rng);
                        order.truncate(k);
                        order
                    })
                    .collect()
            };
            let draws: Vec<Ablated> = subsets.iter().map(|s| ablate(s)).collect();
            Ablation {
                k,
                top,
                random: Ablated::mean(&draws),
                random_sd: Ablated::sd(&draws),
                top_abs,
                top_heldout: None,
                random_heldout: None,
            }
        })
        .collect();
    HeadSaliency {
        medians,
        means,
        total_attribution: total / a.train.len() as f64,
        ablation,
    }
}

/// `n choose k`, saturating.
fn binomial(n: usize, k: usize) -> usize {
    (0..k).fold(1usize, |acc, i| acc.saturating_mul(n - i) / (i + 1))
}

/// Every k-subset of `0..n`, each ascending, in lexicographic order.
fn k_subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    if k == 0 {
        return vec![vec![]];
    }
    (k - 1..n)
        .flat_map(|last| {
            k_subsets(last, k - 1).into_iter().map(move |mut s| {
                s.push(last);
                s
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measures::activations::run_all_inputs;
    use crate::measures::saliency::SaliencyBaseline;
    use crate::tasks::{ModularDataset, Operation};

    fn small() -> (Analyzer, ParamStore) {
        let p = 7;
        let mut cfg = TransformerConfig::nanda2023(p);
        (cfg.d_model, cfg.d_head, cfg.d_mlp, cfg.n_heads) = (16, 4, 24, 4);
        let mut store = ParamStore::init(&cfg, 5);
        // larger weights than the init's so that many neurons cross zero along the IG path
        store
            .entries
            .iter_mut()
            .for_each(|e| e.data.iter_mut().for_each(|x| *x *= 4.0));
        let data = ModularDataset::new(Operation::Add, p as u64, 0).unwrap();
        (Analyzer::new(&cfg, &data, None).unwrap(), store)
    }

    /// The heads' outputs rebuild the fused forward: relu(resid_mid W_in + b_in) is its
    /// `hook_post` and the logits are its logits.
    #[test]
    fn head_outputs_rebuild_the_fused_forward() {
        let (a, store) = small();
        let out = head_outputs(&a.cfg, &store, a.p);
        let acts = run_all_inputs(&a.cfg, &store, a.p);
        let down = Downstream::new(&store, &a.cfg);
        let mut post = down.pre(&out.resid_mid);
        post.data.iter_mut().for_each(|x| *x = x.max(0.0));
        let want = acts.mlp_post.unwrap();
        let err = |x: &Matrix, y: &Matrix| {
            (x.data.iter().zip(&y.data))
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max)
        };
        assert!(err(&post, &want) < 1e-9, "{}", err(&post, &want));
        let logits = down.logits(&out.resid_mid, a.p);
        assert!(err(&logits, &acts.logits) < 1e-9);
    }

    /// Completeness (Sundararajan et al. 2017, Prop. 1): the heads' attributions sum to
    /// logit_c(x) − logit_c(baseline); the ReLU makes the integrand piecewise constant, so the
    /// midpoint rule's error falls as 1/m.
    #[test]
    fn head_attributions_are_complete() {
        let (a, store) = small();
        let out = head_outputs(&a.cfg, &store, a.p);
        let down = Downstream::new(&store, &a.cfg);
        let d = a.cfg.d_model;
        let mut resid0 = out.resid_mid.clone();
        for res in &out.results {
            resid0
                .data
                .iter_mut()
                .zip(&res.data)
                .for_each(|(x, r)| *x -= r);
        }
        let (l1, l0) = (down.logits(&out.resid_mid, a.p), down.logits(&resid0, a.p));
        let want = (a.train.iter())
            .map(|&r| l1.at(r, a.labels[r]) - l0.at(r, a.labels[r]))
            .sum::<f64>()
            / a.train.len() as f64;
        let err = |steps| {
            let opts = SaliencyOptions {
                baseline: SaliencyBaseline::Zero,
                steps,
                ..SaliencyOptions::default()
            };
            (head_saliency(&a, &store, &opts).total_attribution - want).abs()
        };
        let (e1, e4000) = (err(1), err(4000));
        assert!(d > 0 && want.abs() > 0.1, "{want}");
        assert!(e1 > 1e-3, "the test model is too linear: {e1}");
        assert!(
            e4000 < 1e-3 * want.abs().max(1.0),
            "m = 4000: error {e4000}"
        );
    }

    /// k = 0 is the model itself; random-k averages every k-subset; top-k ablates the heads
    /// with the largest medians.
    #[test]
    fn head_ablation_counts() {
        let (a, store) = small();
        let h = head_saliency(&a, &store, &SaliencyOptions::default());
        let acts = run_all_inputs(&a.cfg, &store, a.p);
        let (loss, acc) = Scores::new(&acts.logits, &a.labels, &a.all).mean(&a.train);
        assert_eq!(
            h.ablation.iter().map(|x| x.k).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!((h.ablation[0].top.train_loss - loss).abs() < 1e-9);
        assert_eq!(h.ablation[0].top.train_acc, acc);
        let (top0, random0) = (h.ablation[0].top, h.ablation[0].random);
        assert_eq!(
            (top0.train_loss, top0.train_acc),
            (random0.train_loss, random0.train_acc)
        );
        assert_eq!(k_subsets(4, 2).len(), 6);
        assert_eq!(k_subsets(4, 2)[0], vec![0, 1]);
        assert_eq!(binomial(4, 2), 6);
        assert_eq!(binomial(8, 4), 70);
    }
}
