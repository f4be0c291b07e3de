//! The MLP for the binary tasks: its forward equals the one-hot formulation written out by hand,
//! and its gradients match central finite differences (f64), for summed and concatenated inputs,
//! with and without biases.

use burn::tensor::{Device, Int, Tensor, TensorData};
use groklab::models::mlp::{Combine, Mlp, MlpConfig};
use groklab::models::{Activation, ParamStore};
use groklab::tasks::{ModularDataset, Operation};
use groklab::train::{cross_entropy, Precision};

const P: usize = 7;

fn config(combine: Combine, biases: bool) -> MlpConfig {
    MlpConfig {
        d_vocab: P + 1,
        n_inputs: 2,
        d_hidden: vec![6, 5],
        d_vocab_out: P,
        act_fn: Activation::Gelu,
        combine,
        biases,
    }
}

fn store(cfg: &MlpConfig) -> ParamStore {
    let mut s = ParamStore::init_specs(cfg.param_specs(), 5);
    for e in s
        .entries
        .iter_mut()
        .filter(|e| e.trainable && e.name.ends_with(".b"))
    {
        (e.data.iter_mut().enumerate()).for_each(|(i, x)| *x = 0.1 * ((i % 3) as f64 - 1.0));
    }
    s
}

fn batch(device: &Device) -> (Tensor<2, Int>, Tensor<1, Int>, Vec<(u64, u64)>) {
    let data = ModularDataset::new(Operation::Add, P as u64, 0).unwrap();
    let n = data.len();
    (
        Tensor::from_data(TensorData::new(data.tokens.clone(), [n, 3]), device),
        Tensor::from_data(TensorData::new(data.labels.clone(), [n]), device),
        data.pairs,
    )
}

fn loss(cfg: &MlpConfig, store: &ParamStore) -> f64 {
    let device = Device::flex();
    let (x, y, _) = batch(&device);
    let mlp = Mlp::new(cfg, store, &device, Precision::F64.dtype(), false);
    cross_entropy(mlp.forward(x).logits, y, Precision::F64).into_scalar::<f64>()
}

#[test]
fn forward_is_the_one_hot_formulation() {
    for combine in [Combine::Sum, Combine::Concat] {
        let cfg = MlpConfig {
            act_fn: Activation::Relu,
            ..config(combine, true)
        };
        let s = store(&cfg);
        let device = Device::flex();
        let (x, _, pairs) = batch(&device);
        let out = Mlp::new(&cfg, &s, &device, Precision::F64.dtype(), false).forward(x);
        let logits: Vec<f64> = out.logits.into_data().try_into_vec_as::<f64>().unwrap();
        let get = |name: &str| &s.entries.iter().find(|e| e.name == name).unwrap().data;
        let (w_e, b_e, w1, b1, w_u, b_u) = (
            get("embed.W_E"),
            get("embed.b_E"),
            get("mlp.1.W"),
            get("mlp.1.b"),
            get("unembed.W_U"),
            get("unembed.b_U"),
        );
        let v = P + 1;
        for (r, &(a, b)) in pairs.iter().enumerate() {
            // one-hot input vector · first layer
            let row = |pos: usize, tok: usize| match combine {
                Combine::Sum => tok * 6,
                Combine::Concat => (pos * v + tok) * 6,
            };
            let h0: Vec<f64> = (0..6)
                .map(|j| {
                    (w_e[row(0, a as usize) + j] + w_e[row(1, b as usize) + j] + b_e[j]).max(0.0)
                })
                .collect();
            let h1: Vec<f64> = (0..5)
                .map(|k| ((0..6).map(|j| h0[j] * w1[j * 5 + k]).sum::<f64>() + b1[k]).max(0.0))
                .collect();
            for c in 0..P {
                let want = (0..5).map(|k| h1[k] * w_u[k * P + c]).sum::<f64>() + b_u[c];
                let got = logits[r * P + c];
                assert!(
                    (got - want).abs() < 1e-12,
                    "{combine:?} row {r} class {c}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    for (combine, biases) in [
        (Combine::Sum, true),
        (Combine::Concat, false),
        (Combine::Concat, true),
    ] {
        let cfg = config(combine, biases);
        let mut s = store(&cfg);
        let device = Device::flex().autodiff();
        let (x, y, _) = batch(&device);
        let mlp = Mlp::new(&cfg, &s, &device, Precision::F64.dtype(), true);
        let l = cross_entropy(mlp.forward(x).logits, y, Precision::F64);
        let grads = mlp.gradients(&l.backward());
        let h = 1e-5;
        for (i, grad) in grads.iter().enumerate() {
            let name = s.entries[i].name.clone();
            let Some(grad) = grad else {
                assert!(!s.entries[i].trainable && !biases, "{name} has no gradient");
                continue;
            };
            let scale = grad.iter().fold(1.0f64, |m, g| m.max(g.abs()));
            for (j, &ad) in grad.iter().enumerate() {
                let orig = s.entries[i].data[j];
                s.entries[i].data[j] = orig + h;
                let up = loss(&cfg, &s);
                s.entries[i].data[j] = orig - h;
                let down = loss(&cfg, &s);
                s.entries[i].data[j] = orig;
                let fd = (up - down) / (2.0 * h);
                assert!(
                    (fd - ad).abs() < 1e-6 * scale,
                    "{combine:?} {name}[{j}]: {ad} vs {fd}"
                );
            }
        }
    }
}
