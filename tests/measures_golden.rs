//! The progress measures of the published Nanda et al. 2023 checkpoint
//! (`../shared/golden/nanda_f32loss_final.*`, values from an independent f64 numpy
//! implementation) reproduced to 4 significant digits or better.

use groklab::measures::{Analyzer, KeyFreqRule, Measures};
use groklab::models::{read_safetensors, Activation, ParamStore, TransformerConfig};
use groklab::tasks::Operation;
use groklab::train::Precision;
use serde_json::Value;
use std::path::PathBuf;

fn golden() -> Option<(PathBuf, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/golden");
    if !dir.exists() {
        eprintln!("SKIPPED: {} is absent (fixtures live beside the repo)", dir.display());
        return None;
    }
    let json = std::fs::read_to_string(dir.join("nanda_f32loss_final.json")).unwrap();
    Some((
        dir.join("nanda_f32loss_final.safetensors"),
        serde_json::from_str(&json).unwrap(),
    ))
}

fn measure(path: &PathBuf, precision: Precision) -> (Measures, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap();
    let cfg = TransformerConfig::infer(&read_safetensors(path, &bytes).unwrap(), Activation::Relu)
        .unwrap();
    let store = ParamStore::from_safetensors(path, &cfg).unwrap();
    let analyzer = Analyzer::new(&cfg, Operation::Add, 113, None, precision).unwrap();
    let keys = analyzer.key_freqs(&store, &KeyFreqRule::NeuronArgmax);
    (analyzer.measure(&store, 0, &keys), keys)
}

/// `ours` equals `golden` to 4 significant digits (relative 5e-4), or to `abs` where the fixture
/// rounds to a fixed number of decimals.
fn check(name: &str, ours: f64, golden: &Value, abs: f64) {
    let g = golden.as_f64().unwrap_or_else(|| panic!("{name}: not a number"));
    let tol = (5e-4 * g.abs()).max(abs);
    assert!(
        (ours - g).abs() <= tol,
        "{name}: ours {ours} vs golden {g} (tolerance {tol})"
    );
}

fn reproduces_every_golden_value(precision: Precision) {
    let Some((path, json)) = golden() else { return };
    let e = &json["expected"];
    let (m, keys) = measure(&path, precision);

    let want_keys: Vec<usize> = serde_json::from_value(e["key_freqs_neuron_argmax"].clone()).unwrap();
    assert_eq!(keys, want_keys);
    check("loss_all", m.loss_all, &e["loss_all"], 0.0);
    check("restricted_loss_all", m.restricted_loss_all.unwrap(), &e["restricted_loss_all"], 0.0);
    check("excluded_loss_all", m.excluded_loss_all.unwrap(), &e["excluded_loss_all"], 0.0);
    for (k, v) in e["excluded_loss_all_per_freq"].as_object().unwrap() {
        let k: usize = k.parse().unwrap();
        check("excluded_loss_all_per_freq", m.excluded_loss_all_per_freq[&k], v, 0.0);
    }

    let clusters = m.clusters.as_ref().unwrap();
    let clustered: usize = clusters.sizes.values().sum();
    assert_eq!(clustered as u64, e["neurons_fve_at_least_0.85"].as_u64().unwrap());
    for (k, v) in e["neuron_clusters_fve_at_least_0.85"].as_object().unwrap() {
        let ours = match k.as_str() {
            "none" => clusters.none,
            k => clusters.sizes.get(&k.parse().unwrap()).copied().unwrap_or(0),
        };
        assert_eq!(ours as u64, v.as_u64().unwrap(), "cluster {k}");
    }

    // Top-n frequencies by norm, in order, with their norms.
    let top = |norms: &[f64], n: usize| {
        let mut idx: Vec<usize> = (1..norms.len()).collect();
        idx.sort_by(|&a, &b| norms[b].total_cmp(&norms[a]));
        idx.truncate(n);
        idx
    };
    for (field, norms) in [
        ("W_E_fourier_norm_per_freq_top5", &m.embed_freq_norms),
        ("W_L_fourier_norm_per_freq_top4", m.w_l_freq_norms.as_ref().unwrap()),
    ] {
        let want = e[field].as_array().unwrap();
        let ours = top(norms, want.len());
        for (k, pair) in ours.iter().zip(want) {
            assert_eq!(*k as u64, pair[0].as_u64().unwrap(), "{field}");
            check(field, norms[*k], &pair[1], 0.0);
        }
    }
    check("gini_W_E", m.gini_w_e, &e["gini_W_E_113_components"], 0.0);
    check("gini_W_L", m.gini_w_l.unwrap(), &e["gini_W_L_113_components"], 0.0);
    check(
        "key_direction_fve",
        m.key_direction_fve.unwrap(),
        &e["fraction_of_centred_logit_variance_in_key_directions"],
        0.0,
    );
    check("sum_squared_weights_total", m.sum_sq_weights, &e["sum_squared_weights_total"], 0.0);
    for (name, v) in e["sum_squared_weights"].as_object().unwrap() {
        check(name, m.sum_sq[name], v, 0.005); // fixture rounds to 2 decimals
    }
    let att = e["mean_attention_from_last_position_per_head"].as_array().unwrap();
    for (h, row) in att.iter().enumerate() {
        for (pos, v) in row.as_array().unwrap().iter().enumerate() {
            check("mean_attention", m.mean_attention[h][pos], v, 5e-5); // 4 decimals
        }
    }
}

#[test]
fn published_checkpoint_measures_f64() {
    reproduces_every_golden_value(Precision::F64);
}

#[test]
fn published_checkpoint_measures_f32_forward() {
    reproduces_every_golden_value(Precision::F32);
}
