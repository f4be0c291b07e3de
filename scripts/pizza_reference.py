#!/usr/bin/env python3
"""Clock/pizza measures of Zhong et al. 2023's released models: the authors' computation against
groklab's.

For each 1-layer model in the authors' `code/save/` (github.com/fjzzq2002/pizza; clone it and
pass `--save pizza/code/save`), this script
1. rebuilds the authors' `Transformer` forward (code/train-main.py: no causal mask, pattern
   `attn_coeff * softmax + (1 - attn_coeff)`, no attention or unembedding biases) in PyTorch and
   computes distance irrelevance and gradient symmetricity exactly as `code/eval-main.ipynb` does
   (the correct logit on the (a+b, a-b) grid, and train-main.py's variant from the largest
   incorrect logit, which their result/1l_*.csv holds; 100 triples from `random.Random(42)`, the mean
   cosine of the logit's gradients with respect to the two embedded inputs), in float64;
2. writes the weights in TransformerLens layout to safetensors and runs
   `groklab analyze --checkpoint FILE --attn-rate ALPHA --json`;
3. prints both side by side with the full-grid loss, and exits non-zero if they differ by more
   than --tol.

Usage: python scripts/pizza_reference.py --save PIZZA/code/save [--groklab target/release/groklab]
Needs torch, numpy, safetensors.
"""

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file


def forward(sd, x, attn_coeff, act, embedded=None):
    """The authors' Transformer.forward (1 layer) on tokens x [batch, 2]; returns
    (embedded input [batch, 2, d] as a leaf when `embedded` is None, logits [batch, 2, vocab])."""
    if embedded is None:
        embedded = sd["embed.W_E"][:, x].permute(1, 2, 0)  # 'dbp -> bpd'
    h = embedded + sd["pos_embed.W_pos"][: x.shape[-1]]
    k = torch.einsum("ihd,bpd->biph", sd["blocks.0.attn.W_K"], h)
    q = torch.einsum("ihd,bpd->biph", sd["blocks.0.attn.W_Q"], h)
    v = torch.einsum("ihd,bpd->biph", sd["blocks.0.attn.W_V"], h)
    scores = torch.einsum("biph,biqh->biqp", k, q) / math.sqrt(k.shape[-1])
    pattern = torch.softmax(scores, dim=-1) * attn_coeff + (1 - attn_coeff)
    z = torch.einsum("biph,biqp->biqh", v, pattern)
    z = z.permute(0, 2, 1, 3).reshape(z.shape[0], z.shape[2], -1)  # 'b i q h -> b q (i h)'
    h = h + torch.einsum("df,bqf->bqd", sd["blocks.0.attn.W_O"], z)
    pre = torch.einsum("md,bpd->bpm", sd["blocks.0.mlp.W_in"], h) + sd["blocks.0.mlp.b_in"]
    post = torch.relu(pre) if act == "ReLU" else torch.nn.functional.gelu(pre)
    h = h + torch.einsum("dm,bpm->bpd", sd["blocks.0.mlp.W_out"], post) + sd["blocks.0.mlp.b_out"]
    return embedded, h @ sd["unembed.W_U"]


def authors_measures(sd, C, attn_coeff, act):
    """Distance irrelevance and gradient symmetricity as eval-main.ipynb computes them."""
    x = torch.tensor([[a, b] for a in range(C) for b in range(C)])
    y = (x[:, 0] + x[:, 1]) % C
    with torch.no_grad():
        _, logits = forward(sd, x, attn_coeff, act)
    last = logits[:, -1, :]
    loss = -torch.log_softmax(last, -1)[torch.arange(len(y)), y].mean().item()
    correct = last[torch.arange(len(y)), y]
    oo = np.zeros((C, C))
    for (a, b), o in zip(x.tolist(), correct.tolist()):
        oo[(a + b) % C][(a - b) % C] = o
    di = np.mean(np.std(oo, axis=0)) / np.std(oo.flatten())
    # train-main.py's logged variant (and their result/1l_*.csv): the largest incorrect logit
    wrong = last.clone()
    wrong[torch.arange(len(y)), y] = float("-inf")
    oc = np.zeros((C, C))
    for (a, b), o in zip(x.tolist(), wrong.max(-1).values.tolist()):
        oc[(a + b) % C][(a - b) % C] = o
    di_incorrect = np.mean(np.std(oc, axis=0)) / np.std(oc.flatten())

    xs = [(a, b, c) for a in range(C) for b in range(C) for c in range(C)]
    random.Random(42).shuffle(xs)
    total = 0.0
    for a, b, c in xs[:100]:
        t = torch.tensor([[a, b]])
        emb = sd["embed.W_E"][:, t].permute(1, 2, 0).detach().clone().requires_grad_(True)
        _, o = forward(sd, t, attn_coeff, act, embedded=emb)
        o[0, -1, c].backward()
        g = emb.grad[0].numpy()
        total += np.sum(g[0] * g[1]) / np.sqrt(np.sum(g[0] ** 2)) / np.sqrt(np.sum(g[1] ** 2))
    return di, di_incorrect, total / 100, loss


