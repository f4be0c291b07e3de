//! The fused sequence pass (`models::fused_seq`, engine `auto`) against the burn graph (engine
//! `burn`, the reference that `seq_golden.rs` ties to PyTorch): loss, accuracy, evaluation and
//! every gradient, on shapes that exercise each code path of the attention loops — head widths
//! of 1, 2, 3 and 5 register blocks, sequence lengths that are not multiples of the vector
//! width, odd and non-consecutive scored positions, targets that vary between sequences — in
//! f64 (to 1e-10) and f32 (to the precision's rounding); the per-pair losses of the per-position
//! and per-class metrics too.

mod common;

use burn::tensor::Device;
use common::rel_err;
use groklab::models::{Activation, Normalization, ParamStore, Residual, TransformerConfig};
use groklab::tasks::{SeqBatch, IGNORE};
use groklab::train::{Engine, Precision, Step};

fn config(n_layers: usize, d_head: usize, n_ctx: usize) -> TransformerConfig {
    TransformerConfig {
        n_layers,
        n_heads: 2,
        d_model: 16,
        d_head,
        d_mlp: 24,
        d_vocab: 11,
        d_vocab_out: 9,
        n_ctx,
        act_fn: Activation::Relu,
        normalization: Normalization::None,
        attn_only: true,
        residual: Default::default(),
        init_std: Default::default(),
        attn_rate: 1.0,
    }
}

/// Weights with every tensor trained and non-zero biases, so every gradient is checked.
fn params(cfg: &TransformerConfig) -> ParamStore {
    let mut p = ParamStore::init(cfg, 7);
    for e in &mut p.entries {
        e.trainable = true;
        if e.name.contains(".b") {
            (e.data.iter_mut().enumerate()).for_each(|(i, x)| *x += 0.03 * ((i % 7) as f64 - 3.0));
        }
    }
    p
}

/// 9 sequences; `scored(seq, t)` says which positions have a target.
fn batch(cfg: &TransformerConfig, scored: impl Fn(usize, usize) -> bool) -> SeqBatch {
    let mut data = SeqBatch::new(cfg.n_ctx);
    for s in 0..9usize {
        let tokens: Vec<i64> = (0..cfg.n_ctx)
            .map(|t| ((7 * s + 3 * t + s * t * t) % cfg.d_vocab) as i64)
            .collect();
        let targets: Vec<i64> = (0..cfg.n_ctx)
            .map(|t| {
                if scored(s, t) {
                    ((s + 2 * t) % cfg.d_vocab_out) as i64
                } else {
                    IGNORE
                }
            })
            .collect();
        data.push(&tokens, &targets);
    }
    data
}

fn check(cfg: TransformerConfig, data: &SeqBatch, compute: Precision, tol: f64) {
    check_loss(cfg, data, compute, Precision::F64, tol)
}

/// [`check`] with the log-softmax in `loss_dtype` on both engines (the reference's forward in
/// f64, so an f32 loss differs from it by the f32 rounding of the logits alone).
fn check_loss(
    cfg: TransformerConfig,
    data: &SeqBatch,
    compute: Precision,
    loss_dtype: Precision,
    tol: f64,
) {
    let net = cfg.clone();
    let params = params(&cfg);
    let device = Device::flex().autodiff();
    let step = |engine, compute| Step {
        model: &net,
        params: &params,
        device: &device,
        compute,
        loss_dtype,
        loss_fn: groklab::train::LossFn::Softmax,
        engine,
        threads: 2,
    };
    let fused = step(Engine::Auto, compute);
    let reference = step(Engine::Burn, Precision::F64);
    assert!(fused.uses_fused_seq() && !reference.uses_fused_seq());
    let (got, want) = (fused.train_seq(data), reference.train_seq(data));
    assert!(
        (got.loss - want.loss).abs() <= tol * want.loss,
        "loss {} vs {}",
        got.loss,
        want.loss
    );
    assert!(
        (got.acc - want.acc).abs() < 1e-12,
        "accuracy {} vs {}",
        got.acc,
        want.acc
    );
    let (eval_loss, eval_acc) = fused.evaluate_seq(data);
    assert!((eval_loss - got.loss).abs() <= 1e-12 * got.loss);
    assert_eq!(eval_acc, got.acc);
    // per pair: the same positions and targets in the same order, the same losses
    let (gp, wp) = (
        fused.evaluate_seq_pairs(data),
        reference.evaluate_seq_pairs(data),
    );
    assert_eq!(gp.len(), wp.len());
    for (g, w) in gp.iter().zip(&wp) {
        assert_eq!((g.position, g.target), (w.position, w.target));
        assert!(
            (g.loss - w.loss).abs() <= tol * w.loss.max(1.0),
            "{g:?} vs {w:?}"
        );
    }
    let mean = gp.iter().map(|p| p.loss).sum::<f64>() / gp.len() as f64;
    assert!((mean - eval_loss).abs() <= 1e-12 * eval_loss);
    for (e, (g, w)) in params.entries.iter().zip(got.grads.iter().zip(&want.grads)) {
        let (g, w) = (g.as_ref().unwrap(), w.as_ref().unwrap());
        // b_K's exact gradient is zero (it adds a constant to each query's scores): compare it
        // on the scale of the other gradients
        let err = if e.name.ends_with("attn.b_K") {
            g.iter()
                .zip(w)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
                / 1e-3
        } else {
            rel_err(g, w)
        };
        assert!(err < tol, "{}: relative error {err:e}", e.name);
    }
}

