//! Forward and backward of one chunk of sequences on the calling thread.
//!
//! Residual stream (TransformerLens `HookedTransformer`): `x = W_E[tok] + W_pos[pos]`; per block
//! `x = x[queries] + attn(ln1(x))`, `x += mlp(ln2(x))`, where the queries are every position
//! except in the last block (the scored positions); `logits = ln_final(x)·W_U + b_U`. A
//! doubled residual ([`Residual::Doubled`]) adds the block's input `x[queries]` once more.

use super::attention::{self, Dims, SoftmaxExp};
use super::dense::*;
use super::{BlockW, Ln, SeqInput, SeqWeights};
use crate::models::fused::{cross_entropy_f32, Kernel};
use crate::models::Residual;

/// Loss sum (nats), correct count and (for a backward pass) the gradients of one chunk, scaled
/// by the whole batch's 1/n.
pub struct ChunkResult<T> {
    pub loss_sum: f64,
    pub correct: usize,
    /// Per scored pair, in row order: its loss (nats) and whether the arg-max is the target.
    pub pairs: Vec<(f64, bool)>,
    pub grads: Option<SeqWeights<T>>,
}

/// What one block's backward reads.
struct BlockCache<T> {
    /// `ln1(x)` `[B·T, D]` and its LayerNorm cache.
    n1: Vec<T>,
    ln1: Option<LnCache<T>>,
    /// `ln1(x)` at the query rows `[B·Tq, D]` (the last block only; else `n1` itself).
    n1_q: Option<Vec<T>>,
    /// Scaled queries `[B·Tq, HD]`, keys and values `[B·T, HD]`, pattern `[B, H, Tq, T]`, and
    /// `z = pattern·v` `[B·Tq, HD]`.
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    pattern: Vec<T>,
    z: Vec<T>,
    /// The MLP's tensors, for blocks that have one.
    mlp: Option<MlpCache<T>>,
}

/// What an MLP sublayer's backward reads: `ln2(x)` `[B·Tq, D]` and its LayerNorm cache, the
/// pre- and post-activation `[B·Tq, M]`.
type MlpCache<T> = (Vec<T>, Option<LnCache<T>>, Vec<T>, Vec<T>);

/// `x·w + b` per row (`x` `[r, k]`, `w` `[k, n]`).
fn affine<T: Kernel>(x: &[T], w: &[T], b: &[T], r: usize) -> Vec<T> {
    let (k, n) = (w.len() / b.len(), b.len());
    let mut out = vec![T::zero(); r * n];
    mm(&mut out, x, w, (r, k, n), false);
    add_bias(&mut out, b);
    out
}

/// LayerNorm where the model has one, else the rows unchanged.
fn norm<T: Kernel>(x: &[T], ln: &Option<Ln<T>>) -> (Vec<T>, Option<LnCache<T>>) {
    match ln {
        Some(ln) => {
            let (y, c) = layer_norm(x, &ln.w, &ln.b);
            (y, Some(c))
        }
        None => (x.to_vec(), None),
    }
}

/// The backward of [`norm`]: `∂x` from `dy`, adding to the LayerNorm's gradients.
fn norm_backward<T: Kernel>(
    dy: Vec<T>,
    ln: &Option<Ln<T>>,
    c: &Option<LnCache<T>>,
    g: &mut Option<Ln<T>>,
) -> Vec<T> {
    match (ln, c, g) {
        (Some(ln), Some(c), Some(g)) => layer_norm_backward(&dy, c, &ln.w, &mut g.w, &mut g.b),
        _ => dy,
    }
}

