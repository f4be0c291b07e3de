//! `groklab._native`: the engine as a CPython extension module (abi3, CPython ≥ 3.9). The Python
//! package `groklab` (beside this crate) wraps it with DataFrames, NumPy arrays and a progress
//! bar; everything here takes and returns plain Python values (strings, lists, dicts via JSON
//! text), and every error is a Python exception carrying the CLI's one-line message — config
//! errors `ValueError`, others `RuntimeError`, a Rust panic `RuntimeError` too (never a
//! `PanicException`).

use groklab::config::{describe_preset, RunConfig, PRESETS};
use groklab::measures::{KeyFreqRule, DEFAULT_EMBED_THRESHOLD};
use groklab::rundir::{MetricsRow, RunDir, RunLock};
use groklab::train::{self, TrainOptions};
use groklab::GrokError;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

/// The Python exception of a groklab error: bad input (`InvalidValue`, `Config`) is a
/// `ValueError`, anything else a `RuntimeError`; the message is the CLI's.
fn to_py(e: GrokError) -> PyErr {
    match e {
        GrokError::InvalidValue { .. } | GrokError::Config(_) => {
            PyValueError::new_err(e.to_string())
        }
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

/// Runs `f`, turning a groklab error into its Python exception and a panic into a
/// `RuntimeError` (a bug, reported rather than aborting the interpreter).
fn guarded<T>(f: impl FnOnce() -> groklab::Result<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(to_py),
        Err(panic) => {
            let msg = (panic.downcast_ref::<String>().cloned())
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown".into());
            Err(PyRuntimeError::new_err(format!(
                "groklab internal error (a bug; please report it): {msg}"
            )))
        }
    }
}

/// Every embedded preset as `(name, one-line description)`.
#[pyfunction]
fn presets() -> PyResult<Vec<(String, String)>> {
    guarded(|| {
        (PRESETS.iter())
            .map(|(name, _)| Ok((name.to_string(), describe_preset(name)?)))
            .collect()
    })
}

/// The resolved config of `preset` (with the complete or partial config file text `config`, then
/// the `key=value` overrides) as JSON text, or the run directory `resume_dir`'s config with the
/// overrides.
fn resolve(
    preset: &str,
    config: Option<&str>,
    overrides: &[String],
    resume_dir: Option<&str>,
) -> groklab::Result<RunConfig> {
    match resume_dir {
        Some(dir) => RunConfig::build_from_toml(&RunDir::new(dir).config_text()?, overrides),
        None => RunConfig::build(preset, config, overrides),
    }
}

/// The resolved config as JSON text (see `groklab.config`); with `resume_dir`, that run
/// directory's config with the overrides, as a resume would apply them.
#[pyfunction]
#[pyo3(signature = (preset, config=None, overrides=Vec::new(), resume_dir=None))]
fn config_json(
    preset: &str,
    config: Option<&str>,
    overrides: Vec<String>,
    resume_dir: Option<&str>,
) -> PyResult<String> {
    guarded(|| {
        let cfg = resolve(preset, config, &overrides, resume_dir)?;
        Ok(serde_json::to_string(&cfg).expect("a config serialises"))
    })
}

/// Trains (or with `resume`, continues) a run into `out`, the GIL released while it trains.
/// After every step the interpreter's signals are checked: Ctrl-C (or SIGINT) stops the run after
/// checkpointing its weights, then raises `KeyboardInterrupt`; `on_log(row_json)` is called with
/// each logged metrics row (`metrics.jsonl`'s line) and may raise to stop the run the same way.
/// Returns the last metrics row as JSON text.
#[pyfunction]
#[pyo3(signature = (out, preset="quick", config=None, overrides=Vec::new(), resume=false, force=false, plots=true, quiet=true, on_log=None))]
#[allow(clippy::too_many_arguments)] // the keyword arguments of `groklab.train`
fn train_run(
    py: Python<'_>,
    out: PathBuf,
    preset: &str,
    config: Option<&str>,
    overrides: Vec<String>,
    resume: bool,
    force: bool,
    plots: bool,
    quiet: bool,
    on_log: Option<Py<PyAny>>,
) -> PyResult<String> {
    let dir = out.to_string_lossy().to_string();
    let cfg = guarded(|| resolve(preset, config, &overrides, resume.then_some(dir.as_str())))?;
    let opts = TrainOptions {
        out,
        resume,
        force,
        plots: plots.then_some(groklab::report::plot_run as train::PlotFn),
        quiet,
        set: if resume { overrides } else { Vec::new() },
        limits: train::Limits::default(),
    };
    let mut stopped: Option<PyErr> = None;
    let result = py.detach(|| {
        let mut observer = |_step: u64, row: Option<&MetricsRow>| {
            Python::attach(|py| {
                let r = py.check_signals().and_then(|()| match (row, &on_log) {
                    (Some(row), Some(f)) => f.call1(py, (row_json(row),)).map(|_| ()),
                    _ => Ok(()),
                });
                match r {
                    Ok(()) => true,
                    Err(e) => {
                        stopped = Some(e);
                        false
                    }
                }
            })
        };
        guarded(|| train::train_observed(&cfg, &opts, &mut observer))
    });
    let summary = result?;
    if let Some(e) = stopped {
        return Err(e);
    }
    Ok(row_json(&summary.last))
}

/// A metrics row as `metrics.jsonl` writes it.
fn row_json(row: &MetricsRow) -> String {
    serde_json::Value::Object(row.to_json()).to_string()
}

/// One stored tensor: name, safetensors dtype, shape, little-endian bytes.
type StoredTensor<'py> = (String, String, Vec<usize>, Bound<'py, PyBytes>);

