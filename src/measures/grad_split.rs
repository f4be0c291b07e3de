//! Which circuit the gradient feeds (seed 001's third proposal, REFERENCES.md §4): the training
//! loss's gradient at a checkpoint split into the key-frequency subspace (the final checkpoint's
//! key frequencies, as the measures use) and its complement, per weight.
//!
//! The subspace of each weight, with `B_K` `[2|K|, p]` the cos/sin rows of the Fourier basis at
//! the key frequencies:
//! - `embed.W_E` `[d_vocab, d_model]`: the token axis of the p residue rows, `B_K`;
//! - `unembed.W_U` `[d_model, d_vocab_out]` and `W_L = W_out W_U` `[d_mlp, p]`: the class axis of
//!   the p residue columns, `B_K` (W_L's gradient is the change `G_out W_U + W_out G_U` the step
//!   makes to it, to first order);
//! - `blocks.0.mlp.W_in` `[d_model, d_mlp]` and `W_out` `[d_mlp, d_model]`: the neuron axis, the
//!   neurons of the key frequencies' clusters at the final checkpoint (frequency a key one, FVE ≥
//!   0.85: Nanda et al. 2023 §4.2, [`super::neurons::CLUSTER_FVE`]).
//!
//! A weight's *share* is ‖projection‖² / ‖gradient‖²; `chance` is the share a random direction
//! would have (subspace dimension over axis length).

use super::matrix::Matrix;
use super::neurons::{NeuronFreqs, CLUSTER_FVE};
use crate::models::{ParamStore, TransformerConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The subspaces of one run: the key-frequency rows and the key neurons.
pub struct KeySubspace {
    /// `[2|K|, p]` cos/sin rows of the Fourier basis at the key frequencies (orthonormal).
    pub b_k: Matrix,
    /// `[d_mlp]` whether each neuron belongs to a key frequency's cluster.
    pub key_neurons: Vec<bool>,
}

impl KeySubspace {
    /// The subspaces for `key_freqs` (1..=p/2) and the final checkpoint's neuron frequencies.
    pub fn new(basis: &Matrix, key_freqs: &[usize], neurons: &NeuronFreqs) -> Self {
        let p = basis.rows;
        let rows: Vec<usize> = (key_freqs.iter())
            .flat_map(|&k| [2 * k - 1, 2 * k])
            .filter(|&r| r < p)
            .collect();
        let b_k = Matrix::from_vec(
            rows.len(),
            p,
            rows.iter().flat_map(|&r| basis.row(r).to_vec()).collect(),
        );
        let key_neurons = (neurons.freq.iter().zip(&neurons.fve))
            .map(|(f, &fve)| key_freqs.contains(f) && fve >= CLUSTER_FVE)
            .collect();
        Self { b_k, key_neurons }
    }
}

/// The split of one gradient.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GradShares {
    /// Per weight (`W_E`, `W_U`, `W_L`, `W_in`, `W_out`): share of the squared gradient norm in
    /// the key-frequency subspace.
    pub share: BTreeMap<String, f64>,
    /// Per weight: the share of a random direction (subspace dimension / axis length).
    pub chance: BTreeMap<String, f64>,
    /// Per weight: the gradient's norm.
    pub norm: BTreeMap<String, f64>,
}

/// Squared norms `(key part, rest)` of a gradient over W_E, W_U, W_in and W_out together.
pub type KeyRest = (f64, f64);

