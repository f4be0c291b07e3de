//! Run directories written before the task/model seam (issue 25) keep working: each family's
//! `config.toml` as groklab wrote it then (checked in under `tests/data/configs_before_seam/`,
//! shrunk to a few steps) trains from `--config` alone, writes back the same config, analyzes,
//! and resumes to metrics equal to an uninterrupted run's.

mod common;
use common::{assert_success, groklab, lines_without_wall_time, resume_to};
use std::path::{Path, PathBuf};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/configs_before_seam");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// `[key, value]` leaves of a TOML text, in key order.
fn leaves(text: &str) -> Vec<(String, String)> {
    let table: toml::Table = toml::from_str(text).unwrap();
    let mut out = Vec::new();
    groklab::train::flatten_table("", &toml::Value::Table(table), &mut out);
    out.sort();
    out
}

fn train_with(config: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![
        "train",
        "--no-plots",
        "--force",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    assert_success(&groklab(&args).output().unwrap());
}

#[test]
fn every_familys_old_config_trains_analyzes_and_resumes() {
    let files = fixtures();
    // one of each family: binary operation × {transformer, MLP}, sequence tasks × {finite,
    // infinite, attention-only, MLP}, in-context regression
    assert_eq!(files.len(), 8, "{files:?}");
    let tmp = tempfile::tempdir().unwrap();
    for file in files {
        let name = file.file_stem().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        // a complete config replaces the default preset (`quick`), whatever its family
        let run = tmp.path().join(name);
        train_with(&file, &run, &[]);
        let written = std::fs::read_to_string(run.join("config.toml")).unwrap();
        assert_eq!(leaves(&written), leaves(&text), "{name}: config changed");

        let out = groklab(&["analyze", run.to_str().unwrap()])
            .output()
            .unwrap();
        assert_success(&out);
        assert!(
            run.join("analysis.json").exists(),
            "{name}: analyze wrote no analysis.json"
        );

        // the fixtures train 20 steps with checkpoints every 10: resume to 30
        resume_to(&run, 30);
        let straight = tmp.path().join(format!("{name}_straight"));
        train_with(&file, &straight, &["--set", "train.steps=30"]);
        assert_eq!(
            lines_without_wall_time(&run),
            lines_without_wall_time(&straight),
            "{name}: resumed metrics differ from an uninterrupted run's"
        );
    }
}
