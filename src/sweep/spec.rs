//! A sweep file and its expansion into a manifest: one fully resolved run per line, with a
//! stable id (the SHA-256 of the run's canonical config).
//!
//! ```toml
//! preset = "quick"                      # every run starts from this preset
//! [set]                                 # overrides every run shares
//! "train.steps" = 2000
//! [grid]                                # the cartesian product, keys in sorted order
//! "task.frac_train" = [0.3, 0.5, 0.7]
//! "model.init_seed" = [0, 1]            # seeds are keys like any other
//! [random]                              # per grid point, `samples` seeded draws
//! samples = 4
//! seed = 0
//! [random.keys]
//! "train.lr" = { log_uniform = [1e-4, 1e-2] }
//! "train.weight_decay" = { uniform = [0.0, 2.0] }
//! "task.name" = { choice = ["add", "sub"] }
//! ```

use crate::error::{GrokError, Result};
use crate::train::RunConfig;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The sweeps shipped with groklab, `(name, what it shows, TOML)`.
pub const SWEEP_PRESETS: [(&str, &str, &str); 2] = [
    (
        "phase_diagram_small",
        "Liu et al. 2022's phases on (a+b) mod 59: data fraction × weight decay, 3 × 3 runs of a small transformer (≤ 15 minutes on 2 cores)",
        include_str!("../../sweeps/phase_diagram_small.toml"),
    ),
    (
        "frac_sweep_nanda",
        "Nanda et al. 2023 §5.2 / Power et al. 2022: time to grok (a+b) mod 113 against the training fraction, 0.25–0.95",
        include_str!("../../sweeps/frac_sweep_nanda.toml"),
    ),
];

/// The most runs one sweep file may expand to (a manifest line is a few KB: a million is a few GB).
pub const MAX_RUNS: usize = 1_000_000;

/// One key's distribution in a random sweep.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Draw {
    /// Uniform on `[lo, hi]`.
    Uniform([f64; 2]),
    /// Log-uniform on `[lo, hi]` (both > 0).
    LogUniform([f64; 2]),
    /// One of the values, uniformly.
    Choice(Vec<toml::Value>),
}

/// `[random]`: seeded draws per grid point.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomSection {
    /// Draws per grid point.
    pub samples: usize,
    /// Seed of the draws (ChaCha8).
    #[serde(default)]
    pub seed: u64,
    /// Key → distribution.
    pub keys: BTreeMap<String, Draw>,
}

/// A sweep file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// The preset every run starts from.
    pub preset: String,
    /// Overrides every run shares.
    #[serde(default)]
    pub set: BTreeMap<String, toml::Value>,
    /// Key → values: the cartesian product.
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<toml::Value>>,
    /// Seeded random draws per grid point.
    #[serde(default)]
    pub random: Option<RandomSection>,
}

/// One line of a manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestLine {
    /// First 16 hex digits of the SHA-256 of `config`.
    pub id: String,
    /// The preset the run starts from.
    pub preset: String,
    /// The swept keys' values for this run (the grid's and the random draws').
    pub swept: BTreeMap<String, serde_json::Value>,
    /// The fully resolved config (`config.toml`'s text).
    pub config: String,
}

impl SweepSpec {
    /// Parses a sweep file, or the shipped sweep `name` of [`SWEEP_PRESETS`].
    ///
    /// # Errors
    /// [`GrokError::Config`] naming the malformed key.
    pub fn parse(text: &str) -> Result<Self> {
        let spec: Self = toml::from_str(text)
            .map_err(|e| GrokError::Config(format!("sweep file: {}", e.message())))?;
        if let Some(r) = &spec.random {
            for (k, d) in &r.keys {
                let bad = match d {
                    Draw::Uniform([lo, hi]) => lo.partial_cmp(hi).is_none_or(|o| o.is_gt()),
                    Draw::LogUniform([lo, hi]) => !(*lo > 0.0 && lo <= hi),
                    Draw::Choice(v) => v.is_empty(),
                };
                if bad {
                    return Err(GrokError::invalid(
                        &format!("random.keys.\"{k}\""),
                        format!("{d:?}"),
                        "uniform = [lo, hi] with lo ≤ hi, log_uniform = [lo, hi] with 0 < lo ≤ hi, or choice = [non-empty]",
                    ));
                }
            }
        }
        if let Some((k, _)) = spec.grid.iter().find(|(_, v)| v.is_empty()) {
            return Err(GrokError::invalid(
                &format!("grid.\"{k}\""),
                "[]",
                "a non-empty list of values",
            ));
        }
        Ok(spec)
    }

