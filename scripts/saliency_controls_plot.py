#!/usr/bin/env python3
"""The general-circuits test over several runs side by side (docs/dynamics.md): the key-frequency
share of W_E's full-batch gradient (solid) and of W_E itself (dashed), and the top-k against
random-k ablation gap z = (top − mean random) / s.d. of the random draws, over training.

Reads RUN/saliency.jsonl (written by `groklab saliency RUN`). Runs are given as GROUP=RUN_DIR;
runs of one group share a colour.

Usage: python scripts/saliency_controls_plot.py --out docs/saliency_controls.png \
           nanda2023=runs/a nanda2023=runs/b random_table=runs/c "wd 0"=runs/d [--k 64]
Needs matplotlib.
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="GROUP=RUN_DIR")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--k", type=int, default=64, help="ablated neurons (one of saliency's k)")
    args = ap.parse_args()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours, seen = {}, set()
    for spec in args.runs:
        group, run = spec.split("=", 1)
        colour = colours.setdefault(group, f"C{len(colours)}")
        rows = [json.loads(line) for line in open(Path(run) / "saliency.jsonl")]
        steps = [r["step"] for r in rows]
        chance = rows[-1]["grad"]["chance"]["W_E"]
        label = None if group in seen else group
        seen.add(group)
        ax1.plot(steps, [r["grad"]["share"]["W_E"] / chance for r in rows], c=colour, label=label)
        ax1.plot(steps, [r["weights"]["share"]["W_E"] / chance for r in rows], c=colour, ls="--", lw=0.8)
        z = []
        for r in rows[1:]:
            a = next(a for a in r["ablation"] if a["k"] == args.k)
            z.append((a["top"]["train_loss"] - a["random"]["train_loss"]) / a["random_sd"]["train_loss"])
        ax2.plot(steps[1:], z, c=colour, label=label)
    ax1.set_xlabel("step")
    ax1.set_ylabel("key-frequency share of W_E / chance")
    ax1.set_title("gradient (solid) and weights (dashed)")
    ax1.legend(fontsize=8)
    ax2.set_xlabel("step")
    ax2.set_yscale("log")
    ax2.set_ylabel(f"top-{args.k} vs random-{args.k} ablation gap (s.d. of random draws)")
    ax2.set_title("train loss after ablation")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
