"""Type stubs of the extension module (`python/src/lib.rs`). Errors: `ValueError` for bad
config input, `RuntimeError` otherwise, each with the CLI's one-line message."""

from os import PathLike
from typing import Callable, List, Optional, Tuple, Union

_Path = Union[str, "PathLike[str]"]

def presets() -> List[Tuple[str, str]]:
    """Every embedded preset as (name, one-line description)."""

def config_json(
    preset: str,
    config: Optional[str] = None,
    overrides: List[str] = ...,
    resume_dir: Optional[str] = None,
) -> str:
    """The resolved config (preset, then the config file's TOML text, then `key=value`
    overrides; or `resume_dir`'s config with the overrides) as JSON text."""

def train_run(
    out: _Path,
    preset: str = "quick",
    config: Optional[str] = None,
    overrides: List[str] = ...,
    resume: bool = False,
    force: bool = False,
    plots: bool = True,
    quiet: bool = True,
    on_log: Optional[Callable[[str], object]] = None,
) -> str:
    """Trains (or resumes) a run into `out` with the GIL released; `on_log` gets each logged
    metrics row as JSON text. Ctrl-C checkpoints and raises KeyboardInterrupt. Returns the last
    row as JSON text."""

def read_checkpoint(path: _Path) -> List[Tuple[str, str, List[int], bytes]]:
    """Every tensor of a safetensors file as (name, dtype, shape, little-endian bytes)."""

def analyze(run_dir: _Path, plots: bool = True) -> List[str]:
    """`groklab analyze RUN_DIR`; returns the summary lines."""

def report(run_dir: _Path, reanalyze: bool = False) -> _Path:
    """`groklab report RUN_DIR`; returns the path of report.html."""

def checkpoint_steps(run_dir: _Path) -> List[int]:
    """The checkpoint steps of a run directory, ascending."""

def checkpoint_path(run_dir: _Path, step: int) -> _Path:
    """The weights file of the checkpoint at `step`."""

def transformer_config_json(run_dir: _Path) -> Optional[str]:
    """The transformer's shape (TransformerLens field names) as JSON text; None for another
    model."""

def forward_logits(
    run_dir: _Path, step: int, tokens: List[int], n_ctx: int, f64: bool = False
) -> Tuple[List[int], List[float]]:
    """groklab's own forward of a checkpoint in f32 (f64 with `f64`):
    (shape [B, n_ctx, d_vocab_out], logits)."""

def sweep_expand(spec: Optional[str] = None, preset: Optional[str] = None) -> List[str]:
    """A sweep's manifest lines as JSON text, from a sweep file's text or a sweep preset."""

def sweep_run(manifest: _Path, out: _Path) -> Tuple[int, int]:
    """Trains a manifest's runs into `out` in this process: (trained, already done)."""

def sweep_collect(runs: _Path, by_setting: bool = False) -> Tuple[str, int]:
    """One CSV row per finished run of `runs` (per setting over its seeds with `by_setting`),
    and the count of unfinished runs."""

def saliency(
    run_dir: _Path,
    baseline: str = "mean",
    ig_steps: int = 20,
    every: Optional[int] = None,
    random_draws: int = 20,
) -> _Path:
    """`groklab saliency RUN_DIR`; returns the path of saliency.jsonl."""

def llc(
    run_dir: _Path, options: str = "{}", every: Optional[int] = None, steps: Optional[List[int]] = None
) -> str:
    """`groklab llc`: writes llc.jsonl, llc.csv and plots/llc/ and returns the JSONL's path;
    `options` is a JSON object of devinterp-named SGLD settings."""
