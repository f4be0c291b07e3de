"""Sweeps from Python: expand a sweep into its runs, train them, collect one row per run.

>>> lines = groklab.sweep.expand(preset="phase_diagram_small")        # or expand(spec="sweep.toml")
>>> groklab.sweep.run(lines, out="sweeps/wd")
>>> df = groklab.sweep.collect("sweeps/wd")                # one row per finished run
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import pandas as pd

from . import _native

__all__ = ["expand", "run", "collect"]


def expand(spec: Optional[Union[str, Path]] = None, preset: Optional[str] = None) -> List[Dict[str, Any]]:
    """The runs of a sweep, as ``groklab sweep expand`` writes them: dicts with ``id``,
    ``preset``, ``swept`` (the swept keys' values) and ``config`` (the resolved TOML text).
    ``spec`` is a sweep file (path) or its TOML text; ``preset`` a sweep preset's name."""
    text = None
    if spec is not None:
        path = Path(spec)
        text = path.read_text() if "\n" not in str(spec) and path.exists() else str(spec)
    return [json.loads(line) for line in _native.sweep_expand(text, preset)]


def run(manifest: Union[str, Path, Sequence[Dict[str, Any]]], out: Union[str, Path]) -> Tuple[int, int]:
    """Trains every run of ``manifest`` (a manifest file, or the lines :func:`expand` returned,
    written to ``out/manifest.jsonl``) into ``out/<id>``; runs already done are skipped, so a
    stopped sweep continues. Returns ``(trained, already done)``."""
    out = Path(out)
    if isinstance(manifest, (str, Path)):
        path = Path(manifest)
    else:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "manifest.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in manifest))
    return _native.sweep_run(str(path), str(out))


def collect(runs: Union[str, Path], by_setting: bool = False) -> pd.DataFrame:
    """One row per finished run under ``runs`` (``groklab sweep collect``'s CSV): the swept keys,
    the first steps at 90% / 95% / 99% accuracy (empty where a run was cut off before), the best
    and final accuracies and losses, the grokking stage (10% -> 95% test, in steps), the Liu et al.
    phase.

    With ``by_setting=True``, one row per setting (the swept keys other than those ending in
    ``seed``) over its seeds: for each threshold the mean step with its bootstrap 95% interval
    (``test_99_mean``, ``_lo``, ``_hi``; a run cut off before the threshold counts at its last
    step, so the mean is then a lower bound), how many reached it (``test_99_reached``) and each
    run's step (``test_99_per_run``, ``>N`` when cut off at N); best and final test accuracy
    (fractions), the grokking stage and the phases."""
    text, unfinished = _native.sweep_collect(str(runs), by_setting)
    if unfinished:
        warnings.warn(f"{unfinished} run(s) not finished (no DONE marker) left out", stacklevel=2)
    return pd.read_csv(io.StringIO(text))
