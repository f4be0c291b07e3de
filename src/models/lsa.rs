//! Linear self-attention (LSA), and softmax attention, on real-valued tokens, the model of von Oswald et al. 2023 §2
//! (REFERENCES.md §5), forward beside backward (llm.c's layout), in f32.
//!
//! One layer on the tokens `H` `[T, e]` (e = d + 1; the last token is the query, the T − 1
//! before it the context):
//!
//! ```text
//! Q = H W_Q           [T, e]     queries from every token
//! K = H_ctx W_K       [T−1, e]   keys and values from the context tokens only
//! V = H_ctx W_V       [T−1, e]
//! A = Q Kᵀ            [T, T−1]   no softmax, no scale, no mask
//! H ← H + (A V) W_P   [T, e]
//! ```
//!
//! With h heads each adds its own `(A V) W_P`; with softmax attention `A = softmax(Q Kᵀ/√e)`
//! over the context keys (the paper's §4 comparison: softmax needs two heads to come close to
//! GD). K layers are stacked, with their own weights or one shared ("recurrent") block, and
//! the prediction is `ŷ = −H[query, d]`. Parameter names follow TransformerLens
//! (`blocks.0.attn.W_Q` `[h, e, e]`; W_P is `blocks.0.attn.W_O`).

use super::config::{Init, ParamSpec};
use super::ParamStore;
use rayon::prelude::*;

/// Tasks per parallel chunk below which a batch is not split further.
const MIN_CHUNK: usize = 64;

/// Shape of an LSA stack.
#[derive(Clone, Debug, PartialEq)]
pub struct LsaConfig {
    /// Input dimension d (tokens are d + 1 wide).
    pub d: usize,
    /// Layers K.
    pub n_layers: usize,
    /// One block applied K times (`true`) or K blocks.
    pub shared: bool,
    /// Heads per layer h (each with e-wide queries, keys and values).
    pub n_heads: usize,
    /// Softmax attention (scores scaled by 1/√e, softmax over the context keys) instead of
    /// linear.
    pub softmax: bool,
    /// Init scale s: weights are truncated normal (±2σ) with variance s / (K · fan_in), as the
    /// paper's code (`VarianceScaling(s / K)`, fan-in, truncated normal; s = 0.002).
    pub init_scale: f64,
}

/// The four matrices of one block.
pub const LSA_WEIGHTS: [&str; 4] = ["W_Q", "W_K", "W_V", "W_O"];

impl LsaConfig {
    /// Token width e = d + 1.
    pub fn width(&self) -> usize {
        self.d + 1
    }

    /// Blocks with their own weights: 1 when shared, else K.
    pub fn n_blocks(&self) -> usize {
        if self.shared {
            1
        } else {
            self.n_layers
        }
    }

    /// FLOPs (2 × multiply-accumulates; backward ≈ 2× forward) of one training step on `rows`
    /// tasks of `t` tokens, as computed: per layer and head, K and V on the c = t − 1 context
    /// tokens (c·e² each), and on the tq querying tokens (t, or 1 in the last layer, the
    /// only output the loss reads) Q and W_P (tq·e² each), the scores and their product with
    /// V (tq·c·e each).
    pub fn train_step_flops(&self, rows: usize, t: usize) -> f64 {
        let (e, c) = (self.width() as f64, t as f64 - 1.0);
        let per_layer = |tq: f64| 2.0 * c * e * e + 2.0 * tq * e * e + 2.0 * tq * c * e;
        let macs = (self.n_layers - 1) as f64 * per_layer(t as f64) + per_layer(1.0);
        3.0 * 2.0 * rows as f64 * self.n_heads as f64 * macs
    }

