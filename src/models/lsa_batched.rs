//! The LSA's forward and backward over a chunk of tasks at once: every projection (`H W_Q`,
//! `H W_K`, `H W_V`, `O W_P`, the MLP) and every weight gradient is one GEMM over the chunk's
//! rows; only the attention itself (`Q Kᵀ`, `A V`, T × (T−1) per task) runs per task.
//!
//! Shapes, per chunk of m tasks of T tokens of width e, c = T − 1 context tokens, h heads:
//! `H_l` `[m·T, e]` the input of layer l; `U = LN1(H_l)` (or `H_l`) the attention's input;
//! per head `Q` `[m·tq, e]` (tq = T, or 1 in the last layer, which updates only the query:
//! the loss reads nothing else), `K`, `V` `[m·T, e]` (row T−1 of each task unused),
//! `A` `[m·tq, c]`, `O` `[m·tq, e]`; the MLP on the tq updated rows, `Z = LN2(·)`
//! `[m·tq, e]`, `pre`, `post = ReLU(pre)` `[m·tq, d_mlp]`.

use super::lsa::{first_query, mm, mm_nt, mm_tn_acc, LsaBlock, LsaWeights};
use crate::numerics::layer_norm::{self as ln, LnCache};
use crate::numerics::linalg::{matmul_into_shaped as matmul_into, View};
use crate::numerics::softmax::softmax_rows;

/// Where each parameter's gradient goes among a block's parameters (store order:
/// `W_Q, W_K, W_V, W_O`, then `ln1.w, ln1.b` with LayerNorm, then `ln2.w, ln2.b` with
/// LayerNorm and an MLP, then `mlp.W_in, b_in, W_out, b_out` with an MLP).
#[derive(Clone, Copy, Debug)]
pub(super) struct Slots {
    pub ln1: Option<usize>,
    pub ln2: Option<usize>,
    pub mlp: Option<usize>,
}

impl Slots {
    pub fn of(layer_norm: bool, mlp: bool) -> Self {
        let mut count = 4;
        let mut take = |yes: bool, n: usize| {
            yes.then(|| {
                count += n;
                count - n
            })
        };
        let ln1 = take(layer_norm, 2);
        let ln2 = take(layer_norm && mlp, 2);
        let mlp = take(mlp, 4);
        Self { ln1, ln2, mlp }
    }
}

/// A LayerNorm's output `[rows, e]` and what its backward needs.
struct Normed {
    y: Vec<f32>,
    cache: LnCache<f32>,
}

/// `y = (x − mean)/σ · w + b` per row of `x` `[rows, e]` ([`crate::numerics::layer_norm`]).
fn layer_norm(x: &[f32], w: &[f32], b: &[f32]) -> Normed {
    let (y, cache) = ln::layer_norm(x, w, b);
    Normed { y, cache }
}

/// Backward of [`layer_norm`]: returns dx and, when `g` is given, adds to its scale and shift.
fn layer_norm_back(
    dy: &[f32],
    n: &Normed,
    w: &[f32],
    g: Option<(&mut [f32], &mut [f32])>,
) -> Vec<f32> {
    match g {
        Some((gw, gb)) => ln::layer_norm_backward(dy, &n.cache, w, gw, gb),
        None => {
            let (mut gw, mut gb) = (vec![0.0; w.len()], vec![0.0; w.len()]);
            ln::layer_norm_backward(dy, &n.cache, w, &mut gw, &mut gb)
        }
    }
}

/// Rows `q0..T` of every task of `x` `[m·T, e]` as a view: all rows, or the query rows alone.
fn query_rows(x: &[f32], m: usize, t: usize, e: usize, q0: usize) -> View<'_, f32> {
    if q0 == 0 {
        View::new(x, m * t, e)
    } else {
        debug_assert_eq!(q0, t - 1, "a layer updates every token or the query alone");
        View::strided(&x[q0 * e..], m, e, t * e, 1)
    }
}

