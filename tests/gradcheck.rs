//! Finite-difference check of every parameter's gradient on tiny models (f64): the paper's
//! architecture (burn graph and fused step), a 2-layer pre-LN GELU model, and a 2-layer
//! attention-only model.

use burn::tensor::{Device, Int, Tensor};
use groklab::models::{
    Activation, Normalization, ParamStore, Residual, Transformer, TransformerConfig,
};
use groklab::tasks::{ModularDataset, Operation};
use groklab::train::{cross_entropy, tensors, Engine, Precision, Step};

const P: usize = 7;

fn batch(device: &Device) -> (Tensor<2, Int>, Tensor<1, Int>) {
    let data = ModularDataset::new(Operation::Sub, P as u64, 0).unwrap();
    let rows: Vec<usize> = (0..data.len()).collect();
    tensors(&data, &rows, device)
}

fn loss(cfg: &TransformerConfig, store: &ParamStore) -> f64 {
    let device = Device::flex();
    let (x, y) = batch(&device);
    let model = Transformer::new(cfg, store, &device, Precision::F64.dtype(), false);
    cross_entropy(model.forward(x).logits, y, Precision::F64).into_scalar::<f64>()
}

fn check(cfg: TransformerConfig, engine: Engine) {
    let mut store = ParamStore::init(&cfg, 11);
    // Non-zero biases (frozen ones too: the forward must use them) and LayerNorm parameters, so
    // their gradients are exercised off the init.
    for e in store.entries.iter_mut().filter(|e| e.name.contains(".b")) {
        e.data
            .iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x += 0.05 * ((i % 5) as f64 - 2.0));
    }
    let device = Device::flex().autodiff();
    let model = cfg.clone();
    let step = Step {
        model: &model,
        params: &store,
        device: &device,
        compute: Precision::F64,
        loss_dtype: Precision::F64,
        loss_fn: groklab::train::LossFn::Softmax,
        engine,
        threads: 2,
    };
    assert_eq!(
        step.uses_fused(),
        engine == Engine::Auto && cfg.n_layers == 1 && cfg.residual == Residual::Standard
    );
    let data = ModularDataset::new(Operation::Sub, P as u64, 0).unwrap();
    let rows: Vec<usize> = (0..data.len()).collect();
    let (tokens, labels) = data.gather(&rows);
    let r = step.train_host(&tokens, &labels);
    let h = 1e-5;
    for (i, grad) in r.grads.iter().enumerate() {
        let name = store.entries[i].name.clone();
        let Some(grad) = grad else {
            assert!(!store.entries[i].trainable, "{name} has no gradient");
            continue;
        };
        let scale = grad.iter().fold(1e-3f64, |m, g| m.max(g.abs()));
        for (j, &ad) in grad.iter().enumerate() {
            let orig = store.entries[i].data[j];
            store.entries[i].data[j] = orig + h;
            let up = loss(&cfg, &store);
            store.entries[i].data[j] = orig - h;
            let down = loss(&cfg, &store);
            store.entries[i].data[j] = orig;
            let fd = (up - down) / (2.0 * h);
            assert!(
                (fd - ad).abs() < 1e-6 * scale.max(1.0),
                "{name}[{j}]: autodiff {ad} vs finite difference {fd}"
            );
        }
    }
}

fn tiny() -> TransformerConfig {
    TransformerConfig {
        d_model: 8,
        n_heads: 2,
        d_head: 4,
        d_mlp: 12,
        ..TransformerConfig::nanda2023(P)
    }
}

#[test]
fn paper_architecture_gradients_match_finite_differences() {
    check(tiny(), Engine::Burn);
}

#[test]
fn fused_step_gradients_match_finite_differences() {
    check(tiny(), Engine::Auto);
}

#[test]
fn two_layer_pre_ln_gelu_gradients_match_finite_differences() {
    check(
        TransformerConfig {
            n_layers: 2,
            act_fn: Activation::Gelu,
            normalization: Normalization::PreLn,
            d_vocab_out: P,
            ..tiny()
        },
        Engine::Auto,
    );
}

#[test]
fn two_layer_attention_only_gradients_match_finite_differences() {
    check(
        TransformerConfig {
            n_layers: 2,
            attn_only: true,
            ..tiny()
        },
        Engine::Auto,
    );
}

/// The authors' induction model (REFERENCES.md §3): the doubled residual x_{l+1} = 2·x_l +
/// attn_l(x_l), drawn with per-weight init scales (W_Q/W_K/W_V std 1/√d_head), on the burn
/// graph and the fused sequence pass.
fn doubled(n_layers: usize, attn_only: bool) -> TransformerConfig {
    let std = 1.0 / (tiny().d_head as f64).sqrt();
    TransformerConfig {
        n_layers,
        attn_only,
        residual: Residual::Doubled,
        init_std: [("W_Q", std), ("W_K", std), ("W_V", std), ("W_U", 0.3)]
            .map(|(k, v)| (k.to_string(), v))
            .into(),
        ..tiny()
    }
}

#[test]
fn doubled_residual_attention_only_gradients_match_finite_differences() {
    check(doubled(2, true), Engine::Auto);
    check(doubled(2, true), Engine::Burn);
}

#[test]
fn doubled_residual_with_mlp_gradients_match_finite_differences() {
    check(doubled(1, false), Engine::Auto);
    check(doubled(2, false), Engine::Burn);
}

/// The fused step with the log-softmax in f32 (the `f32_slingshot` recipe) against the burn
/// graph's f32 `log_softmax` on the same weights: the same loss and gradients up to the f32
/// rounding of the logits (the forward in f64 on both).
#[test]
fn fused_step_f32_loss_matches_burn() {
    let cfg = tiny();
    let store = ParamStore::init(&cfg, 3);
    let device = Device::flex().autodiff();
    let model = cfg.clone();
    let step = |engine| Step {
        model: &model,
        params: &store,
        device: &device,
        compute: Precision::F64,
        loss_dtype: Precision::F32,
        loss_fn: groklab::train::LossFn::Softmax,
        engine,
        threads: 2,
    };
    let (fused, burn) = (step(Engine::Auto), step(Engine::Burn));
    assert!(fused.uses_fused() && !burn.uses_fused());
    let data = ModularDataset::new(Operation::Sub, P as u64, 0).unwrap();
    let rows: Vec<usize> = (0..data.len()).collect();
    let (tokens, labels) = data.gather(&rows);
    let (got, want) = (
        fused.train_host(&tokens, &labels),
        burn.train_host(&tokens, &labels),
    );
    assert!(
        (got.loss - want.loss).abs() < 2e-6 * want.loss,
        "{} vs {}",
        got.loss,
        want.loss
    );
    for (e, (g, w)) in store.entries.iter().zip(got.grads.iter().zip(&want.grads)) {
        let (Some(g), Some(w)) = (g, w) else { continue };
        let scale = w.iter().fold(1e-6f64, |m, x| m.max(x.abs()));
        for (a, b) in g.iter().zip(w) {
            assert!((a - b).abs() < 1e-5 * scale, "{}: {a} vs {b}", e.name);
        }
    }
}
