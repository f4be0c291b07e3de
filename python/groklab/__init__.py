"""groklab from Python: the engine of the ``groklab`` command line as a package.

Train a run, watch it live, read its metrics as a pandas DataFrame and its checkpoints as NumPy
arrays with TransformerLens names and shapes, analyse it and write its report, all at the CLI's
speed (the same Rust engine; the GIL is released while it trains).

>>> import groklab
>>> run = groklab.train(preset="quick", out="runs/quick")
>>> run.metrics[["step", "train_loss", "test_loss"]].tail()
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from . import _native, sweep
from ._run import Run
from ._tl import to_transformer_lens

__all__ = ["Run", "presets", "config", "train", "to_transformer_lens", "sweep"]

PathLike = Union[str, Path]


def presets() -> Dict[str, str]:
    """Every embedded preset: name -> one-line description (paper, task, model, optimiser)."""
    return dict(_native.presets())


def _overrides(set: Optional[Mapping[str, Any]], extra: Mapping[str, Any]) -> List[str]:
    """``key=value`` strings as ``--set`` takes them; in ``extra`` (keyword arguments) a double
    underscore stands for the dot (``train__lr=3e-3`` is ``train.lr=3e-3``)."""
    pairs = dict(set or {})
    pairs.update({k.replace("__", "."): v for k, v in extra.items()})
    out = []
    for key, value in pairs.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (list, tuple, dict)):
            text = json.dumps(value)
        else:
            text = str(value)
        out.append(f"{key}={text}")
    return out


def config(
    preset: str = "quick",
    config: Optional[PathLike] = None,
    set: Optional[Mapping[str, Any]] = None,
    **overrides: Any,
) -> Dict[str, Any]:
    """The resolved config of ``preset`` as a dict of sections (``task``, ``model``, ``train``).

    ``config`` is a TOML file (complete, or keys layered on the preset); ``set`` and
    ``overrides`` (``train__lr=3e-3``) are ``--set`` overrides. Raises ``ValueError`` with the
    CLI's one-line message for an unknown preset, an unknown key (naming the nearest) or a bad
    value.
    """
    text = Path(config).read_text() if config is not None else None
    return json.loads(_native.config_json(preset, text, _overrides(set, overrides)))


def train(
    preset: str = "quick",
    config: Optional[PathLike] = None,
    set: Optional[Mapping[str, Any]] = None,
    out: Optional[PathLike] = None,
    seeds: int = 1,
    progress: bool = True,
    on_log: Optional[Callable[[Dict[str, Any]], Any]] = None,
    force: bool = False,
    plots: bool = True,
) -> Union[Run, List[Run]]:
    """Trains a run as ``groklab train`` does and returns it (a list of runs for ``seeds > 1``).

    - ``out``: the run directory (default ``runs/<preset>``); with ``force``, a non-empty one
      is overwritten, else it must be empty or absent.
    - ``seeds``: that many runs with ``model.init_seed`` = the config's, +1, ... in
      ``out/seed_<i>``, one after another (the configs ``groklab train --seeds`` trains side by side).
    - ``progress``: a tqdm bar (the notebook widget under Jupyter) when tqdm is installed.
    - ``on_log(row)``: called with every logged metrics row (a dict, as ``metrics.jsonl``
      holds it), e.g. for a live plot; an exception it raises stops the run like Ctrl-C.

    Ctrl-C (``KeyboardInterrupt``) stops training at the next step after checkpointing the
    weights; ``Run(out).resume()`` then continues exactly. Errors are ``ValueError`` (bad config)
    or ``RuntimeError`` with the CLI's message.
    """
    out = Path(out) if out is not None else Path("runs") / preset
    if seeds < 1:
        raise ValueError(f"invalid value for `seeds`: {seeds} (allowed: a positive number)")
    text = Path(config).read_text() if config is not None else None
    if seeds > 1:
        resolved = json.loads(_native.config_json(preset, text, _overrides(set, {})))
        first = resolved["model"]["init_seed"]
        runs = []
        for i in range(seeds):
            pairs = dict(set or {})
            pairs["model.init_seed"] = first + i
            runs.append(
                train(preset, config, pairs, out / f"seed_{i}", 1, progress, on_log, force, plots)
            )
        return runs
    _train_native(out, preset, text, _overrides(set, {}), False, force, plots, progress, on_log)
    return Run(out)


def _train_native(
    out: Path,
    preset: str,
    config_text: Optional[str],
    overrides: List[str],
    resume: bool,
    force: bool,
    plots: bool,
    progress: bool,
    on_log: Optional[Callable[[Dict[str, Any]], Any]],
) -> Dict[str, Any]:
    """Runs the engine's loop with a progress bar and the row callback; returns the last row."""
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # progress without tqdm: the engine's own lines are not shown either
            tqdm = None
        if tqdm is not None:
            resume_dir = str(out) if resume else None
            cfg = json.loads(_native.config_json(preset, config_text, overrides, resume_dir))
            steps = _native.checkpoint_steps(str(out)) if resume else []
            total, initial = cfg["train"]["steps"], (steps[-1] if steps else 0)
            bar = tqdm(total=total, initial=initial, desc=out.name, unit="step")
    state = {"step": bar.n if bar is not None else 0}

    def hook(line: str) -> None:
        row = json.loads(line)
        if bar is not None:
            bar.update(max(0, row["step"] - state["step"]))
            bar.set_postfix(train_loss=row["train_loss"], test_loss=row["test_loss"])
        state["step"] = row["step"]
        if on_log is not None:
            on_log(row)

    try:
        last = _native.train_run(
            str(out),
            preset,
            config_text,
            overrides,
            resume,
            force,
            plots,
            True,
            hook,
        )
    finally:
        if bar is not None:
            bar.close()
    return json.loads(last)
