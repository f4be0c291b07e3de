#!/usr/bin/env python3
"""Zhong et al. 2023's fixed-width phase plot (gradient symmetricity and distance irrelevance
against the attention rate) with groklab's runs drawn over the authors'.

Reads the authors' result/1l_fixedwidth.csv (github.com/fjzzq2002/pizza; the 1-layer, d_model
128, ReLU, [a, b] runs: no diff_vocab, no eqn_sign) and any number of groklab sweep directories
(RUNS/<id>/config.toml and measures.jsonl, written by `groklab sweep run` and `groklab analyze`).
Each groklab run is drawn at its last measured checkpoint. The table's distance irrelevance is
train-main.py's variant from the largest incorrect logit (`distance_irrelevance_incorrect`), which
is what the CSV holds; the paper's and notebook's correct-logit figure is listed beside it.

With ``--varywidth-csv result/1l_varywidth.csv --width-out PNG`` it also draws their width axis
(the 1-layer runs of d_model 32-511, attention rate uniform on [0, 1]): every run placed at its
(α, d_model) and coloured by gradient symmetricity, groklab's runs of any width over them, and
prints each groklab run against the authors' runs near it (d_model within a factor 1.25, α within
0.1).

Usage: python scripts/pizza_phase_plot.py --csv pizza/result/1l_fixedwidth.csv \
           --runs runs_ab runs_alpha --out docs/clock_pizza_phase.png [--table docs/table.md] \
           [--varywidth-csv pizza/result/1l_varywidth.csv --width-out docs/clock_pizza_width.png]
Needs numpy, pandas, matplotlib, scipy (tomllib: Python >= 3.11).
"""

import argparse
import json
import tomllib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

BINS = [0.0, 0.05, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0001]


def authors(csv, width=128):
    """The authors' 1-layer ReLU [a, b] runs of the table (of d_model `width`; None: any)."""
    d = pd.read_csv(csv)
    keep = (d.n_layers == 1) & (d.diff_vocab == 0) & (d.eqn_sign == 0) & (d.act_fn == "ReLU")
    if width is not None:
        keep &= d.d_model == width
    return d[keep].dropna(subset=["gradient_sim", "distance_irrelevance"])