    /// `blocks.{b}.attn.{W_Q, W_K, W_V, W_O}`, each `[h, e, e]`, block by block.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let e = self.width();
        // haiku's truncated normal divides by the std of a unit normal truncated at ±2
        let std = (self.init_scale / (self.n_layers as f64 * e as f64)).sqrt() / 0.879_625_66;
        (0..self.n_blocks())
            .flat_map(|b| {
                LSA_WEIGHTS.map(|w| {
                    ParamSpec::new(
                        &format!("blocks.{b}.attn.{w}"),
                        vec![self.n_heads, e, e],
                        Init::TruncatedNormal(std),
                    )
                })
            })
            .collect()
    }
}

/// One block's weights in f32, each `[h, e, e]` row-major.
#[derive(Clone, Debug)]
pub struct LsaBlock {
    /// Query map.
    pub w_q: Vec<f32>,
    /// Key map.
    pub w_k: Vec<f32>,
    /// Value map.
    pub w_v: Vec<f32>,
    /// Output projection W_P.
    pub w_p: Vec<f32>,
}

/// The weights of an LSA stack, read from a store (or built, [`super::lsa_gd`]).
#[derive(Clone, Debug)]
pub struct LsaWeights {
    /// Token width e.
    pub e: usize,
    /// Heads per layer h.
    pub n_heads: usize,
    /// Softmax attention (else linear).
    pub softmax: bool,
    /// Layers K.
    pub n_layers: usize,
    /// [`LsaConfig::n_blocks`] blocks; layer l uses block `l % blocks.len()`.
    pub blocks: Vec<LsaBlock>,
}

impl LsaWeights {
    /// The f32 weights of `store` (layout of `cfg`).
    ///
    /// # Panics
    /// A store of another layout (a programming error).
    pub fn from_store(cfg: &LsaConfig, store: &ParamStore) -> Self {
        let get = |b: usize, w: &str| -> Vec<f32> {
            let name = format!("blocks.{b}.attn.{w}");
            let e = store
                .get(&name)
                .unwrap_or_else(|| panic!("parameter `{name}` exists for this config"));
            e.data.iter().map(|&x| x as f32).collect()
        };
        Self {
            e: cfg.width(),
            n_heads: cfg.n_heads,
            softmax: cfg.softmax,
            n_layers: cfg.n_layers,
            blocks: (0..cfg.n_blocks())
                .map(|b| LsaBlock {
                    w_q: get(b, "W_Q"),
                    w_k: get(b, "W_K"),
                    w_v: get(b, "W_V"),
                    w_p: get(b, "W_O"),
                })
                .collect(),
        }
    }

    /// The block layer `l` applies.
    fn block(&self, l: usize) -> &LsaBlock {
        &self.blocks[l % self.blocks.len()]
    }
}

/// What one head's backward reads, per layer.
#[derive(Clone, Debug, Default)]
struct HeadCache {
    /// `[T, e]`.
    q: Vec<f32>,
    /// `[T−1, e]`.
    k: Vec<f32>,
    /// `[T−1, e]`.
    v: Vec<f32>,
    /// `[T, T−1]` attention weights (the scores themselves for linear attention).
    a: Vec<f32>,
    /// `[T, e]` the head's output before W_O.
    o: Vec<f32>,
}

/// What one layer's backward reads.
#[derive(Clone, Debug, Default)]
struct LayerCache {
    /// `[T, e]` input tokens.
    h: Vec<f32>,
    /// Per head.
    heads: Vec<HeadCache>,
}

/// `out[m, n] = a[m, k] · b[k, n]`.
pub(super) fn mm(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, out: &mut [f32]) {
    out[..m * n].iter_mut().for_each(|x| *x = 0.0);
    for i in 0..m {
        let row = &mut out[i * n..(i + 1) * n];
        for (p, &x) in a[i * k..(i + 1) * k].iter().enumerate() {
            row.iter_mut()
                .zip(&b[p * n..(p + 1) * n])
                .for_each(|(o, &y)| *o += x * y);
        }
    }
}

