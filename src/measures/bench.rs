//! Benchmark of `analyze` over many checkpoints (`groklab bench --all`).

use super::run::analyze_run;
use super::snapshot::KeyFreqRule;
use crate::error::{GrokError, Result};
use crate::models::ParamStore;
use crate::rundir::{atomic_write, model_path};
use crate::train::RunConfig;
use std::collections::HashMap;

/// Seconds `analyze` takes over `checkpoints` checkpoints of the `nanda2023` model (randomly
/// initialised, distinct seeds; key frequencies fixed to five, as a grokked run has), written to
/// a temporary run directory that is removed afterwards.
///
/// # Errors
/// I/O errors in the temporary directory.
pub fn bench_analyze(checkpoints: usize) -> Result<f64> {
    let cfg = RunConfig::build("nanda2023", None, &[])?;
    let dir = std::env::temp_dir().join(format!("groklab-bench-analyze-{}", std::process::id()));
    let ckpts = model_path(&dir, 0);
    let ckpts = ckpts
        .parent()
        .expect("checkpoint files live in a directory");
    std::fs::create_dir_all(ckpts).map_err(|e| GrokError::io(ckpts, e))?;
    crate::rundir::RunDir::new(&dir).write_config(&cfg)?;
    let model = cfg.transformer().expect("nanda2023 is a transformer");
    for i in 0..checkpoints {
        let bytes = ParamStore::init(&model, i as u64).to_safetensors(
            safetensors::Dtype::F32,
            &model.tl_buffers(),
            HashMap::new(),
        );
        atomic_write(&model_path(&dir, 100 * i as u64), &bytes)?;
    }
    let result = analyze_run(&dir, &KeyFreqRule::Fixed(vec![1, 7, 15, 34, 54]));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(result?.1.seconds)
}
