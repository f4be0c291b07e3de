//! Parity of the sequence path (`Transformer::forward_seq`, `seq_train`) with PyTorch /
//! TransformerLens (`../shared/golden/seq_models.*`, float64): a 2-layer attention-only model with
//! every bias non-zero on an induction-style batch and a 2-layer pre-LN GELU model on 2-digit
//! addition: logits and attention patterns at init, the loss on the scored positions and its
//! gradient, and 10 AdamW updates, on the burn graph and on the fused sequence pass
//! (`models::fused_seq`, engine `auto`). Plus finite-difference checks of both.

mod common;

use common::{rel_err, to_vec};

use burn::tensor::{Device, Int, Tensor, TensorData};
use groklab::models::{
    read_safetensors, Activation, Model, Normalization, ParamStore, Scored, Transformer,
    TransformerConfig,
};
use groklab::tasks::{SeqBatch, IGNORE};
use groklab::train::{Engine, Optimizer, Precision, Step};
use serde_json::Value;
use std::collections::HashMap;

type Tensors = HashMap<String, (Vec<usize>, Vec<f64>)>;

fn golden() -> Option<(Tensors, Value)> {
    let dir = common::golden_dir()?;
    let path = dir.join("seq_models.safetensors");
    let tensors = read_safetensors(&path, &std::fs::read(&path).unwrap()).unwrap();
    let json = std::fs::read_to_string(dir.join("seq_models.json")).unwrap();
    Some((tensors, serde_json::from_str(&json).unwrap()))
}

fn config(model: &Value) -> TransformerConfig {
    let c = &model["config"];
    let n = |k: &str| c[k].as_u64().unwrap() as usize;
    TransformerConfig {
        n_layers: n("L"),
        n_heads: n("H"),
        d_model: n("d"),
        d_head: n("dh"),
        d_mlp: c["d_mlp"].as_u64().map_or(1, |m| m as usize),
        d_vocab: n("V"),
        d_vocab_out: n("Vo"),
        n_ctx: n("T"),
        act_fn: Activation::Gelu,
        normalization: if c["ln"].as_bool().unwrap() {
            Normalization::PreLn
        } else {
            Normalization::None
        },
        attn_only: c["d_mlp"].is_null(),
        residual: Default::default(),
        init_std: Default::default(),
        attn_rate: 1.0,
    }
}

/// The golden weights `{model}.{prefix}*`, every tensor trained (biases included, as in the
/// fixture's optimiser).
fn store(g: &Tensors, cfg: &TransformerConfig, key: &str) -> ParamStore {
    let mut store = ParamStore::zeros(cfg);
    for e in &mut store.entries {
        let (shape, data) = &g[&format!("{key}{}", e.name)];
        assert_eq!(shape, &e.shape, "{}", e.name);
        e.data = data.clone();
        e.trainable = true;
    }
    store
}

fn batch(g: &Tensors, model: &str, n_ctx: usize) -> SeqBatch {
    let as_i64 = |k: &str| {
        g[&format!("{model}.{k}")]
            .1
            .iter()
            .map(|&x| x as i64)
            .collect()
    };
    SeqBatch {
        n_ctx,
        tokens: as_i64("tokens"),
        targets: as_i64("targets"),
    }
}

/// The step the checks run: the burn graph, or the fused sequence pass (`engine = auto`), on
/// 2 threads (so the fused pass sums two chunks).
fn stepper<'a>(
    net: &'a dyn Model,
    params: &'a ParamStore,
    device: &'a Device,
    engine: Engine,
) -> Step<'a> {
    Step {
        model: net,
        params,
        device,
        compute: Precision::F64,
        loss_dtype: Precision::F64,
        loss_fn: groklab::train::LossFn::Softmax,
        engine,
        threads: 2,
    }
}

fn check_model(name: &str, engine: Engine) {
    let Some((g, json)) = golden() else { return };
    let spec = &json["models"][name];
    let cfg = config(spec);
    let net = cfg.clone();
    let data = batch(&g, name, cfg.n_ctx);
    let init = store(&g, &cfg, &format!("{name}.init."));

    // Forward at every position: logits [B·T, Vo] and every block's pattern [B, H, T, T].
    let device = Device::flex();
    let model = Transformer::new(&cfg, &init, &device, Precision::F64.dtype(), false);
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new(data.tokens.clone(), [data.len(), cfg.n_ctx]),
        &device,
    );
    let out = model.forward_seq(tokens.clone(), &Scored::All);
    let err = rel_err(
        &to_vec(out.logits),
        &g[&format!("{name}.expected.logits")].1,
    );
    assert!(err < 1e-10, "{name} logits: {err:e}");
    for (l, p) in out.patterns.into_iter().enumerate() {
        let want = &g[&format!("{name}.expected.blocks.{l}.attn.hook_pattern")].1;
        let err = rel_err(&to_vec(p), want);
        assert!(err < 1e-10, "{name} pattern {l}: {err:e}");
    }
    // Scoring a subset computes the same rows.
    let subset = vec![1, 5, cfg.n_ctx - 1];
    let part = to_vec(
        model
            .forward_seq(tokens, &Scored::Positions(subset.clone()))
            .logits,
    );
    let full = &g[&format!("{name}.expected.logits")].1;
    let vo = cfg.d_vocab_out;
    for b in 0..data.len() {
        for (i, &t) in subset.iter().enumerate() {
            let got = &part[(b * subset.len() + i) * vo..][..vo];
            let want = &full[(b * cfg.n_ctx + t) * vo..][..vo];
            assert!(rel_err(got, want) < 1e-10, "{name} subset row {b}, {t}");
        }
    }

    // Loss, gradient, then 10 AdamW updates on the same batch.
    let autodiff = Device::flex().autodiff();
    let losses: Vec<f64> = (spec["losses_before_each_update"].as_array().unwrap().iter())
        .map(|v| v.as_f64().unwrap())
        .collect();
    let mut params = init.clone();
    let mut optim = Optimizer::adamw(&params, [0.9, 0.98], 1e-8, 0.1);
    for (step, want) in losses.iter().enumerate() {
        let r = stepper(&net, &params, &autodiff, engine).train_seq(&data);
        assert_eq!(
            stepper(&net, &params, &autodiff, engine).uses_fused_seq(),
            engine == Engine::Auto
        );
        assert!(
            (r.loss - want).abs() < 1e-10 * want,
            "{name} loss {step}: {} vs {want}",
            r.loss
        );
        if step == 0 {
            let (eval_loss, _) = stepper(&net, &params, &device, engine).evaluate_seq(&data);
            assert!((eval_loss - r.loss).abs() < 1e-12 * r.loss);
            for (e, grad) in params.entries.iter().zip(&r.grads) {
                // b_K's gradient is zero in exact arithmetic (a constant added to every score
                // of a query), so both sides hold rounding noise: compare on the scale of 1e-6.
                let want = &g[&format!("{name}.grad0.{}", e.name)].1;
                let err = rel_err(grad.as_ref().unwrap(), want).min(
                    (grad.as_ref().unwrap().iter().zip(want))
                        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
                        / 1e-6,
                );
                assert!(err < 1e-9, "{name} grad {}: {err:e}", e.name);
            }
        }
        optim.update(&mut params, &r.grads, 1e-2);
    }
    for e in &params.entries {
        let err = rel_err(&e.data, &g[&format!("{name}.after10.{}", e.name)].1);
        assert!(err < 1e-9, "{name} {} after 10 updates: {err:e}", e.name);
    }
}

