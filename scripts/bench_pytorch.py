#!/usr/bin/env python3
"""Time the paper's training step in PyTorch, for comparison with `groklab bench`.

Not used by the tests. Needs only torch (`pip install torch`). The model, loss and optimiser
follow the reference code of Nanda et al. 2023 ("Progress measures for grokking", the
`Transformer` of its `transformers.py` and its `full_loss`): a 1-layer transformer without
LayerNorm (d_model 128, 4 heads of 32, d_mlp 512, d_vocab 114 in and out, n_ctx 3), the whole
sequence computed and the last position's logits cast to float64 for log_softmax, AdamW
(lr 1e-3, betas (0.9, 0.98), weight decay 1.0) with the warm-up LambdaLR, full batch of the
30% split (3,830 rows) drawn with Python's `random` as the paper does.

With `--last-position` the query, MLP and unembedding run at the last position only (the
keys and values at all three), as groklab's fused step does: a stronger PyTorch baseline than
the paper's code.

Prints one line: threads, timed steps, median / min / max ms per step (milliseconds of wall
time for zero_grad + forward + loss + backward + optimiser and scheduler step).

With `--model induction|skip_trigram|digit_add|digit_add_d128` it times instead the general
path's sequence models with the settings of groklab's presets: `nanda_induction_infinite` (the
authors' notebook: 2-layer attention-only, d_model 48, 4 heads of 12, the doubled residual,
vocabulary 128, 128 sequences of 85 tokens, loss on the 30 tokens a copy predicts in f32 times
85/84, AdamW betas (0.9, 0.999), wd 1); `nanda_skip_trigram_infinite` (1 layer attention-only,
d_model 32, 1 head of 8, 256 sequences of 42 tokens scored at END, f64 loss, wd 0.1);
`nanda_digit_add5_infinite` (1 layer, d_model 512, 4 heads of 128, d_mlp 2048, 64 sequences of
18 tokens, loss on the 6 answer digits, lr 1e-4, wd 0.1) and `digit_add5_d128_infinite`
(d_model 128, 4 heads of 32, d_mlp 512, 128 sequences): a TransformerLens-style model on whole
sequences (causal mask, log_softmax at the scored positions), AdamW.

With `--model icl` it times the step of groklab's ICL preset `--icl-preset` (default
`icl_1layer`; von Oswald et al. 2023): linear self-attention layers (square 11 x 11 W_Q, W_K,
W_V, W_P per head; queries from all 11 tokens, keys and values from the 10 context tokens; no
softmax, or softmax of the scores / sqrt(11) for the softmax presets; one shared block for
`icl_2layer_recurrent`) on a fresh batch of 2,048 in-context regression tasks (d = N = 10, drawn
inside the step as groklab does), ½-MSE of the query's prediction, global-norm clipping at 0.001
and AdamW (lr 1e-3, betas (0.9, 0.98), no weight decay). `--last-position` computes only the
query's row in the last layer, as groklab does.

usage: python3 scripts/bench_pytorch.py [--threads N] [--steps N] [--warmup N] [--last-position]
                                        [--model paper|induction|skip_trigram|digit_add|digit_add_d128|icl]
                                        [--icl-preset NAME]
"""
import argparse
import math
import random
import statistics
import time

import torch
from torch import nn


