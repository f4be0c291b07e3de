//! Table stage of the fused step: everything that depends on the weights but not on the
//! examples, computed once per step for the (position, token) table, forward and backward.
//!
//! Table rows: `tok` at position 0 (rows `0..V`), `tok` at position 1 (`V..2V`), and the
//! position-2 token (`=`, row `2V`) — `n_tab = 2V + 1`. Per row `E = W_E[tok] + W_pos[pos]`.
//! The query reads only the `=` row, so it is one vector per head. Each head's value goes
//! through `W_OI[h] = W_O[h]·W_in` and `W_OU[h] = W_O[h]·W_U` (`[Dh, M]`, `[Dh, Vo]`): with
//! Dh = 32 < D = 128 that is a quarter of the FLOPs of going through W_O first. Independent
//! products run on both threads (`rayon::join`), the per-row ones split by rows. Shapes in
//! comments use H heads, D = d_model, Dh = d_head, M = d_mlp, Vo = d_vocab_out.

use super::Weights;
use crate::numerics::linalg::{axpy, dot, matmul, matmul_into, par_rows, Real, View};
use rayon::prelude::*;

/// Forward quantities of the table stage.
pub struct Table<T> {
    /// Rows of the table.
    pub n_tab: usize,
    /// `[n_tab, D]` embeddings of the (position, token) rows.
    pub e: Vec<T>,
    /// `[H·Dh]` the `=` query (with b_Q).
    pub q: Vec<T>,
    /// `[n_tab, H·Dh]` keys (with b_K).
    pub k: Vec<T>,
    /// `[n_tab, H·Dh]` values (with b_V).
    pub vals: Vec<T>,
    /// `[n_tab, H]` attention scores against the `=` query, already divided by √Dh.
    pub scores: Vec<T>,
    /// `[H·Dh, M]` `W_O·W_in` per head.
    pub w_oi: Vec<T>,
    /// `[H·Dh, Vo]` `W_O·W_U` per head.
    pub w_ou: Vec<T>,
    /// `[n_tab, H, M]` each table row's value through W_O and W_in.
    pub ov_in: Vec<T>,
    /// `[n_tab, H, Vo]` the same through W_O and W_U.
    pub ov_u: Vec<T>,
    /// `[D]` `E[=] + b_O` (what the residual holds besides attention).
    pub base: Vec<T>,
    /// `[M]` `base · W_in + b_in`.
    pub c_in: Vec<T>,
    /// `[Vo]` `(base + b_out) · W_U + b_U`.
    pub c_u: Vec<T>,
    /// `[M, Vo]` `W_L = W_out · W_U`, rows [`Table::w_l_rs`] apart (the padding zeros).
    pub w_l: Vec<T>,
    /// Row stride of `w_l`: Vo rounded up to 8 lanes, so the logits product writes whole
    /// 8-column panels (`matrixmultiply` finishes a partial panel through a scratch tile).
    pub w_l_rs: usize,
}

/// Gradients the row stage hands to the table stage (summed over all rows).
pub struct TableGrads<T> {
    /// `[n_tab, H, M]` ∂L/∂ov_in.
    pub ov_in: Vec<T>,
    /// `[n_tab, H, Vo]` ∂L/∂ov_u.
    pub ov_u: Vec<T>,
    /// `[n_tab, H]` ∂L/∂scores.
    pub scores: Vec<T>,
    /// `[M]` ∂L/∂c_in.
    pub c_in: Vec<T>,
    /// `[Vo]` ∂L/∂c_u.
    pub c_u: Vec<T>,
    /// `[M, Vo]` ∂L/∂W_L.
    pub w_l: Vec<T>,
}

