//! Row stage of the fused step: per example, attention over the three table rows it reads, the
//! MLP and the logits, then the loss and the backward pass to the table quantities.
//!
//! Forward per row (ids = table rows of a, b, `=`):
//! `pattern_h = softmax(scores[ids, h])`,
//! `pre = c_in + Σ_h Σ_pos pattern_h,pos · ov_in[h, ids[pos]]`, `post = relu(pre)`,
//! `logits = c_u + Σ_h Σ_pos pattern_h,pos · ov_u[h, ids[pos]] + post · W_L`.

use super::table::{Table, TableGrads};
use super::Weights;
use crate::models::linalg::{axpy, dot, matmul_into, Real, View};

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
    /// `[R, Vo]` logits at the last position.
    pub logits: Vec<T>,
}

/// The loss side of a row-stage call: labels `[R]`, the batch size the mean runs over, and
/// whether to run the backward pass.
struct Loss<'a> {
    labels: &'a [usize],
    n_total: usize,
    backward: bool,
}

/// Forward of `ids` (`[R, 3]` table rows), in the rows' order.
pub fn forward<T: Real>(w: &Weights<T>, t: &Table<T>, ids: &[[usize; 3]]) -> RowsForward<T> {
    match dispatch(w, t, ids, None) {
        Out::Forward(f) => f,
        Out::Chunk(_) => unreachable!("no loss was asked for"),
    }
}

/// Forward (and, with `backward`, backward) of `ids` (`[R, 3]` table rows) against `labels`
/// (`[R]`). The loss gradient is scaled by `1/n_total` (the mean over the whole batch).
pub fn run<T: Real>(
    w: &Weights<T>,
    t: &Table<T>,
    ids: &[[usize; 3]],
    labels: &[usize],
    n_total: usize,
    backward: bool,
) -> ChunkResult<T> {
    let loss = Loss {
        labels,
        n_total,
        backward,
    };
    match dispatch(w, t, ids, Some(loss)) {
        Out::Chunk(chunk) => chunk,
        Out::Forward(_) => unreachable!("a loss was asked for"),
    }
}

/// The row loops are axpys and dots over d_mlp and d_vocab_out: where the CPU has AVX2 and FMA
/// they run in a copy of [`rows`] compiled for them (the crate itself targets baseline x86-64).
fn dispatch<T: Real>(
    w: &Weights<T>,
    t: &Table<T>,
    ids: &[[usize; 3]],
    loss: Option<Loss>,
) -> Out<T> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the features the copy is compiled for were detected on this CPU.
        return unsafe { rows_avx2(w, t, ids, loss) };
    }
    rows(w, t, ids, loss)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2<T: Real>(
    w: &Weights<T>,
    t: &Table<T>,
    ids: &[[usize; 3]],
    loss: Option<Loss>,
) -> Out<T> {
    rows(w, t, ids, loss)
}

/// What one row-stage call returns: the forward pass alone, or the loss (and gradients).
enum Out<T> {
    Forward(RowsForward<T>),
    Chunk(ChunkResult<T>),
}

/// The forward pass, then with a [`Loss`] the loss and (optionally) the backward pass.
#[inline(always)]
fn rows<T: Real>(w: &Weights<T>, t: &Table<T>, ids: &[[usize; 3]], loss: Option<Loss>) -> Out<T> {
    let f = forward_rows(w, t, ids);
    match loss {
        None => Out::Forward(f),
        Some(l) => Out::Chunk(loss_and_backward(w, t, ids, l, f)),
    }
}

#[inline(always)]
fn forward_rows<T: Real>(w: &Weights<T>, t: &Table<T>, ids: &[[usize; 3]]) -> RowsForward<T> {
    let (h, m, vo) = (w.h, w.m, w.vo);
    let n_tab = t.n_tab;
    let r = ids.len();
    let mut pattern = vec![[T::zero(); 3]; r * h]; // (R, H, 3)
    let mut post = vec![T::zero(); r * m]; // (R, M)
    let mut logits = vec![T::zero(); r * vo]; // (R, Vo)
    for (row, id) in ids.iter().enumerate() {
        let pre = &mut post[row * m..(row + 1) * m];
        let out = &mut logits[row * vo..(row + 1) * vo];
        pre.copy_from_slice(&t.c_in);
        out.copy_from_slice(&t.c_u);
        for hh in 0..h {
            let s = id.map(|i| t.scores[i * h + hh]);
            let max = s[0].max(s[1]).max(s[2]);
            let e = s.map(|x| (x - max).exp());
            let z = e[0] + e[1] + e[2];
            let p = e.map(|x| x / z);
            for (pos, &i) in id.iter().enumerate() {
                let tab = hh * n_tab + i;
                axpy(pre, p[pos], &t.ov_in[tab * m..(tab + 1) * m]);
                axpy(out, p[pos], &t.ov_u[tab * vo..(tab + 1) * vo]);
            }
            pattern[row * h + hh] = p;
        }
        pre.iter_mut().for_each(|x| *x = x.max(T::zero()));
    }
    matmul_into(
        &mut logits,
        vo,
        View::new(&post, r, m),
        View::new(&t.w_l, m, vo),
        true,
    );
    RowsForward {
        pattern,
        post,
        logits,
    }
}