class Transformer(nn.Module):
    """The paper's 1-layer model, with its parameter layouts (W_E [d_model, d_vocab], ...)."""

    def __init__(self, d_vocab=114, d_model=128, n_heads=4, d_head=32, d_mlp=512, n_ctx=3):
        super().__init__()
        r = lambda *s, d=d_model: nn.Parameter(torch.randn(*s) / math.sqrt(d))
        self.W_E = r(d_model, d_vocab)
        self.W_pos = r(n_ctx, d_model)
        self.W_K, self.W_Q, self.W_V = (r(n_heads, d_head, d_model) for _ in range(3))
        self.W_O = r(d_model, d_head * n_heads)
        self.W_in = r(d_mlp, d_model)
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = r(d_model, d_mlp)
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.W_U = r(d_model, d_vocab, d=d_vocab)
        self.register_buffer("mask", torch.tril(torch.ones((n_ctx, n_ctx))))
        self.d_head = d_head

    def forward(self, tokens, last_only=False):  # tokens (B, P) -> logits (B, P or 1, d_vocab)
        x = torch.einsum("dbp -> bpd", self.W_E[:, tokens]) + self.W_pos[: tokens.shape[-1]]
        k = torch.einsum("ihd,bpd->biph", self.W_K, x)
        v = torch.einsum("ihd,bpd->biph", self.W_V, x)
        p = x.shape[-2]
        if last_only:  # the last query sees every key: no mask needed
            x = x[:, -1:]
            q = torch.einsum("ihd,bpd->biph", self.W_Q, x)
            scores = torch.einsum("biph,biqh->biqp", k, q)
            pattern = torch.softmax(scores / math.sqrt(self.d_head), dim=-1)
        else:
            q = torch.einsum("ihd,bpd->biph", self.W_Q, x)
            scores = torch.einsum("biph,biqh->biqp", k, q)
            masked = torch.tril(scores) - 1e10 * (1 - self.mask[:p, :p])
            pattern = torch.softmax(masked / math.sqrt(self.d_head), dim=-1)
        z = torch.einsum("biph,biqp->biqh", v, pattern)
        z = z.permute(0, 2, 1, 3).reshape(z.shape[0], x.shape[-2], -1)  # (B, Q, n_heads * d_head)
        x = x + torch.einsum("df,bqf->bqd", self.W_O, z)
        pre = torch.einsum("md,bpd->bpm", self.W_in, x) + self.b_in
        x = x + torch.einsum("dm,bpm->bpd", self.W_out, torch.relu(pre)) + self.b_out
        return x @ self.W_U


def full_loss(model, tokens, labels, last_only=False):
    """The paper's loss: log_softmax of the last position's logits in float64."""
    logits = model(tokens, last_only)[:, -1].to(torch.float64)
    log_probs = logits.log_softmax(dim=-1)
    return -log_probs.gather(-1, labels[:, None])[:, 0].mean()


def time_steps(step, warmup, steps):
    """Runs `step` warmup + steps times; returns the last `steps` wall times (ms) and the last loss."""
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = step()
        if i >= warmup:
            times.append(1e3 * (time.perf_counter() - t0))
    return times, loss


class SeqTransformer(nn.Module):
    """TransformerLens' HookedTransformer without LayerNorm: W_E [d_vocab, d_model], W_Q/W_K/W_V
    [n_heads, d_model, d_head], W_O [n_heads, d_head, d_model], biases, causal attention scaled
    by 1/sqrt(d_head), optional ReLU MLP, W_U [d_model, d_vocab_out]."""

    def __init__(self, n_layers, d_model, n_heads, d_head, d_mlp, d_vocab, d_vocab_out, n_ctx,
                 doubled=False):
        super().__init__()
        r = lambda *s: nn.Parameter(torch.randn(*s) / math.sqrt(d_model))
        z = lambda *s: nn.Parameter(torch.zeros(*s))
        self.W_E, self.W_pos = r(d_vocab, d_model), r(n_ctx, d_model)
        self.blocks = nn.ModuleList()
        for _ in range(n_layers):
            b = nn.Module()
            b.W_Q, b.W_K, b.W_V = (r(n_heads, d_model, d_head) for _ in range(3))
            b.b_Q, b.b_K, b.b_V = (z(n_heads, d_head) for _ in range(3))
            b.W_O, b.b_O = r(n_heads, d_head, d_model), z(d_model)
            if d_mlp:
                b.W_in, b.b_in = r(d_model, d_mlp), z(d_mlp)
                b.W_out, b.b_out = r(d_mlp, d_model), z(d_model)
            self.blocks.append(b)
        self.W_U, self.b_U = r(d_model, d_vocab_out), z(d_vocab_out)
        self.register_buffer("mask", torch.tril(torch.ones(n_ctx, n_ctx, dtype=torch.bool)))
        self.d_head, self.d_mlp, self.doubled = d_head, d_mlp, doubled

    def forward(self, tokens):  # (B, T) -> (B, T, d_vocab_out)
        t = tokens.shape[1]
        x = self.W_E[tokens] + self.W_pos[:t]
        for b in self.blocks:
            x_in = x
            q = torch.einsum("btd,hde->bhte", x, b.W_Q) + b.b_Q[None, :, None]
            k = torch.einsum("btd,hde->bhte", x, b.W_K) + b.b_K[None, :, None]
            v = torch.einsum("btd,hde->bhte", x, b.W_V) + b.b_V[None, :, None]
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
            scores = scores.masked_fill(~self.mask[:t, :t], float("-inf"))
            z = torch.softmax(scores, dim=-1) @ v  # (B, H, T, d_head)
            x = x + torch.einsum("bhte,hed->btd", z, b.W_O) + b.b_O
            if self.d_mlp:
                x = x + torch.relu(x @ b.W_in + b.b_in) @ b.W_out + b.b_out
            if self.doubled:  # the authors' notebook: the loop adds the block's input again
                x = x + x_in
        return x @ self.W_U + self.b_U