/// Every tensor of a checkpoint file as `(name, dtype, shape, little-endian bytes)`, parameters
/// and buffers, exactly as stored.
#[pyfunction]
fn read_checkpoint<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Vec<StoredTensor<'py>>> {
    let bytes = std::fs::read(&path).map_err(|e| to_py(GrokError::io(&path, e)))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
        to_py(GrokError::Checkpoint {
            path: path.clone(),
            reason: e.to_string(),
        })
    })?;
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let t = st.tensor(&name).expect("a listed name");
            let dtype = format!("{:?}", t.dtype());
            Ok((name, dtype, t.shape().to_vec(), PyBytes::new(py, t.data())))
        })
        .collect()
}

/// `groklab analyze RUN_DIR` with the CLI's defaults (`plots`: draw the measures' plots);
/// returns the summary lines it prints. The GIL is released while it measures.
#[pyfunction]
#[pyo3(signature = (run_dir, plots=true))]
fn analyze(py: Python<'_>, run_dir: PathBuf, plots: bool) -> PyResult<Vec<String>> {
    py.detach(|| {
        guarded(|| {
            let _lock = RunLock::acquire(&run_dir, "analyze")?;
            let opts = groklab::report::AnalyzeOptions {
                rule: KeyFreqRule::Consensus(DEFAULT_EMBED_THRESHOLD),
                embed_threshold: DEFAULT_EMBED_THRESHOLD,
                plots,
            };
            groklab::report::analysis_for(&run_dir).analyze(&run_dir, &opts)
        })
    })
}

/// `groklab report RUN_DIR`: writes `report.html` (measuring first where needed) and returns its
/// path.
#[pyfunction]
#[pyo3(signature = (run_dir, reanalyze=false))]
fn report(py: Python<'_>, run_dir: PathBuf, reanalyze: bool) -> PyResult<PathBuf> {
    py.detach(|| {
        guarded(|| {
            let _lock = RunLock::acquire(&run_dir, "report")?;
            groklab::report::analysis_for(&run_dir).report(&run_dir, reanalyze)
        })
    })
}

/// The transformer's shape of a run directory (TransformerLens field names: `n_layers`,
/// `d_model`, `d_head`, `n_heads`, `d_mlp`, `d_vocab`, `d_vocab_out`, `n_ctx`, `act_fn`,
/// `normalization`, `attn_only`, ...) as JSON text; `None` for another model.
#[pyfunction]
fn transformer_config_json(run_dir: PathBuf) -> PyResult<Option<String>> {
    guarded(|| {
        let cfg = RunDir::new(&run_dir).config()?;
        Ok((cfg.transformer()).map(|t| serde_json::to_string(&t).expect("a config serialises")))
    })
}

