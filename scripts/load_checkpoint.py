#!/usr/bin/env python3
"""Load a groklab checkpoint in Python and check its last-position logits.

Needs only numpy and safetensors (`pip install numpy safetensors`). The checkpoint holds
TransformerLens names and layouts, so it also loads into `transformer_lens.HookedTransformer`
(see the README). This script re-implements the 1-layer forward pass of Nanda et al. 2023 in
numpy (float64), recomputes the train and test loss and accuracy of the checkpoint on the run's
own split, and compares them with the row groklab logged for that step in metrics.jsonl.

usage: python3 scripts/load_checkpoint.py RUN_DIR [STEP]
"""
import json
import sys
import tomllib
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file


def forward(w, tokens, cfg):
    """Last-position logits [batch, d_vocab_out] of a 1-layer TransformerLens model (no LayerNorm)."""
    n_heads, d_head = cfg["n_heads"], cfg["d_head"]
    x = w["embed.W_E"][tokens] + w["pos_embed.W_pos"][None]  # (B, 3, d_model)
    q = np.einsum("bpd,hde->bphe", x, w["blocks.0.attn.W_Q"]) + w["blocks.0.attn.b_Q"]
    k = np.einsum("bpd,hde->bphe", x, w["blocks.0.attn.W_K"]) + w["blocks.0.attn.b_K"]
    v = np.einsum("bpd,hde->bphe", x, w["blocks.0.attn.W_V"]) + w["blocks.0.attn.b_V"]
    scores = np.einsum("bhe,bkhe->bhk", q[:, -1], k) / np.sqrt(d_head)  # last query sees all keys
    pattern = np.exp(scores - scores.max(-1, keepdims=True))
    pattern /= pattern.sum(-1, keepdims=True)
    z = np.einsum("bhk,bkhe->bhe", pattern, v)
    resid = x[:, -1] + np.einsum("bhe,hed->bd", z, w["blocks.0.attn.W_O"]) + w["blocks.0.attn.b_O"]
    pre = resid @ w["blocks.0.mlp.W_in"] + w["blocks.0.mlp.b_in"]
    resid = resid + np.maximum(pre, 0) @ w["blocks.0.mlp.W_out"] + w["blocks.0.mlp.b_out"]
    return resid @ w["unembed.W_U"] + w["unembed.b_U"]


def loss_and_acc(logits, labels):
    shifted = logits - logits.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    loss = -logp[np.arange(len(labels)), labels].mean()
    return loss, (logits.argmax(-1) == labels).mean()


def main():
    run = Path(sys.argv[1])
    cfg = tomllib.loads((run / "config.toml").read_text())
    task, model = cfg["task"], cfg["model"]
    assert task["name"] == "add" and model["n_layers"] == 1 and model["normalization"] == "none"
    steps = sorted(int(p.name[5:11]) for p in (run / "checkpoints").glob("step_??????.safetensors"))
    step = int(sys.argv[2]) if len(sys.argv) > 2 else steps[-1]
    w = {k: v.astype(np.float64) for k, v in load_file(run / f"checkpoints/step_{step:06d}.safetensors").items()}

    p = task["p"]
    a, b = np.divmod(np.arange(p * p), p)
    tokens = np.stack([a, b, np.full_like(a, p)], axis=1)
    labels = (a + b) % p
    split = json.loads((run / "split.json").read_text())
    logits = forward(w, tokens, model)
    print(f"{run} step {step}: logits {logits.shape}, first row argmax {logits[0].argmax()} (label {labels[0]})")

    rows = {json.loads(line)["step"]: json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()}
    logged = rows.get(step)
    worst = 0.0
    for side in ("train", "test"):
        idx = np.array(split[side], dtype=np.int64)
        loss, acc = loss_and_acc(logits[idx], labels[idx])
        line = f"  {side}: loss {loss:.6e} acc {acc:.4f}"
        if logged is not None:
            rel = abs(loss - logged[f"{side}_loss"]) / max(abs(logged[f"{side}_loss"]), 1e-300)
            worst = max(worst, rel)
            line += f" | groklab logged loss {logged[f'{side}_loss']:.6e} acc {logged[f'{side}_acc']:.4f} (rel. diff {rel:.1e})"
        print(line)
    if logged is None:
        print(f"  (step {step} is not a logged step; pick one of the log steps to compare)")
    elif worst > 1e-3:
        sys.exit(f"mismatch: relative loss difference {worst:.1e}")


if __name__ == "__main__":
    main()