def transformer_lens_layout(sd, n_heads):
    """The authors' tensors in TransformerLens names and shapes (zero biases where they have none)."""
    d, vocab = sd["embed.W_E"].shape
    h, dh = n_heads, sd["blocks.0.attn.W_Q"].shape[1]
    m = sd["blocks.0.mlp.W_in"].shape[0]
    out = {
        "embed.W_E": sd["embed.W_E"].T,  # [d, vocab] -> [vocab, d]
        "pos_embed.W_pos": sd["pos_embed.W_pos"],
        "blocks.0.attn.W_O": sd["blocks.0.attn.W_O"].T.reshape(h, dh, d),  # [d, h dh] -> [h, dh, d]
        "blocks.0.attn.b_Q": torch.zeros(h, dh),
        "blocks.0.attn.b_K": torch.zeros(h, dh),
        "blocks.0.attn.b_V": torch.zeros(h, dh),
        "blocks.0.attn.b_O": torch.zeros(d),
        "blocks.0.mlp.W_in": sd["blocks.0.mlp.W_in"].T,  # [m, d] -> [d, m]
        "blocks.0.mlp.b_in": sd["blocks.0.mlp.b_in"],
        "blocks.0.mlp.W_out": sd["blocks.0.mlp.W_out"].T,  # [d, m] -> [m, d]
        "blocks.0.mlp.b_out": sd["blocks.0.mlp.b_out"],
        "unembed.W_U": sd["unembed.W_U"],
        "unembed.b_U": torch.zeros(vocab),
    }
    for n in "QKV":  # [h, dh, d] -> [h, d, dh]
        out[f"blocks.0.attn.W_{n}"] = sd[f"blocks.0.attn.W_{n}"].transpose(1, 2)
    assert out["blocks.0.mlp.W_in"].shape == (d, m)
    return {k: v.float().contiguous() for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--save", required=True, type=Path, help="the authors' code/save folder")
    ap.add_argument("--groklab", default="target/release/groklab")
    ap.add_argument("--tol", type=float, default=1e-4, help="largest |difference| allowed")
    ap.add_argument("--json", type=Path, help="also write the table here")
    args = ap.parse_args()

    rows, worst = [], 0.0
    for cfg_file in sorted(args.save.glob("config_*.json")):
        cfg = json.loads(cfg_file.read_text())
        if "attn_coeff" not in cfg or cfg.get("n_layers", 1) != 1 or cfg.get("use_linear") or cfg.get("diff_vocab") or cfg.get("eqn_sign"):
            continue  # the 1-layer [a, b] transformers (no linear models, no appendix variants)
        pt = args.save / f"model_{cfg['runid']}.pt"
        if not pt.exists():
            print(f"{cfg['runid']}: {pt.name} absent, skipped", file=sys.stderr)
            continue
        try:
            sd = {k: v.double() for k, v in torch.load(pt, map_location="cpu").items()}
        except (EOFError, RuntimeError) as e:  # a truncated download
            print(f"{cfg['runid']}: {pt.name} unreadable ({e!r}), skipped", file=sys.stderr)
            continue
        C, alpha, act = cfg["C"], float(cfg["attn_coeff"]), cfg["act_fn"]
        di, di_incorrect, gs, loss = authors_measures(sd, C, alpha, act)
        with tempfile.TemporaryDirectory() as tmp:
            st = Path(tmp) / "model.safetensors"
            save_file(transformer_lens_layout(sd, cfg["n_heads"]), str(st))
            out = subprocess.run(
                [args.groklab, "analyze", "--checkpoint", str(st), "--attn-rate", repr(alpha),
                 "--act-fn", act.lower(), "--json", "--threads", "1"],
                check=True, capture_output=True, text=True,
            ).stdout
        m = json.loads(out)
        row = {
            "runid": cfg["runid"], "attn_rate": alpha, "d_model": cfg["d_model"], "act_fn": act,
            "distance_irrelevance": [di, m["distance_irrelevance"]],
            "distance_irrelevance_incorrect": [di_incorrect, m["distance_irrelevance_incorrect"]],
            "gradient_symmetricity": [gs, m["gradient_symmetricity"]],
            "loss": [loss, m["loss_all"]],
        }
        rows.append(row)
        for key in ("distance_irrelevance", "distance_irrelevance_incorrect", "gradient_symmetricity"):
            worst = max(worst, abs(row[key][0] - row[key][1]))
        print(
            f"{cfg['runid']}  alpha {alpha:.3f}  d {cfg['d_model']:4d} {act:4s}  "
            f"DI authors {di:.5f} groklab {m['distance_irrelevance']:.5f}  "
            f"DI (incorrect) authors {di_incorrect:.5f} groklab {m['distance_irrelevance_incorrect']:.5f}  "
            f"GS authors {gs:.5f} groklab {m['gradient_symmetricity']:.5f}  "
            f"loss {loss:.3e} / {m['loss_all']:.3e}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(f"largest |difference| {worst:.2e} (tolerance {args.tol:g})")
    sys.exit(0 if rows and worst <= args.tol else 1)


if __name__ == "__main__":
    main()
