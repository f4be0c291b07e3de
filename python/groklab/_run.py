"""A run directory as Python objects: config, metrics, checkpoints, analysis, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import pandas as pd

from . import _native

# safetensors dtypes as NumPy dtypes (little-endian)
_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "U8": "u1",
    "BOOL": "?",
}


class Run:
    """A groklab run directory (``config.toml``, ``metrics.jsonl``, ``checkpoints/``, ...).

    ``Run(path)`` opens one written by ``groklab.train`` or the ``groklab train`` command.
    """

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        if not (self.path / "config.toml").exists():
            raise FileNotFoundError(f"{self.path}: no config.toml (not a groklab run directory)")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def config(self) -> Dict[str, Any]:
        """The run's config (``task``, ``model``, ``train`` sections), validated."""
        return json.loads(_native.config_json("", None, [], str(self.path)))

    @property
    def metrics(self) -> pd.DataFrame:
        """One row per logged step: ``step``, ``epoch``, ``train_loss``/``test_loss`` (nats),
        ``train_acc``/``test_acc`` (fractions), ``lr``, ``grad_norm``, ``sum_sq_weights``,
        ``sum_sq.<tensor>``, the task's own metrics and ``wall_s`` (seconds)."""
        return _read_jsonl(self.path / "metrics.jsonl")

    @property
    def steps(self) -> List[int]:
        """The steps that have a checkpoint, ascending."""
        return list(_native.checkpoint_steps(str(self.path)))

    def checkpoint(self, step: Optional[int] = None) -> Dict[str, np.ndarray]:
        """The weights at ``step`` (default: the last checkpoint) by TransformerLens name, with
        TransformerLens shapes (``blocks.0.attn.W_Q`` ``[n_heads, d_model, d_head]``) and the
        stored dtype; TransformerLens' attention buffers (``blocks.0.attn.mask``) included, so
        the dict loads with ``strict=True``."""
        steps = self.steps
        if not steps:
            raise FileNotFoundError(f"{self.path}: no checkpoints")
        if step is None:
            step = steps[-1]
        if step not in steps:
            raise ValueError(
                f"invalid value for `step`: {step} (allowed: a checkpoint step, {steps[0]}..{steps[-1]})"
            )
        path = _native.checkpoint_path(str(self.path), step)
        out = {}
        for name, dtype, shape, data in _native.read_checkpoint(str(path)):
            if dtype not in _DTYPES:
                raise ValueError(f"{path}: tensor `{name}` has dtype {dtype}, not read")
            out[name] = np.frombuffer(data, dtype=_DTYPES[dtype]).reshape(shape).copy()
        return out

    def forward(
        self, tokens: Any, step: Optional[int] = None, dtype: str = "float32"
    ) -> np.ndarray:
        """groklab's own forward of the checkpoint at ``step`` (default: the last) on
        ``tokens`` ``[batch, n_ctx]`` (ints) in ``dtype`` (``float32`` or ``float64``): the
        logits at every position, ``[batch, n_ctx, d_vocab_out]`` (``unembed.hook_out``)."""
        if dtype not in ("float32", "float64"):
            raise ValueError(f"invalid value for `dtype`: {dtype} (allowed: float32|float64)")
        if step is None:
            step = self.steps[-1]
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.ndim != 2:
            raise ValueError(f"invalid value for `tokens`: shape {tokens.shape} (allowed: [batch, n_ctx])")
        shape, values = _native.forward_logits(
            str(self.path), step, tokens.ravel().tolist(), tokens.shape[1], dtype == "float64"
        )
        return np.asarray(values, dtype=np.float64).reshape(shape)

    def analyze(self, plots: bool = True) -> pd.DataFrame:
        """Runs ``groklab analyze`` on the run and returns its measures, one row per checkpoint
        (``measures.jsonl``); the summary is :attr:`analysis`."""
        _native.analyze(str(self.path), plots)
        return self.measures

    @property
    def measures(self) -> pd.DataFrame:
        """What the last :meth:`analyze` measured, one row per checkpoint."""
        return _read_jsonl(self.path / "measures.jsonl")

    @property
    def analysis(self) -> Dict[str, Any]:
        """The run's summary from :meth:`analyze` (``analysis.json``): key frequencies and phases,
        phase changes, or the comparison with gradient descent, by family."""
        path = self.path / "analysis.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: run analyze() first")
        return json.loads(path.read_text())

    def saliency(
        self,
        baseline: str = "mean",
        ig_steps: int = 20,
        every: Optional[int] = None,
        random_draws: int = 20,
    ) -> pd.DataFrame:
        """Runs ``groklab saliency`` (integrated-gradients saliency of neurons and heads, top-k
        against random-k ablation over ``random_draws`` random k-sets with their spread, the
        |IG| and held-out-half rankings, the key-frequency share of the gradient, the weights
        and Adam's update) on every ``every``-th checkpoint and returns ``saliency.jsonl``, one
        row per checkpoint measured. Defaults as the CLI's."""
        path = _native.saliency(str(self.path), baseline, ig_steps, every, random_draws)
        return _read_jsonl(Path(path))

    def llc(
        self, every: Optional[int] = None, steps: Optional[List[int]] = None, **options: Any
    ) -> pd.DataFrame:
        """Runs ``groklab llc``: the local learning coefficient (Lau et al. 2023) at every
        ``every``-th checkpoint (default: at most 50) or at ``steps``, by SGLD chains localised at
        each checkpoint on the training split. ``options`` take devinterp's names: ``lr`` (ε),
        ``localization`` (γ), ``nbeta`` (default n / ln n), ``num_chains``, ``num_draws``,
        ``num_burnin_steps``, ``num_steps_bw_draws``, ``batch_size``, ``seed``, ``epoch_mode``
        (``"reshuffle"`` or devinterp's ``"cycle"``), ``shuffle`` (``False``: the training split
        in its stored order, consecutive batches); others raise
        ``ValueError``. Returns ``llc.jsonl``: one row per checkpoint with ``llc_mean``,
        ``llc_std``, ``llc_se`` (over chains, dimensionless), ``init_loss`` (nats), ``nbeta``,
        ``llc_per_chain``, ``loss_trace`` (``[chains][draws]`` minibatch losses, nats) and
        ``warnings``."""
        path = _native.llc(str(self.path), json.dumps(options), every, steps)
        return _read_jsonl(Path(path))

    def report(self, reanalyze: bool = False) -> Path:
        """Writes ``report.html`` (measuring first where needed) and returns its path."""
        return Path(_native.report(str(self.path), reanalyze))

    def resume(
        self,
        steps: Optional[int] = None,
        progress: bool = True,
        on_log: Any = None,
        plots: bool = True,
    ) -> "Run":
        """Continues the run from its latest checkpoint, exactly as an uninterrupted run would
        have gone on; ``steps`` raises ``train.steps`` (the run's length) first."""
        from . import _train_native

        overrides = [] if steps is None else [f"train.steps={steps}"]
        _train_native(self.path, "", None, overrides, True, False, plots, progress, on_log)
        return self


def _read_jsonl(path: Path) -> pd.DataFrame:
    """A JSON-lines file as a DataFrame (``null`` as NaN)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: not written yet")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    df = pd.DataFrame(rows)
    first = [c for c in ("step", "epoch") if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]
