//! Linear self-attention (LSA), and softmax attention, on real-valued tokens, the model of von
//! Oswald et al. 2023 §2 (REFERENCES.md §5), in f32: its config, weights and entry points
//! (predictions, query gradients, the training loss and gradients). The forward and backward
//! themselves, over chunks of tasks, are in [`super::lsa_batched`].
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
//! the prediction is `ŷ = −H[query, d]`. Optionally each layer reads its input through a
//! pre-LayerNorm and adds a ReLU MLP after the attention. Parameter names follow
//! TransformerLens (`blocks.0.attn.W_Q` `[h, e, e]`; W_P is `blocks.0.attn.W_O`;
//! `blocks.0.ln1.w`, `blocks.0.mlp.W_in`).

use super::config::{Init, ParamSpec};
use super::lsa_batched;
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
    /// Pre-LayerNorm: the attention reads `LN1(H)` (and the MLP `LN2(·)`), weights
    /// `blocks.{b}.ln1.w` / `.b` `[e]` initialised to 1 and 0.
    pub layer_norm: bool,
    /// Hidden width of a ReLU MLP after each attention (0: none), on the rows the layer
    /// updates: `blocks.{b}.mlp.W_in` `[e, d_mlp]`, `b_in` `[d_mlp]`, `W_out` `[d_mlp, e]`,
    /// `b_out` `[e]`.
    pub d_mlp: usize,
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

    /// Per block: `blocks.{b}.attn.{W_Q, W_K, W_V, W_O}`, each `[h, e, e]`; with LayerNorm
    /// `ln1.w`, `ln1.b` (and `ln2.w`, `ln2.b` with an MLP), each `[e]`; with an MLP `mlp.W_in`
    /// `[e, d_mlp]`, `mlp.b_in` `[d_mlp]`, `mlp.W_out` `[d_mlp, e]`, `mlp.b_out` `[e]` (the
    /// weights truncated normal with variance s / (K · fan_in), the biases zero).
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let e = self.width();
        // haiku's truncated normal divides by the std of a unit normal truncated at ±2
        let std = |fan_in: usize| {
            (self.init_scale / (self.n_layers as f64 * fan_in as f64)).sqrt() / 0.879_625_66
        };
        let mut specs = Vec::new();
        for b in 0..self.n_blocks() {
            let name = |n: &str| format!("blocks.{b}.{n}");
            for w in LSA_WEIGHTS {
                specs.push(ParamSpec::new(
                    &name(&format!("attn.{w}")),
                    vec![self.n_heads, e, e],
                    Init::TruncatedNormal(std(e)),
                ));
            }
            let ln = |specs: &mut Vec<ParamSpec>, which: &str| {
                specs.push(ParamSpec::new(
                    &name(&format!("{which}.w")),
                    vec![e],
                    Init::Ones,
                ));
                specs.push(ParamSpec::new(
                    &name(&format!("{which}.b")),
                    vec![e],
                    Init::Zeros,
                ));
            };
            if self.layer_norm {
                ln(&mut specs, "ln1");
                if self.d_mlp > 0 {
                    ln(&mut specs, "ln2");
                }
            }
            if self.d_mlp > 0 {
                let h = self.d_mlp;
                specs.push(ParamSpec::new(
                    &name("mlp.W_in"),
                    vec![e, h],
                    Init::TruncatedNormal(std(e)),
                ));
                specs.push(ParamSpec::new(&name("mlp.b_in"), vec![h], Init::Zeros));
                specs.push(ParamSpec::new(
                    &name("mlp.W_out"),
                    vec![h, e],
                    Init::TruncatedNormal(std(h)),
                ));
                specs.push(ParamSpec::new(&name("mlp.b_out"), vec![e], Init::Zeros));
            }
        }
        specs
    }
}