/// Row stride of the rows `q0..T` of an `[m·T, e]` buffer written through `&x[q0·e..]`.
fn query_stride(t: usize, e: usize, q0: usize) -> usize {
    if q0 == 0 {
        e
    } else {
        t * e
    }
}

/// The rows `q0..T` of every task, contiguous `[m·tq, e]`.
fn gather(x: &[f32], m: usize, t: usize, e: usize, q0: usize) -> Vec<f32> {
    (0..m)
        .flat_map(|i| &x[(i * t + q0) * e..(i + 1) * t * e])
        .copied()
        .collect()
}

/// Adds `src` `[m·tq, e]` to the rows `q0..T` of every task of `dst`.
fn scatter_add(dst: &mut [f32], src: &[f32], m: usize, t: usize, e: usize, q0: usize) {
    let tq = t - q0;
    for i in 0..m {
        let d = &mut dst[(i * t + q0) * e..(i + 1) * t * e];
        d.iter_mut()
            .zip(&src[i * tq * e..(i + 1) * tq * e])
            .for_each(|(a, b)| *a += b);
    }
}

/// `[e, e]` head `hd` of an `[h, e, e]` matrix.
fn head(x: &[f32], hd: usize, e: usize) -> View<'_, f32> {
    View::new(&x[hd * e * e..(hd + 1) * e * e], e, e)
}

/// What the backward reads of one head of one layer.
struct HeadActs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    a: Vec<f32>,
    o: Vec<f32>,
}

/// What the backward reads of the MLP of one layer.
struct MlpActs {
    ln2: Option<Normed>,
    /// `[m·tq, e]` its input (after LN2).
    z: Vec<f32>,
    /// `[m·tq, d_mlp]` before and after the ReLU.
    pre: Vec<f32>,
    post: Vec<f32>,
}

/// What the backward reads of one layer.
struct LayerActs {
    ln1: Option<Normed>,
    heads: Vec<HeadActs>,
    mlp: Option<MlpActs>,
}

/// The chunk's forward: `hs[l]` the input of layer l (`hs[K]` the output) and each layer's
/// activations.
pub(super) struct Forward {
    hs: Vec<Vec<f32>>,
    layers: Vec<LayerActs>,
}

impl Forward {
    /// `[m·T, e]` the output tokens (only the query rows of the last layer are updated).
    pub fn output(&self) -> &[f32] {
        self.hs.last().expect("at least the input")
    }
}

/// `x · W + b` (`x` `[rows, k]`, `W` `[k, n]`, `b` `[n]`).
fn affine(x: &[f32], k: usize, w: &[f32], b: &[f32]) -> Vec<f32> {
    let (rows, n) = (x.len() / k, b.len());
    let mut out: Vec<f32> = (0..rows).flat_map(|_| b.iter().copied()).collect();
    matmul_into(&mut out, n, View::new(x, rows, k), View::new(w, k, n), true);
    out
}