    /// The shipped sweep `name`.
    ///
    /// # Errors
    /// [`GrokError::Config`] for an unknown name, listing the shipped ones.
    pub fn preset(name: &str) -> Result<Self> {
        let (_, _, text) = (SWEEP_PRESETS.iter())
            .find(|(n, _, _)| *n == name)
            .ok_or_else(|| {
                GrokError::invalid("--preset", name, SWEEP_PRESETS.map(|p| p.0).join("|"))
            })?;
        Self::parse(text)
    }

    /// Every run: the grid's cartesian product (keys sorted, the last varying fastest), each
    /// point with `random.samples` seeded draws (or once). Runs whose configs coincide are
    /// kept once. Deterministic: the same file gives the same lines.
    ///
    /// # Errors
    /// More than [`MAX_RUNS`] runs (checked before any is built); a key or value the preset
    /// rejects (the one-line config error, naming the key).
    pub fn expand(&self) -> Result<Vec<ManifestLine>> {
        let runs = (self.grid.values().map(|v| v.len() as f64)).product::<f64>()
            * self.random.as_ref().map_or(1.0, |r| r.samples as f64);
        if runs > MAX_RUNS as f64 {
            return Err(GrokError::invalid(
                "grid",
                format!("{runs:.3e} runs (the product of the grid's lengths × random.samples)"),
                format!("at most {MAX_RUNS} runs per sweep file; split it into several"),
            ));
        }
        let mut points: Vec<BTreeMap<String, toml::Value>> = vec![BTreeMap::new()];
        for (key, values) in &self.grid {
            points = (points.iter())
                .flat_map(|p| {
                    values.iter().map(move |v| {
                        let mut q = p.clone();
                        q.insert(key.clone(), v.clone());
                        q
                    })
                })
                .collect();
        }
        if let Some(r) = &self.random {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(r.seed);
            points = (points.iter())
                .flat_map(|p| (0..r.samples).map(move |_| p.clone()))
                .collect();
            for p in points.iter_mut() {
                for (key, d) in &r.keys {
                    let v = match d {
                        Draw::Uniform([lo, hi]) => toml::Value::Float(rng.random_range(*lo..=*hi)),
                        Draw::LogUniform([lo, hi]) => {
                            toml::Value::Float(rng.random_range(lo.ln()..=hi.ln()).exp())
                        }
                        Draw::Choice(vs) => vs[rng.random_range(0..vs.len())].clone(),
                    };
                    p.insert(key.clone(), v);
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        let mut lines = Vec::new();
        for p in points {
            let sets: Vec<String> = (self.set.iter().chain(p.iter()))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let config = RunConfig::build(&self.preset, None, &sets)?.to_toml();
            let id = run_id(&config);
            if seen.insert(id.clone()) {
                lines.push(ManifestLine {
                    id,
                    preset: self.preset.clone(),
                    swept: (p.into_iter())
                        .map(|(k, v)| (k, serde_json::to_value(v).expect("TOML values are JSON")))
                        .collect(),
                    config,
                });
            }
        }
        Ok(lines)
    }
}

/// The run id of a canonical config: the first 16 hex digits of its SHA-256.
pub fn run_id(config_toml: &str) -> String {
    let digest = Sha256::digest(config_toml.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Reads a manifest (one JSON [`ManifestLine`] per line; blank lines skipped). Each line's `id`
/// must be [`run_id`] of its `config`: the id becomes a directory name under `sweep run --out`,
/// so one that is not 16 hex digits (`..`, `a/b`, an absolute path) could name a directory
/// outside it.
///
/// # Errors
/// [`GrokError::Io`] when unreadable; [`GrokError::DataFile`] naming the line that does not
/// parse, whose id is not its config's hash, or whose id repeats an earlier line's.
pub fn read_manifest(path: &std::path::Path) -> Result<Vec<ManifestLine>> {
    let text = std::fs::read_to_string(path).map_err(|e| GrokError::io(path, e))?;
    parse_manifest(&text, &path.display().to_string())
}

/// [`read_manifest`] of a manifest's text; `name` labels the errors.
///
/// # Errors
/// As [`read_manifest`].
pub fn parse_manifest(text: &str, name: &str) -> Result<Vec<ManifestLine>> {
    let mut seen = std::collections::HashSet::new();
    (text.lines().enumerate())
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let at = || format!("{name} line {}", i + 1);
            let line: ManifestLine = serde_json::from_str(l)
                .map_err(|e| GrokError::data_file(at(), crate::error::clip(&e.to_string())))?;
            let expected = run_id(&line.config);
            if line.id != expected {
                return Err(GrokError::data_file(
                    at(),
                    format!(
                        "id {:?} is not the run id of its config (expected {expected}: the first 16 hex digits of the config's SHA-256, as `sweep expand` writes)",
                        crate::error::clip(&line.id)
                    ),
                ));
            }
            if !seen.insert(line.id.clone()) {
                return Err(GrokError::data_file(at(), format!("id {} repeats an earlier line", line.id)));
            }
            Ok(line)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
preset = "quick"
[set]
"train.steps" = 20
[grid]
"task.frac_train" = [0.3, 0.5]
"model.init_seed" = [0, 1, 2]
[random]
samples = 2
seed = 7
[random.keys]
"train.lr" = { log_uniform = [1e-4, 1e-2] }
"task.name" = { choice = ["add", "sub"] }
"#;

    /// The same file expands to the same lines (ids included); the product has every
    /// combination once; the ids are the hashes of the resolved configs, which carry the
    /// swept values; draws stay inside their ranges.
    #[test]
    fn expansion_is_deterministic_and_complete() {
        let spec = SweepSpec::parse(SPEC).unwrap();
        let a = spec.expand().unwrap();
        let b = SweepSpec::parse(SPEC).unwrap().expand().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 2 * 3 * 2);
        let ids: std::collections::HashSet<_> = a.iter().map(|l| l.id.clone()).collect();
        assert_eq!(ids.len(), a.len());
        for l in &a {
            assert_eq!(l.id, run_id(&l.config));
            let cfg = RunConfig::from_toml(&l.config).unwrap();
            assert_eq!(cfg.train.steps, 20);
            let lr = l.swept["train.lr"].as_f64().unwrap();
            assert!((1e-4..=1e-2).contains(&lr) && (cfg.train.lr - lr).abs() < 1e-15);
            assert_eq!(
                cfg.model.init_seed(),
                l.swept["model.init_seed"].as_u64().unwrap()
            );
        }
        // grid order: keys sorted (model.init_seed before task.frac_train), the last fastest
        let fr: Vec<f64> = a
            .iter()
            .step_by(2)
            .map(|l| l.swept["task.frac_train"].as_f64().unwrap())
            .collect();
        assert_eq!(fr, [0.3, 0.5, 0.3, 0.5, 0.3, 0.5]);
        // another random seed draws other values
        let other = SweepSpec::parse(&SPEC.replace("seed = 7", "seed = 8"))
            .unwrap()
            .expand()
            .unwrap();
        assert_ne!(other[0].swept["train.lr"], a[0].swept["train.lr"]);
    }

    /// Bad sweeps are one-line errors naming the key.
    #[test]
    fn bad_sweeps_name_the_key() {
        let err = |t: &str| {
            SweepSpec::parse(t)
                .and_then(|s| s.expand())
                .unwrap_err()
                .to_string()
        };
        assert!(err("preset = \"quick\"\n[grid]\n\"train.lrr\" = [1]").contains("train.lrr"));
        assert!(err("preset = \"quick\"\n[grid]\n\"train.lr\" = []").contains("grid.\"train.lr\""));
        let e = err("preset = \"quick\"\n[random]\nsamples = 1\n[random.keys]\n\"train.lr\" = { log_uniform = [0.0, 1.0] }");
        assert!(e.contains("random.keys.\"train.lr\""), "{e}");
        assert!(err("preset = \"nope\"").contains("nope"));
    }
}
