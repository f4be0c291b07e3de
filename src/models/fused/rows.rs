//! Row stage of the fused step: per example, attention over the three table rows it reads, the
//! MLP and the logits, then the loss and the backward pass to the table quantities.
//!
//! Forward per row (ids = table rows of a, b, `=`):
//! `pattern_h = softmax(scores[ids, h])`,
//! `pre = c_in + Σ_h Σ_pos pattern_h,pos · ov_in[ids[pos], h]`, `post = relu(pre)`,
//! `logits = c_u + Σ_h Σ_pos pattern_h,pos · ov_u[ids[pos], h] + post · W_L`.
//!
//! The per-row loops are in [`super::kernels`].

use super::kernels::Kernel;
use super::table::{Table, TableGrads};
use super::Weights;
use crate::numerics::linalg::{matmul_into, View};

/// Loss sum (nats, f64) and correct count of a chunk, with its gradients.
pub struct ChunkResult<T> {
    /// Σ over the chunk's rows of −log softmax(logits)[label].
    pub loss_sum: f64,
    /// Rows whose arg-max logit is the label.
    pub correct: usize,
    /// Gradients for the table stage (absent for forward-only chunks).
    pub grads: Option<TableGrads<T>>,
}

/// The row stage's forward for `R` examples.
pub struct RowsForward<T> {
    /// `[R, H]` attention of the last position over (a, b, `=`) per head
    /// (`blocks.0.attn.hook_pattern[:, h, -1, :]`).
    pub pattern: Vec<[T; 3]>,
    /// `[R, M]` `blocks.0.mlp.hook_post` at the last position.
    pub post: Vec<T>,
    /// `[R, Vo]` logits at the last position (inside the row stage, before the row forward returns
    /// them, in rows of `Table::w_l_rs` entries).
    pub logits: Vec<T>,
}

/// Forward, loss and (with `backward`) backward of `ids` (`[R, 3]` table rows) against
/// `labels` (`[R]`). The loss gradient is scaled by `1/n_total` (the mean over the whole batch);
/// with `f32_loss` the log-softmax runs in f32 ([`super::kernels::cross_entropy_f32`]).
pub fn run<T: Kernel>(
    w: &Weights<T>,
    t: &Table<T>,
    ids: &[[usize; 3]],
    labels: &[usize],
    (n_total, backward, f32_loss): (usize, bool, bool),
) -> ChunkResult<T> {
    let f = forward_padded(w, t, ids);
    loss_and_backward(w, t, ids, (labels, n_total, backward, f32_loss), f)
}

/// Table row `i`'s `[H, W]` block of a `[n_tab, H, W]` table.
fn block<T>(tab: &[T], i: usize, hw: usize) -> &[T] {
    &tab[i * hw..(i + 1) * hw]
}

/// [`block`], mutable.
fn block_mut<T>(tab: &mut [T], i: usize, hw: usize) -> &mut [T] {
    &mut tab[i * hw..(i + 1) * hw]
}

/// The `[H, W]` blocks of the three table rows a row reads.
fn blocks<'a, T>(tab: &'a [T], id: &[usize; 3], hw: usize) -> [&'a [T]; 3] {
    id.map(|i| block(tab, i, hw))
}

/// Forward of `ids` (`[R, 3]` table rows), in the rows' order.
pub fn forward<T: Kernel>(w: &Weights<T>, t: &Table<T>, ids: &[[usize; 3]]) -> RowsForward<T> {
    let mut f = forward_padded(w, t, ids);
    let (vo, rs) = (w.vo, t.w_l_rs);
    if rs != vo {
        let logits = f.logits.chunks_exact(rs).flat_map(|row| &row[..vo]);
        f.logits = logits.copied().collect();
    }
    f
}