/// One block's weights in f32, row-major: the attention's `[h, e, e]`, and the LayerNorm and
/// MLP weights (empty when the model has none).
#[derive(Clone, Debug, Default)]
pub struct LsaBlock {
    /// Query map.
    pub w_q: Vec<f32>,
    /// Key map.
    pub w_k: Vec<f32>,
    /// Value map.
    pub w_v: Vec<f32>,
    /// Output projection W_P.
    pub w_p: Vec<f32>,
    /// LN1 scale and shift `[e]`.
    pub ln1_w: Vec<f32>,
    /// See `ln1_w`.
    pub ln1_b: Vec<f32>,
    /// LN2 (before the MLP) scale and shift `[e]`.
    pub ln2_w: Vec<f32>,
    /// See `ln2_w`.
    pub ln2_b: Vec<f32>,
    /// MLP `[e, d_mlp]`.
    pub w_in: Vec<f32>,
    /// MLP `[d_mlp]`.
    pub b_in: Vec<f32>,
    /// MLP `[d_mlp, e]`.
    pub w_out: Vec<f32>,
    /// MLP `[e]`.
    pub b_out: Vec<f32>,
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
    /// Pre-LayerNorm ([`LsaConfig::layer_norm`]).
    pub layer_norm: bool,
    /// MLP hidden width (0: none).
    pub d_mlp: usize,
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
            let name = format!("blocks.{b}.{w}");
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
            layer_norm: cfg.layer_norm,
            d_mlp: cfg.d_mlp,
            blocks: (0..cfg.n_blocks())
                .map(|b| {
                    let (ln, mlp) = (cfg.layer_norm, cfg.d_mlp > 0);
                    let opt = |yes: bool, w: &str| if yes { get(b, w) } else { Vec::new() };
                    LsaBlock {
                        w_q: get(b, "attn.W_Q"),
                        w_k: get(b, "attn.W_K"),
                        w_v: get(b, "attn.W_V"),
                        w_p: get(b, "attn.W_O"),
                        ln1_w: opt(ln, "ln1.w"),
                        ln1_b: opt(ln, "ln1.b"),
                        ln2_w: opt(ln && mlp, "ln2.w"),
                        ln2_b: opt(ln && mlp, "ln2.b"),
                        w_in: opt(mlp, "mlp.W_in"),
                        b_in: opt(mlp, "mlp.b_in"),
                        w_out: opt(mlp, "mlp.W_out"),
                        b_out: opt(mlp, "mlp.b_out"),
                    }
                })
                .collect(),
        }
    }

    /// The block layer `l` applies.
    pub(super) fn block(&self, l: usize) -> &LsaBlock {
        &self.blocks[l % self.blocks.len()]
    }
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

/// First token whose query layer `l` computes: every token but in the last layer, whose only
/// output the prediction reads is the query's (the loss reads nothing else).
pub(super) fn first_query(w: &LsaWeights, l: usize, t: usize) -> usize {
    if l + 1 == w.n_layers {
        t - 1
    } else {
        0
    }
}

/// `f` on chunks of at most [`MIN_CHUNK`] tasks of `tokens` `[B, T, e]` in parallel, results
/// in task order.
fn per_chunk<R: Send>(
    w: &LsaWeights,
    tokens: &[f32],
    t: usize,
    f: impl Fn(&[f32]) -> Vec<R> + Sync + Send,
) -> Vec<R> {
    tokens
        .par_chunks(MIN_CHUNK * t * w.e)
        .flat_map_iter(f)
        .collect()
}

/// `[B]` predictions `ŷ = −H_K[query, d]` of the tokens `[B, T, e]`.
pub fn predict(w: &LsaWeights, tokens: &[f32], t: usize) -> Vec<f32> {
    let te = t * w.e;
    per_chunk(w, tokens, t, |chunk| {
        let f = lsa_batched::forward(w, chunk, t);
        f.output().chunks(te).map(|task| -task[te - 1]).collect()
    })
}

/// `[B, d]` the gradient of each prediction with respect to its query input x_q (the paper's
/// "model" gradient, compared with the GD learner's ∂ŷ/∂x_q).
pub fn query_gradients(w: &LsaWeights, tokens: &[f32], t: usize) -> Vec<f32> {
    let (e, te) = (w.e, t * w.e);
    per_chunk(w, tokens, t, |chunk| {
        let f = lsa_batched::forward(w, chunk, t);
        let mut dh = vec![0.0f32; chunk.len()];
        dh.chunks_mut(te).for_each(|task| task[te - 1] = -1.0);
        let dx = lsa_batched::backward(w, &f, dh, t, None, true);
        (dx.chunks(te))
            .flat_map(|task| task[te - e..te - 1].to_vec())
            .collect()
    })
}

