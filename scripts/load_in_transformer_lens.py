#!/usr/bin/env python3
"""Load a groklab checkpoint into TransformerLens with strict=True and check it on all inputs.

TransformerLens 2.x/3.x: `HookedTransformer(cfg).load_state_dict(sd, strict=True)`.
TransformerLens 4.x (no HookedTransformer): `TransformerBridge.boot_native(TransformerBridgeConfig(...))`,
then `convert_tl_checkpoint(sd, cfg)` and `load_state_dict(..., strict=True)`.
The script picks the route the installed version has, runs the model on every [a, b, =] (or [a, b]) of the
run's task (add/sub) and prints accuracy and loss over all p*p inputs, to compare with the run's
metrics (train and test weighted by their sizes).

usage: python3 scripts/load_in_transformer_lens.py RUN_DIR STEP
needs: pip install transformer-lens safetensors
"""
import sys
import tomllib

import torch
from safetensors.torch import load_file


def tl_config(run_dir):
    c = tomllib.load(open(f"{run_dir}/config.toml", "rb"))
    m, p = c["model"], c["task"]["p"]
    if m.get("attn_rate", 1.0) != 1.0:
        sys.exit("model.attn_rate != 1: TransformerLens' attention is a softmax, it has no attention rate")
    equals = c["task"].get("equals_token", True)  # [a, b, =] over p + 1 tokens, else [a, b] over p
    return c["task"], dict(
        n_layers=m["n_layers"], d_model=m["d_model"], d_head=m["d_head"], n_heads=m["n_heads"],
        d_mlp=None if m["attn_only"] else m["d_mlp"], d_vocab=p + 1 if equals else p,
        d_vocab_out=p + 1 if m.get("d_vocab_out") == "p+1" else p, n_ctx=3 if equals else 2,
        act_fn=m["act_fn"], normalization_type=None if m["normalization"] == "none" else "LN",
        attn_only=m["attn_only"])


def load(sd, fields):
    try:  # TransformerLens 2.x / 3.x
        from transformer_lens import HookedTransformer, HookedTransformerConfig
        model = HookedTransformer(HookedTransformerConfig(**fields))
        print("HookedTransformer:", model.load_state_dict(sd, strict=True))
        return model
    except ImportError:  # TransformerLens 4.x
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge import TransformerBridge
        from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint
        cfg = TransformerBridgeConfig(**fields)
        bridge = TransformerBridge.boot_native(cfg)
        print("TransformerBridge:", bridge.load_state_dict(convert_tl_checkpoint(sd, cfg), strict=True))
        return bridge


def main():
    run_dir, step = sys.argv[1], int(sys.argv[2])
    task, fields = tl_config(run_dir)
    model = load(load_file(f"{run_dir}/checkpoints/step_{step:06d}.safetensors"), fields)
    p = task["p"]
    a, b = torch.arange(p).repeat_interleave(p), torch.arange(p).repeat(p)
    tokens = torch.stack([a, b, torch.full_like(a, p)][: fields["n_ctx"]], 1)
    labels = (a + b) % p if task["name"] == "add" else (a - b) % p
    with torch.no_grad():
        logits = model(tokens)[:, -1, :p].double()
    acc = (logits.argmax(-1) == labels).double().mean().item()
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    print(f"all {p * p} inputs: accuracy {acc:.6f}, loss {loss:.6g}")


if __name__ == "__main__":
    main()