/// [`forward`] with the logits in rows of `t.w_l_rs` entries (the padding zeros).
fn forward_padded<T: Kernel>(w: &Weights<T>, t: &Table<T>, ids: &[[usize; 3]]) -> RowsForward<T> {
    let (h, m, vo, rs) = (w.h, w.m, w.vo, t.w_l_rs);
    let r = ids.len();
    let mut pattern = vec![[T::zero(); 3]; r * h]; // (R, H, 3)
    let mut post = spare::take(r * m); // (R, M), every entry written below
    let mut logits = spare::take(r * rs); // (R, Vo) in rows of rs, written below
    for (row, id) in ids.iter().enumerate() {
        let p = &mut pattern[row * h..(row + 1) * h];
        for (hh, ph) in p.iter_mut().enumerate() {
            let s = id.map(|i| t.scores[i * h + hh]);
            let max = s[0].max(s[1]).max(s[2]);
            let e = s.map(|x| (x - max).exp());
            let z = e[0] + e[1] + e[2];
            *ph = e.map(|x| x / z);
        }
        let p = &pattern[row * h..(row + 1) * h];
        let pre = &mut post[row * m..(row + 1) * m];
        T::gather(pre, &t.c_in, p, blocks(&t.ov_in, id, h * m), true);
        let out = &mut logits[row * rs..(row + 1) * rs];
        T::gather(
            &mut out[..vo],
            &t.c_u,
            p,
            blocks(&t.ov_u, id, h * vo),
            false,
        );
        out[vo..].fill(T::zero());
    }
    matmul_into(
        &mut logits,
        rs,
        View::new(&post, r, m),
        View::new(&t.w_l, m, rs),
        true,
    );
    RowsForward {
        pattern,
        post,
        logits,
    }
}