/// Splits `grads` (flat per store entry, the store's order) of the model `store` into the key
/// subspace `s` and its complement, per weight.
pub fn split_gradient(
    cfg: &TransformerConfig,
    store: &ParamStore,
    grads: &[Option<Vec<f64>>],
    s: &KeySubspace,
) -> (GradShares, KeyRest) {
    let p = s.b_k.cols;
    let grad = |name: &str, rows: usize, cols: usize| -> Matrix {
        let i = (store.entries.iter().position(|e| e.name == name))
            .unwrap_or_else(|| panic!("parameter `{name}` exists for this config"));
        Matrix::from_vec(
            rows,
            cols,
            grads[i].clone().unwrap_or_else(|| vec![0.0; rows * cols]),
        )
    };
    let (d, m, v) = (cfg.d_model, cfg.d_mlp, cfg.d_vocab_out);
    let last = cfg.n_layers - 1;
    let g_e = grad("embed.W_E", cfg.d_vocab, d);
    let g_e = Matrix::from_vec(p, d, g_e.data[..p * d].to_vec());
    let g_u = grad("unembed.W_U", d, v).first_cols(p);
    let g_in = grad(&format!("blocks.{last}.mlp.W_in"), d, m);
    let g_out = grad(&format!("blocks.{last}.mlp.W_out"), m, d);
    let w_u = param(store, "unembed.W_U", d, v).first_cols(p);
    let w_out = param(store, &format!("blocks.{last}.mlp.W_out"), m, d);
    let g_l = add(&g_out.matmul(&w_u), &w_out.matmul(&g_u));

    let mut out = GradShares::default();
    let (mut key, mut total) = (0.0, 0.0);
    let k_tok = s.b_k.rows as f64 / p as f64;
    let k_neurons = s.key_neurons.iter().filter(|&&k| k).count() as f64 / m as f64;
    // squared norm of the key neurons' part: columns of W_in, rows of W_out
    let key_cols = |g: &Matrix| -> f64 {
        (0..g.rows)
            .flat_map(|r| (0..g.cols).map(move |c| (r, c)))
            .filter(|&(_, c)| s.key_neurons[c])
            .map(|(r, c)| g.at(r, c).powi(2))
            .sum()
    };
    let key_rows = |g: &Matrix| -> f64 {
        (0..g.rows)
            .filter(|&r| s.key_neurons[r])
            .map(|r| g.row(r).iter().map(|x| x * x).sum::<f64>())
            .sum()
    };
    let parts = [
        (
            "W_E",
            s.b_k.matmul(&g_e).sum_squares(),
            g_e.sum_squares(),
            k_tok,
            true,
        ),
        (
            "W_U",
            g_u.matmul_t(&s.b_k).sum_squares(),
            g_u.sum_squares(),
            k_tok,
            true,
        ),
        (
            "W_L",
            g_l.matmul_t(&s.b_k).sum_squares(),
            g_l.sum_squares(),
            k_tok,
            false,
        ),
        ("W_in", key_cols(&g_in), g_in.sum_squares(), k_neurons, true),
        (
            "W_out",
            key_rows(&g_out),
            g_out.sum_squares(),
            k_neurons,
            true,
        ),
    ];
    for (name, k, t, chance, counted) in parts {
        out.share
            .insert(name.into(), if t > 0.0 { k / t } else { f64::NAN });
        out.chance.insert(name.into(), chance);
        out.norm.insert(name.into(), t.sqrt());
        if counted {
            key += k;
            total += t;
        }
    }
    (out, (key, total - key))
}

fn add(a: &Matrix, b: &Matrix) -> Matrix {
    Matrix::from_vec(
        a.rows,
        a.cols,
        a.data.iter().zip(&b.data).map(|(x, y)| x + y).collect(),
    )
}

/// The direction of Adam's last update at a checkpoint, per store entry (`None` where the file
/// holds no moments: frozen tensors): `m̂ / (√v̂ + ε)` with `m̂ = m / (1 − β₁ᵗ)`, `v̂ = v / (1 −
/// β₂ᵗ)` (Kingma & Ba 2015, Algorithm 1; PyTorch's AdamW without its decoupled decay, whose
/// direction is the weights' own), from `exp_avg.<name>` and `exp_avg_sq.<name>` of an optimiser
/// file `state` written after `t` updates.
pub fn adam_direction(
    store: &ParamStore,
    state: &crate::models::NamedTensors,
    t: u64,
    betas: [f64; 2],
    eps: f64,
) -> Vec<Option<Vec<f64>>> {
    let (c1, c2) = (1.0 - betas[0].powf(t as f64), 1.0 - betas[1].powf(t as f64));
    (store.entries.iter())
        .map(|e| {
            let m = &state.get(&format!("exp_avg.{}", e.name))?.1;
            let v = &state.get(&format!("exp_avg_sq.{}", e.name))?.1;
            Some(
                (m.iter().zip(v))
                    .map(|(m, v)| (m / c1) / ((v / c2).sqrt() + eps))
                    .collect(),
            )
        })
        .collect()
}