/// `out[m, n] = a[m, k] · b[n, k]ᵀ`.
pub(super) fn mm_nt(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, out: &mut [f32]) {
    for i in 0..m {
        let ai = &a[i * k..(i + 1) * k];
        for j in 0..n {
            out[i * n + j] = ai
                .iter()
                .zip(&b[j * k..(j + 1) * k])
                .map(|(x, y)| x * y)
                .sum();
        }
    }
}

/// `out[m, n] += a[k, m]ᵀ · b[k, n]`.
pub(super) fn mm_tn_acc(a: &[f32], b: &[f32], k: usize, m: usize, n: usize, out: &mut [f32]) {
    for p in 0..k {
        let bp = &b[p * n..(p + 1) * n];
        for (i, &x) in a[p * m..(p + 1) * m].iter().enumerate() {
            out[i * n..(i + 1) * n]
                .iter_mut()
                .zip(bp)
                .for_each(|(o, &y)| *o += x * y);
        }
    }
}

/// Head `hd`'s `[e, e]` matrix of an `[h, e, e]` one.
fn head_slice(x: &[f32], hd: usize, ee: usize) -> &[f32] {
    &x[hd * ee..(hd + 1) * ee]
}

/// Row-wise softmax of `s` `[rows, cols]` in place.
pub(super) fn softmax_rows(s: &mut [f32], cols: usize) {
    for row in s.chunks_mut(cols) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut z = 0.0;
        row.iter_mut().for_each(|x| {
            *x = (*x - max).exp();
            z += *x;
        });
        row.iter_mut().for_each(|x| *x /= z);
    }
}

/// One task's working memory, allocated once per chunk of tasks and reused.
struct Scratch {
    /// Per layer, what its backward reads.
    caches: Vec<LayerCache>,
    /// `[T, e]` buffers of the passes.
    delta: Vec<f32>,
    part: Vec<f32>,
    d_o: Vec<f32>,
    dq: Vec<f32>,
    tmp: Vec<f32>,
    d_in: Vec<f32>,
    /// `[T, T−1]`.
    da: Vec<f32>,
    /// `[T−1, e]`.
    dk: Vec<f32>,
    dv: Vec<f32>,
}

impl Scratch {
    fn new(w: &LsaWeights, t: usize) -> Self {
        let (e, c) = (w.e, t - 1);
        let head = HeadCache {
            q: vec![0.0; t * e],
            k: vec![0.0; c * e],
            v: vec![0.0; c * e],
            a: vec![0.0; t * c],
            o: vec![0.0; t * e],
        };
        let layer = LayerCache {
            h: vec![0.0; t * e],
            heads: vec![head; w.n_heads],
        };
        let te = vec![0.0; t * e];
        Self {
            caches: vec![layer; w.n_layers],
            delta: te.clone(),
            part: te.clone(),
            d_o: te.clone(),
            dq: te.clone(),
            tmp: te.clone(),
            d_in: te,
            da: vec![0.0; t * c],
            dk: vec![0.0; c * e],
            dv: vec![0.0; c * e],
        }
    }
}

/// First token whose query layer `l` computes: every token but in the last layer, whose only
/// output the prediction reads is the query's (the loss reads nothing else).
pub(super) fn first_query(w: &LsaWeights, l: usize, t: usize) -> usize {
    if l + 1 == w.n_layers {
        t - 1
    } else {
        0
    }
}