#[test]
fn attention_only_with_odd_scored_positions_matches_burn() {
    // d_head 12: two 8-lane blocks; 21 positions; 5 scored positions, not consecutive
    let cfg = config(2, 12, 21);
    let data = batch(&cfg, |_, t| [4, 9, 10, 17, 20].contains(&t));
    assert!(data.common_positions().is_some());
    check(cfg.clone(), &data, Precision::F64, 1e-10);
    check(cfg, &data, Precision::F32, 2e-4);
}

#[test]
fn relu_mlp_with_wide_heads_matches_burn() {
    // d_head 32: four blocks; one layer with an MLP, the last 6 positions scored (digit addition)
    let cfg = TransformerConfig {
        attn_only: false,
        ..config(1, 32, 18)
    };
    let data = batch(&cfg, |_, t| t >= 12);
    check(cfg.clone(), &data, Precision::F64, 1e-10);
    check(cfg, &data, Precision::F32, 2e-4);
}

#[test]
fn three_pre_ln_gelu_layers_with_varying_targets_match_burn() {
    // d_head 20 (three blocks) and 40 (five: the general loop); every position computed, the
    // targets at positions that differ between sequences
    for d_head in [20, 40] {
        let cfg = TransformerConfig {
            attn_only: false,
            act_fn: Activation::Gelu,
            normalization: Normalization::PreLn,
            ..config(3, d_head, 13)
        };
        let data = batch(&cfg, |s, t| (s + t) % 3 == 0);
        assert!(data.common_positions().is_none());
        check(cfg.clone(), &data, Precision::F64, 1e-10);
        check(cfg, &data, Precision::F32, 2e-4);
    }
}

/// The authors' induction model: the doubled residual (2-layer attention-only, and 1 layer
/// with an MLP, where the MLP reads x + attn(x) but the output adds x once more).
#[test]
fn doubled_residual_matches_burn() {
    let cfg = TransformerConfig {
        residual: Residual::Doubled,
        ..config(2, 12, 21)
    };
    let data = batch(&cfg, |_, t| [4, 9, 10, 17, 20].contains(&t));
    check(cfg.clone(), &data, Precision::F64, 1e-10);
    check(cfg, &data, Precision::F32, 2e-4);
    let cfg = TransformerConfig {
        residual: Residual::Doubled,
        attn_only: false,
        ..config(1, 32, 18)
    };
    let data = batch(&cfg, |_, t| t >= 12);
    check(cfg, &data, Precision::F64, 1e-10);
}

/// The log-softmax in f32 (the authors' induction loss; the f32 slingshot presets): the fused
/// pass's losses and gradients against burn's f32 `log_softmax`, with the forward in f64 and
/// in f32, on the same positions as above.
#[test]
fn f32_loss_matches_burn() {
    let cfg = TransformerConfig {
        residual: Residual::Doubled,
        ..config(2, 12, 21)
    };
    let data = batch(&cfg, |_, t| [4, 9, 10, 17, 20].contains(&t));
    check_loss(cfg.clone(), &data, Precision::F64, Precision::F32, 2e-5);
    check_loss(cfg, &data, Precision::F32, Precision::F32, 2e-4);
    let cfg = TransformerConfig {
        attn_only: false,
        ..config(1, 32, 18)
    };
    let data = batch(&cfg, |s, t| (s + t) % 3 == 0);
    check_loss(cfg, &data, Precision::F64, Precision::F32, 2e-5);
}