impl<T: Real> TableGrads<T> {
    /// Zeros for a table of `n_tab` rows.
    pub fn zeros(w: &Weights<T>, n_tab: usize) -> Self {
        let (h, m, vo) = (w.h, w.m, w.vo);
        Self {
            ov_in: vec![T::zero(); h * n_tab * m],
            ov_u: vec![T::zero(); h * n_tab * vo],
            scores: vec![T::zero(); n_tab * h],
            c_in: vec![T::zero(); m],
            c_u: vec![T::zero(); vo],
            w_l: vec![T::zero(); m * vo],
        }
    }

    /// Adds `other` (another chunk's gradients), in blocks across the threads.
    pub fn add(&mut self, other: &Self) {
        for (a, b) in [
            (&mut self.ov_in, &other.ov_in),
            (&mut self.ov_u, &other.ov_u),
            (&mut self.scores, &other.scores),
            (&mut self.c_in, &other.c_in),
            (&mut self.c_u, &other.c_u),
            (&mut self.w_l, &other.w_l),
        ] {
            (a.par_chunks_mut(1 << 14).zip(b.par_chunks(1 << 14)))
                .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, &b)| *a += b));
        }
    }
}

/// (position, token) of table row `r` (`v` = d_vocab).
fn table_entry(r: usize, v: usize, eq_tok: usize) -> (usize, usize) {
    if r < 2 * v {
        (r / v, r % v)
    } else {
        (2, eq_tok)
    }
}

fn add_row<T: Real>(x: &mut [T], bias: &[T]) {
    for row in x.chunks_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(x, &b)| *x += b);
    }
}

/// Head `hh`'s `[rows, width]` slab of a row-major `[.., H, width]` buffer, from row `lo`
/// (`h` = H).
fn head_cols<T>(
    x: &[T],
    hh: usize,
    (h, width): (usize, usize),
    lo: usize,
    rows: usize,
) -> View<'_, T> {
    View::strided(&x[(lo * h + hh) * width..], rows, width, h * width, 1)
}

/// Head `hh`'s `[Dh, width]` matrix of an `[H, Dh, width]` buffer.
fn head_matrix<T>(w: &[T], hh: usize, dh: usize, width: usize) -> View<'_, T> {
    View::new(&w[hh * dh * width..(hh + 1) * dh * width], dh, width)
}

/// `out[r, h] = vals[r, h]·w[h]` for every table row and head: `vals` `[n_tab, H·Dh]`, `w`
/// `[H·Dh, width]`, `out` `[n_tab, H, width]`, rows split across the threads ([`par_rows`]).
fn per_head<T: Real>(
    vals: &[T],
    w: &[T],
    n_tab: usize,
    h: usize,
    dh: usize,
    width: usize,
) -> Vec<T> {
    let mut out = vec![T::zero(); n_tab * h * width];
    par_rows(&mut out, h * width, |lo, out| {
        let rows = out.len() / (h * width);
        for hh in 0..h {
            let v_h = head_cols(vals, hh, (h, dh), lo, rows);
            matmul_into(
                &mut out[hh * width..],
                h * width,
                v_h,
                head_matrix(w, hh, dh, width),
                false,
            );
        }
    });
    out
}

