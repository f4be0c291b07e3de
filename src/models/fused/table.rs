//! Table stage of the fused step: everything that depends on the weights but not on the
//! examples, computed once per step for the (position, token) table, forward and backward.
//!
//! Table rows: `tok` at position 0 (rows `0..V`), `tok` at position 1 (`V..2V`), and the
//! position-2 token (`=`, row `2V`) — `n_tab = 2V + 1`. Per row `E = W_E[tok] + W_pos[pos]`.
//! The query reads only the `=` row, so it is one vector per head. Values are linear in
//! `W_E[tok] + W_pos[pos]`, so they go through W_O, W_in and W_U as V token parts plus n_ctx
//! position parts (half the rows), and are summed per table row. Shapes in comments use
//! H heads, D = d_model, Dh = d_head, M = d_mlp, Vo = d_vocab_out.

use super::Weights;
use crate::models::linalg::{matmul, matmul_into, matmul_par, Real, View};

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
    /// `[V, H·Dh]` the token part of the values, `W_E·W_V + b_V` (a row's value is its token's
    /// part plus its position's: values are linear in `W_E[tok] + W_pos[pos]`).
    pub v_tok: Vec<T>,
    /// `[n_ctx, H·Dh]` the position part, `W_pos·W_V`.
    pub v_pos: Vec<T>,
    /// `[n_tab, H]` attention scores against the `=` query, already divided by √Dh.
    pub scores: Vec<T>,
    /// `[H, V, D]` token parts through W_O, per head.
    pub ov_tok: Vec<T>,
    /// `[H, n_ctx, D]` position parts through W_O, per head.
    pub ov_pos: Vec<T>,
    /// `[n_tab, H, M]` each table row's value through W_O and W_in (token part + position part).
    pub ov_in: Vec<T>,
    /// `[n_tab, H, Vo]` the same through W_O and W_U.
    pub ov_u: Vec<T>,
    /// `[D]` `E[=] + b_O` (what the residual holds besides attention).
    pub base: Vec<T>,
    /// `[M]` `base · W_in + b_in`.
    pub c_in: Vec<T>,
    /// `[Vo]` `(base + b_out) · W_U + b_U`.
    pub c_u: Vec<T>,
    /// `[M, Vo]` `W_L = W_out · W_U`.
    pub w_l: Vec<T>,
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

    /// Adds `other` (another chunk's gradients).
    pub fn add(&mut self, other: &Self) {
        for (a, b) in [
            (&mut self.ov_in, &other.ov_in),
            (&mut self.ov_u, &other.ov_u),
            (&mut self.scores, &other.scores),
            (&mut self.c_in, &other.c_in),
            (&mut self.c_u, &other.c_u),
            (&mut self.w_l, &other.w_l),
        ] {
            a.iter_mut().zip(b.iter()).for_each(|(a, &b)| *a += b);
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
    let mut q = matmul(View::new(eq_row, 1, d), View::new(&w.w_q2, d, hd)); // (1, H·Dh)
    add_row(&mut q, &w.b_q);
    let mut k = matmul(e_view, View::new(&w.w_k2, d, hd)); // (n_tab, H·Dh)
    add_row(&mut k, &w.b_k);
    let mut v_tok = matmul(View::new(&w.w_e, v, d), View::new(&w.w_v2, d, hd)); // (V, H·Dh)
    add_row(&mut v_tok, &w.b_v);
    let v_pos = matmul(View::new(&w.w_pos, w.n_ctx, d), View::new(&w.w_v2, d, hd)); // (n_ctx, H·Dh)
    let scale = T::of(1.0 / (dh as f64).sqrt());
    let mut scores = vec![T::zero(); n_tab * h]; // (n_tab, H)
    for r in 0..n_tab {
        for hh in 0..h {
            let kr = &k[r * hd + hh * dh..r * hd + (hh + 1) * dh];
            scores[r * h + hh] = scale * crate::models::linalg::dot(kr, &q[hh * dh..(hh + 1) * dh]);
        }
    }
    // Per head through W_O, then (all heads at once) through W_in and W_U, for the V tokens and
    // the n_ctx positions: half the rows of doing it per table row.
    let through_w_o = |part: &[T], rows: usize| {
        let mut out = vec![T::zero(); h * rows * d]; // (H, rows, D)
        for hh in 0..h {
            let v_h = View::strided(&part[hh * dh..], rows, dh, hd, 1);
            let w_o = View::new(&w.w_o[hh * dh * d..(hh + 1) * dh * d], dh, d);
            matmul_into(&mut out[hh * rows * d..], d, v_h, w_o, false);
        }
        out
    };
    let (ov_tok, ov_pos) = (through_w_o(&v_tok, v), through_w_o(&v_pos, w.n_ctx));
    let tok_in = matmul_par(View::new(&ov_tok, h * v, d), View::new(&w.w_in, d, m)); // (H·V, M)
    let tok_u = matmul_par(View::new(&ov_tok, h * v, d), View::new(&w.w_u, d, vo)); // (H·V, Vo)
    let pos_in = matmul(View::new(&ov_pos, h * w.n_ctx, d), View::new(&w.w_in, d, m));
    let pos_u = matmul(View::new(&ov_pos, h * w.n_ctx, d), View::new(&w.w_u, d, vo));
    let assemble = |tok: &[T], pos: &[T], width: usize| {
        let mut out = vec![T::zero(); n_tab * h * width]; // (n_tab, H, width)
        for hh in 0..h {
            for r in 0..n_tab {
                let (p, t) = table_entry(r, v, eq_tok);
                let dst = &mut out[(r * h + hh) * width..(r * h + hh + 1) * width];
                let a = &tok[(hh * v + t) * width..(hh * v + t + 1) * width];
                let b = &pos[(hh * w.n_ctx + p) * width..(hh * w.n_ctx + p + 1) * width];
                for ((x, &a), &b) in dst.iter_mut().zip(a).zip(b) {
                    *x = a + b;
                }
            }
        }
        out
    };
    let ov_in = assemble(&tok_in, &pos_in, m);
    let ov_u = assemble(&tok_u, &pos_u, vo);
    let base: Vec<T> = eq_row.iter().zip(&w.b_o).map(|(&x, &b)| x + b).collect();
    let mut c_in = matmul(View::new(&base, 1, d), View::new(&w.w_in, d, m));
    add_row(&mut c_in, &w.b_in);
    let resid: Vec<T> = base.iter().zip(&w.b_out).map(|(&x, &b)| x + b).collect();
    let mut c_u = matmul(View::new(&resid, 1, d), View::new(&w.w_u, d, vo));
    add_row(&mut c_u, &w.b_u);
    let w_l = matmul(View::new(&w.w_out, m, d), View::new(&w.w_u, d, vo)); // (M, Vo)
    Table {
        n_tab,
        e,
        q,
        k,
        v_tok,
        v_pos,
        scores,
        ov_tok,
        ov_pos,
        ov_in,
        ov_u,
        base,
        c_in,
        c_u,
        w_l,
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

/// Backward of the table stage: from the row stage's summed gradients to the weights'.
pub fn backward<T: Real>(
    w: &Weights<T>,
    t: &Table<T>,
    g: &TableGrads<T>,
    eq_tok: usize,
) -> WeightGrads<T> {
    let (d, h, dh, m, v, vo) = (w.d, w.h, w.dh, w.m, w.v, w.vo);
    let (n_tab, hd) = (t.n_tab, h * dh);
    let n_ctx = w.n_ctx;
    // Table-row gradients back to the token and position parts they were assembled from.
    let split = |g: &[T], width: usize| {
        let mut tok = vec![T::zero(); h * v * width]; // (H·V, width)
        let mut pos = vec![T::zero(); h * n_ctx * width]; // (H·n_ctx, width)
        for hh in 0..h {
            for r in 0..n_tab {
                let (p, t) = table_entry(r, v, eq_tok);
                let src = &g[(r * h + hh) * width..(r * h + hh + 1) * width];
                crate::models::linalg::axpy(
                    &mut tok[(hh * v + t) * width..(hh * v + t + 1) * width],
                    T::one(),
                    src,
                );
                crate::models::linalg::axpy(
                    &mut pos[(hh * n_ctx + p) * width..(hh * n_ctx + p + 1) * width],
                    T::one(),
                    src,
                );
            }
        }
        (tok, pos)
    };
    let (g_tok_in, g_pos_in) = split(&g.ov_in, m);
    let (g_tok_u, g_pos_u) = split(&g.ov_u, vo);
    let ov_tok = View::new(&t.ov_tok, h * v, d);
    let ov_pos = View::new(&t.ov_pos, h * n_ctx, d);

    // tok_in = ov_tok·W_in, pos_in = ov_pos·W_in (likewise W_U), c_in = base·W_in + b_in,
    // c_u = (base + b_out)·W_U + b_U, W_L = W_out·W_U.
    let mut w_in = matmul_par(ov_tok.t(), View::new(&g_tok_in, h * v, m)); // (D, M)
    matmul_into(
        &mut w_in,
        m,
        ov_pos.t(),
        View::new(&g_pos_in, h * n_ctx, m),
        true,
    );
    let mut w_u = matmul_par(ov_tok.t(), View::new(&g_tok_u, h * v, vo)); // (D, Vo)
    matmul_into(
        &mut w_u,
        vo,
        ov_pos.t(),
        View::new(&g_pos_u, h * n_ctx, vo),
        true,
    );
    for i in 0..d {
        let (b, r) = (t.base[i], t.base[i] + w.b_out[i]);
        crate::models::linalg::axpy(&mut w_in[i * m..(i + 1) * m], b, &g.c_in);
        crate::models::linalg::axpy(&mut w_u[i * vo..(i + 1) * vo], r, &g.c_u);
    }
    matmul_into(
        &mut w_u,
        vo,
        View::new(&w.w_out, m, d).t(),
        View::new(&g.w_l, m, vo),
        true,
    );
    let w_out = matmul(View::new(&g.w_l, m, vo), View::new(&w.w_u, d, vo).t()); // (M, D)
    let b_out = matmul(View::new(&w.w_u, d, vo), View::new(&g.c_u, vo, 1)); // (D)
    let mut d_base = matmul(View::new(&w.w_in, d, m), View::new(&g.c_in, m, 1));
    d_base.iter_mut().zip(&b_out).for_each(|(x, &y)| *x += y);

    let back_through = |g_in: &[T], g_u: &[T], rows: usize| {
        let mut d_ov = matmul_par(View::new(g_in, rows, m), View::new(&w.w_in, d, m).t());
        matmul_into(
            &mut d_ov,
            d,
            View::new(g_u, rows, vo),
            View::new(&w.w_u, d, vo).t(),
            true,
        );
        d_ov // (rows, D)
    };
    let d_ov_tok = back_through(&g_tok_in, &g_tok_u, h * v); // (H·V, D)
    let d_ov_pos = back_through(&g_pos_in, &g_pos_u, h * n_ctx); // (H·n_ctx, D)

    // ov_h = v_h·W_O[h] for the token and position parts
    let mut w_o = vec![T::zero(); h * dh * d];
    let mut d_v_tok = vec![T::zero(); v * hd]; // (V, H·Dh)
    let mut d_v_pos = vec![T::zero(); n_ctx * hd]; // (n_ctx, H·Dh)
    for hh in 0..h {
        let w_o_h = View::new(&w.w_o[hh * dh * d..(hh + 1) * dh * d], dh, d);
        for (part, d_ov, d_part, rows) in [
            (&t.v_tok, &d_ov_tok, &mut d_v_tok, v),
            (&t.v_pos, &d_ov_pos, &mut d_v_pos, n_ctx),
        ] {
            let v_h = View::strided(&part[hh * dh..], rows, dh, hd, 1);
            let d_ov_h = View::new(&d_ov[hh * rows * d..(hh + 1) * rows * d], rows, d);
            matmul_into(&mut w_o[hh * dh * d..], d, v_h.t(), d_ov_h, true);
            matmul_into(&mut d_part[hh * dh..], hd, d_ov_h, w_o_h.t(), false);
        }
    }

    // scores[r, h] = scale·q_h·k_h[r]
    let scale = T::of(1.0 / (dh as f64).sqrt());
    let mut d_k = vec![T::zero(); n_tab * hd];
    let mut d_q = vec![T::zero(); hd];
    for r in 0..n_tab {
        for hh in 0..h {
            let s = scale * g.scores[r * h + hh];
            let cols = hh * dh..(hh + 1) * dh;
            crate::models::linalg::axpy(
                &mut d_k[r * hd + cols.start..r * hd + cols.end],
                s,
                &t.q[cols.clone()],
            );
            crate::models::linalg::axpy(
                &mut d_q[cols.clone()],
                s,
                &t.k[r * hd + cols.start..r * hd + cols.end],
            );
        }
    }

    // k = E·W_K + b_K, q = E[=]·W_Q + b_Q, base = E[=] + b_O (per table row);
    // v_tok = W_E·W_V + b_V, v_pos = W_pos·W_V
    let e_view = View::new(&t.e, n_tab, d);
    let w_k2 = matmul(e_view.t(), View::new(&d_k, n_tab, hd)); // (D, H·Dh)
    let mut w_v2 = matmul(View::new(&w.w_e, v, d).t(), View::new(&d_v_tok, v, hd));
    matmul_into(
        &mut w_v2,
        hd,
        View::new(&w.w_pos, n_ctx, d).t(),
        View::new(&d_v_pos, n_ctx, hd),
        true,
    );
    let eq_row = &t.e[2 * v * d..];
    let w_q2 = matmul(View::new(eq_row, d, 1), View::new(&d_q, 1, hd));
    let mut d_e = matmul(View::new(&d_k, n_tab, hd), View::new(&w.w_k2, d, hd).t()); // (n_tab, D)
    let d_eq = matmul(View::new(&w.w_q2, d, hd), View::new(&d_q, hd, 1));
    for i in 0..d {
        d_e[2 * v * d + i] += d_eq[i] + d_base[i];
    }

    // E[pos·V + tok] = W_E[tok] + W_pos[pos]; the value parts read W_E and W_pos directly
    let mut w_e = matmul(View::new(&d_v_tok, v, hd), View::new(&w.w_v2, d, hd).t()); // (V, D)
    let mut w_pos = matmul(
        View::new(&d_v_pos, n_ctx, hd),
        View::new(&w.w_v2, d, hd).t(),
    );
    for r in 0..n_tab {
        let (pos, tok) = table_entry(r, v, eq_tok);
        for i in 0..d {
            let g = d_e[r * d + i];
            w_e[tok * d + i] += g;
            w_pos[pos * d + i] += g;
        }
    }
    WeightGrads {
        w_e,
        w_pos,
        w_q2,
        w_k2,
        w_v2,
        w_o,
        w_in,
        b_in: g.c_in.clone(),
        w_out,
        b_out,
        w_u,
    }
}
