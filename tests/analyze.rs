//! `groklab analyze` and `groklab report` end to end: measures of a tiny run agree with the
//! training metrics, one foreign checkpoint is measured, bad input gets one-line errors, and the
//! HTML report renders and moves its slider in a real headless browser.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{assert_error, self_test, SelfTest, TINY};

fn groklab(args: &[&str]) -> Output {
    common::groklab(args).output().unwrap()
}

fn ok(out: Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A 400-step run of the paper's model family on (a + b) mod 23, checkpoints every 50 steps,
/// with p outputs (the measures score the p residue classes; a `=` output would make the
/// training loss a different quantity).
fn tiny_run(dir: &Path) -> PathBuf {
    tiny_run_with(dir, &[])
}

/// [`tiny_run`] with more `--set` arguments.
fn tiny_run_with(dir: &Path, extra: &[&str]) -> PathBuf {
    let run = dir.join("run");
    let mut args = vec!["train", "--no-plots", "--out", run.to_str().unwrap()];
    args.extend(TINY);
    args.extend([
        "--set",
        "model.d_vocab_out=p",
        "--set",
        "train.steps=400",
        "--set",
        "train.log_every=50",
    ]);
    args.extend(extra);
    ok(groklab(&args));
    run
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn run_measures_agree_with_training_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    ok(groklab(&["analyze", run.to_str().unwrap()]));

    let measures = json_lines(&run.join("measures.jsonl"));
    let metrics = json_lines(&run.join("metrics.jsonl"));
    assert_eq!(measures.len(), 9, "checkpoints 0, 50, ..., 400");
    for m in &measures {
        let logged = metrics.iter().find(|r| r["step"] == m["step"]).unwrap();
        // Training evaluates with the burn graph in f32; the measures with the factored f64 pass.
        for (ours, theirs) in [("loss_train", "train_loss"), ("loss_test", "test_loss")] {
            let (a, b) = (m[ours].as_f64().unwrap(), logged[theirs].as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-4 * b.abs(),
                "step {}: {ours} {a} vs {b}",
                m["step"]
            );
        }
        let (a, b) = (
            m["sum_sq_weights"].as_f64().unwrap(),
            logged["sum_sq_weights"].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() <= 1e-5 * b,
            "sum of squared weights {a} vs {b}"
        );
    }
    let analysis: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("analysis.json")).unwrap()).unwrap();
    let keys = analysis["key_freqs"].as_array().unwrap();
    assert!(!keys.is_empty() && keys.iter().all(|k| (1..=11).contains(&k.as_u64().unwrap())));
    assert_eq!(
        measures[0]["key_freqs"], analysis["key_freqs"],
        "final keys reused early"
    );

    let csv = std::fs::read_to_string(run.join("measures.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(header[0], "step");
    assert!(header.contains(&"restricted_loss_test") && header.contains(&"gini_w_e"));
    assert_eq!(csv.lines().count(), 10);
    for plot in [
        "losses",
        "neuron_clusters",
        "embed_fourier_over_training",
        "final_neuron_spectrum",
    ] {
        assert!(
            run.join(format!("plots/measures/{plot}.png")).exists(),
            "{plot}"
        );
    }
}

#[test]
fn one_foreign_checkpoint_as_json() {
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/golden/nanda_f32loss_final.safetensors");
    if !golden.exists() {
        eprintln!("SKIPPED: {} is absent", golden.display());
        return;
    }
    let text = ok(groklab(&[
        "analyze",
        "--checkpoint",
        golden.to_str().unwrap(),
        "--json",
    ]));
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["key_freqs"], serde_json::json!([3, 6, 23, 39]));
    assert!((m["loss_all"].as_f64().unwrap() / 2.888053e-3 - 1.0).abs() < 1e-6);
    // The readable table carries the same numbers.
    let table = ok(groklab(&[
        "analyze",
        "--checkpoint",
        golden.to_str().unwrap(),
    ]));
    assert!(
        table.contains("restricted loss all") && table.contains("3.642938e-3"),
        "{table}"
    );
}