/// groklab's own forward of the checkpoint at `step` on `tokens` (`[B, n_ctx]` row-major), in
/// f32 (or f64 with `f64`): the logits at every position, `[B, n_ctx, d_vocab_out]` row-major
/// (the model's `unembed.hook_out`, [`groklab::models::Model::hooks`]). The GIL is released.
#[pyfunction]
#[pyo3(signature = (run_dir, step, tokens, n_ctx, f64=false))]
fn forward_logits(
    py: Python<'_>,
    run_dir: PathBuf,
    step: u64,
    tokens: Vec<i64>,
    n_ctx: usize,
    f64: bool,
) -> PyResult<(Vec<usize>, Vec<f64>)> {
    py.detach(|| {
        guarded(|| {
            let cfg = RunDir::new(&run_dir).config()?;
            let model = cfg.model_spec();
            let path = groklab::rundir::model_path(&run_dir, step);
            let store =
                groklab::models::ParamStore::from_safetensors_specs(&path, model.param_specs())?;
            let precision = if f64 {
                groklab::config::Precision::F64
            } else {
                groklab::config::Precision::F32
            };
            let dtype = precision.dtype();
            let hooks = model.hooks(&store, &tokens, n_ctx, dtype)?;
            let (shape, logits) = hooks.get("unembed.hook_out").ok_or_else(|| {
                GrokError::Config(format!("model `{}` has no unembed.hook_out", model.arch()))
            })?;
            Ok((shape.to_vec(), logits.to_vec()))
        })
    })
}

/// The steps of a run directory's checkpoints, ascending.
#[pyfunction]
fn checkpoint_steps(run_dir: PathBuf) -> Vec<u64> {
    groklab::rundir::list_steps(&run_dir)
}

/// The weights file of a run's checkpoint at `step`.
#[pyfunction]
fn checkpoint_path(run_dir: PathBuf, step: u64) -> PathBuf {
    groklab::rundir::model_path(&run_dir, step)
}

/// `groklab saliency RUN_DIR`: integrated-gradients saliency of the neurons and heads of every
/// `every`-th checkpoint (default: about 100 of them), top-k against random-k ablation, the
/// gradient's key-frequency share; writes `saliency.jsonl` and its plots. `baseline`: `zero` or
/// `mean` (the CLI's default); `ig_steps`: interpolation points; `random_draws`: random k-sets
/// per k (at least 2). The GIL is released.
#[pyfunction]
#[pyo3(signature = (run_dir, baseline="mean", ig_steps=20, every=None, random_draws=20))]
fn saliency(
    py: Python<'_>,
    run_dir: PathBuf,
    baseline: &str,
    ig_steps: usize,
    every: Option<usize>,
    random_draws: usize,
) -> PyResult<PathBuf> {
    use groklab::measures::saliency::{SaliencyBaseline, SaliencyOptions};
    let baseline = match baseline {
        "zero" => SaliencyBaseline::Zero,
        "mean" => SaliencyBaseline::Mean,
        other => return Err(to_py(GrokError::invalid("baseline", other, "zero|mean"))),
    };
    py.detach(|| {
        guarded(|| {
            let _lock = RunLock::acquire(&run_dir, "saliency")?;
            let opts = SaliencyOptions {
                baseline,
                steps: ig_steps,
                random_draws,
                ..Default::default()
            };
            let n = groklab::rundir::list_steps(&run_dir).len();
            let every = every.unwrap_or(n.div_ceil(100).max(1));
            let (rows, analysis) =
                groklab::measures::saliency_run::saliency_run(&run_dir, &opts, every)?;
            groklab::report::plot_saliency(&run_dir, &rows, &analysis)?;
            Ok(run_dir.join("saliency.jsonl"))
        })
    })
}

/// The manifest lines (JSON text each) of a sweep file's text `spec`, or of the sweep preset
/// named `preset`.
#[pyfunction]
#[pyo3(signature = (spec=None, preset=None))]
fn sweep_expand(spec: Option<&str>, preset: Option<&str>) -> PyResult<Vec<String>> {
    use groklab::sweep::spec::SweepSpec;
    guarded(|| {
        let s = match (spec, preset) {
            (Some(text), _) => SweepSpec::parse(text)?,
            (None, Some(name)) => SweepSpec::preset(name)?,
            (None, None) => {
                return Err(GrokError::invalid(
                    "spec",
                    "(none)",
                    "a sweep file's text or a sweep preset's name",
                ))
            }
        };
        Ok((s.expand()?.iter())
            .map(|l| serde_json::to_string(l).expect("a line serialises"))
            .collect())
    })
}