/// Loss `½·mean_b (ŷ_b − y_b)²` of tokens `[B, T, e]` against `targets` `[B]`, and the
/// gradient of every parameter (f64, in [`LsaConfig::param_specs`] order), in `chunks`
/// parallel chunks.
pub fn loss_and_grads(
    w: &LsaWeights,
    tokens: &[f32],
    targets: &[f32],
    t: usize,
    chunks: usize,
) -> (f64, Vec<Vec<f64>>) {
    let (e, n) = (w.e, targets.len());
    let chunks = chunks.clamp(1, n.div_ceil(MIN_CHUNK).max(1));
    let zeros = || -> Vec<Vec<Vec<f32>>> {
        (w.blocks.iter())
            .map(|b| {
                let ee = w.n_heads * e * e;
                let mut g = vec![vec![0.0f32; ee]; 4];
                for p in [
                    &b.ln1_w, &b.ln1_b, &b.ln2_w, &b.ln2_b, &b.w_in, &b.b_in, &b.w_out, &b.b_out,
                ] {
                    if !p.is_empty() {
                        g.push(vec![0.0; p.len()]);
                    }
                }
                g
            })
            .collect()
    };
    let parts: Vec<(f64, Vec<Vec<Vec<f32>>>)> = (0..chunks)
        .into_par_iter()
        .map(|ch| {
            let (lo, hi) = (ch * n / chunks, (ch + 1) * n / chunks);
            let mut grads = zeros();
            let loss = lsa_batched::chunk_loss_and_grads(
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
    let mut out: Vec<Vec<f64>> = (zeros().into_iter().flatten())
        .map(|g| vec![0.0; g.len()])
        .collect();
    for (_, grads) in &parts {
        for (o, g) in out.iter_mut().zip(grads.iter().flatten()) {
            o.iter_mut().zip(g).for_each(|(o, &x)| *o += f64::from(x));
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
            layer_norm: false,
            d_mlp: 0,
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
    /// LayerNorm scales and the biases move off 1 and 0 too.
    fn store(c: &LsaConfig, seed: u64) -> ParamStore {
        let mut s = ParamStore::init_specs(c.param_specs(), seed);
        for e in s.entries.iter_mut() {
            let plain = e.name.contains(".ln") || e.name.contains(".b_");
            (e.data.iter_mut().enumerate()).for_each(|(i, x)| {
                if plain {
                    *x += 0.5 * (1.7 * i as f64 + seed as f64).sin();
                } else {
                    *x *= 30.0;
                }
            });
        }
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
        for (layers, shared, heads, softmax, layer_norm, d_mlp) in [
            (1, false, 1, false, false, 0),
            (2, false, 1, false, false, 0),
            (3, true, 1, false, false, 0),
            (1, false, 2, true, false, 0),
            (2, false, 2, true, false, 0),
            (2, true, 3, false, false, 0),
            (1, false, 2, true, true, 0),
            (2, false, 2, true, true, 6),
            (2, true, 1, false, false, 5),
        ] {
            let c = LsaConfig {
                n_heads: heads,
                softmax,
                layer_norm,
                d_mlp,
                ..cfg(layers, shared)
            };
            let t = 5;
            let (toks, ys) = tokens(6, t, c.width(), 1);
            let s = store(&c, 2);
            let w = LsaWeights::from_store(&c, &s);
            let (loss, grads) = loss_and_grads(&w, &toks, &ys, t, 2);
            assert!((loss - loss_of(&c, &s, &toks, &ys, t)).abs() < 1e-6 * loss.max(1.0));
            for (pi, g) in grads.iter().enumerate() {
                for i in [0, 1, 5, 11, 15, g.len() - 1]
                    .into_iter()
                    .filter(|&i| i < g.len())
                {
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
                        "layers {layers} shared {shared} heads {heads} softmax {softmax} ln {layer_norm} mlp {d_mlp} param {pi} [{i}]: {} vs fd {fd}",
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