/// A TransformerLens `state_dict` saved with safetensors: f16 weights, 113 outputs, plus the
/// boolean mask and `IGNORE` buffers TransformerLens keeps. Same measures as the original.
#[test]
fn transformer_lens_state_dict_with_buffers_and_p_outputs() {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/golden/nanda_f32loss_final.safetensors");
    if !golden.exists() {
        eprintln!("SKIPPED: {} is absent", golden.display());
        return;
    }
    let bytes = std::fs::read(&golden).unwrap();
    let tensors = groklab::models::read_safetensors(&golden, &bytes).unwrap();
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, (shape, data)) in &tensors {
        let (shape, data) = if name == "unembed.W_U" {
            let cols = shape[1];
            let kept: Vec<f64> = data
                .chunks(cols)
                .flat_map(|r| r[..cols - 1].to_vec())
                .collect();
            (vec![shape[0], cols - 1], kept)
        } else if name == "unembed.b_U" {
            (vec![shape[0] - 1], data[..shape[0] - 1].to_vec())
        } else {
            (shape.clone(), data.clone())
        };
        let raw = data
            .iter()
            .flat_map(|&x| half::f16::from_f64(x).to_le_bytes())
            .collect();
        owned.push((name.clone(), Dtype::F16, shape, raw));
    }
    owned.push((
        "blocks.0.attn.mask".into(),
        Dtype::BOOL,
        vec![3, 3],
        vec![1, 0, 0, 1, 1, 0, 1, 1, 1],
    ));
    owned.push((
        "blocks.0.attn.IGNORE".into(),
        Dtype::F32,
        vec![],
        (-1e5f32).to_le_bytes().to_vec(),
    ));
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tl_state_dict.safetensors");
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();

    let text = ok(groklab(&[
        "analyze",
        "--checkpoint",
        path.to_str().unwrap(),
        "--p",
        "113",
        "--json",
    ]));
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["key_freqs"], serde_json::json!([3, 6, 23, 39]));
    // f16 rounding of the weights moves the loss, but not the circuit.
    let loss = m["loss_all"].as_f64().unwrap();
    assert!((loss / 2.888053e-3 - 1.0).abs() < 0.05, "{loss}");
}

#[test]
fn bad_analyze_input_gets_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.safetensors");
    assert_error(
        &groklab(&["analyze", "--checkpoint", missing.to_str().unwrap()]),
        &["missing.safetensors"],
    );
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    assert_error(
        &groklab(&["analyze", "--checkpoint", garbage.to_str().unwrap()]),
        &["garbage.safetensors", "not a valid safetensors file"],
    );
    assert_error(
        &groklab(&[
            "analyze",
            "--checkpoint",
            garbage.to_str().unwrap(),
            "--split",
            "python",
        ]),
        &["--split", "python:SEED or native:SEED"],
    );
    assert_error(
        &groklab(&[
            "analyze",
            dir.path().to_str().unwrap(),
            "--key-freq-rule",
            "fourier",
        ]),
        &["--key-freq-rule", "consensus, neuron-argmax, embed-norm"],
    );
    let run = tiny_run(dir.path());
    assert_error(
        &groklab(&["analyze", run.to_str().unwrap(), "--key-freqs", "3,12"]),
        &["key_freqs", "12", "1..=11"],
    );
    assert!(
        !run.join("measures.jsonl").exists(),
        "a rejected analysis wrote measures"
    );
    assert_error(
        &groklab(&["report", dir.path().to_str().unwrap()]),
        &["config.toml"],
    );
}

#[test]
fn report_renders_and_its_slider_moves_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    ok(groklab(&["report", run.to_str().unwrap()]));
    let page = run.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: no external script, style sheet or image.
    for external in [
        "<script src",
        "<link",
        "src=\"http",
        "href=\"http",
        "@import",
    ] {
        assert!(!html.contains(external), "report references `{external}`");
    }

    // The page's `#selftest` hook moves the slider through three checkpoints by dispatching
    // input events, checks every view redrew, and records the result on <body>.
    let Some(SelfTest { dom, body, log }) = self_test(&page, dir.path()) else {
        return;
    };
    assert!(
        body.contains("data-selftest=\"pass\""),
        "self-test: {body}\n{log}"
    );
    // six curves, and the clock/pizza measures of an addition run
    assert!(body.contains("data-curve-svgs=\"7\""), "{body}");
    assert!(
        body.contains("data-images=\"6/6\""),
        "images not decoded: {body}"
    );
    // The explorer drew its views from the checkpoint data.
    assert!(dom.contains("id=\"view-embed\"") && dom.matches("class=\"bar").count() > 20);
}

