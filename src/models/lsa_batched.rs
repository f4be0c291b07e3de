//! The LSA's training step over a chunk of tasks at once: every projection (`H W_Q`, `H W_K`,
//! `H W_V`, `O W_P` and their backward) and every weight gradient is one GEMM over the chunk's
//! rows; only the attention itself (`Q Kᵀ`, `A V`, T × (T−1) per task) stays per task. Same
//! mathematics as the per-task [`super::lsa`] forward and backward, laid out layer-major.
//!
//! Shapes, per chunk of m tasks of T tokens of width e, c = T − 1 context tokens, heads h:
//! `H_l` `[m·T, e]` the input of layer l; per head `Q` `[m·tq, e]` (tq = T, or 1 in the last
//! layer, which updates only the query), `K`, `V` `[m·T, e]` (row T−1 of each task unused),
//! `A` `[m·tq, c]`, `O` `[m·tq, e]`.

use super::linalg::{matmul_into_shaped as matmul_into, View};
use super::lsa::{first_query, mm, mm_nt, mm_tn_acc, softmax_rows, LsaWeights};

/// What the backward reads of one head of one layer.
struct HeadActs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    a: Vec<f32>,
    o: Vec<f32>,
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

/// `[e, e]` head `hd` of an `[h, e, e]` matrix.
fn head(x: &[f32], hd: usize, e: usize) -> View<'_, f32> {
    View::new(&x[hd * e * e..(hd + 1) * e * e], e, e)
}