/// One layer of `b` on the chunk `h` `[m·T, e]`: returns its output and what the backward
/// reads.
fn layer_forward(
    w: &LsaWeights,
    b: &LsaBlock,
    h: &[f32],
    m: usize,
    t: usize,
    q0: usize,
) -> (Vec<f32>, LayerActs) {
    let (e, c, nh) = (w.e, t - 1, w.n_heads);
    let (tq, rows) = (t - q0, m * t);
    let scale = (e as f32).sqrt().recip();
    let ln1 = w.layer_norm.then(|| layer_norm(h, &b.ln1_w, &b.ln1_b));
    let u = ln1.as_ref().map_or(h, |n| &n.y[..]);
    let mut next = h.to_vec();
    let mut heads = Vec::with_capacity(nh);
    for hd in 0..nh {
        let mut q = vec![0.0f32; m * tq * e];
        matmul_into(
            &mut q,
            e,
            query_rows(u, m, t, e, q0),
            head(&b.w_q, hd, e),
            false,
        );
        let mut k = vec![0.0f32; rows * e];
        matmul_into(&mut k, e, View::new(u, rows, e), head(&b.w_k, hd, e), false);
        let mut v = vec![0.0f32; rows * e];
        matmul_into(&mut v, e, View::new(u, rows, e), head(&b.w_v, hd, e), false);
        let mut a = vec![0.0f32; m * tq * c];
        let mut o = vec![0.0f32; m * tq * e];
        for i in 0..m {
            let ai = &mut a[i * tq * c..(i + 1) * tq * c];
            mm_nt(
                &q[i * tq * e..(i + 1) * tq * e],
                &k[i * t * e..],
                tq,
                e,
                c,
                ai,
            );
            if w.softmax {
                ai.iter_mut().for_each(|x| *x *= scale);
                softmax_rows(ai, c);
            }
            mm(
                ai,
                &v[i * t * e..],
                tq,
                c,
                e,
                &mut o[i * tq * e..(i + 1) * tq * e],
            );
        }
        // the head's update lands on the rows it queried
        let out_rs = query_stride(t, e, q0);
        matmul_into(
            &mut next[q0 * e..],
            out_rs,
            View::new(&o, m * tq, e),
            head(&b.w_p, hd, e),
            true,
        );
        heads.push(HeadActs { q, k, v, a, o });
    }
    let mlp = (w.d_mlp > 0).then(|| {
        let mid = gather(&next, m, t, e, q0);
        let ln2 = w.layer_norm.then(|| layer_norm(&mid, &b.ln2_w, &b.ln2_b));
        let z = ln2.as_ref().map_or(mid, |n| n.y.clone());
        let pre = affine(&z, e, &b.w_in, &b.b_in);
        let post: Vec<f32> = pre.iter().map(|&x| x.max(0.0)).collect();
        let out = affine(&post, w.d_mlp, &b.w_out, &b.b_out);
        scatter_add(&mut next, &out, m, t, e, q0);
        MlpActs { ln2, z, pre, post }
    });
    (next, LayerActs { ln1, heads, mlp })
}

/// The forward of every layer on the chunk `tokens` `[m, T, e]`.
pub(super) fn forward(w: &LsaWeights, tokens: &[f32], t: usize) -> Forward {
    let m = tokens.len() / (t * w.e);
    let mut hs = vec![tokens.to_vec()];
    let mut layers = Vec::with_capacity(w.n_layers);
    for l in 0..w.n_layers {
        let (next, acts) = layer_forward(w, w.block(l), &hs[l], m, t, first_query(w, l, t));
        hs.push(next);
        layers.push(acts);
    }
    Forward { hs, layers }
}

/// Column sums of `x` `[rows, n]` added to `out` `[n]`.
fn add_col_sums(x: &[f32], out: &mut [f32]) {
    for row in x.chunks(out.len()) {
        out.iter_mut().zip(row).for_each(|(o, v)| *o += v);
    }
}