/// Forward of the table stage; `eq_tok` is the position-2 token of every example.
pub fn forward<T: Real>(w: &Weights<T>, eq_tok: usize) -> Table<T> {
    let (d, h, dh, m, v, vo) = (w.d, w.h, w.dh, w.m, w.v, w.vo);
    let n_tab = 2 * v + 1;
    let hd = h * dh;
    let mut e = vec![T::zero(); n_tab * d]; // (n_tab, D)
    for r in 0..n_tab {
        let (pos, tok) = table_entry(r, v, eq_tok);
        for i in 0..d {
            e[r * d + i] = w.w_e[tok * d + i] + w.w_pos[pos * d + i];
        }
    }
    let e_view = View::new(&e, n_tab, d);
    let eq_row = &e[2 * v * d..];
    let base: Vec<T> = eq_row.iter().zip(&w.b_o).map(|(&x, &b)| x + b).collect();
    let w_o = View::new(&w.w_o, hd, d); // [H, Dh, D] as (H·Dh, D)
    let w_u = View::new(&w.w_u, d, vo);
    let w_l_rs = vo.next_multiple_of(8);
    // Every product here depends on the weights alone: four tasks for the two threads.
    let (((q, k, vals), (c_in, c_u)), (w_oi, (w_ou, w_l))) = rayon::join(
        || {
            rayon::join(
                || {
                    let mut q = matmul(View::new(eq_row, 1, d), View::new(&w.w_q2, d, hd)); // (1, H·Dh)
                    add_row(&mut q, &w.b_q);
                    let mut k = matmul(e_view, View::new(&w.w_k2, d, hd)); // (n_tab, H·Dh)
                    add_row(&mut k, &w.b_k);
                    let mut vals = matmul(e_view, View::new(&w.w_v2, d, hd)); // (n_tab, H·Dh)
                    add_row(&mut vals, &w.b_v);
                    (q, k, vals)
                },
                || {
                    let mut c_in = matmul(View::new(&base, 1, d), View::new(&w.w_in, d, m)); // (1, M)
                    add_row(&mut c_in, &w.b_in);
                    let resid: Vec<T> = base.iter().zip(&w.b_out).map(|(&x, &b)| x + b).collect();
                    let mut c_u = matmul(View::new(&resid, 1, d), w_u); // (1, Vo)
                    add_row(&mut c_u, &w.b_u);
                    (c_in, c_u)
                },
            )
        },
        || {
            rayon::join(
                || matmul(w_o, View::new(&w.w_in, d, m)), // (H·Dh, M)
                || {
                    let mut w_l = vec![T::zero(); m * w_l_rs]; // (M, Vo) in rows of w_l_rs
                    matmul_into(&mut w_l, w_l_rs, View::new(&w.w_out, m, d), w_u, false);
                    (matmul(w_o, w_u), w_l) // (H·Dh, Vo)
                },
            )
        },
    );
    let scale = T::of(1.0 / (dh as f64).sqrt());
    let mut scores = vec![T::zero(); n_tab * h]; // (n_tab, H)
    for r in 0..n_tab {
        for hh in 0..h {
            let kr = &k[r * hd + hh * dh..r * hd + (hh + 1) * dh];
            scores[r * h + hh] = scale * dot(kr, &q[hh * dh..(hh + 1) * dh]);
        }
    }
    let (ov_in, ov_u) = rayon::join(
        || per_head(&vals, &w_oi, n_tab, h, dh, m),
        || per_head(&vals, &w_ou, n_tab, h, dh, vo),
    );
    Table {
        n_tab,
        e,
        q,
        k,
        vals,
        scores,
        w_oi,
        w_ou,
        ov_in,
        ov_u,
        base,
        c_in,
        c_u,
        w_l,
        w_l_rs,
    }
}

/// Weight gradients of the trainable tensors, in the fused layouts of [`Weights`].
pub struct WeightGrads<T> {
    /// `[V, D]`
    pub w_e: Vec<T>,
    /// `[n_ctx, D]`
    pub w_pos: Vec<T>,
    /// `[D, H·Dh]` (2-D layout)
    pub w_q2: Vec<T>,
    /// `[D, H·Dh]`
    pub w_k2: Vec<T>,
    /// `[D, H·Dh]`
    pub w_v2: Vec<T>,
    /// `[H, Dh, D]`
    pub w_o: Vec<T>,
    /// `[D, M]`
    pub w_in: Vec<T>,
    /// `[M]`
    pub b_in: Vec<T>,
    /// `[M, D]`
    pub w_out: Vec<T>,
    /// `[D]`
    pub b_out: Vec<T>,
    /// `[D, Vo]`
    pub w_u: Vec<T>,
}

