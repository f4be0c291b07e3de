//! Slurm for real: a single-node cluster on localhost (`scripts/slurm_localhost.sh`), the script
//! `groklab sweep slurm` writes submitted with `sbatch --wait`, and every run of the array
//! finished and summarised. Skipped with a message where Slurm is not installed, unless
//! `GROKLAB_REQUIRE_SLURM` is set (`.ci/run` installs Debian's slurm-wlm and sets it).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

mod common;
use common::groklab;

fn have(cmd: &str) -> bool {
    Command::new("which")
        .arg(cmd)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn slurm_array_runs_every_line_of_the_sweep() {
    if !have("sbatch") {
        assert!(
            std::env::var("GROKLAB_REQUIRE_SLURM").is_err(),
            "GROKLAB_REQUIRE_SLURM is set but sbatch is not installed"
        );
        eprintln!("SKIPPED: no sbatch on PATH (apt-get install slurm-wlm munge; .ci/run does)");
        return;
    }
    let start = Instant::now();
    let up = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm_localhost.sh");
    let out = Command::new("bash").arg(&up).output().unwrap();
    assert!(
        out.status.success(),
        "cluster: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("sweep.toml");
    let grid = "\"task.frac_train\" = [0.3, 0.8]\n\"train.weight_decay\" = [0.0, 1.0]";
    std::fs::write(&sweep, common::tiny_sweep(100, grid)).unwrap();
    let manifest = groklab(&["sweep", "expand", sweep.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(manifest.status.success());
    let m = dir.path().join("manifest.jsonl");
    std::fs::write(&m, &manifest.stdout).unwrap();
    let runs = dir.path().join("runs");
    let script = groklab(&[
        "sweep",
        "slurm",
        m.to_str().unwrap(),
        "--out",
        runs.to_str().unwrap(),
        "--cpus",
        "1",
        "--time",
        "00:10:00",
    ])
    .output()
    .unwrap();
    assert!(
        script.status.success(),
        "{}",
        String::from_utf8_lossy(&script.stderr)
    );
    let s = dir.path().join("sweep.sbatch");
    std::fs::write(&s, &script.stdout).unwrap();
    std::fs::create_dir_all(&runs).unwrap();
    let submitted = Command::new("sbatch")
        .args(["--wait", "--chdir"])
        .arg(dir.path())
        .arg(&s)
        .output()
        .unwrap();
    let logs = || {
        std::fs::read_dir(&runs)
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let p = e.ok()?.path();
                p.extension()
                    .is_some_and(|x| x == "out")
                    .then(|| std::fs::read_to_string(&p).unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        submitted.status.success(),
        "sbatch: {}{}\nlogs:\n{}",
        String::from_utf8_lossy(&submitted.stdout),
        String::from_utf8_lossy(&submitted.stderr),
        logs()
    );
    let csv = groklab(&["sweep", "collect", runs.to_str().unwrap()])
        .output()
        .unwrap();
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert_eq!(csv.lines().count(), 5, "{csv}\nlogs:\n{}", logs());
    let n_logs = logs().matches(" done step 100 ").count();
    assert_eq!(n_logs, 4, "one array task per run:\n{}", logs());
    eprintln!(
        "slurm integration: 4 array tasks in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}