fn loss_and_backward<T: Kernel>(
    w: &Weights<T>,
    t: &Table<T>,
    ids: &[[usize; 3]],
    (labels, n_total, backward, f32_loss): (&[usize], usize, bool, bool),
    f: RowsForward<T>,
) -> ChunkResult<T> {
    let (h, m, vo, rs) = (w.h, w.m, w.vo, t.w_l_rs);
    let n_tab = t.n_tab;
    let r = ids.len();
    let RowsForward {
        pattern,
        post,
        mut logits,
    } = f;
    // Loss with log-softmax in f64 (or f32); d logits = (softmax − onehot) / n_total.
    let mut loss_sum = 0.0;
    let mut correct = 0;
    let inv_n = 1.0 / n_total as f64;
    let mut exps = vec![0.0f64; vo];
    for (row, &label) in labels.iter().enumerate() {
        let out = &mut logits[row * rs..row * rs + vo];
        let (loss, argmax) = if f32_loss {
            super::kernels::cross_entropy_f32(out, label, inv_n, backward)
        } else {
            T::cross_entropy(out, label, inv_n, backward, &mut exps)
        };
        loss_sum += loss;
        correct += usize::from(argmax == label);
    }
    if !backward {
        [post, logits].into_iter().for_each(spare::give);
        return ChunkResult {
            loss_sum,
            correct,
            grads: None,
        };
    }
    let d_logits = logits; // (R, Vo) in rows of rs
    let d_logits_v = View::strided(&d_logits, r, vo, rs, 1);

    let mut g = TableGrads::zeros(w, n_tab);
    // ∂W_L = postᵀ·∂logits
    matmul_into(
        &mut g.w_l,
        vo,
        View::new(&post, r, m).t(),
        d_logits_v,
        false,
    );
    // ∂post = ∂logits·W_Lᵀ
    let mut d_pre = spare::take(r * m); // (R, M), overwritten by the product
    matmul_into(
        &mut d_pre,
        m,
        d_logits_v,
        View::strided(&t.w_l, m, vo, rs, 1).t(),
        false,
    );
    let (hm, hvo) = (h * m, h * vo);
    for (dp, post) in d_pre.chunks_exact_mut(m).zip(post.chunks_exact(m)) {
        T::relu_backward(dp, post);
    }
    // Backward of the gather, one table-row position at a time, visiting the rows so that
    // consecutive rows read the same table row: the a rows in the sorted order, the b rows
    // grouped by b, the `=` row by all. The table row's two `[H, M]` blocks (values and
    // gradients) then stay in L1 across a run, where one sweep over all three positions per
    // example streams twelve blocks through L2. The sort is stable, so every gradient entry
    // still sums its rows in their original order.
    let mut d_p = vec![[T::zero(); 3]; r * h]; // (R, H, 3)
    let in_order: Vec<usize> = (0..r).collect();
    let mut by_b = in_order.clone();
    by_b.sort_by_key(|&row| ids[row][1]);
    let (mut coef, mut d_x) = (vec![T::zero(); h], vec![T::zero(); h]);
    for (pos, order) in [&in_order, &by_b, &in_order].into_iter().enumerate() {
        for &row in order {
            let i = ids[row][pos];
            let p = &pattern[row * h..(row + 1) * h];
            coef.iter_mut().zip(p).for_each(|(c, ph)| *c = ph[pos]);
            d_x.fill(T::zero());
            let last = pos == 2;
            T::pass(
                &d_pre[row * m..(row + 1) * m],
                block(&t.ov_in, i, hm),
                &coef,
                block_mut(&mut g.ov_in, i, hm),
                last.then_some(&mut g.c_in[..]),
                &mut d_x,
            );
            T::pass(
                &d_logits[row * rs..row * rs + vo],
                block(&t.ov_u, i, hvo),
                &coef,
                block_mut(&mut g.ov_u, i, hvo),
                last.then_some(&mut g.c_u[..]),
                &mut d_x,
            );
            for (dh, &x) in d_p[row * h..(row + 1) * h].iter_mut().zip(&d_x) {
                dh[pos] = x;
            }
        }
    }
    // softmax backward: ds = p ⊙ (dp − Σ p·dp)
    for (row, id) in ids.iter().enumerate() {
        let p = &pattern[row * h..(row + 1) * h];
        let d_p = &d_p[row * h..(row + 1) * h];
        for (hh, (ph, dh)) in p.iter().zip(d_p).enumerate() {
            let mean = ph[0] * dh[0] + ph[1] * dh[1] + ph[2] * dh[2];
            for (pos, &i) in id.iter().enumerate() {
                g.scores[i * h + hh] += ph[pos] * (dh[pos] - mean);
            }
        }
    }
    [post, d_logits, d_pre].into_iter().for_each(spare::give);
    ChunkResult {
        loss_sum,
        correct,
        grads: Some(g),
    }
}

/// Spare row-stage buffers per thread. A step's `[R, M]` and `[R, Vo]`-sized buffers (≈ 9 MB per
/// chunk) are overwritten entirely each step, so the next step on the same thread reuses them
/// instead of allocating and zeroing fresh memory.
mod spare {
    use crate::numerics::linalg::Real;
    use std::any::Any;
    use std::cell::RefCell;

    /// Buffers kept per thread at most.
    const KEEP: usize = 6;

    thread_local! {
        static SPARE: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
    }

    /// A buffer of `len` entries, reused when this thread has one of that length (its
    /// contents are stale: the caller overwrites every entry), else zeros.
    pub fn take<T: Real>(len: usize) -> Vec<T> {
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            let fits =
                |b: &Box<dyn Any>| b.downcast_ref::<Vec<T>>().is_some_and(|v| v.len() == len);
            match s.iter().position(fits) {
                Some(i) => *s.swap_remove(i).downcast::<Vec<T>>().expect("checked type"),
                None => vec![T::zero(); len],
            }
        })
    }

    /// Keeps `v` for a later [`take`] on this thread.
    pub fn give<T: Real>(v: Vec<T>) {
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() == KEEP {
                s.remove(0);
            }
            s.push(Box::new(v));
        })
    }
}