/// Backward of [`forward`] from `dh` `[m·T, e]`, the gradient at the output tokens. Adds the
/// weight gradients to `grads` (per block, per parameter in [`Slots`] order) when given;
/// returns the gradient at the input tokens when `input_grad` (else the first layer skips it
/// unless its LayerNorm needs it, and the returned buffer is meaningless).
pub(super) fn backward(
    w: &LsaWeights,
    f: &Forward,
    mut dh: Vec<f32>,
    t: usize,
    mut grads: Option<&mut [Vec<Vec<f32>>]>,
    input_grad: bool,
) -> Vec<f32> {
    let (e, c) = (w.e, t - 1);
    let ee = e * e;
    let rows = dh.len() / e;
    let m = rows / t;
    let scale = (e as f32).sqrt().recip();
    let slots = Slots::of(w.layer_norm, w.d_mlp > 0);
    for l in (0..w.n_layers).rev() {
        let (b, x, h) = (w.block(l), &f.layers[l], &f.hs[l]);
        let q0 = first_query(w, l, t);
        let tq = t - q0;
        let mut g = grads.as_deref_mut().map(|g| &mut g[l % w.blocks.len()]);
        // the MLP, on the updated rows; the residual passes dh through
        if let Some(mx) = &x.mlp {
            let d_out = gather(&dh, m, t, e, q0);
            let s = slots.mlp.expect("an MLP has slots");
            let mut d_pre = affine_back(
                &mx.post,
                w.d_mlp,
                &d_out,
                &b.w_out,
                pair(g.as_deref_mut(), s + 2),
            );
            d_pre.iter_mut().zip(&mx.pre).for_each(|(d, &p)| {
                if p <= 0.0 {
                    *d = 0.0
                }
            });
            let dz = affine_back(&mx.z, e, &d_pre, &b.w_in, pair(g.as_deref_mut(), s));
            let d_mid = match &mx.ln2 {
                Some(n) => {
                    let slot = slots.ln2.expect("LayerNorm with an MLP has ln2");
                    layer_norm_back(&dz, n, &b.ln2_w, pair(g.as_deref_mut(), slot))
                }
                None => dz,
            };
            scatter_add(&mut dh, &d_mid, m, t, e, q0);
        }
        // attention: gradient at its input U, then through LN1
        let needs_u = l > 0 || input_grad || w.layer_norm;
        let u = x.ln1.as_ref().map_or(&h[..], |n| &n.y[..]);
        let mut d_u = if needs_u {
            vec![0.0f32; rows * e]
        } else {
            Vec::new()
        };
        let dhq = query_rows(&dh, m, t, e, q0);
        for (hd, hx) in x.heads.iter().enumerate() {
            let at = |_: usize| hd * ee..(hd + 1) * ee;
            if let Some(g) = g.as_deref_mut() {
                matmul_into(
                    &mut g[3][at(3)],
                    e,
                    View::new(&hx.o, m * tq, e).t(),
                    dhq,
                    true,
                );
            }
            let mut d_o = vec![0.0f32; m * tq * e];
            matmul_into(&mut d_o, e, dhq, head(&b.w_p, hd, e).t(), false);
            let mut dq = vec![0.0f32; m * tq * e];
            let mut dk = vec![0.0f32; rows * e];
            let mut dv = vec![0.0f32; rows * e];
            let mut da = vec![0.0f32; tq * c];
            for i in 0..m {
                let (ai, doi) = (
                    &hx.a[i * tq * c..(i + 1) * tq * c],
                    &d_o[i * tq * e..(i + 1) * tq * e],
                );
                mm_nt(doi, &hx.v[i * t * e..], tq, e, c, &mut da);
                mm_tn_acc(ai, doi, tq, c, e, &mut dv[i * t * e..]);
                if w.softmax {
                    // d scores = a ⊙ (da − Σ_j da_j a_j), times the scale
                    for (dr, ar) in da.chunks_mut(c).zip(ai.chunks(c)) {
                        let dot: f32 = dr.iter().zip(ar).map(|(x, y)| x * y).sum();
                        dr.iter_mut()
                            .zip(ar)
                            .for_each(|(x, y)| *x = y * (*x - dot) * scale);
                    }
                }
                mm(
                    &da,
                    &hx.k[i * t * e..],
                    tq,
                    c,
                    e,
                    &mut dq[i * tq * e..(i + 1) * tq * e],
                );
                mm_tn_acc(&da, &hx.q[i * tq * e..], tq, c, e, &mut dk[i * t * e..]);
            }
            if let Some(g) = g.as_deref_mut() {
                matmul_into(
                    &mut g[0][at(0)],
                    e,
                    query_rows(u, m, t, e, q0).t(),
                    View::new(&dq, m * tq, e),
                    true,
                );
                matmul_into(
                    &mut g[1][at(1)],
                    e,
                    View::new(u, rows, e).t(),
                    View::new(&dk, rows, e),
                    true,
                );
                matmul_into(
                    &mut g[2][at(2)],
                    e,
                    View::new(u, rows, e).t(),
                    View::new(&dv, rows, e),
                    true,
                );
            }
            if needs_u {
                let out_rs = query_stride(t, e, q0);
                matmul_into(
                    &mut d_u[q0 * e..],
                    out_rs,
                    View::new(&dq, m * tq, e),
                    head(&b.w_q, hd, e).t(),
                    true,
                );
                matmul_into(
                    &mut d_u,
                    e,
                    View::new(&dk, rows, e),
                    head(&b.w_k, hd, e).t(),
                    true,
                );
                matmul_into(
                    &mut d_u,
                    e,
                    View::new(&dv, rows, e),
                    head(&b.w_v, hd, e).t(),
                    true,
                );
            }
        }
        if !needs_u {
            continue;
        }
        let d_x = match &x.ln1 {
            Some(n) => {
                let slot = slots.ln1.expect("LayerNorm has ln1");
                layer_norm_back(&d_u, n, &b.ln1_w, pair(g, slot))
            }
            None => d_u,
        };
        // the residual stream: dh passes through, plus the attention's input gradient
        dh.iter_mut().zip(&d_x).for_each(|(a, b)| *a += b);
    }
    dh
}

