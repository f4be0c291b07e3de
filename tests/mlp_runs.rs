//! The MLP through the CLI: a tiny `mlp_modadd` run trains, resumes exactly, and `analyze`
//! writes its Fourier picture.

mod common;

use common::{assert_success, groklab, lines_without_wall_time, resume_to};
use std::path::Path;

fn train(out: &Path, steps: &str) -> std::process::Output {
    groklab(&[
        "train",
        "--no-plots",
        "--preset",
        "mlp_modadd",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "task.p=11",
        "--set",
        "model.d_hidden=[24, 16]",
        "--set",
        "train.checkpoint_every=40",
        "--set",
        "train.dense_checkpoints_until=0",
        "--set",
        &format!("train.steps={steps}"),
    ])
    .output()
    .unwrap()
}

#[test]
fn mlp_trains_resumes_and_is_analyzed() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let out = train(&whole, "120");
    assert_success(&out);
    // the checkpoint holds the MLP's tensors, no transformer buffers
    let ckpt = std::fs::read(whole.join("checkpoints/step_000120.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&ckpt).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "embed.W_E",
            "embed.b_E",
            "mlp.1.W",
            "mlp.1.b",
            "unembed.W_U",
            "unembed.b_U"
        ]
    );
    assert_eq!(st.tensor("embed.W_E").unwrap().shape(), &[12, 24]);

    let part = dir.path().join("part");
    assert!(train(&part, "60").status.success());
    resume_to(&part, 120);
    assert_eq!(
        lines_without_wall_time(&part),
        lines_without_wall_time(&whole)
    );

    let out = groklab(&["analyze", whole.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out);
    let a: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(whole.join("analysis.json")).unwrap())
            .unwrap();
    assert_eq!(a["step"], 120);
    let in_clusters: u64 = (a["clusters"]["sizes"].as_object().unwrap().values())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(in_clusters + a["clusters"]["none"].as_u64().unwrap(), 24);
    assert!(a["key_freqs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| (1..=5).contains(&k.as_u64().unwrap())));
    assert_eq!(a["embed_freq_norms"].as_array().unwrap().len(), 6);
}