/// Forward (and backward) of `input` (one chunk); `inv_n` scales the gradient (1 / the whole
/// batch's scored pairs).
pub fn run<T: Kernel + SoftmaxExp>(
    w: &SeqWeights<T>,
    input: &SeqInput,
    inv_n: f64,
    backward: bool,
) -> ChunkResult<T> {
    let c = &w.cfg;
    let (t, d, h, dh) = (input.t, c.d_model, c.n_heads, c.d_head);
    let b = input.tokens.len() / t;
    let all: Vec<usize> = (0..t).collect();
    let scale = T::of(1.0 / (dh as f64).sqrt());
    let doubled = c.residual == Residual::Doubled;

    // x = W_E[tok] + W_pos[pos]                                                  // (B·T, D)
    let mut x = Vec::with_capacity(b * t * d);
    for seq in input.tokens.chunks_exact(t) {
        for (p, &tok) in seq.iter().enumerate() {
            let (e, pe) = (&w.w_e[tok as usize * d..][..d], &w.w_pos[p * d..][..d]);
            x.extend(e.iter().zip(pe).map(|(&a, &b)| a + b));
        }
    }
    let mut caches = Vec::with_capacity(w.blocks.len());
    for (l, blk) in w.blocks.iter().enumerate() {
        let queries = if l + 1 == w.blocks.len() {
            input.positions
        } else {
            &all[..]
        };
        let tq = queries.len();
        let (n1, ln1) = norm(&x, &blk.ln1);
        let k = affine(&n1, &blk.w_k, &blk.b_k, b * t);
        let v = affine(&n1, &blk.w_v, &blk.b_v, b * t);
        let n1_q = (tq != t).then(|| gather_rows(&n1, t, d, queries));
        let mut q = affine(n1_q.as_ref().unwrap_or(&n1), &blk.w_q, &blk.b_q, b * tq);
        q.iter_mut().for_each(|v| *v = *v * scale);
        let dims = Dims {
            b,
            t,
            h,
            dh,
            queries,
        };
        let (z, pattern) = attention::forward(&q, &k, &v, dims);
        let attn_out = affine(&z, &blk.w_o, &blk.b_o, b * tq);
        let resid_in = if tq == t {
            x
        } else {
            gather_rows(&x, t, d, queries)
        };
        x = resid_in.clone();
        x.iter_mut().zip(&attn_out).for_each(|(x, &a)| *x += a); // (B·Tq, D)
        let mlp = blk.mlp.as_ref().map(|m| {
            let (n2, ln2) = norm(&x, &m.ln2);
            let pre = affine(&n2, &m.w_in, &m.b_in, b * tq);
            let mut post = pre.clone();
            activate(&mut post, c.act_fn);
            mm(&mut x, &post, &m.w_out, (b * tq, c.d_mlp, d), true);
            add_bias(&mut x, &m.b_out);
            (n2, ln2, pre, post)
        });
        if doubled {
            // the notebook's loop adds the block's input again: x_{l+1} = x_l + block(x_l)
            x.iter_mut().zip(&resid_in).for_each(|(x, &r)| *x += r);
        }
        caches.push(BlockCache {
            n1,
            ln1,
            n1_q,
            q,
            k,
            v,
            pattern,
            z,
            mlp,
        });
    }
    let rows = b * input.positions.len();
    let (nf, ln_f) = norm(&x, &w.ln_final);
    let mut logits = affine(&nf, &w.w_u, &w.b_u, rows); // (B·P, Vo)

    let vo = c.d_vocab_out;
    let mut exps = vec![0.0; vo];
    let (mut loss_sum, mut correct) = (0.0, 0);
    let mut pairs = Vec::with_capacity(input.targets.len());
    for (row, &y) in logits.chunks_exact_mut(vo).zip(input.targets) {
        if y == input.ignore {
            row.fill(T::zero());
            continue;
        }
        let (loss, argmax) = if input.f32_loss {
            cross_entropy_f32(row, y as usize, inv_n, backward)
        } else {
            T::cross_entropy(row, y as usize, inv_n, backward, &mut exps)
        };
        loss_sum += loss;
        correct += usize::from(argmax == y as usize);
        pairs.push((loss, argmax == y as usize));
    }
    if !backward {
        return ChunkResult {
            loss_sum,
            correct,
            pairs,
            grads: None,
        };
    }

    // ---- backward: `logits` now holds ∂L/∂logits ----
    let mut g = SeqWeights::<T>::zeros(c);
    mm_tn(&mut g.w_u, &nf, &logits, (rows, d, vo));
    add_col_sums(&mut g.b_u, &logits);
    let mut dnf = vec![T::zero(); rows * d];
    mm_nt(&mut dnf, &logits, &w.w_u, (rows, vo, d), false);
    let mut dx = norm_backward(dnf, &w.ln_final, &ln_f, &mut g.ln_final);
    for (l, (blk, cache)) in w.blocks.iter().zip(caches).enumerate().rev() {
        let queries = if l + 1 == w.blocks.len() {
            input.positions
        } else {
            &all[..]
        };
        let tq = queries.len();
        let gb = &mut g.blocks[l];
        // ∂L/∂x_out, which a doubled residual passes straight to the block's input
        let d_out = doubled.then(|| dx.clone());
        if let (Some(m), Some((n2, ln2, pre, post)), Some(gm)) = (&blk.mlp, &cache.mlp, &mut gb.mlp)
        {
            let mm_ = c.d_mlp;
            mm_tn(&mut gm.w_out, post, &dx, (b * tq, mm_, d));
            add_col_sums(&mut gm.b_out, &dx);
            let mut dpre = vec![T::zero(); b * tq * mm_];
            mm_nt(&mut dpre, &dx, &m.w_out, (b * tq, d, mm_), false);
            activate_backward(&mut dpre, pre, c.act_fn);
            mm_tn(&mut gm.w_in, n2, &dpre, (b * tq, d, mm_));
            add_col_sums(&mut gm.b_in, &dpre);
            let mut dn2 = vec![T::zero(); b * tq * d];
            mm_nt(&mut dn2, &dpre, &m.w_in, (b * tq, mm_, d), false);
            let d_mid = norm_backward(dn2, &m.ln2, ln2, &mut gm.ln2);
            dx.iter_mut().zip(&d_mid).for_each(|(a, &b)| *a += b);
        }
        dx = block_attention_backward(
            blk,
            gb,
            &cache,
            dx,
            Dims {
                b,
                t,
                h,
                dh,
                queries,
            },
            scale,
            d_out.as_deref(),
        );
    }
    for (toks, dxs) in input.tokens.chunks_exact(t).zip(dx.chunks_exact(t * d)) {
        for (p, (&tok, row)) in toks.iter().zip(dxs.chunks_exact(d)).enumerate() {
            let ge = &mut g.w_e[tok as usize * d..][..d];
            ge.iter_mut().zip(row).for_each(|(g, &v)| *g += v);
            let gp = &mut g.w_pos[p * d..][..d];
            gp.iter_mut().zip(row).for_each(|(g, &v)| *g += v);
        }
    }
    ChunkResult {
        loss_sum,
        correct,
        pairs,
        grads: Some(g),
    }
}