/// `groklab saliency` on the tiny run: one row per checkpoint; with nothing ablated the loss is
/// the measures' train loss; the full-batch key share lies in [0, 1]; ablating k random neurons
/// changes nothing at k = 0 and the ks double up to d_mlp/2; the plots exist and the report
/// gains its section.
#[test]
fn saliency_rows_agree_with_the_measures() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run_with(dir.path(), &["--set", "train.keep_optim_state=true"]);
    ok(groklab(&["analyze", run.to_str().unwrap()]));
    let out = ok(groklab(&[
        "saliency",
        run.to_str().unwrap(),
        "--threads",
        "2",
    ]));
    assert!(out.contains("skewness"), "{out}");
    let rows = json_lines(&run.join("saliency.jsonl"));
    let measures = json_lines(&run.join("measures.jsonl"));
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("split.json")).unwrap()).unwrap();
    let n_train = split["train"].as_array().unwrap().len();
    assert_eq!(rows.len(), measures.len());
    for (r, m) in rows.iter().zip(&measures) {
        assert_eq!(r["step"], m["step"]);
        let ablation = r["ablation"].as_array().unwrap();
        let ks: Vec<u64> = ablation.iter().map(|a| a["k"].as_u64().unwrap()).collect();
        assert_eq!(ks, vec![0, 1, 2, 4, 8, 16, 32], "d_mlp = 64");
        let none = &ablation[0];
        let train_loss = m["loss_train"].as_f64().unwrap();
        for side in ["top", "random", "top_abs"] {
            let got = none[side]["train_loss"].as_f64().unwrap();
            assert!(
                (got - train_loss).abs() <= 1e-9 * train_loss.max(1.0),
                "{got} vs {train_loss}"
            );
        }
        // nothing ablated: every random draw is the model itself (no spread), and the held-out
        // scores' test side is the test loss
        assert!(none["random_sd"]["train_loss"].as_f64().unwrap() <= 1e-12 * train_loss.max(1.0));
        let test_loss = m["loss_test"].as_f64().unwrap();
        for side in ["top_heldout", "random_heldout"] {
            let got = none[side]["test_loss"].as_f64().unwrap();
            assert!((got - test_loss).abs() <= 1e-9 * test_loss.max(1.0));
        }
        // half the training inputs rank, the other half score
        assert_eq!(
            r["heldout_rank_inputs"].as_u64().unwrap(),
            (n_train as u64).div_ceil(2)
        );
        // 20 random 32-sets of 64 neurons do not all hurt alike
        let half = &ablation[6];
        assert!(half["random_sd"]["train_loss"].as_f64().unwrap() > 0.0);
        assert!((r["medians_abs"].as_array().unwrap().iter()).all(|x| x.as_f64().unwrap() >= 0.0));
        // every weight's share, of the weights and of Adam's last update, is a fraction; the
        // kept optimiser states give an update at every checkpoint after step 0
        for key in ["weights", "adam_update"] {
            if key == "adam_update" && r["step"] == 0 {
                assert!(r.get(key).is_none(), "no update at step 0");
                continue;
            }
            let shares = r[key]["share"].as_object().unwrap();
            assert_eq!(shares.len(), 5, "{key}");
            assert!(shares
                .values()
                .all(|x| (0.0..=1.0).contains(&x.as_f64().unwrap())));
        }
        assert_eq!(r["medians"].as_array().unwrap().len(), 64);
        // heads: 4 medians, k = 0, 1, 2, and k = 0 is the model itself
        let heads = &r["heads"];
        assert_eq!(heads["medians"].as_array().unwrap().len(), 4);
        let head_ks: Vec<u64> = (heads["ablation"].as_array().unwrap().iter())
            .map(|a| a["k"].as_u64().unwrap())
            .collect();
        assert_eq!(head_ks, vec![0, 1, 2]);
        let got = heads["ablation"][0]["top"]["train_loss"].as_f64().unwrap();
        assert!((got - train_loss).abs() <= 1e-9 * train_loss.max(1.0));
        let share = r["key_share"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&share), "{share}");
    }
    for chart in [
        "median_hist",
        "skewness",
        "ablation_train_loss",
        "grad_share",
        "example_share",
        "head_medians",
        "head_ablation_train_loss",
        "ablation_controls",
        "share_grad_weights_adam",
    ] {
        assert!(
            run.join(format!("plots/saliency/{chart}.png")).exists(),
            "{chart}"
        );
    }
    ok(groklab(&["report", run.to_str().unwrap()]));
    let page = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(page.contains("id=\"saliency\""));
    // five of eleven frequencies key: no warning; every one key (as the consensus rule finds on
    // a memorising model, where every share is then near 1): a warning
    let all: Vec<String> = (1..=11).map(|k| k.to_string()).collect();
    for (n_key, warned) in [(5, false), (11, true)] {
        let keys = all[..n_key].join(",");
        ok(groklab(&[
            "analyze",
            run.to_str().unwrap(),
            "--key-freqs",
            &keys,
        ]));
        let out = groklab(&["saliency", run.to_str().unwrap(), "--every", "100"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let warning = format!("warning: {n_key} of 11 frequencies are key");
        assert_eq!(err.contains(&warning), warned, "{err}");
    }
}