/// Runs every layer on one task's tokens `h` `[T, e]` in place (the last layer updates only
/// the query token), keeping in `sc` what the backward reads.
fn forward_task(w: &LsaWeights, h: &mut [f32], t: usize, sc: &mut Scratch) {
    let (e, c) = (w.e, t - 1);
    let ee = e * e;
    let scale = (e as f32).sqrt().recip();
    for l in 0..w.n_layers {
        let b = w.block(l);
        let q0 = first_query(w, l, t);
        let tq = t - q0;
        let cache = &mut sc.caches[l];
        cache.h.copy_from_slice(h);
        let delta = &mut sc.delta[..tq * e];
        delta.iter_mut().for_each(|x| *x = 0.0);
        for (hd, head) in cache.heads.iter_mut().enumerate() {
            let (q, a, o) = (
                &mut head.q[..tq * e],
                &mut head.a[..tq * c],
                &mut head.o[..tq * e],
            );
            mm(&h[q0 * e..], head_slice(&b.w_q, hd, ee), tq, e, e, q);
            mm(
                &h[..c * e],
                head_slice(&b.w_k, hd, ee),
                c,
                e,
                e,
                &mut head.k,
            );
            mm(
                &h[..c * e],
                head_slice(&b.w_v, hd, ee),
                c,
                e,
                e,
                &mut head.v,
            );
            mm_nt(q, &head.k, tq, e, c, a);
            if w.softmax {
                a.iter_mut().for_each(|x| *x *= scale);
                softmax_rows(a, c);
            }
            mm(a, &head.v, tq, c, e, o);
            let part = &mut sc.part[..tq * e];
            mm(o, head_slice(&b.w_p, hd, ee), tq, e, e, part);
            delta.iter_mut().zip(part.iter()).for_each(|(x, p)| *x += p);
        }
        h[q0 * e..]
            .iter_mut()
            .zip(delta.iter())
            .for_each(|(x, d)| *x += d);
    }
}

/// Backward of [`forward_task`] from `dh` `[T, e]` (the gradient at the output tokens; only
/// the query's row may be non-zero), leaving in `dh` the gradient at the input tokens (the
/// training step's weight gradients are [`super::lsa_batched`]'s).
fn backward_task(w: &LsaWeights, sc: &mut Scratch, dh: &mut [f32], t: usize) {
    let (e, c) = (w.e, t - 1);
    let ee = e * e;
    let scale = (e as f32).sqrt().recip();
    for l in (0..w.n_layers).rev() {
        let (b, x) = (w.block(l), &sc.caches[l]);
        let q0 = first_query(w, l, t);
        let tq = t - q0;
        sc.d_in.copy_from_slice(dh);
        let dh_q = &dh[q0 * e..];
        for (hd, hc) in x.heads.iter().enumerate() {
            let (q, a) = (&hc.q[..tq * e], &hc.a[..tq * c]);
            let (d_o, da, dq) = (
                &mut sc.d_o[..tq * e],
                &mut sc.da[..tq * c],
                &mut sc.dq[..tq * e],
            );
            mm_nt(dh_q, head_slice(&b.w_p, hd, ee), tq, e, e, d_o);
            mm_nt(d_o, &hc.v, tq, e, c, da);
            sc.dv.iter_mut().for_each(|z| *z = 0.0);
            mm_tn_acc(a, d_o, tq, c, e, &mut sc.dv);
            if w.softmax {
                // d scores = a ⊙ (da − Σ_j da_j a_j), times the scale
                for (dr, ar) in da.chunks_mut(c).zip(a.chunks(c)) {
                    let dot: f32 = dr.iter().zip(ar).map(|(x, y)| x * y).sum();
                    dr.iter_mut()
                        .zip(ar)
                        .for_each(|(x, y)| *x = y * (*x - dot) * scale);
                }
            }
            mm(da, &hc.k, tq, c, e, dq);
            sc.dk.iter_mut().for_each(|z| *z = 0.0);
            mm_tn_acc(da, q, tq, c, e, &mut sc.dk);
            // dq W_Qᵀ on the querying tokens, (dk W_Kᵀ + dv W_Vᵀ) on the context
            let tmp = &mut sc.tmp[..tq * e];
            mm_nt(dq, head_slice(&b.w_q, hd, ee), tq, e, e, tmp);
            (sc.d_in[q0 * e..].iter_mut())
                .zip(tmp.iter())
                .for_each(|(x, y)| *x += y);
            for (d, w_m) in [(&sc.dk, &b.w_k), (&sc.dv, &b.w_v)] {
                let tmp = &mut sc.tmp[..c * e];
                mm_nt(d, head_slice(w_m, hd, ee), c, e, e, tmp);
                (sc.d_in[..c * e].iter_mut())
                    .zip(tmp.iter())
                    .for_each(|(x, y)| *x += y);
            }
        }
        dh.copy_from_slice(&sc.d_in);
    }
}

