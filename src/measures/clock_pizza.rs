//! Clock versus pizza (Zhong et al. 2023, "The Clock and the Pizza: Two Stories in Mechanistic
//! Explanation of Neural Networks", §4 and the authors' `code/eval-main.ipynb`): two measures that
//! tell apart, from the outside, the two algorithms a network can learn for `(a + b) mod p`.
//!
//! - The **clock** (Nanda et al. 2023) multiplies the rotations of a and b: its correct logit
//!   `cos(w(a + b − c))` at `c = a + b` does not depend on `a − b`, and the logit's gradients with
//!   respect to the two input embeddings differ (each is the other's rotation).
//! - The **pizza** adds the two embeddings first: its correct logit `|cos(w(a − b)/2)|` depends on
//!   `a − b`, and the gradients with respect to the two embeddings are nearly equal.
//!
//! Distance irrelevance q (≈ 1 clock, small for pizza) and gradient symmetricity s (≈ 1 pizza,
//! lower for clock) measure exactly these two facts.

use crate::models::{ParamStore, Transformer, TransformerConfig};
use crate::tasks::PythonRandom;
use burn::tensor::{DType, Device, Tensor, TensorData};

/// The number of (a, b, c) triples the authors average gradient symmetricity over.
pub const SYMMETRICITY_SAMPLES: usize = 100;

/// The seed of the authors' sample (`random.Random(42)` in `eval-main.ipynb`).
pub const SYMMETRICITY_SEED: u64 = 42;

/// Distance irrelevance q of the correct logits (Zhong et al. 2023 §4.2; `eval-main.ipynb`,
/// "Distance Irrelevance"): with `L[s][d]` the correct-class logit of the input whose
/// `s = (a + b) mod p` and `d = (a − b) mod p`,
/// `q = mean_d std_s L[s][d] / std_{s,d} L[s][d]` (population standard deviations).
/// A logit that depends only on `a + b` gives q = 1 (clock); one that depends only on `a − b`
/// gives q = 0 (pizza).
///
/// `correct` is `[p²]`, row `a·p + b`, logits in nats. `None` for even p, where (s, d) does not
/// cover the grid (s and d have the same parity), or for a constant logit (0/0).
pub fn distance_irrelevance(correct: &[f64], p: usize) -> Option<f64> {
    if p.is_multiple_of(2) || correct.len() != p * p {
        return None;
    }
    let mut grid = vec![0.0; p * p]; // [s, d]
    for a in 0..p {
        for b in 0..p {
            grid[((a + b) % p) * p + (a + p - b) % p] = correct[a * p + b];
        }
    }
    let std = |xs: &mut dyn Iterator<Item = f64>| {
        let v: Vec<f64> = xs.collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    };
    let total = std(&mut grid.iter().copied());
    if total == 0.0 {
        return None;
    }
    let within: f64 = (0..p)
        .map(|d| std(&mut (0..p).map(|s| grid[s * p + d])))
        .sum::<f64>()
        / p as f64;
    Some(within / total)
}

/// The authors' sample of `n` triples (a, b, c): every triple of `[0, p)³` in a-, b-, c-major
/// order, shuffled by Python's `random.Random(seed).shuffle`, the first `n` kept
/// (`eval-main.ipynb`, "Gradient Symmetricity", with seed 42 and n = 100).
pub fn symmetricity_triples(p: usize, n: usize, seed: u64) -> Vec<[usize; 3]> {
    let mut all: Vec<[usize; 3]> = (0..p * p * p)
        .map(|i| [i / (p * p), (i / p) % p, i % p])
        .collect();
    PythonRandom::seed(seed).shuffle(&mut all);
    all.truncate(n);
    all
}