def sequence_batch(model_name, gen, rows):
    """tokens (B, T) and targets (B, T) with -1 where unscored, as groklab's generators make them."""
    if model_name.startswith("digit_add"):
        a = torch.randint(0, 10, (rows, 5), generator=gen)
        b = torch.randint(0, 10, (rows, 5), generator=gen)
        sums = (a * 10 ** torch.arange(4, -1, -1)).sum(1) + (b * 10 ** torch.arange(4, -1, -1)).sum(1)
        s = torch.stack([(sums // 10 ** k) % 10 for k in range(5, -1, -1)], 1)
        tokens = torch.cat([a, torch.full((rows, 1), 10), b, torch.full((rows, 1), 11), s], 1)
        targets = torch.full_like(tokens, -1)
        targets[:, 11:17] = s
        return tokens, targets
    if model_name == "skip_trigram":
        # BOS 0, 40 noise tokens in 2..11, END 1; one position holds signal 12 + c; target c at END
        tokens = torch.randint(2, 12, (rows, 42), generator=gen)
        tokens[:, 0], tokens[:, 41] = 0, 1
        c = torch.randint(0, 10, (rows,), generator=gen)
        at = torch.randint(1, 41, (rows,), generator=gen)
        tokens[torch.arange(rows), at] = 12 + c
        targets = torch.full_like(tokens, -1)
        targets[:, 41] = c
        return tokens, targets
    tokens = torch.randint(1, 128, (rows, 85), generator=gen)
    tokens[:, 0] = 0
    targets = torch.full_like(tokens, -1)
    for i in range(rows):
        sub = torch.randint(1, 128, (16,), generator=gen)
        for c, start in enumerate((1, 30, 58)):  # fixed layout: the cost does not depend on it
            tokens[i, start : start + 16] = sub
            if c:
                targets[i, start : start + 15] = sub[1:]
    return tokens, targets


def sequence_main(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    # (model, rows, lr, weight decay, betas, loss dtype, loss scale) of each preset
    f64, f32 = torch.float64, torch.float32
    if args.model == "induction":  # nanda_induction_infinite: the authors' notebook
        model = SeqTransformer(2, 48, 4, 12, 0, 128, 128, 85, doubled=True)
        rows, lr, wd, betas, loss_dtype, scale = 128, 1e-3, 1.0, (0.9, 0.999), f32, 85 / 84
    elif args.model == "skip_trigram":  # nanda_skip_trigram_infinite
        model = SeqTransformer(1, 32, 1, 8, 0, 22, 10, 42)
        rows, lr, wd, betas, loss_dtype, scale = 256, 1e-3, 0.1, (0.9, 0.98), f64, 1.0
    elif args.model == "digit_add":  # nanda_digit_add5_infinite: the authors' per-digit run
        model = SeqTransformer(1, 512, 4, 128, 2048, 12, 10, 18)
        rows, lr, wd, betas, loss_dtype, scale = 64, 1e-4, 0.1, (0.9, 0.98), f64, 1.0
    else:  # digit_add_d128: digit_add5_d128_infinite
        model = SeqTransformer(1, 128, 4, 32, 512, 12, 10, 18)
        rows, lr, wd, betas, loss_dtype, scale = 128, 1e-3, 0.1, (0.9, 0.98), f64, 1.0
    tokens, targets = sequence_batch(args.model, gen, rows)
    scored = targets >= 0
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd, betas=betas)

    def step():
        opt.zero_grad()
        logits = model(tokens)[scored].to(loss_dtype)
        loss = -scale * logits.log_softmax(-1).gather(-1, targets[scored][:, None]).mean()
        loss.backward()
        opt.step()
        return loss

    times, loss = time_steps(step, args.warmup, args.steps)
    print(
        f"pytorch {torch.__version__} threads {args.threads} {args.model}: {rows} sequences of "
        f"{tokens.shape[1]} tokens, {int(scored.sum())} scored, steps {args.steps}: median "
        f"{statistics.median(times):.1f} ms (min {min(times):.1f}, max {max(times):.1f}), "
        f"final loss {loss.item():.4f}"
    )


# groklab's ICL presets: (layers, shared block, heads, softmax)
ICL_PRESETS = {
    "icl_1layer": (1, False, 1, False),
    "icl_dampened_rollout": (1, False, 1, False),
    "icl_2layer_recurrent": (2, True, 1, False),
    "icl_softmax_1head": (1, False, 1, True),
    "icl_softmax_2heads": (1, False, 2, True),
}


def icl_main(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layers, shared, heads, softmax = ICL_PRESETS[args.icl_preset]
    d, n, b = 10, 10, 2048
    e = d + 1
    std = math.sqrt(0.002 / (layers * e)) / 0.87962566
    blocks = 1 if shared else layers
    params = [
        nn.Parameter(nn.init.trunc_normal_(torch.empty(heads, e, e), std=std, a=-2 * std, b=2 * std))
        for _ in range(4 * blocks)
    ]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0, betas=(0.9, 0.98))
    query = torch.ones(n + 1, 1)
    query[-1] = 0.0

    def layer(h, l):
        w_q, w_k, w_v, w_p = params[4 * (l % blocks): 4 * (l % blocks) + 4]
        ctx = h[:, :-1]
        # the last layer's only output the loss reads is the query's (with --last-position)
        q_in = h[:, -1:] if args.last_position and l == layers - 1 else h
        # heads batched: (b, 1, t, e) @ (h, e, e) -> (b, h, t, e)
        q = q_in.unsqueeze(1) @ w_q
        k = ctx.unsqueeze(1) @ w_k
        v = ctx.unsqueeze(1) @ w_v
        a = q @ k.transpose(-1, -2)
        if softmax:
            a = torch.softmax(a / math.sqrt(e), -1)
        out = ((a @ v) @ w_p).sum(1)
        if q_in is h:
            return h + out
        return torch.cat([h[:, :-1], h[:, -1:] + out], 1)

    def step():
        opt.zero_grad()
        x = torch.rand(b, n + 1, d) - 0.5
        w = torch.randn(b, d, 1)
        y = x @ w  # (b, n + 1, 1)
        h = torch.cat([x, y * query], -1)  # the query's label slot is 0
        for l in range(layers):
            h = layer(h, l)
        loss = 0.5 * ((-h[:, -1, -1] - y[:, -1, 0]) ** 2).mean()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 0.001)
        opt.step()
        return loss

    times, loss = time_steps(step, args.warmup, args.steps)
    print(
        f"pytorch {torch.__version__} threads {args.threads} {args.icl_preset}"
        f"{' (query row only in the last layer)' if args.last_position else ''}: {b} tasks of "
        f"{n + 1} tokens, steps {args.steps}: median {statistics.median(times):.1f} ms "
        f"(min {min(times):.1f}, max {max(times):.1f}), final loss {loss.item():.4f}"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument(
        "--last-position",
        action="store_true",
        help="compute the query, MLP and unembedding at the last position only (what the loss reads)",
    )
    ap.add_argument(
        "--model",
        choices=["paper", "induction", "skip_trigram", "digit_add", "digit_add_d128", "icl"],
        default="paper",
    )
    ap.add_argument("--icl-preset", choices=sorted(ICL_PRESETS), default="icl_1layer")
    args = ap.parse_args()
    if args.model == "icl":
        return icl_main(args)
    if args.model != "paper":
        return sequence_main(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    p, frac = 113, 0.3
    pairs = [(i, j, p) for i in range(p) for j in range(p)]
    random.seed(0)
    random.shuffle(pairs)
    train = pairs[: int(frac * len(pairs))]
    tokens = torch.tensor(train)
    labels = (tokens[:, 0] + tokens[:, 1]) % p

    model = Transformer()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(step / 10, 1))

    def step():
        opt.zero_grad()
        loss = full_loss(model, tokens, labels, args.last_position)
        loss.backward()
        opt.step()
        sched.step()
        return loss

    times, loss = time_steps(step, args.warmup, args.steps)
    print(
        f"pytorch {torch.__version__} threads {args.threads} rows {len(train)} "
        f"{'last position' if args.last_position else 'paper step'} "
        f"steps {args.steps}: median {statistics.median(times):.1f} ms "
        f"(min {min(times):.1f}, max {max(times):.1f}), final loss {loss.item():.4f}"
    )


if __name__ == "__main__":
    main()