/// `f` on every task of `tokens` `[B, T, e]` (a copy of its tokens, and scratch memory per
/// rayon job), in parallel, results in task order.
fn per_task<R: Send>(
    w: &LsaWeights,
    tokens: &[f32],
    t: usize,
    f: impl Fn(&mut Scratch, Vec<f32>) -> R + Sync + Send,
) -> Vec<R> {
    tokens
        .par_chunks(t * w.e)
        .with_min_len(MIN_CHUNK)
        .map_init(|| Scratch::new(w, t), |sc, task| f(sc, task.to_vec()))
        .collect()
}

/// `[B]` predictions `ŷ = −H_K[query, d]` of the tokens `[B, T, e]`.
pub fn predict(w: &LsaWeights, tokens: &[f32], t: usize) -> Vec<f32> {
    per_task(w, tokens, t, |sc, mut h| {
        forward_task(w, &mut h, t, sc);
        -h[t * w.e - 1]
    })
}

/// `[B, d]` the gradient of each prediction with respect to its query input x_q (the paper's
/// "model" gradient, compared with the GD learner's ∂ŷ/∂x_q).
pub fn query_gradients(w: &LsaWeights, tokens: &[f32], t: usize) -> Vec<f32> {
    let e = w.e;
    per_task(w, tokens, t, |sc, mut h| {
        forward_task(w, &mut h, t, sc);
        let mut dh = vec![0.0; t * e];
        dh[t * e - 1] = -1.0;
        backward_task(w, sc, &mut dh, t);
        dh[(t - 1) * e..t * e - 1].to_vec()
    })
    .concat()
}