/// Backward of [`per_head`] to its weights: `∂w[h] = vals[:, h]ᵀ·g[:, h]` (`[H·Dh, width]`,
/// heads across the threads).
fn per_head_dw<T: Real>(
    vals: &[T],
    g: &[T],
    (n_tab, h, dh, width): (usize, usize, usize, usize),
) -> Vec<T> {
    let hd = h * dh;
    let mut d_w = vec![T::zero(); hd * width];
    d_w.par_chunks_mut(dh * width)
        .enumerate()
        .for_each(|(hh, d_w)| {
            let v_h = head_cols(vals, hh, (h, dh), 0, n_tab);
            matmul_into(
                d_w,
                width,
                v_h.t(),
                head_cols(g, hh, (h, width), 0, n_tab),
                false,
            );
        });
    d_w
}

/// Backward of both [`per_head`] products to the values: `∂vals[:, h] = g_in[:, h]·w_oi[h]ᵀ +
/// g_u[:, h]·w_ou[h]ᵀ` (`[n_tab, H·Dh]`), rows split across the threads.
fn per_head_d_vals<T: Real>(
    t: &Table<T>,
    g: &TableGrads<T>,
    (h, dh, m, vo): (usize, usize, usize, usize),
) -> Vec<T> {
    let hd = h * dh;
    let mut d_vals = vec![T::zero(); t.n_tab * hd];
    par_rows(&mut d_vals, hd, |lo, d_vals| {
        let rows = d_vals.len() / hd;
        for (w, g, width) in [(&t.w_oi, &g.ov_in, m), (&t.w_ou, &g.ov_u, vo)] {
            for hh in 0..h {
                let g_h = head_cols(g, hh, (h, width), lo, rows);
                let w_h = head_matrix(w, hh, dh, width);
                matmul_into(&mut d_vals[hh * dh..], hd, g_h, w_h.t(), true);
            }
        }
    });
    d_vals
}