def ours(dirs):
    rows = []
    for runs in dirs:
        for run in sorted(Path(runs).iterdir()):
            m, c = run / "measures.jsonl", run / "config.toml"
            if not (m.exists() and c.exists()):
                continue
            cfg = tomllib.loads(c.read_text())
            last = json.loads(m.read_text().splitlines()[-1])
            if last.get("gradient_symmetricity") is None:
                continue
            rows.append({
                "run": run.name, "attn_rate": cfg["model"].get("attn_rate", 1.0),
                "seed": cfg["model"]["init_seed"], "step": last["step"],
                "split": cfg["task"].get("split_seed", 0),
                "d_model": cfg["model"]["d_model"],
                "gradient_symmetricity": last["gradient_symmetricity"],
                "distance_irrelevance": last["distance_irrelevance"],
                "distance_irrelevance_incorrect": last["distance_irrelevance_incorrect"],
                "acc_test": last["acc_test"],
            })
    return pd.DataFrame(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", required=True, type=Path)
    ap.add_argument("--runs", nargs="+", default=[])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--table", type=Path, help="write the per-run and per-bin figures (markdown)")
    ap.add_argument("--varywidth-csv", type=Path, help="their result/1l_varywidth.csv")
    ap.add_argument("--width-out", type=Path, help="the width phase plot (with --varywidth-csv)")
    args = ap.parse_args()
    theirs, everything = authors(args.csv), ours(args.runs)
    if args.varywidth_csv:
        width_plot(authors(args.varywidth_csv, None), everything, args.width_out)
    mine = everything[everything.d_model == 128] if len(everything) else everything

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (col, ours_col, name) in zip(axes, [
        ("gradient_sim", "gradient_symmetricity", "gradient symmetricity"),
        ("distance_irrelevance", "distance_irrelevance_incorrect",
         "distance irrelevance (largest incorrect logit)"),
    ]):
        ax.scatter(theirs.attn_coeff, theirs[col], s=4, c="0.75", label=f"Zhong et al. ({len(theirs)} runs)")
        if len(mine):
            ax.scatter(mine.attn_rate, mine[ours_col], s=28, c="tab:red", edgecolor="k",
                       label=f"groklab ({len(mine)} runs)", zorder=3)
        ax.set_xlabel("attention rate α")
        ax.set_ylabel(name)
        ax.set_ylim(-0.05 if col == "gradient_sim" else 0, 1.02)
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle("Clock (α → 1) and pizza (α → 0): (a + b) mod 59, 1 layer, d_model 128")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)

    theirs = theirs.assign(bin=pd.cut(theirs.attn_coeff, BINS, include_lowest=True))
    q = lambda p: (lambda x: x.quantile(p))
    spread = theirs.groupby("bin", observed=True).agg(
        n=("gradient_sim", "size"),
        gs_10=("gradient_sim", q(0.1)), gs_50=("gradient_sim", "median"), gs_90=("gradient_sim", q(0.9)),
        di_10=("distance_irrelevance", q(0.1)), di_50=("distance_irrelevance", "median"),
        di_90=("distance_irrelevance", q(0.9)),
    )
    lines = ["| their α bin | runs | GS 10% | GS median | GS 90% | DI (incorrect) 10% | median | 90% |",
             "|---|---|---|---|---|---|---|---|"]
    for b, r in spread.iterrows():
        lines.append(f"| {b} | {int(r.n)} | {r.gs_10:.3f} | {r.gs_50:.3f} | {r.gs_90:.3f} | "
                     f"{r.di_10:.3f} | {r.di_50:.3f} | {r.di_90:.3f} |")
    if len(mine):
        mine = mine.assign(bin=pd.cut(mine.attn_rate, BINS, include_lowest=True)).sort_values("attn_rate")
        lines += ["", "| groklab run | α | seed | split | step | test acc | GS | their GS 10–90% | its percentile there "
                  "| DI (incorrect) | their DI 10–90% | its percentile there | DI (correct logit) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for _, r in mine.iterrows():
            s = spread.loc[r.bin]
            same = theirs[theirs.bin == r.bin]
            pct = lambda col, v: 100.0 * (same[col] < v).mean()
            lines.append(
                f"| {r.run} | {r.attn_rate:.3f} | {r.seed} | {r.split} | {r.step} | {r.acc_test:.4f} | "
                f"{r.gradient_symmetricity:.3f} | {s.gs_10:.3f}–{s.gs_90:.3f} | "
                f"{pct('gradient_sim', r.gradient_symmetricity):.0f} | "
                f"{r.distance_irrelevance_incorrect:.3f} | {s.di_10:.3f}–{s.di_90:.3f} | "
                f"{pct('distance_irrelevance', r.distance_irrelevance_incorrect):.0f} | "
                f"{r.distance_irrelevance:.3f} |")
        lines += model_b_tests(theirs, mine)
    text = "\n".join(lines)
    print(text)
    if args.table:
        args.table.write_text(text + "\n")


def model_b_tests(theirs, mine):
    """Model B as a distribution: groklab's runs with α > 0.95 against the authors' runs of that
    bin, all together and split 0 apart from the other splits (each of the authors' runs drew its
    own split): two-sample Kolmogorov-Smirnov and Mann-Whitney tests (scipy) on both measures, and
    how many runs lie above the authors' highest gradient symmetricity."""
    from scipy.stats import ks_2samp, mannwhitneyu

    top = theirs[theirs.attn_coeff > 0.95]
    b = mine[mine.attn_rate > 0.95]
    if not len(b):
        return []
    out = ["", f"Model B (α > 0.95) against the authors' {len(top)} runs of that bin "
           f"(their highest gradient symmetricity {top.gradient_sim.max():.3f}):", "",
           "| groklab runs | n | GS median | above their highest | GS: KS D, p | Mann-Whitney p "
           "| DI (incorrect): KS D, p | Mann-Whitney p |", "|---|---|---|---|---|---|---|---|"]
    for name, part in [("all", b), ("split 0", b[b.split == 0]), ("splits ≠ 0", b[b.split != 0])]:
        if not len(part):
            continue
        cells = []
        for ours_col, col in [("gradient_symmetricity", "gradient_sim"),
                              ("distance_irrelevance_incorrect", "distance_irrelevance")]:
            ks = ks_2samp(part[ours_col], top[col])
            mw = mannwhitneyu(part[ours_col], top[col])
            cells += [f"{ks.statistic:.2f}, {ks.pvalue:.2f}", f"{mw.pvalue:.2f}"]
        above = int((part.gradient_symmetricity > top.gradient_sim.max()).sum())
        out.append(f"| {name} | {len(part)} | {part.gradient_symmetricity.median():.3f} | {above} | "
                   + " | ".join(cells) + " |")
    return out


def width_plot(theirs, mine, out):
    """Their runs at (α, d_model) coloured by gradient symmetricity, ours over them; prints each
    of our runs against the authors' runs near it."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    # blue is pizza-like in both panels: high symmetricity, low distance irrelevance
    for ax, (col, ours_col, name, cmap) in zip(axes, [
        ("gradient_sim", "gradient_symmetricity", "gradient symmetricity", "coolwarm_r"),
        ("distance_irrelevance", "distance_irrelevance_incorrect",
         "distance irrelevance (largest incorrect logit)", "coolwarm"),
    ]):
        sc = ax.scatter(theirs.attn_coeff, theirs.d_model, c=theirs[col], s=7, cmap=cmap,
                        vmin=0, vmax=1, label=f"Zhong et al. ({len(theirs)} runs)")
        if len(mine):
            ax.scatter(mine.attn_rate, mine.d_model, c=mine[ours_col], s=110, cmap=cmap,
                       vmin=0, vmax=1, edgecolor="k", linewidth=1.5, marker="s",
                       label=f"groklab ({len(mine)} runs)", zorder=3)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("attention rate α")
        ax.set_title(name, fontsize=10)
        fig.colorbar(sc, ax=ax)
    axes[0].set_ylabel("d_model")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle("Width axis: (a + b) mod 59, 1 layer, d_head = d_model/4, d_mlp = 4 d_model "
                 "(blue: pizza-like, red: clock-like)", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    lines = ["| groklab run | d_model | α | seed | step | GS | theirs near it: runs, GS 10/50/90% | "
             "its percentile | DI (incorrect) | theirs: DI 10/50/90% | its percentile |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in mine.sort_values(["d_model", "attn_rate"]).iterrows():
        near = theirs[(theirs.d_model >= r.d_model / 1.25) & (theirs.d_model <= r.d_model * 1.25)
                      & ((theirs.attn_coeff - r.attn_rate).abs() <= 0.1)]
        q = lambda col: "/".join(f"{near[col].quantile(p):.3f}" for p in (0.1, 0.5, 0.9))
        pct = lambda col, v: 100.0 * (near[col] < v).mean()
        lines.append(
            f"| {r.run} | {r.d_model} | {r.attn_rate:.2f} | {r.seed} | {r.step} | "
            f"{r.gradient_symmetricity:.3f} | {len(near)}: {q('gradient_sim')} | "
            f"{pct('gradient_sim', r.gradient_symmetricity):.0f} | "
            f"{r.distance_irrelevance_incorrect:.3f} | {q('distance_irrelevance')} | "
            f"{pct('distance_irrelevance', r.distance_irrelevance_incorrect):.0f} |")
    print("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