#[test]
fn attention_only_two_layer_matches_pytorch() {
    check_model("attn_only_2l", Engine::Burn);
}

#[test]
fn pre_ln_gelu_two_layer_matches_pytorch() {
    check_model("ln_mlp_2l", Engine::Burn);
}

#[test]
fn fused_attention_only_two_layer_matches_pytorch() {
    check_model("attn_only_2l", Engine::Auto);
}

#[test]
fn fused_pre_ln_gelu_two_layer_matches_pytorch() {
    check_model("ln_mlp_2l", Engine::Auto);
}

/// Central differences of the masked-position loss against autodiff for every coordinate of
/// every tensor, on tiny 2-layer models (attention-only; pre-LN GELU with MLPs), with targets at
/// positions that vary between sequences.
fn gradcheck(cfg: TransformerConfig, engine: Engine) {
    let net = cfg.clone();
    let mut params = ParamStore::init(&cfg, 3);
    for e in &mut params.entries {
        e.trainable = true;
        if e.name.contains(".b") {
            e.data
                .iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x += 0.05 * ((i % 5) as f64 - 2.0));
        }
    }
    let mut data = SeqBatch::new(cfg.n_ctx);
    for s in 0..5i64 {
        let tokens: Vec<i64> = (0..cfg.n_ctx as i64)
            .map(|t| (3 * s + 5 * t + s * t) % 6)
            .collect();
        let targets: Vec<i64> = (0..cfg.n_ctx as i64)
            .map(|t| {
                if (t + s) % 3 == 0 {
                    (t + s) % 5
                } else {
                    IGNORE
                }
            })
            .collect();
        data.push(&tokens, &targets);
    }
    assert_eq!(data.common_positions(), None);
    let device = Device::flex();
    let loss = |p: &ParamStore| stepper(&net, p, &device, engine).evaluate_seq(&data).0;
    let autodiff = device.clone().autodiff();
    let r = stepper(&net, &params, &autodiff, engine).train_seq(&data);
    let h = 1e-5;
    for i in 0..params.entries.len() {
        let grad = r.grads[i].clone().unwrap();
        let scale = grad.iter().fold(1.0f64, |m, g| m.max(g.abs()));
        for (j, &ad) in grad.iter().enumerate() {
            let orig = params.entries[i].data[j];
            params.entries[i].data[j] = orig + h;
            let up = loss(&params);
            params.entries[i].data[j] = orig - h;
            let down = loss(&params);
            params.entries[i].data[j] = orig;
            let fd = (up - down) / (2.0 * h);
            let name = &params.entries[i].name;
            assert!(
                (fd - ad).abs() < 1e-6 * scale,
                "{name}[{j}]: autodiff {ad} vs fd {fd}"
            );
        }
    }
}

fn tiny() -> TransformerConfig {
    TransformerConfig {
        n_layers: 2,
        n_heads: 2,
        d_model: 8,
        d_head: 4,
        d_mlp: 12,
        d_vocab: 6,
        d_vocab_out: 5,
        n_ctx: 7,
        act_fn: Activation::Gelu,
        normalization: Normalization::PreLn,
        attn_only: false,
        residual: Default::default(),
        init_std: Default::default(),
        attn_rate: 1.0,
    }
}

fn attention_only() -> TransformerConfig {
    TransformerConfig {
        attn_only: true,
        normalization: Normalization::None,
        ..tiny()
    }
}

#[test]
fn attention_only_sequence_gradients_match_finite_differences() {
    gradcheck(attention_only(), Engine::Burn);
    gradcheck(attention_only(), Engine::Auto);
}

#[test]
fn pre_ln_gelu_sequence_gradients_match_finite_differences() {
    gradcheck(tiny(), Engine::Burn);
    gradcheck(tiny(), Engine::Auto);
}