/// Backward of the table stage: from the row stage's summed gradients to the weights'. Two
/// independent halves run side by side: the OV path to `W_in`, `W_U` and `W_O`, and the path
/// through the values and keys to `W_V`, `W_K` and the embeddings.
pub fn backward<T: Real>(
    w: &Weights<T>,
    t: &Table<T>,
    g: &TableGrads<T>,
    eq_tok: usize,
) -> WeightGrads<T> {
    let (d, h, dh, m, v, vo) = (w.d, w.h, w.dh, w.m, w.v, w.vo);
    let (n_tab, hd) = (t.n_tab, h * dh);
    let n_ctx = w.n_ctx;
    let w_o = View::new(&w.w_o, hd, d);
    let e_view = View::new(&t.e, n_tab, d);
    let scale = T::of(1.0 / (dh as f64).sqrt());

    let ((w_in, w_u, d_w_o), (w_k2, w_v2, mut d_e, d_q, w_out)) = rayon::join(
        || {
            // ov_in[:, h] = vals[:, h]·W_OI[h], ov_u[:, h] = vals[:, h]·W_OU[h]
            let (d_w_oi, d_w_ou) = rayon::join(
                || per_head_dw(&t.vals, &g.ov_in, (n_tab, h, dh, m)),
                || per_head_dw(&t.vals, &g.ov_u, (n_tab, h, dh, vo)),
            );
            // W_OI = W_O·W_in, W_OU = W_O·W_U, c_in = base·W_in + b_in,
            // c_u = (base + b_out)·W_U + b_U, W_L = W_out·W_U (its W_U part)
            let ((w_in, w_u), d_w_o) = rayon::join(
                || {
                    let mut w_in = matmul(w_o.t(), View::new(&d_w_oi, hd, m)); // (D, M)
                    let mut w_u = matmul(w_o.t(), View::new(&d_w_ou, hd, vo)); // (D, Vo)
                    matmul_into(
                        &mut w_u,
                        vo,
                        View::new(&w.w_out, m, d).t(),
                        View::new(&g.w_l, m, vo),
                        true,
                    );
                    for i in 0..d {
                        let (b, r) = (t.base[i], t.base[i] + w.b_out[i]);
                        axpy(&mut w_in[i * m..(i + 1) * m], b, &g.c_in);
                        axpy(&mut w_u[i * vo..(i + 1) * vo], r, &g.c_u);
                    }
                    (w_in, w_u)
                },
                || {
                    let mut d_w_o = matmul(View::new(&d_w_oi, hd, m), View::new(&w.w_in, d, m).t()); // (H·Dh, D)
                    matmul_into(
                        &mut d_w_o,
                        d,
                        View::new(&d_w_ou, hd, vo),
                        View::new(&w.w_u, d, vo).t(),
                        true,
                    );
                    d_w_o
                },
            );
            (w_in, w_u, d_w_o)
        },
        || {
            let (d_vals, w_out) = rayon::join(
                || per_head_d_vals(t, g, (h, dh, m, vo)),
                || matmul(View::new(&g.w_l, m, vo), View::new(&w.w_u, d, vo).t()), // (M, D)
            );
            // scores[r, h] = scale·q_h·k_h[r]
            let mut d_k = vec![T::zero(); n_tab * hd];
            let mut d_q = vec![T::zero(); hd];
            for r in 0..n_tab {
                for hh in 0..h {
                    let s = scale * g.scores[r * h + hh];
                    let cols = hh * dh..(hh + 1) * dh;
                    let k_row = r * hd + cols.start..r * hd + cols.end;
                    axpy(&mut d_k[k_row.clone()], s, &t.q[cols.clone()]);
                    axpy(&mut d_q[cols], s, &t.k[k_row]);
                }
            }
            // k = E·W_K + b_K, vals = E·W_V + b_V
            let ((w_k2, w_v2), d_e) = rayon::join(
                || {
                    let w_k2 = matmul(e_view.t(), View::new(&d_k, n_tab, hd)); // (D, H·Dh)
                    let w_v2 = matmul(e_view.t(), View::new(&d_vals, n_tab, hd));
                    (w_k2, w_v2)
                },
                || {
                    let mut d_e = matmul(View::new(&d_k, n_tab, hd), View::new(&w.w_k2, d, hd).t()); // (n_tab, D)
                    matmul_into(
                        &mut d_e,
                        d,
                        View::new(&d_vals, n_tab, hd),
                        View::new(&w.w_v2, d, hd).t(),
                        true,
                    );
                    d_e
                },
            );
            (w_k2, w_v2, d_e, d_q, w_out)
        },
    );
    let b_out = matmul(View::new(&w.w_u, d, vo), View::new(&g.c_u, vo, 1)); // (D)
    let mut d_base = matmul(View::new(&w.w_in, d, m), View::new(&g.c_in, m, 1));
    d_base.iter_mut().zip(&b_out).for_each(|(x, &y)| *x += y);

    // q = E[=]·W_Q + b_Q, base = E[=] + b_O
    let eq_row = &t.e[2 * v * d..];
    let w_q2 = matmul(View::new(eq_row, d, 1), View::new(&d_q, 1, hd));
    let d_eq = matmul(View::new(&w.w_q2, d, hd), View::new(&d_q, hd, 1));
    for i in 0..d {
        d_e[2 * v * d + i] += d_eq[i] + d_base[i];
    }

    // E[pos·V + tok] = W_E[tok] + W_pos[pos]
    let mut w_e = vec![T::zero(); v * d];
    let mut w_pos = vec![T::zero(); n_ctx * d];
    for r in 0..n_tab {
        let (pos, tok) = table_entry(r, v, eq_tok);
        let g = &d_e[r * d..(r + 1) * d];
        axpy(&mut w_e[tok * d..(tok + 1) * d], T::one(), g);
        axpy(&mut w_pos[pos * d..(pos + 1) * d], T::one(), g);
    }
    WeightGrads {
        w_e,
        w_pos,
        w_q2,
        w_k2,
        w_v2,
        w_o: d_w_o,
        w_in,
        b_in: g.c_in.clone(),
        w_out,
        b_out,
        w_u,
    }
}