/// Gradient symmetricity s (Zhong et al. 2023 §4.2; `eval-main.ipynb`): the mean over `triples`
/// (a, b, c) of the cosine between `∂ logit_c / ∂ x_a` and `∂ logit_c / ∂ x_b`, where `x_a` and
/// `x_b` are the residual stream's inputs at the positions of a and b (the token embeddings:
/// `W_pos` is a constant there), and `logit_c` the last position's logit of class c, which need
/// not be the answer. A model that adds the two embeddings before anything else (pizza, constant
/// attention) has s = 1. The authors average the cosine itself; no threshold is applied.
///
/// `equals`: the `=` token id appended as a third position, or `None` for `[a, b]` inputs. A
/// triple whose gradient vanishes at one position counts as cosine 0.
pub fn gradient_symmetricity(
    cfg: &TransformerConfig,
    store: &ParamStore,
    triples: &[[usize; 3]],
    equals: Option<usize>,
) -> f64 {
    let d = cfg.d_model;
    let g = embedding_gradients(cfg, store, triples, equals);
    let t = g.len() / (triples.len() * d).max(1);
    let cosine = |i: usize| {
        let row = |pos: usize| &g[(i * t + pos) * d..(i * t + pos + 1) * d];
        let (u, v) = (row(0), row(1));
        let dot: f64 = u.iter().zip(v).map(|(x, y)| x * y).sum();
        let norm = |w: &[f64]| w.iter().map(|x| x * x).sum::<f64>().sqrt();
        let norms = norm(u) * norm(v);
        if norms == 0.0 {
            0.0
        } else {
            dot / norms
        }
    };
    (0..triples.len()).map(cosine).sum::<f64>() / triples.len().max(1) as f64
}

/// `[n, n_ctx, d_model]` gradients `∂ logit_c / ∂ x_pos` of each triple (a, b, c)'s last-position
/// logit of class c with respect to the residual stream's input at every position
/// (`blocks.0.hook_resid_pre`), in f64 through burn's autodiff ([`Transformer::forward_embedded`]).
/// Inputs are `[a, b]`, or `[a, b, equals]` when `equals` is given.
pub fn embedding_gradients(
    cfg: &TransformerConfig,
    store: &ParamStore,
    triples: &[[usize; 3]],
    equals: Option<usize>,
) -> Vec<f64> {
    let device = Device::flex().autodiff();
    let model = Transformer::new(cfg, store, &device, DType::F64, false);
    let (n, d, vo) = (triples.len(), cfg.d_model, cfg.d_vocab_out);
    let x = resid_pre(store, d, triples, equals);
    let t = x.len() / (n * d).max(1);
    let mut pick = vec![0.0; n * vo]; // one-hot of c per triple
    for (i, &[_, _, c]) in triples.iter().enumerate() {
        pick[i * vo + c] = 1.0;
    }
    let x =
        Tensor::<3>::from_data(TensorData::new(x, [n, t, d]), (&device, DType::F64)).require_grad();
    let pick = Tensor::<2>::from_data(TensorData::new(pick, [n, vo]), (&device, DType::F64));
    let out = model.forward_embedded(x.clone());
    let grads = (out.logits * pick).sum().backward();
    (x.grad(&grads))
        .expect("the input is a leaf")
        .into_data()
        .try_into_vec_as::<f64>()
        .expect("float gradient")
}

