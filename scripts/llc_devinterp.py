#!/usr/bin/env python3
"""groklab's LLC against devinterp 2.x's on the same weights, data and hyperparameters.

For each chosen checkpoint of a binary-operation run (add, sub, mul), this runs

* ``groklab llc RUN --steps S ...`` (SGLD in Rust, chains in parallel), and
* ``devinterp.slt.llc.llc`` on the checkpoint in a PyTorch module (TransformerLens' forward
  for a LayerNorm-free transformer, written out below: TransformerLens 4's ``TransformerBridge``
  cannot be deep-copied, which devinterp does per chain; the script checks its logits against
  ``Run.forward``), with the run's training split as the sampling data,

with the same ε (``lr``), γ (``localization``), nβ, chains, draws and batch size, and prints both
estimates with their standard errors over chains, whether they agree within the combined
standard error (``|a − b| ≤ 2·sqrt(se_a² + se_b²)``, a two-sided 95% test), and the wall time of
each on the same thread count. With ``--written-out`` it adds a third estimate: devinterp's
documented SGLD update written out in a few lines of PyTorch.

devinterp 2.x averages the loss over every SGLD step, burn-in included (``compute_llc``), so the
comparison runs without burn-in and with a draw every step, where both definitions agree.

Usage (the groklab Python package, devinterp 2.x and TransformerLens installed)::

    python scripts/llc_devinterp.py runs/quick --steps 100,500,3000 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np


FROZEN = ("attn.b_Q", "attn.b_K", "attn.b_V", "attn.b_O", "unembed.b_U")


def plain_transformer(torch, weights: dict, model_cfg: dict):
    """TransformerLens' forward of a LayerNorm-free transformer (ReLU or GELU MLPs, causal
    attention) over a checkpoint's tensors, as a ``torch.nn.Module`` whose parameters are the
    trainable tensors (names with ``/`` for ``.``)."""
    if model_cfg["normalization"] != "none":
        raise SystemExit("model.normalization must be none for this script")
    act = {"relu": torch.relu, "gelu": torch.nn.functional.gelu}[model_cfg["act_fn"]]

    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            kept = {k: torch.tensor(v, dtype=torch.float32)
                    for k, v in weights.items() if not k.endswith(("IGNORE", "mask"))}
            # groklab trains none of the biases the paper's model lacks (attention b_Q, b_K,
            # b_V, b_O and unembed.b_U are frozen zeros): the sampler must not move them either
            self.w = torch.nn.ParameterDict({
                k.replace(".", "/"): torch.nn.Parameter(v) for k, v in kept.items()
                if not k.endswith(FROZEN)})
            self.frozen = {k: v for k, v in kept.items() if k.endswith(FROZEN)}

        def forward(self, tokens):
            w = lambda k: self.frozen[k] if k in self.frozen else self.w[k.replace(".", "/")]
            T = tokens.shape[1]
            x = w("embed.W_E")[tokens] + w("pos_embed.W_pos")[:T]
            causal = torch.ones(T, T, dtype=torch.bool).tril()
            for l in range(model_cfg["n_layers"]):
                a = f"blocks.{l}.attn."
                q = torch.einsum("btd,hde->bthe", x, w(a + "W_Q")) + w(a + "b_Q")
                k = torch.einsum("btd,hde->bthe", x, w(a + "W_K")) + w(a + "b_K")
                v = torch.einsum("btd,hde->bthe", x, w(a + "W_V")) + w(a + "b_V")
                s = torch.einsum("bqhe,bkhe->bhqk", q, k) / q.shape[-1] ** 0.5
                s = torch.where(causal, s, torch.tensor(-1e5))
                z = torch.einsum("bhqk,bkhe->bqhe", s.softmax(-1), v)
                x = x + torch.einsum("bqhe,hed->bqd", z, w(a + "W_O")) + w(a + "b_O")
                if not model_cfg["attn_only"]:
                    m = f"blocks.{l}.mlp."
                    x = x + act(x @ w(m + "W_in") + w(m + "b_in")) @ w(m + "W_out") + w(m + "b_out")
            return x @ w("unembed.W_U") + w("unembed.b_U")

    return Plain()


def written_out_sgld(torch, model, rows, nbeta, args, cycle=False) -> tuple:
    """The SGLD update of devinterp's docstring written out in PyTorch (a third opinion): per
    chain, w ← w − ε/2·(nβ·∇L_batch(w) + γ(w − w*)) + N(0, ε), batches of a fresh permutation
    per epoch (drop_last), each step's batch loss before the step drawn; returns (mean, se).

    `cycle`: the batches of devinterp 2.0.1's default `epoch_mode="cycle"` instead, with
    `match_sampling_input_ids_across_chains=True`: one permutation, shared by every chain, cut
    into floor(n / batch) batches (drop_last) that are replayed in the same order for the whole
    chain (`itertools.cycle` over the first epoch), so the rows left over are never seen."""
    import copy

    data = torch.from_numpy(rows)
    n = len(rows)
    n_batches = n // args.batch_size
    fixed = (torch.randperm(n, generator=torch.Generator().manual_seed(100)) if args.shuffle
             else torch.arange(n))
    # cycling, the chains see only the first epoch's rows, and L(w*) is theirs (devinterp's init_loss)
    seen = data[fixed[:n_batches * args.batch_size]] if cycle else data
    with torch.no_grad():
        init = torch.nn.functional.cross_entropy(model(seen[:, :3])[:, -1].double(), seen[:, 3]).item()
    per_chain = []
    for c in range(args.num_chains):
        m = copy.deepcopy(model)
        w0 = [q.detach().clone() for q in m.parameters()]
        gen = torch.Generator().manual_seed(1000 + c)
        losses, perm, at = [], None, n
        for i in range(args.num_draws):
            if cycle:
                k = i % n_batches
                x = data[fixed[k * args.batch_size:(k + 1) * args.batch_size]]
            else:
                if at + args.batch_size > n:
                    perm = torch.randperm(n, generator=gen) if args.shuffle else torch.arange(n)
                    at = 0
                x = data[perm[at:at + args.batch_size]]
                at += args.batch_size
            loss = torch.nn.functional.cross_entropy(m(x[:, :3])[:, -1].double(), x[:, 3])
            m.zero_grad()
            loss.backward()
            losses.append(loss.item())
            with torch.no_grad():
                for q, q0 in zip(m.parameters(), w0):
                    q.add_(-0.5 * args.lr * (nbeta * q.grad + args.localization * (q - q0))
                           + args.lr ** 0.5 * torch.randn(q.shape, generator=gen))
        per_chain.append(nbeta * (np.mean(losses) - init))
    return float(np.mean(per_chain)), float(np.std(per_chain, ddof=1) / np.sqrt(len(per_chain)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--steps", required=True, help="comma-separated checkpointed steps")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--localization", type=float, default=100.0)
    ap.add_argument("--nbeta", type=float, default=None, help="default n / ln n")
    ap.add_argument("--num-chains", type=int, default=4)
    ap.add_argument("--num-draws", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--written-out", action="store_true",
                    help="also run the SGLD update written out in PyTorch (a third estimate)")
    ap.add_argument("--epoch-mode", default="reshuffle", choices=["reshuffle", "cycle"],
                    help="groklab llc's --epoch-mode (cycle: devinterp 2.x's default batches)")
    ap.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=True,
                    help="--no-shuffle: both programs take the training rows in split.json's order "
                         "(groklab --shuffle false, devinterp shuffle=False), so with --epoch-mode "
                         "cycle they see the very same batches")
    ap.add_argument("--written-out-cycle", action="store_true",
                    help="also run it on devinterp 2.0.1's default batches (epoch_mode 'cycle': the "
                         "first epoch's batches replayed, shared by the chains)")
    ap.add_argument("--devinterp", action=argparse.BooleanOptionalAction, default=True,
                    help="run devinterp itself (--no-devinterp: only groklab and the written-out updates)")
    ap.add_argument("--groklab", default=os.environ.get("GROKLAB", "target/release/groklab"))
    args = ap.parse_args()

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")  # devinterp draws a bar per chain
    import torch

    torch.set_num_threads(args.threads)
    import groklab
    from datasets import Dataset
    from devinterp.slt.llc import llc as devinterp_llc

    run = groklab.Run(args.run)
    task = run.config["task"]
    p = task["p"]
    ops = {"add": lambda a, b: (a + b) % p, "sub": lambda a, b: (a - b) % p,
           "mul": lambda a, b: (a * b) % p}
    if task["name"] not in ops:
        raise SystemExit(f"task.name = {task['name']!r}: this script knows add, sub, mul")
    train = json.loads((args.run / "split.json").read_text())["train"]
    a, b = np.divmod(np.asarray(train), p)
    rows = np.stack([a, b, np.full_like(a, p), ops[task["name"]](a, b)], 1)
    n = len(rows)
    nbeta = args.nbeta if args.nbeta is not None else n / np.log(n)
    dataset = Dataset.from_dict({"input_ids": rows.tolist()}).with_format("torch")

    def loss_fn(model, input_ids):
        # the loss the run trains: cross-entropy of the last position's logits, one per row;
        # devinterp wants (batch, seq - 1) per-token losses and averages them, so each row's loss
        # is repeated over the 3 positions: the mean (and its gradient) is the same
        logits = model(input_ids[:, :3])[:, -1].double()
        ce = torch.nn.functional.cross_entropy(logits, input_ids[:, 3], reduction="none")
        return ce[:, None].expand(-1, input_ids.shape[1] - 1).float()

    print(f"{args.run}: n = {n} training rows, nβ = {nbeta:.2f}, ε = {args.lr}, γ = {args.localization}, "
          f"{args.num_chains} chains × {args.num_draws} draws, batch {args.batch_size}, {args.threads} threads")
    print("step  groklab λ̂ ± se   (s)     devinterp λ̂ ± se   (s)    |Δ|/combined se  agree  speed-up")
    for step in [int(s) for s in args.steps.split(",")]:
        t0 = time.perf_counter()
        subprocess.run(
            [args.groklab, "llc", str(args.run), "--steps", str(step), "--lr", str(args.lr),
             "--localization", str(args.localization), "--nbeta", str(nbeta),
             "--num-chains", str(args.num_chains), "--num-draws", str(args.num_draws),
             "--num-burnin-steps", "0", "--batch-size", str(args.batch_size),
             "--epoch-mode", args.epoch_mode, "--shuffle", str(args.shuffle).lower(),
             "--threads", str(args.threads)],
            check=True, capture_output=True)
        t_ours = time.perf_counter() - t0
        ours = [json.loads(line) for line in (args.run / "llc.jsonl").read_text().splitlines()][0]

        model = plain_transformer(torch, run.checkpoint(step), run.config["model"])
        with torch.no_grad():
            check = rows[:256, :3]
            diff = np.abs(model(torch.from_numpy(check)).double().numpy() - run.forward(check, step=step)).max()
        if diff > 1e-3:
            raise SystemExit(f"step {step}: the PyTorch module's logits differ from groklab's by {diff:.2e}")
        if not args.devinterp:
            print(f"{step:>5}  {ours['llc_mean']:8.2f} ± {ours['llc_se']:5.2f} ({t_ours:6.1f})  (devinterp not run)")
        else:
            t0 = time.perf_counter()
            res = devinterp_llc(
                model, dataset, observables={}, lr=args.lr, n_beta=nbeta, loss_fn=loss_fn,
                localization=args.localization, num_chains=args.num_chains,
                num_draws=args.num_draws, num_burnin_steps=0, num_steps_bw_draws=1,
                batch_size=args.batch_size, num_init_loss_batches=max(1, 4 * n // args.batch_size),
                shuffle=args.shuffle, device="cpu")
            t_theirs = time.perf_counter() - t0
            per_chain = np.asarray(res["llc_per_chain"].values, dtype=float)
            theirs_mean = float(per_chain.mean())
            theirs_se = float(per_chain.std(ddof=1) / np.sqrt(len(per_chain)))
            combined = float(np.hypot(ours["llc_se"], theirs_se))
            z = abs(ours["llc_mean"] - theirs_mean) / combined if combined > 0 else float("inf")
            print(f"{step:>5}  {ours['llc_mean']:8.2f} ± {ours['llc_se']:5.2f} ({t_ours:6.1f})  "
                  f"{theirs_mean:8.2f} ± {theirs_se:5.2f} ({t_theirs:6.1f})  {z:6.2f}  "
                  f"{'yes' if z <= 2 else 'NO':>5}  {t_theirs / t_ours:6.1f}×")
        if args.written_out:
            mean, se = written_out_sgld(torch, model, rows, nbeta, args)
            print(f"       written-out PyTorch SGLD: {mean:8.2f} ± {se:5.2f}")
        if args.written_out_cycle:
            mean, se = written_out_sgld(torch, model, rows, nbeta, args, cycle=True)
            print(f"       written-out PyTorch SGLD, devinterp's cycled batches: {mean:8.2f} ± {se:5.2f}")


if __name__ == "__main__":
    main()