/// Parameters `s` and `s + 1` of a block's gradients (a weight and its bias, or a LayerNorm's
/// scale and shift), both mutable, when gradients are wanted.
fn pair(g: Option<&mut Vec<Vec<f32>>>, s: usize) -> Option<(&mut [f32], &mut [f32])> {
    let (a, b) = g?[s..].split_at_mut(1);
    Some((&mut a[0], &mut b[0]))
}

/// Backward of [`affine`] `y = x·W + b` (`x` `[rows, k]`, `W` `[k, n]`): returns `dy·Wᵀ` and,
/// when `g` is given, adds `xᵀ·dy` to its weight and the column sums of `dy` to its bias.
fn affine_back(
    x: &[f32],
    k: usize,
    dy: &[f32],
    w: &[f32],
    g: Option<(&mut [f32], &mut [f32])>,
) -> Vec<f32> {
    let (rows, n) = (x.len() / k, w.len() / k);
    if let Some((gw, gb)) = g {
        matmul_into(
            gw,
            n,
            View::new(x, rows, k).t(),
            View::new(dy, rows, n),
            true,
        );
        add_col_sums(dy, gb);
    }
    let mut dx = vec![0.0f32; rows * k];
    matmul_into(
        &mut dx,
        k,
        View::new(dy, rows, n),
        View::new(w, k, n).t(),
        false,
    );
    dx
}

/// Loss sum `Σ ½(ŷ − y)²` of the chunk `tokens` `[m, T, e]` against `targets` `[m]`, adding the
/// gradient of the mean over `n_total` tasks to `grads` (per block, per parameter).
pub(super) fn chunk_loss_and_grads(
    w: &LsaWeights,
    tokens: &[f32],
    targets: &[f32],
    t: usize,
    n_total: usize,
    grads: &mut [Vec<Vec<f32>>],
) -> f64 {
    let e = w.e;
    let f = forward(w, tokens, t);
    let out = f.output();
    let mut loss = 0.0f64;
    let mut dh = vec![0.0f32; out.len()];
    for (i, y) in targets.iter().enumerate() {
        // ŷ = −H[query, d]
        let at = (i + 1) * t * e - 1;
        let err = -out[at] - y;
        loss += 0.5 * f64::from(err) * f64::from(err);
        dh[at] = -err / n_total as f32;
    }
    backward(w, &f, dh, t, Some(grads), false);
    loss
}
