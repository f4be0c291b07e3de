"""A groklab checkpoint as a TransformerLens model, loaded with ``strict=True``."""

from __future__ import annotations

import json
from typing import Any, Optional, Union

from . import _native
from ._run import Run


def tl_fields(run: Run) -> dict:
    """The TransformerLens config fields of ``run``'s transformer."""
    text = _native.transformer_config_json(str(run.path))
    if text is None:
        arch = run.config["model"].get("arch", "transformer")
        raise ValueError(
            f"invalid value for `model.arch`: {arch} (allowed: transformer; TransformerLens loads transformers only)"
        )
    t = json.loads(text)
    if t.get("residual", "standard") != "standard":
        raise ValueError(
            "invalid value for `model.residual`: doubled (allowed: standard; TransformerLens' blocks add their input once)"
        )
    if t.get("attn_rate", 1.0) != 1.0:
        raise ValueError(
            f"invalid value for `model.attn_rate`: {t['attn_rate']} (allowed: 1; TransformerLens' attention is a softmax, it has no attention rate)"
        )
    return dict(
        n_layers=t["n_layers"],
        d_model=t["d_model"],
        d_head=t["d_head"],
        n_heads=t["n_heads"],
        d_mlp=None if t["attn_only"] else t["d_mlp"],
        d_vocab=t["d_vocab"],
        d_vocab_out=t["d_vocab_out"],
        n_ctx=t["n_ctx"],
        act_fn=t["act_fn"],
        normalization_type=None if t["normalization"] == "none" else "LN",
        attn_only=t["attn_only"],
    )


def to_transformer_lens(run: Union[Run, str], step: Optional[int] = None) -> Any:
    """``run``'s checkpoint at ``step`` (default: the last) as a TransformerLens model in f32:
    a ``HookedTransformer`` (TransformerLens 2.x/3.x) or, where that class is gone
    (TransformerLens 4.x), a ``TransformerBridge`` booted natively; either loaded with
    ``strict=True``. Needs ``torch`` and ``transformer_lens``."""
    import torch

    run = run if isinstance(run, Run) else Run(run)
    fields = tl_fields(run)
    sd = {k: torch.from_numpy(v.copy()) for k, v in run.checkpoint(step).items()}
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
    try:  # TransformerLens 2.x / 3.x
        from transformer_lens import HookedTransformer, HookedTransformerConfig
    except ImportError:  # TransformerLens 4.x
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge import TransformerBridge
        from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

        cfg = TransformerBridgeConfig(**fields)
        model = TransformerBridge.boot_native(cfg)
        model.load_state_dict(convert_tl_checkpoint(sd, cfg), strict=True)
        return model.eval()
    model = HookedTransformer(HookedTransformerConfig(**fields))
    model.load_state_dict(sd, strict=True)
    return model.eval()