/// Loss `½·mean_b (ŷ_b − y_b)²` of tokens `[B, T, e]` against `targets` `[B]`, and the
/// gradient of every block's `[W_Q, W_K, W_V, W_O]` (each `[h, e, e]`; f64, store order), in
/// `chunks` parallel chunks.
pub fn loss_and_grads(
    w: &LsaWeights,
    tokens: &[f32],
    targets: &[f32],
    t: usize,
    chunks: usize,
) -> (f64, Vec<Vec<f64>>) {
    let (e, n) = (w.e, targets.len());
    let ee = w.n_heads * e * e;
    let chunks = chunks.clamp(1, n.div_ceil(MIN_CHUNK).max(1));
    let parts: Vec<(f64, Vec<Vec<f32>>)> = (0..chunks)
        .into_par_iter()
        .map(|ch| {
            let (lo, hi) = (ch * n / chunks, (ch + 1) * n / chunks);
            let mut grads = vec![vec![0.0f32; 4 * ee]; w.blocks.len()];
            let loss = super::lsa_batched::chunk_loss_and_grads(
                w,
                &tokens[lo * t * e..hi * t * e],
                &targets[lo..hi],
                t,
                n,
                &mut grads,
            );
            (loss, grads)
        })
        .collect();
    let loss = parts.iter().map(|p| p.0).sum::<f64>() / n.max(1) as f64;
    let mut out = vec![vec![0.0f64; ee]; 4 * w.blocks.len()];
    for (_, grads) in &parts {
        for (b, g) in grads.iter().enumerate() {
            for m in 0..4 {
                (out[4 * b + m].iter_mut())
                    .zip(&g[m * ee..(m + 1) * ee])
                    .for_each(|(o, &x)| *o += f64::from(x));
            }
        }
    }
    (loss, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(n_layers: usize, shared: bool) -> LsaConfig {
        LsaConfig {
            d: 3,
            n_layers,
            shared,
            n_heads: 1,
            softmax: false,
            init_scale: 0.002,
        }
    }

    fn tokens(b: usize, t: usize, e: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let toks = (0..b * t * e)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let ys = (0..b).map(|_| rng.random_range(-1.0..1.0)).collect();
        (toks, ys)
    }

    /// A larger init than the paper's so that every term of the backward matters.
    fn store(c: &LsaConfig, seed: u64) -> ParamStore {
        let mut s = ParamStore::init_specs(c.param_specs(), seed);
        s.entries
            .iter_mut()
            .for_each(|e| e.data.iter_mut().for_each(|x| *x *= 30.0));
        s
    }

    fn loss_of(c: &LsaConfig, s: &ParamStore, toks: &[f32], ys: &[f32], t: usize) -> f64 {
        let w = LsaWeights::from_store(c, s);
        let p = predict(&w, toks, t);
        (p.iter().zip(ys))
            .map(|(p, y)| 0.5 * f64::from(p - y).powi(2))
            .sum::<f64>()
            / ys.len() as f64
    }

    /// Weight gradients against central finite differences (f64 weights, f32 arithmetic: a
    /// step of 1e-2 and a 2% tolerance), for separate and shared blocks.
    #[test]
    fn gradients_match_finite_differences() {
        for (layers, shared, heads, softmax) in [
            (1, false, 1, false),
            (2, false, 1, false),
            (3, true, 1, false),
            (1, false, 2, true),
            (2, false, 2, true),
            (2, true, 3, false),
        ] {
            let c = LsaConfig {
                n_heads: heads,
                softmax,
                ..cfg(layers, shared)
            };
            let t = 5;
            let (toks, ys) = tokens(6, t, c.width(), 1);
            let s = store(&c, 2);
            let w = LsaWeights::from_store(&c, &s);
            let (loss, grads) = loss_and_grads(&w, &toks, &ys, t, 2);
            assert!((loss - loss_of(&c, &s, &toks, &ys, t)).abs() < 1e-6 * loss.max(1.0));
            for (pi, g) in grads.iter().enumerate() {
                for i in [0, 5, 11, 15, g.len() - 1] {
                    let h = 1e-2;
                    let mut plus = s.clone();
                    plus.entries[pi].data[i] += h;
                    let mut minus = s.clone();
                    minus.entries[pi].data[i] -= h;
                    let fd = (loss_of(&c, &plus, &toks, &ys, t)
                        - loss_of(&c, &minus, &toks, &ys, t))
                        / (2.0 * h);
                    let scale = g.iter().map(|x| x.abs()).fold(0.0, f64::max);
                    assert!(
                        (fd - g[i]).abs() <= 0.02 * scale,
                        "layers {layers} shared {shared} heads {heads} softmax {softmax} param {pi} [{i}]: {} vs fd {fd}",
                        g[i]
                    );
                }
            }
        }
    }

    /// ∂ŷ/∂x_q against finite differences of the prediction.
    #[test]
    fn query_gradients_match_finite_differences() {
        let c = cfg(2, false);
        let (t, e) = (5, c.width());
        let (toks, _) = tokens(3, t, e, 4);
        let w = LsaWeights::from_store(&c, &store(&c, 5));
        let g = query_gradients(&w, &toks, t);
        for b in 0..3 {
            for j in 0..c.d {
                let at = b * t * e + (t - 1) * e + j;
                let h = 1e-2f32;
                let (mut plus, mut minus) = (toks.clone(), toks.clone());
                plus[at] += h;
                minus[at] -= h;
                let fd = (predict(&w, &plus, t)[b] - predict(&w, &minus, t)[b]) / (2.0 * h);
                let got = g[b * c.d + j];
                assert!(
                    (fd - got).abs() < 2e-2 * got.abs().max(1.0),
                    "{got} vs {fd}"
                );
            }
        }
    }
}
