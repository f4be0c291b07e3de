//! The MLP through the CLI: a tiny `mlp_modadd` run trains, resumes exactly, and `analyze`
//! writes its Fourier picture.

mod common;

use common::{assert_success, groklab, lines_without_wall_time, resume_to};
use std::path::Path;

/// A tiny `mlp_modadd` run (p = 11, hidden [24, 16]) into `out`, with further `--set` values.
fn train_mlp(out: &Path, sets: &[&str]) -> std::process::Output {
    let mut args = vec![
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
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    groklab(&args).output().unwrap()
}

fn train(out: &Path, steps: &str) -> std::process::Output {
    let steps = format!("train.steps={steps}");
    train_mlp(
        out,
        &[
            "train.checkpoint_every=40",
            "train.dense_checkpoints_until=0",
            &steps,
        ],
    )
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

/// A ramped LR jump through the CLI, with AdamW's decay following the jump (`scaled`, PyTorch)
/// or not (`fixed`): the logged lr climbs linearly over the ramp; the two runs agree bit for bit
/// until the jump's first changed update and differ after it; without weight decay they agree
/// throughout (the option touches only the decay). An optimiser without decoupled decay refuses
/// `fixed` with a one-line error.
#[test]
fn ramped_jump_and_fixed_decay() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut sets = vec![
            "train.steps=40",
            "train.log_every=5",
            "train.lr_jumps=[[20, 11.0, 10]]",
        ];
        sets.extend(extra);
        let o = train_mlp(&out, &sets);
        assert_success(&o);
        lines_without_wall_time(&out)
    };
    // the lr as logged (the lines above have their wall time cut out of the text)
    let lr = |line: &str| -> f64 {
        let at = line.find("\"lr\":").unwrap() + 5;
        let end = line[at..].find([',', '}']).unwrap() + at;
        line[at..end].parse().unwrap()
    };
    let scaled = run("scaled", &[]);
    let fixed = run("fixed", &["train.jump_decay=fixed"]);
    // rows every 5 steps: 20 is the ramp's first update (×1), 25 half-way (×6), 30 on (×11)
    for (row, factor) in [(4, 1.0), (5, 6.0), (6, 11.0), (8, 11.0)] {
        assert!(
            (lr(&scaled[row]) - 3e-3 * factor).abs() < 1e-15,
            "{}",
            scaled[row]
        );
        assert_eq!(lr(&fixed[row]), lr(&scaled[row]));
    }
    // the row of step 20 holds the weights before update 20, the last at ×1; from update 21 on
    // the lr is larger and the two decays part
    assert_eq!(scaled[..=4], fixed[..=4]);
    assert!((5..scaled.len()).all(|i| scaled[i] != fixed[i]));
    let no_wd = ["train.weight_decay=0"];
    assert_eq!(
        run("scaled_wd0", &no_wd),
        run(
            "fixed_wd0",
            &["train.weight_decay=0", "train.jump_decay=fixed"]
        )
    );
    let out = train_mlp(
        &dir.path().join("sgd"),
        &["train.optimizer=sgd", "train.jump_decay=fixed"],
    );
    common::assert_error(&out, &["train.jump_decay", "adamw"]);
}