/// `[n, n_ctx, d_model]` residual stream inputs `W_E[tok] + W_pos[pos]` of the triples' inputs
/// `[a, b]` or `[a, b, equals]`, row-major.
fn resid_pre(
    store: &ParamStore,
    d: usize,
    triples: &[[usize; 3]],
    equals: Option<usize>,
) -> Vec<f64> {
    let w_e = &store
        .get("embed.W_E")
        .expect("every transformer has W_E")
        .data;
    let w_pos = &store.get("pos_embed.W_pos").expect("and W_pos").data;
    let mut x = Vec::new();
    for &[a, b, _] in triples {
        for (pos, tok) in [a, b].into_iter().chain(equals).enumerate() {
            x.extend((0..d).map(|j| w_e[tok * d + j] + w_pos[pos * d + j]));
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Activation, Normalization};
    use std::f64::consts::PI;

    const P: usize = 11;

    /// The logit grid `f(a + b) + g(a − b)`, rows `a·p + b`.
    fn grid(f: impl Fn(usize) -> f64, g: impl Fn(usize) -> f64) -> Vec<f64> {
        (0..P * P)
            .map(|r| {
                let (a, b) = (r / P, r % P);
                f((a + b) % P) + g((a + P - b) % P)
            })
            .collect()
    }

    fn population_var(xs: impl Iterator<Item = f64> + Clone) -> f64 {
        let n = xs.clone().count() as f64;
        let mean = xs.clone().sum::<f64>() / n;
        xs.map(|x| (x - mean).powi(2)).sum::<f64>() / n
    }

    #[test]
    fn distance_irrelevance_closed_forms() {
        let w = 2.0 * PI * 3.0 / P as f64;
        // a clock whose correct logit varies with a + b only: q = 1
        let clock = grid(|s| 1.0 + 0.4 * (w * s as f64).cos(), |_| 0.0);
        let q = distance_irrelevance(&clock, P).unwrap();
        assert!((q - 1.0).abs() < 1e-12, "{q}");
        // the pizza's |cos(w (a − b) / 2)|: q = 0
        let pizza = grid(|_| 0.0, |d| (w * d as f64 / 2.0).cos().abs());
        assert!(distance_irrelevance(&pizza, P).unwrap().abs() < 1e-12);
        // both: f and g are uncorrelated over the grid, q = sd f / sqrt(var f + var g)
        let f = |s: usize| (w * s as f64).sin() + 0.1 * s as f64;
        let g = |d: usize| 0.7 * (w * d as f64 / 2.0).cos().abs();
        let (vf, vg) = (population_var((0..P).map(f)), population_var((0..P).map(g)));
        let q = distance_irrelevance(&grid(f, g), P).unwrap();
        assert!((q - (vf / (vf + vg)).sqrt()).abs() < 1e-12, "{q}");
        // undefined: constant logits, even p
        assert!(distance_irrelevance(&vec![2.0; P * P], P).is_none());
        assert!(distance_irrelevance(&[0.0; 16], 4).is_none());
    }

    #[test]
    fn triples_follow_pythons_shuffle() {
        // Python 3: xs = [(a,b,c) for a in range(C) for b in range(C) for c in range(C)];
        // random.Random(42).shuffle(xs)
        assert_eq!(
            symmetricity_triples(5, 4, 42),
            [[0, 1, 4], [3, 4, 1], [3, 4, 4], [3, 4, 3]]
        );
        let t = symmetricity_triples(59, 100, SYMMETRICITY_SEED);
        assert_eq!(&t[..3], [[29, 1, 57], [49, 36, 24], [40, 38, 8]]);
        assert_eq!(t[99], [26, 20, 11]);
    }

    /// One attention-only layer, one head with `W_V = I`, `W_O = k·I`, biases 0, constant
    /// attention (α = 0) on `[a, b]`: the last position's output is
    /// `x_b + (x_a + x_b)·k`, so `∂ logit_c / ∂ x_a = k·u` and `∂ / ∂ x_b = (1 + k)·u` with
    /// `u = W_U[:, c]`: cosine +1 for k > 0 or k < −1, −1 for −1 < k < 0.
    fn linear_pizza(k: f64, n_ctx: usize) -> (TransformerConfig, ParamStore) {
        let d = 6;
        let cfg = TransformerConfig {
            n_heads: 1,
            d_model: d,
            d_head: d,
            d_mlp: 4,
            d_vocab: P + 1,
            d_vocab_out: P,
            n_ctx,
            attn_only: true,
            attn_rate: 0.0,
            ..TransformerConfig::nanda2023(P)
        };
        let mut store = ParamStore::init(&cfg, 3);
        let eye = |scale: f64| -> Vec<f64> {
            (0..d * d)
                .map(|i| if i / d == i % d { scale } else { 0.0 })
                .collect()
        };
        store.get_mut("blocks.0.attn.W_V").unwrap().data = eye(1.0);
        store.get_mut("blocks.0.attn.W_O").unwrap().data = eye(k);
        for name in ["b_V", "b_O"] {
            let e = store.get_mut(&format!("blocks.0.attn.{name}")).unwrap();
            e.data.iter_mut().for_each(|x| *x = 0.0);
        }
        (cfg, store)
    }

    #[test]
    fn symmetricity_of_constructed_pizzas() {
        let triples = symmetricity_triples(P, 20, 7);
        for (k, want) in [(0.5, 1.0), (3.0, 1.0), (-0.5, -1.0), (-2.0, 1.0)] {
            let (cfg, store) = linear_pizza(k, 2);
            let s = gradient_symmetricity(&cfg, &store, &triples, None);
            assert!((s - want).abs() < 1e-9, "k {k}: {s}");
        }
        // with `=` read last, a and b enter only through (x_a + x_b)·k: symmetric for any k
        let (cfg, store) = linear_pizza(-0.5, 3);
        let s = gradient_symmetricity(&cfg, &store, &triples, Some(P));
        assert!((s - 1.0).abs() < 1e-9, "{s}");
    }

    fn small(attn_rate: f64) -> (TransformerConfig, ParamStore) {
        let cfg = TransformerConfig {
            n_heads: 2,
            d_model: 8,
            d_head: 4,
            d_mlp: 16,
            d_vocab: P,
            d_vocab_out: P,
            n_ctx: 2,
            act_fn: Activation::Gelu,
            normalization: Normalization::PreLn,
            attn_rate,
            ..TransformerConfig::nanda2023(P)
        };
        let store = ParamStore::init(&cfg, 11);
        (cfg, store)
    }

    #[test]
    fn embedding_gradients_match_finite_differences() {
        let (cfg, store) = small(0.3);
        let triples = [[1, 4, 2], [7, 7, 0], [10, 3, 9]];
        let g = embedding_gradients(&cfg, &store, &triples, None);
        let device = Device::flex();
        let model = Transformer::new(&cfg, &store, &device, DType::F64, false);
        let x0 = resid_pre(&store, cfg.d_model, &triples, None);
        let logit = |x: &[f64], i: usize| {
            let x = Tensor::<3>::from_data(
                TensorData::new(x.to_vec(), [triples.len(), 2, cfg.d_model]),
                (&device, DType::F64),
            );
            let l = model.forward_embedded(x).logits;
            let l = l.into_data().try_into_vec_as::<f64>().unwrap();
            l[i * cfg.d_vocab_out + triples[i][2]]
        };
        let h = 1e-6;
        for (j, &gj) in g.iter().enumerate() {
            let i = j / (2 * cfg.d_model);
            let (mut up, mut down) = (x0.clone(), x0.clone());
            up[j] += h;
            down[j] -= h;
            let fd = (logit(&up, i) - logit(&down, i)) / (2.0 * h);
            assert!(
                (gj - fd).abs() < 1e-7 * fd.abs().max(1.0),
                "{j}: {gj} vs {fd}"
            );
        }
    }

    #[test]
    fn attention_rate_mixes_softmax_with_constant() {
        let tokens = || {
            let t: Vec<i64> = vec![1, 4, 7, 7, 10, 3];
            Tensor::<2, burn::tensor::Int>::from_data(TensorData::new(t, [3, 2]), &Device::flex())
        };
        let pattern = |a: f64| {
            let (cfg, store) = small(a);
            let model = Transformer::new(&cfg, &store, &Device::flex(), DType::F64, false);
            let p = model.forward(tokens()).pattern_last;
            p.into_data().try_into_vec_as::<f64>().unwrap()
        };
        let (soft, zero, mixed) = (pattern(1.0), pattern(0.0), pattern(0.25));
        assert!(zero.iter().all(|&x| x == 1.0), "{zero:?}");
        for (s, m) in soft.iter().zip(&mixed) {
            assert!((m - (0.25 * s + 0.75)).abs() < 1e-12);
        }
        // the softmax itself is a distribution over the two keys
        for row in soft.chunks(2) {
            assert!((row[0] + row[1] - 1.0).abs() < 1e-12);
        }
    }
}