/// The backward of one block's attention sublayer: from `dx` `[B·Tq, D]` (the gradient at the
/// block's output after the MLP's share is added) to the gradient at its input `[B·T, D]`;
/// `d_out` (a doubled residual's, the gradient at the block's output) reaches the input once more.
fn block_attention_backward<T: Kernel>(
    blk: &BlockW<T>,
    g: &mut BlockW<T>,
    cache: &BlockCache<T>,
    dx: Vec<T>,
    dims: Dims,
    scale: T,
    d_out: Option<&[T]>,
) -> Vec<T> {
    let Dims {
        b,
        t,
        h,
        dh,
        queries,
    } = dims;
    let (d, hd, tq) = (blk.b_o.len(), h * dh, queries.len());
    mm_tn(&mut g.w_o, &cache.z, &dx, (b * tq, hd, d));
    add_col_sums(&mut g.b_o, &dx);
    let mut dz = vec![T::zero(); b * tq * hd];
    mm_nt(&mut dz, &dx, &blk.w_o, (b * tq, d, hd), false);
    let (mut dq, dk, dv) =
        attention::backward(&dz, &cache.q, &cache.k, &cache.v, &cache.pattern, dims);
    dq.iter_mut().for_each(|v| *v = *v * scale);
    let n1_q = cache.n1_q.as_ref().unwrap_or(&cache.n1);
    mm_tn(&mut g.w_q, n1_q, &dq, (b * tq, d, hd));
    add_col_sums(&mut g.b_q, &dq);
    mm_tn(&mut g.w_k, &cache.n1, &dk, (b * t, d, hd));
    add_col_sums(&mut g.b_k, &dk);
    mm_tn(&mut g.w_v, &cache.n1, &dv, (b * t, d, hd));
    add_col_sums(&mut g.b_v, &dv);
    let mut dn1 = vec![T::zero(); b * t * d];
    mm_nt(&mut dn1, &dk, &blk.w_k, (b * t, hd, d), false);
    mm_nt(&mut dn1, &dv, &blk.w_v, (b * t, hd, d), true);
    if tq == t {
        mm_nt(&mut dn1, &dq, &blk.w_q, (b * t, hd, d), true);
    } else {
        let mut dn1_q = vec![T::zero(); b * tq * d];
        mm_nt(&mut dn1_q, &dq, &blk.w_q, (b * tq, hd, d), false);
        scatter_add_rows(&mut dn1, &dn1_q, t, d, queries);
    }
    let mut dx_in = norm_backward(dn1, &blk.ln1, &cache.ln1, &mut g.ln1);
    // the residual: x_out = x_in[queries] + … (+ x_in[queries] again where doubled)
    for skip in std::iter::once(&dx[..]).chain(d_out) {
        if tq == t {
            dx_in.iter_mut().zip(skip).for_each(|(a, &b)| *a += b);
        } else {
            scatter_add_rows(&mut dx_in, skip, t, d, queries);
        }
    }
    dx_in
}