/// `groklab sweep run MANIFEST --out OUT` in this process (one run at a time; seeds of one
/// config side by side): returns (trained, already done). The GIL is released.
#[pyfunction]
fn sweep_run(py: Python<'_>, manifest: PathBuf, out: PathBuf) -> PyResult<(usize, usize)> {
    use groklab::sweep::{runner, spec};
    py.detach(|| {
        guarded(|| {
            let lines = spec::read_manifest(&manifest)?;
            let selected = runner::Selection::resolve(None, None)?.lines(lines.len())?;
            runner::run_sweep(&manifest, &lines, &selected, &out, 1)
        })
    })
}

/// `groklab sweep collect RUNS [--by-setting]`: (the CSV text, runs left out unfinished).
#[pyfunction]
#[pyo3(signature = (runs, by_setting = false))]
fn sweep_collect(runs: PathBuf, by_setting: bool) -> PyResult<(String, usize)> {
    use groklab::sweep::collect;
    guarded(|| {
        let (rows, unfinished) = collect::collect(&runs)?;
        let csv = if by_setting {
            collect::by_setting_csv(&rows)
        } else {
            collect::to_csv(&rows)
        };
        Ok((csv, unfinished))
    })
}

/// `groklab llc RUN_DIR`: the local learning coefficient at every `every`-th checkpoint (or at
/// `steps`), with `options` (JSON object: any of `LlcOptions`' fields, devinterp's names, over
/// the CLI's defaults); writes `llc.jsonl`, `llc.csv` and `plots/llc/` and returns the JSONL's
/// path. The GIL is released.
#[pyfunction]
#[pyo3(signature = (run_dir, options="{}", every=None, steps=None))]
fn llc(
    py: Python<'_>,
    run_dir: PathBuf,
    options: &str,
    every: Option<usize>,
    steps: Option<Vec<u64>>,
) -> PyResult<PathBuf> {
    use groklab::measures::llc::LlcOptions;
    py.detach(|| {
        guarded(|| {
            let mut merged = serde_json::to_value(LlcOptions::default()).expect("options serialise");
            let given: serde_json::Map<String, serde_json::Value> = serde_json::from_str(options)
                .map_err(|e| GrokError::invalid("options", e, "a JSON object"))?;
            for (k, v) in given {
                merged[k] = v;
            }
            let opts: LlcOptions = serde_json::from_value(merged).map_err(|e| {
                GrokError::invalid(
                    "llc option",
                    e,
                    "lr, localization, nbeta, num_chains, num_draws, num_burnin_steps, num_steps_bw_draws, batch_size, seed, epoch_mode, shuffle",
                )
            })?;
            let _lock = RunLock::acquire(&run_dir, "llc")?;
            let n = groklab::rundir::list_steps(&run_dir).len();
            let every = every.unwrap_or(n.div_ceil(50).max(1));
            let rows =
                groklab::measures::llc_run::llc_run(&run_dir, &opts, every, steps.as_deref())?;
            groklab::report::llc_plots::plot_llc(&run_dir, &rows)?;
            Ok(run_dir.join("llc.jsonl"))
        })
    })
}

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(presets, m)?)?;
    m.add_function(wrap_pyfunction!(config_json, m)?)?;
    m.add_function(wrap_pyfunction!(train_run, m)?)?;
    m.add_function(wrap_pyfunction!(read_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(analyze, m)?)?;
    m.add_function(wrap_pyfunction!(report, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint_steps, m)?)?;
    m.add_function(wrap_pyfunction!(transformer_config_json, m)?)?;
    m.add_function(wrap_pyfunction!(forward_logits, m)?)?;
    m.add_function(wrap_pyfunction!(saliency, m)?)?;
    m.add_function(wrap_pyfunction!(sweep_expand, m)?)?;
    m.add_function(wrap_pyfunction!(sweep_run, m)?)?;
    m.add_function(wrap_pyfunction!(sweep_collect, m)?)?;
    m.add_function(wrap_pyfunction!(llc, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint_path, m)?)?;
    Ok(())
}
