//! Handing a sweep to a scheduler: `sweep slurm` writes an `sbatch --array` script whose every
//! task runs `groklab sweep run MANIFEST --out RUNS` and picks its line from
//! `SLURM_ARRAY_TASK_ID`. No code of ours runs the cluster; the runs' idempotency makes
//! resubmitting a partly finished array safe.

use std::path::Path;

/// Options of the generated script.
#[derive(Clone, Debug)]
pub struct SlurmOptions {
    /// `--job-name`.
    pub job_name: String,
    /// `--cpus-per-task` (the runs' `train.threads` should match).
    pub cpus: usize,
    /// `--time` limit per task, `HH:MM:SS`.
    pub time: String,
    /// `--partition`, when given.
    pub partition: Option<String>,
    /// At most this many tasks at once (`--array=0-N%K`), when given.
    pub max_parallel: Option<usize>,
}

/// The `sbatch` script for `n_runs` manifest lines: the binary, manifest and run directory as
/// absolute paths; one array task per line; each task's log in `RUNS/slurm-<job>_<task>.out`.
pub fn sbatch_script(
    exe: &Path,
    manifest: &Path,
    runs: &Path,
    n_runs: usize,
    o: &SlurmOptions,
) -> String {
    let q = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let limit = o.max_parallel.map_or(String::new(), |k| format!("%{k}"));
    let partition =
        (o.partition.as_ref()).map_or(String::new(), |p| format!("#SBATCH --partition={p}\n"));
    format!(
        "#!/bin/bash\n\
         # groklab sweep: one array task per manifest line ({n_runs} runs). Resubmitting is safe:\n\
         # finished runs are skipped, stopped ones resume.\n\
         #SBATCH --job-name={name}\n\
         #SBATCH --array=0-{last}{limit}\n\
         #SBATCH --cpus-per-task={cpus}\n\
         #SBATCH --time={time}\n\
         {partition}\
         #SBATCH --output={runs_dir}/slurm-%A_%a.out\n\
         set -euo pipefail\n\
         exec {exe} sweep run {manifest} --out {runs}\n",
        name = o.job_name,
        last = n_runs.saturating_sub(1),
        cpus = o.cpus,
        time = o.time,
        runs_dir = runs.display(),
        exe = q(exe),
        manifest = q(manifest),
        runs = q(runs),
    )
}