#[inline(always)]
fn loss_and_backward<T: Real>(
    w: &Weights<T>,
    t: &Table<T>,
    ids: &[[usize; 3]],
    loss: Loss,
    f: RowsForward<T>,
) -> ChunkResult<T> {
    let Loss {
        labels,
        n_total,
        backward,
    } = loss;
    let (h, m, vo) = (w.h, w.m, w.vo);
    let n_tab = t.n_tab;
    let r = ids.len();
    let RowsForward {
        pattern,
        post,
        mut logits,
    } = f;
    // Loss with log-softmax in f64; d logits = (softmax − onehot) / n_total.
    let mut loss_sum = 0.0;
    let mut correct = 0;
    let inv_n = 1.0 / n_total as f64;
    let mut exps = vec![0.0f64; vo];
    for (row, &label) in labels.iter().enumerate() {
        let out = &mut logits[row * vo..(row + 1) * vo];
        let argmax = (0..vo).fold(0, |b, c| if out[c] > out[b] { c } else { b });
        correct += usize::from(argmax == label);
        let max = out[argmax].f64();
        for (e, &x) in exps.iter_mut().zip(out.iter()) {
            *e = (x.f64() - max).exp();
        }
        let z: f64 = exps.iter().sum();
        loss_sum += max + z.ln() - out[label].f64();
        if backward {
            let scale = inv_n / z;
            for (c, (x, &e)) in out.iter_mut().zip(&exps).enumerate() {
                *x = T::of(e * scale - f64::from(u8::from(c == label)) * inv_n);
            }
        }
    }
    if !backward {
        return ChunkResult {
            loss_sum,
            correct,
            grads: None,
        };
    }
    let d_logits = logits; // (R, Vo)

    let mut g = TableGrads::zeros(w, n_tab);
    // logits += post·W_L
    matmul_into(
        &mut g.w_l,
        vo,
        View::new(&post, r, m).t(),
        View::new(&d_logits, r, vo),
        false,
    );
    let mut d_pre = vec![T::zero(); r * m]; // (R, M)
    matmul_into(
        &mut d_pre,
        m,
        View::new(&d_logits, r, vo),
        View::new(&t.w_l, m, vo).t(),
        false,
    );
    for (dp, &x) in d_pre.iter_mut().zip(&post) {
        if x <= T::zero() {
            *dp = T::zero();
        }
    }
    for (row, id) in ids.iter().enumerate() {
        let dp = &d_pre[row * m..(row + 1) * m];
        let dl = &d_logits[row * vo..(row + 1) * vo];
        axpy(&mut g.c_in, T::one(), dp);
        axpy(&mut g.c_u, T::one(), dl);
        for hh in 0..h {
            let p = pattern[row * h + hh];
            let mut d_p = [T::zero(); 3];
            for (pos, &i) in id.iter().enumerate() {
                let tab = hh * n_tab + i;
                d_p[pos] = dot(dp, &t.ov_in[tab * m..(tab + 1) * m])
                    + dot(dl, &t.ov_u[tab * vo..(tab + 1) * vo]);
                axpy(&mut g.ov_in[tab * m..(tab + 1) * m], p[pos], dp);
                axpy(&mut g.ov_u[tab * vo..(tab + 1) * vo], p[pos], dl);
            }
            // softmax backward: ds = p ⊙ (dp − Σ p·dp)
            let mean = p[0] * d_p[0] + p[1] * d_p[1] + p[2] * d_p[2];
            for (pos, &i) in id.iter().enumerate() {
                g.scores[i * h + hh] += p[pos] * (d_p[pos] - mean);
            }
        }
    }
    ChunkResult {
        loss_sum,
        correct,
        grads: Some(g),
    }
}
