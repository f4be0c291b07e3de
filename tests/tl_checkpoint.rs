//! Checkpoints hold exactly the state dict TransformerLens expects
//! (`../shared/golden/tl_state_dict_keys.json`: keys, shapes and dtypes of
//! `HookedTransformer(cfg).state_dict()` for three configs), so `load_state_dict(sd, strict=True)`
//! works: every parameter, the frozen zero biases, and the `attn.mask` / `attn.IGNORE` buffers.

mod common;

use groklab::models::{Activation, Normalization, ParamStore, TransformerConfig};
use groklab::rundir::model_path;
use groklab::train::{save, Optimizer};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use std::collections::BTreeMap;

fn golden() -> Option<Value> {
    let path = common::golden_dir()?.join("tl_state_dict_keys.json");
    Some(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
}

/// The TransformerLens `HookedTransformerConfig` fields of the fixture as groklab's config.
fn config(c: &Value) -> TransformerConfig {
    let n = |k: &str| c[k].as_u64().unwrap() as usize;
    let attn_only = c["attn_only"].as_bool().unwrap_or(false);
    TransformerConfig {
        n_layers: n("n_layers"),
        n_heads: n("n_heads"),
        d_model: n("d_model"),
        d_head: n("d_head"),
        d_mlp: if attn_only { 1 } else { n("d_mlp") },
        d_vocab: n("d_vocab"),
        d_vocab_out: n("d_vocab_out"),
        n_ctx: n("n_ctx"),
        act_fn: match c["act_fn"].as_str() {
            Some("gelu") => Activation::Gelu,
            _ => Activation::Relu,
        },
        normalization: match c["normalization_type"].as_str() {
            Some("LN") => Normalization::PreLn,
            _ => Normalization::None,
        },
        attn_only,
        residual: Default::default(),
        init_std: Default::default(),
        attn_rate: 1.0,
    }
}

fn dtype_name(d: Dtype) -> &'static str {
    match d {
        Dtype::F32 => "float32",
        Dtype::F64 => "float64",
        Dtype::BOOL => "bool",
        _ => "other",
    }
}

#[test]
fn checkpoints_hold_exactly_the_transformer_lens_state_dict() {
    let Some(golden) = golden() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (name, entry) in golden["configs"].as_object().unwrap() {
        let cfg = config(&entry["config"]);
        let store = ParamStore::init(&cfg, 7);
        let run = dir.path().join(name);
        let optim = Optimizer::adamw(&store, [0.9, 0.98], 1e-8, 1.0);
        save(&run, 0, &store, &cfg.tl_buffers(), &optim, Dtype::F32, &[]).unwrap();
        let bytes = std::fs::read(model_path(&run, 0)).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();

        let written: BTreeMap<String, (Vec<usize>, &str)> = st
            .tensors()
            .into_iter()
            .map(|(n, v)| (n, (v.shape().to_vec(), dtype_name(v.dtype()))))
            .collect();
        let expected: BTreeMap<String, (Vec<usize>, &str)> = (entry["tensors"].as_object())
            .unwrap()
            .iter()
            .map(|(n, t)| {
                let shape = (t["shape"].as_array().unwrap().iter())
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                (n.clone(), (shape, t["dtype"].as_str().unwrap()))
            })
            .collect();
        assert_eq!(written, expected, "{name}");

        // The buffers' values: lower-triangular causal mask, −inf.
        let t = cfg.n_ctx;
        for l in 0..cfg.n_layers {
            let mask = st.tensor(&format!("blocks.{l}.attn.mask")).unwrap();
            for (i, &b) in mask.data().iter().enumerate() {
                assert_eq!(b == 1, i % t <= i / t, "{name} mask[{}, {}]", i / t, i % t);
            }
            let ignore = st.tensor(&format!("blocks.{l}.attn.IGNORE")).unwrap();
            let v = f32::from_le_bytes(ignore.data().try_into().unwrap());
            assert_eq!(v, f32::NEG_INFINITY, "{name}");
        }

        // groklab reads its own checkpoint back, skipping the buffers.
        let mut rounded = store.clone();
        rounded.round_to_f32();
        let back = ParamStore::from_safetensors(&model_path(&run, 0), &cfg).unwrap();
        assert_eq!(back, rounded, "{name}");
    }
}