fn param(store: &ParamStore, name: &str, rows: usize, cols: usize) -> Matrix {
    let e = store
        .get(name)
        .unwrap_or_else(|| panic!("parameter `{name}` exists for this config"));
    Matrix::from_vec(rows, cols, e.data.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adam's direction by hand: after two gradients of ±1 with β = (0.9, 0.99), the moments
    /// are m = ±0.19 and v = 0.0199, and the bias corrections 1 − βᵗ make m̂ = ±1, v̂ = 1.
    #[test]
    fn adam_direction_by_hand() {
        let store = ParamStore {
            entries: vec![
                crate::models::ParamEntry {
                    name: "a".into(),
                    shape: vec![2],
                    data: vec![0.0; 2],
                    trainable: true,
                },
                crate::models::ParamEntry {
                    name: "frozen".into(),
                    shape: vec![1],
                    data: vec![0.0],
                    trainable: false,
                },
            ],
        };
        // gradients 1 then 1: m = 0.1 + 0.09 = 0.19, v = 0.01 + 0.0099 = 0.0199
        let state = crate::models::NamedTensors::from([
            ("exp_avg.a".to_string(), (vec![2], vec![0.19, -0.19])),
            ("exp_avg_sq.a".to_string(), (vec![2], vec![0.0199, 0.0199])),
        ]);
        let d = adam_direction(&store, &state, 2, [0.9, 0.99], 0.0);
        // m̂ = 0.19 / 0.19 = 1, v̂ = 0.0199 / 0.0199 = 1: the step is ±1
        let a = d[0].as_ref().unwrap();
        assert!(
            (a[0] - 1.0).abs() < 1e-12 && (a[1] + 1.0).abs() < 1e-12,
            "{a:?}"
        );
        assert!(d[1].is_none(), "no moments for a frozen tensor");
        let with_eps = adam_direction(&store, &state, 2, [0.9, 0.99], 1.0);
        assert!((with_eps[0].as_ref().unwrap()[0] - 0.5).abs() < 1e-12);
    }

    /// A gradient inside the key subspace has share 1 and one in its complement share 0, on
    /// every weight; W_E's share by hand for a mix.
    #[test]
    fn shares_are_one_inside_the_subspace_and_zero_outside() {
        use crate::measures::fourier::fourier_basis;
        let p = 11;
        let mut cfg = TransformerConfig::nanda2023(p);
        (cfg.d_model, cfg.d_head, cfg.d_mlp) = (8, 2, 6);
        let store = ParamStore::init(&cfg, 3);
        let basis = fourier_basis(p);
        let neurons = NeuronFreqs {
            freq: vec![2, 0, 3, 2, 2, 5],
            fve: vec![0.9, 0.0, 0.9, 0.86, 0.5, 0.9],
        };
        let s = KeySubspace::new(&basis, &[2], &neurons);
        assert_eq!(s.b_k.rows, 2);
        assert_eq!(s.key_neurons, vec![true, false, false, true, false, false]);
        let names = [
            "embed.W_E",
            "unembed.W_U",
            "blocks.0.mlp.W_in",
            "blocks.0.mlp.W_out",
        ];
        let shaped = |f: &dyn Fn(&str, &[usize]) -> Vec<f64>| -> Vec<Option<Vec<f64>>> {
            (store.entries.iter())
                .map(|e| {
                    names
                        .contains(&e.name.as_str())
                        .then(|| f(&e.name, &e.shape))
                })
                .collect()
        };
        // inside: W_E rows ∝ cos 2 (column 0 only), W_U columns ∝ sin 2, W_in/W_out on neurons
        // 0 and 3
        let cos2 = basis.row(3).to_vec();
        let sin2 = basis.row(4).to_vec();
        let inside = shaped(&|name, shape| {
            let (r, c) = (shape[0], shape[1]);
            let mut g = vec![0.0; r * c];
            match name {
                "embed.W_E" => (0..p).for_each(|a| g[a * c] = cos2[a]),
                "unembed.W_U" => (0..p).for_each(|k| g[k] = sin2[k]),
                "blocks.0.mlp.W_in" => (0..r).for_each(|i| g[i * c + 3] = i as f64 + 1.0),
                _ => (0..c).for_each(|j| g[j] = j as f64 - 2.5),
            }
            g
        });
        let (sh, (key, rest)) = split_gradient(&cfg, &store, &inside, &s);
        for w in ["W_E", "W_U", "W_in", "W_out"] {
            assert!((sh.share[w] - 1.0).abs() < 1e-12, "{w}: {}", sh.share[w]);
        }
        assert!(rest.abs() < 1e-12 * key);
        // outside: the constant Fourier row (never a key direction) for W_E and W_U, neuron 1
        let constant = basis.row(0).to_vec();
        let outside = shaped(&|name, shape| {
            let (r, c) = (shape[0], shape[1]);
            let mut g = vec![0.0; r * c];
            match name {
                "embed.W_E" => (0..p).for_each(|a| g[a * c] = constant[a]),
                "unembed.W_U" => (0..p).for_each(|k| g[k] = constant[k]),
                "blocks.0.mlp.W_in" => (0..r).for_each(|i| g[i * c + 1] = 1.0),
                _ => (0..c).for_each(|j| g[c + j] = 1.0),
            }
            g
        });
        let (sh, _) = split_gradient(&cfg, &store, &outside, &s);
        for w in ["W_E", "W_U", "W_in", "W_out"] {
            assert!(sh.share[w].abs() < 1e-12, "{w}: {}", sh.share[w]);
        }
        assert!((sh.chance["W_E"] - 2.0 / 11.0).abs() < 1e-15);
    }
}
