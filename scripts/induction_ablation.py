#!/usr/bin/env python3
"""Tabulate the induction ablation (docs/phase_change_tasks.md) from its run directories.

Each argument is a `groklab train --seeds N` directory (seed_0, seed_1, ...). Per seed it
prints the step-0 train loss, the first logged step with train loss < 1, the train loss at the
last step, the best layer-1 induction score on the plateau (the logged steps before the
first one with train loss < 4, where the fall starts) and after the fall (train loss < 1 reached),
the last step's, and the last step's test accuracy. Standard library only.

With `--plot FILE.png` it also draws every seed's train loss, one colour per run directory
(needs matplotlib).

usage: python3 scripts/induction_ablation.py [--plot FILE.png] RUN_DIR [RUN_DIR ...]
"""
import json
import pathlib
import sys


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def best_layer1(row):
    scores = [v for k, v in row.items() if k.startswith("induction_score.1.")]
    return max(scores) if scores else float("nan")


def plot(runs, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8))
    for i, run in enumerate(runs):
        for j, seed in enumerate(sorted(run.glob("seed_*"))):
            r = rows(seed / "metrics.jsonl")
            ax.plot([x["step"] for x in r], [x["train_loss"] for x in r], color=f"C{i}",
                    lw=1.2, label=run.name if j == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (nats, fresh batch; log scale)")
    ax.axhline(1.0, color="grey", lw=0.6, ls=":")
    ax.legend(fontsize=8)
    ax.set_title("Induction at weight decay 1: the authors' setting, one difference undone at a time")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main():
    args = sys.argv[1:]
    if args[:1] == ["--plot"]:
        out, args = args[1], args[2:]
        plot([pathlib.Path(a) for a in args], out)
    print("| setting | seed | step-0 loss | train loss < 1 at | last train loss | "
          "layer-1 induction on the plateau / after the fall / last | last test acc |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for arg in args:
        run = pathlib.Path(arg)
        for seed in sorted(run.glob("seed_*")):
            r = rows(seed / "metrics.jsonl")
            fall = next((x["step"] for x in r if x["train_loss"] < 1), None)
            start = next((x["step"] for x in r if x["train_loss"] < 4), r[-1]["step"])
            before = max((best_layer1(x) for x in r if x["step"] < start), default=float("nan"))
            after = max((best_layer1(x) for x in r if fall is not None and x["step"] >= fall),
                        default=float("nan"))
            print(f"| {run.name} | {seed.name[5:]} | {r[0]['train_loss']:.3f} | "
                  f"{fall if fall is not None else 'never'} (of {r[-1]['step']}) | "
                  f"{r[-1]['train_loss']:.3f} | {before:.2f} / "
                  f"{'—' if fall is None else f'{after:.2f}'} / {best_layer1(r[-1]):.2f} | "
                  f"{100 * r[-1]['test_acc']:.1f}% |")


if __name__ == "__main__":
    main()