/// Loss sum `Σ ½(ŷ − y)²` of the chunk `tokens` `[m, T, e]` against `targets` `[m]`, adding the
/// gradient of the mean over `n_total` tasks to `grads` (per block `[W_Q, W_K, W_V, W_O]`,
/// each `[h, e, e]`).
pub(super) fn chunk_loss_and_grads(
    w: &LsaWeights,
    tokens: &[f32],
    targets: &[f32],
    t: usize,
    n_total: usize,
    grads: &mut [Vec<f32>],
) -> f64 {
    let (e, c, m, nh) = (w.e, t - 1, targets.len(), w.n_heads);
    let (ee, rows) = (e * e, targets.len() * t);
    let scale = (e as f32).sqrt().recip();
    // forward, layer-major
    let mut hs: Vec<Vec<f32>> = vec![tokens.to_vec()];
    let mut acts: Vec<Vec<HeadActs>> = Vec::with_capacity(w.n_layers);
    for l in 0..w.n_layers {
        let b = &w.blocks[l % w.blocks.len()];
        let q0 = first_query(w, l, t);
        let tq = t - q0;
        let h = &hs[l];
        let mut next = h.clone();
        let mut layer = Vec::with_capacity(nh);
        for hd in 0..nh {
            let mut q = vec![0.0f32; m * tq * e];
            matmul_into(
                &mut q,
                e,
                query_rows(h, m, t, e, q0),
                head(&b.w_q, hd, e),
                false,
            );
            let mut k = vec![0.0f32; rows * e];
            matmul_into(&mut k, e, View::new(h, rows, e), head(&b.w_k, hd, e), false);
            let mut v = vec![0.0f32; rows * e];
            matmul_into(&mut v, e, View::new(h, rows, e), head(&b.w_v, hd, e), false);
            let mut a = vec![0.0f32; m * tq * c];
            let mut o = vec![0.0f32; m * tq * e];
            for i in 0..m {
                let (qi, ai) = (
                    &q[i * tq * e..(i + 1) * tq * e],
                    &mut a[i * tq * c..(i + 1) * tq * c],
                );
                mm_nt(qi, &k[i * t * e..], tq, e, c, ai);
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
            let out = &mut next[q0 * e..];
            let out_rs = if q0 == 0 { e } else { t * e };
            matmul_into(
                out,
                out_rs,
                View::new(&o, m * tq, e),
                head(&b.w_p, hd, e),
                true,
            );
            layer.push(HeadActs { q, k, v, a, o });
        }
        hs.push(next);
        acts.push(layer);
    }
    // loss and its gradient at the query's label slot (ŷ = −H[query, d])
    let out = &hs[w.n_layers];
    let mut loss = 0.0f64;
    let mut dh = vec![0.0f32; rows * e];
    for (i, y) in targets.iter().enumerate() {
        let at = i * t * e + t * e - 1;
        let err = -out[at] - y;
        loss += 0.5 * f64::from(err) * f64::from(err);
        dh[at] = -err / n_total as f32;
    }
    // backward, layer-major in reverse
    for l in (0..w.n_layers).rev() {
        let b = &w.blocks[l % w.blocks.len()];
        let g = &mut grads[l % w.blocks.len()];
        let q0 = first_query(w, l, t);
        let tq = t - q0;
        let h = &hs[l];
        let needs_input = l > 0;
        let mut d_in = if needs_input { dh.clone() } else { Vec::new() };
        let dhq = query_rows(&dh, m, t, e, q0);
        for (hd, x) in acts[l].iter().enumerate() {
            let at = |mat: usize| mat * nh * ee + hd * ee;
            // W_O: Oᵀ · dH_q
            matmul_into(
                &mut g[at(3)..at(3) + ee],
                e,
                View::new(&x.o, m * tq, e).t(),
                dhq,
                true,
            );
            let mut d_o = vec![0.0f32; m * tq * e];
            matmul_into(&mut d_o, e, dhq, head(&b.w_p, hd, e).t(), false);
            let mut dq = vec![0.0f32; m * tq * e];
            let mut dk = vec![0.0f32; rows * e];
            let mut dv = vec![0.0f32; rows * e];
            let mut da = vec![0.0f32; tq * c];
            for i in 0..m {
                let (ai, doi) = (
                    &x.a[i * tq * c..(i + 1) * tq * c],
                    &d_o[i * tq * e..(i + 1) * tq * e],
                );
                mm_nt(doi, &x.v[i * t * e..], tq, e, c, &mut da);
                mm_tn_acc(ai, doi, tq, c, e, &mut dv[i * t * e..]);
                if w.softmax {
                    for (dr, ar) in da.chunks_mut(c).zip(ai.chunks(c)) {
                        let dot: f32 = dr.iter().zip(ar).map(|(x, y)| x * y).sum();
                        dr.iter_mut()
                            .zip(ar)
                            .for_each(|(x, y)| *x = y * (*x - dot) * scale);
                    }
                }
                mm(
                    &da,
                    &x.k[i * t * e..],
                    tq,
                    c,
                    e,
                    &mut dq[i * tq * e..(i + 1) * tq * e],
                );
                mm_tn_acc(&da, &x.q[i * tq * e..], tq, c, e, &mut dk[i * t * e..]);
            }
            matmul_into(
                &mut g[at(0)..at(0) + ee],
                e,
                query_rows(h, m, t, e, q0).t(),
                View::new(&dq, m * tq, e),
                true,
            );
            matmul_into(
                &mut g[at(1)..at(1) + ee],
                e,
                View::new(h, rows, e).t(),
                View::new(&dk, rows, e),
                true,
            );
            matmul_into(
                &mut g[at(2)..at(2) + ee],
                e,
                View::new(h, rows, e).t(),
                View::new(&dv, rows, e),
                true,
            );
            if needs_input {
                let out_rs = if q0 == 0 { e } else { t * e };
                matmul_into(
                    &mut d_in[q0 * e..],
                    out_rs,
                    View::new(&dq, m * tq, e),
                    head(&b.w_q, hd, e).t(),
                    true,
                );
                matmul_into(
                    &mut d_in,
                    e,
                    View::new(&dk, rows, e),
                    head(&b.w_k, hd, e).t(),
                    true,
                );
                matmul_into(
                    &mut d_in,
                    e,
                    View::new(&dv, rows, e),
                    head(&b.w_v, hd, e).t(),
                    true,
                );
            }
        }
        if needs_input {
            dh = d_in;
        }
    }
    loss
}
