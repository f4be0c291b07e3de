//! Parity with PyTorch (`../shared/golden/train_step_p23.*`): forward, gradients and 25 AdamW
//! updates of the Nanda et al. architecture at p = 23, in f64 (1e-9 relative) and f32 (1e-4).

mod common;

use common::{rel_err, to_vec};

use burn::tensor::{Device, Int, Tensor};
use groklab::models::{read_safetensors, ParamStore, Transformer, TransformerConfig};
use groklab::tasks::{ModularDataset, Operation};
use groklab::train::{tensors, warmup_lr, Engine, Optimizer, Precision, Step};
use std::collections::HashMap;

type Tensors = HashMap<String, (Vec<usize>, Vec<f64>)>;

fn golden() -> Option<(Tensors, serde_json::Value)> {
    let dir = common::golden_dir()?;
    let path = dir.join("train_step_p23.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let tensors = read_safetensors(&path, &bytes).unwrap();
    let json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("train_step_p23.json")).unwrap())
            .unwrap();
    Some((tensors, json))
}

fn config() -> TransformerConfig {
    TransformerConfig {
        d_model: 32,
        n_heads: 4,
        d_head: 8,
        d_mlp: 64,
        d_vocab_out: 23,
        ..TransformerConfig::nanda2023(23)
    }
}

/// The store with the golden tensors of `prefix` (`init.`, `after25.`); frozen biases are zero.
fn store_from(tensors: &Tensors, prefix: &str) -> ParamStore {
    let mut store = ParamStore::zeros(&config());
    for e in &mut store.entries {
        match tensors.get(&format!("{prefix}{}", e.name)) {
            Some((shape, data)) => {
                assert_eq!(shape, &e.shape, "{}", e.name);
                e.data = data.clone();
            }
            None => assert!(!e.trainable, "golden lacks trainable {}", e.name),
        }
    }
    store
}

fn batch(rows: &[usize], device: &Device) -> (Tensor<2, Int>, Tensor<1, Int>) {
    tensors(
        &ModularDataset::new(Operation::Add, 23, 0).unwrap(),
        rows,
        device,
    )
}

fn check_forward(precision: Precision, tol: f64) {
    let Some((g, _)) = golden() else { return };
    let device = Device::flex();
    let store = store_from(&g, "init.");
    let model = Transformer::new(&config(), &store, &device, precision.dtype(), false);
    let all: Vec<usize> = (0..529).collect();
    let out = model.forward(batch(&all, &device).0);
    for (name, got) in [
        ("logits_all", to_vec(out.logits)),
        ("pattern_last_all", to_vec(out.pattern_last)),
        ("mlp_post_last_all", to_vec(out.mlp_post_last.unwrap())),
    ] {
        let err = rel_err(&got, &g[&format!("expected.{name}")].1);
        assert!(err < tol, "{name}: relative error {err:e} >= {tol:e}");
    }
}

fn check_training(precision: Precision, engine: Engine, tol: f64) {
    let Some((g, json)) = golden() else { return };
    let cfg = config();
    let model = cfg.clone();
    let device = Device::flex().autodiff();
    let train_idx: Vec<usize> = g["train_idx"].1.iter().map(|&x| x as usize).collect();
    let mut store = store_from(&g, "init.");
    let mut optim = Optimizer::adamw(&store, [0.9, 0.98], 1e-8, 1.0);
    let losses: Vec<f64> = json["losses_before_each_update"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (step, expected_loss) in losses.iter().enumerate() {
        let step_fn = Step {
            model: &model,
            params: &store,
            device: &device,
            compute: precision,
            loss_dtype: Precision::F64,
            loss_fn: groklab::train::LossFn::Softmax,
            engine,
            threads: 2,
        };
        assert_eq!(step_fn.uses_fused(), engine == Engine::Auto);
        let (tokens, labels) = ModularDataset::new(Operation::Add, 23, 0)
            .unwrap()
            .gather(&train_idx);
        let r = step_fn.train_host(&tokens, &labels);
        let err = (r.loss - expected_loss).abs() / expected_loss;
        assert!(
            err < tol,
            "loss before update {step}: {} vs {expected_loss} ({err:e})",
            r.loss
        );
        if step == 0 {
            for (e, grad) in store.entries.iter().zip(&r.grads) {
                let Some(grad) = grad else { continue };
                let err = rel_err(grad, &g[&format!("grad0.{}", e.name)].1);
                assert!(
                    err < tol,
                    "grad of {}: relative error {err:e} >= {tol:e}",
                    e.name
                );
            }
        }
        optim.update(&mut store, &r.grads, warmup_lr(1e-3, step as u64, 10));
        if precision == Precision::F32 {
            store.round_to_f32();
        }
    }
    for e in store.entries.iter().filter(|e| e.trainable) {
        let err = rel_err(&e.data, &g[&format!("after25.{}", e.name)].1);
        assert!(
            err < tol,
            "{} after 25 updates: relative error {err:e} >= {tol:e}",
            e.name
        );
    }
}

#[test]
fn forward_matches_pytorch_f64() {
    check_forward(Precision::F64, 1e-9);
}

#[test]
fn forward_matches_pytorch_f32() {
    check_forward(Precision::F32, 1e-4);
}

#[test]
fn gradients_and_adamw_match_pytorch_f64() {
    check_training(Precision::F64, Engine::Burn, 1e-9);
}

#[test]
fn gradients_and_adamw_match_pytorch_f32() {
    check_training(Precision::F32, Engine::Burn, 1e-4);
}

#[test]
fn fused_step_gradients_and_adamw_match_pytorch_f64() {
    check_training(Precision::F64, Engine::Auto, 1e-9);
}

#[test]
fn fused_step_gradients_and_adamw_match_pytorch_f32() {
    check_training(Precision::F32, Engine::Auto, 1e-4);
}

/// The data-parallel step (rows cut into chunks, results recombined by chunk size) equals the
/// single-graph step to f64 rounding.
#[test]
fn chunked_step_equals_single_graph_f64() {
    let cfg = TransformerConfig {
        d_model: 16,
        n_heads: 2,
        d_head: 8,
        d_mlp: 32,
        ..TransformerConfig::nanda2023(37)
    };
    let device = Device::flex().autodiff();
    let data = ModularDataset::new(Operation::Add, 37, 0).unwrap();
    let rows: Vec<usize> = (0..data.len()).collect();
    let batch = tensors(&data, &rows, &device);
    let store = ParamStore::init(&cfg, 5);
    let model = cfg.clone();
    let step_fn = Step {
        model: &model,
        params: &store,
        device: &device,
        compute: Precision::F64,
        loss_dtype: Precision::F64,
        loss_fn: groklab::train::LossFn::Softmax,
        engine: Engine::Burn,
        threads: 1,
    };
    let step = |chunks| step_fn.train_chunked(batch.clone(), chunks);
    let one = step(1);
    for chunks in [2, 3] {
        let many = step(chunks);
        assert!((many.loss - one.loss).abs() < 1e-12 * one.loss);
        assert!((many.acc - one.acc).abs() < 1e-12);
        for (a, b) in many.grads.iter().zip(&one.grads) {
            if let (Some(a), Some(b)) = (a, b) {
                assert!(
                    rel_err(a, b) < 1e-11,
                    "chunks {chunks}: {:e}",
                    rel_err(a, b)
                );
            }
        }
    }
}
