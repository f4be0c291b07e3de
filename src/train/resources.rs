//! What a run will need, estimated from its resolved config before anything is allocated:
//! parameters (with their gradients, optimiser moments and the copies the loop keeps), the
//! dataset, and one step's activations. A config above the memory limit, or asking for more
//! threads than the machine has, is refused with a one-line error instead of aborting in an
//! allocation (or being killed by the kernel) minutes later.
//!
//! The estimate is deliberately rough (within a small factor): its job is to tell 10 MB from
//! 10 TB, not to budget a run.

use crate::config::RunConfig;
use crate::error::{GrokError, Result};

/// Limits a run is checked against ([`check`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Bytes of memory a command may plan to use (`--mem-limit`, GiB on the command line).
    pub mem_bytes: f64,
    /// Allow `train.threads` above the machine's cores (`--oversubscribe`).
    pub oversubscribe: bool,
}

impl Default for Limits {
    /// The machine's physical memory ([`physical_memory`]); threads bounded by the cores.
    fn default() -> Self {
        Self {
            mem_bytes: physical_memory(),
            oversubscribe: false,
        }
    }
}

/// Physical memory in bytes (`MemTotal` of `/proc/meminfo`; 16 GiB where unreadable).
pub fn physical_memory() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024.0)
        })
        .unwrap_or(16.0 * GIB)
}

/// Logical CPUs of this machine (1 where unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

const GIB: f64 = (1u64 << 30) as f64;

/// A run's estimated memory, in bytes, by part.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// Trainable and frozen parameters (count).
    pub params: f64,
    /// Parameters × the f64 copies the loop keeps (weights, gradient, two Adam moments, the
    /// initial weights, a step's working copy), in bytes.
    pub param_bytes: f64,
    /// The dataset (tokens, labels, split indices), in bytes.
    pub data_bytes: f64,
    /// One step's activations, forward and backward, in bytes.
    pub activation_bytes: f64,
}

impl Estimate {
    /// Bytes in all.
    pub fn total(&self) -> f64 {
        self.param_bytes + self.data_bytes + self.activation_bytes
    }
}

/// `bytes` as `12.3 GiB` / `45.6 MiB`.
pub fn human(bytes: f64) -> String {
    if bytes >= 0.1 * GIB {
        format!("{:.1} GiB", bytes / GIB)
    } else {
        format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
    }
}

/// The estimate of `cfg` (f64 arithmetic throughout: no overflow for any config that
/// validates).
pub fn estimate(cfg: &RunConfig) -> Estimate {
    let (data_rows, step_rows, row_floats) = cfg.task.data_estimate(cfg.train.batch_size);
    let n_ctx = cfg.task.spec().n_ctx;
    // parameters, and floats of activation per token (forward; the backward about doubles it)
    let (params, per_token) = cfg.model_spec().memory_estimate(n_ctx);
    Estimate {
        params,
        param_bytes: 8.0 * 6.0 * params,
        data_bytes: 8.0 * data_rows * row_floats,
        activation_bytes: 8.0 * 2.0 * step_rows * n_ctx as f64 * per_token,
    }
}

/// Refuses `cfg` trained `runs` times side by side when its estimate exceeds `limits.mem_bytes`,
/// or its `train.threads` exceeds the machine's cores without `limits.oversubscribe`.
///
/// # Errors
/// [`GrokError::TooLarge`] with the estimate's parts; [`GrokError::InvalidValue`] naming
/// `train.threads` and the allowed range.
pub fn check(cfg: &RunConfig, runs: usize, limits: &Limits) -> Result<Estimate> {
    let cores = cores();
    if cfg.train.threads > cores && !limits.oversubscribe {
        return Err(GrokError::invalid(
            "train.threads",
            cfg.train.threads,
            format!("1..={cores}, this machine's cores (pass --oversubscribe to run more)"),
        ));
    }
    let e = estimate(cfg);
    let n = runs.max(1) as f64;
    let need = n * e.total();
    if need.is_nan() || need > limits.mem_bytes {
        let each = if runs > 1 {
            format!("{runs} runs × ")
        } else {
            String::new()
        };
        return Err(GrokError::TooLarge {
            need: human(need),
            detail: format!(
                "{each}{:.3e} parameters: {}, dataset {}, activations {}",
                e.params,
                human(e.param_bytes),
                human(e.data_bytes),
                human(e.activation_bytes)
            ),
            limit: human(limits.mem_bytes),
        });
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(sets: &[&str]) -> RunConfig {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        RunConfig::build("nanda2023", None, &sets).unwrap()
    }

    #[test]
    fn the_nanda_model_counts_its_parameters_and_fits() {
        // Nanda et al. 2023: d_vocab 114, d_model 128, 4 heads of 32, d_mlp 512, n_ctx 3,
        // d_vocab_out 113: 226,816 weights (TransformerLens' count, biases excluded), plus
        // biases and LayerNorm-free extras here
        let e = estimate(&cfg(&[]));
        assert!((226_816.0..240_000.0).contains(&e.params), "{}", e.params);
        // an upper estimate: `bench --all` measures a peak of a few hundred MiB
        assert!(e.total() < 2.0 * GIB, "{}", human(e.total()));
        assert!(check(&cfg(&[]), 1, &Limits::default()).is_ok());
    }

    #[test]
    fn every_preset_fits_in_the_ci_machine() {
        for (name, _) in crate::train::PRESETS {
            let e = estimate(&RunConfig::build(name, None, &[]).unwrap());
            assert!(e.total() < 8.0 * GIB, "{name}: {}", human(e.total()));
        }
    }

    #[test]
    fn huge_configs_are_refused_before_allocation() {
        let limits = Limits {
            mem_bytes: 64.0 * GIB,
            oversubscribe: false,
        };
        for set in [
            "task.p=99991",
            "model.d_model=100000000",
            "model.n_layers=1000000",
        ] {
            let err = check(&cfg(&[set]), 1, &limits).unwrap_err().to_string();
            assert!(err.contains("--mem-limit"), "{set}: {err}");
        }
        let err = check(&cfg(&[]), 100_000, &limits).unwrap_err().to_string();
        assert!(err.contains("100000 runs"), "{err}");
        let threads = format!("train.threads={}", cores() + 1);
        let err = check(&cfg(&[&threads]), 1, &limits)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("train.threads") && err.contains("--oversubscribe"),
            "{err}"
        );
        let forced = Limits {
            oversubscribe: true,
            ..limits
        };
        assert!(check(&cfg(&[&threads]), 1, &forced).is_ok());
    }
}
