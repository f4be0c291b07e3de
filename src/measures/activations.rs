//! The model run once on every input `[a, b, =]`, a, b ∈ ℤ_p: the tables the measures read.

use super::matrix::Matrix;
use crate::models::{fused, ParamStore, Transformer, TransformerConfig};
use crate::train::Precision;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Activations of all p² inputs, rows a-major (`a·p + b`), at the last position.
pub struct AllInputs {
    /// `[p², p]` logits of the p residue classes (`unembed.hook_out[:, -1, :p]`; an extra `=`
    /// output column is dropped).
    pub logits: Matrix,
    /// `[p², d_mlp]` last block's `mlp.hook_post[:, -1]`; `None` for attention-only models.
    pub mlp_post: Option<Matrix>,
    /// `[n_heads, n_ctx]` attention from the last position to each position, averaged over the
    /// p² inputs (`attn.hook_pattern[:, h, -1, :]` of the last block).
    pub mean_attention: Vec<Vec<f64>>,
}

/// `[p², n_ctx]` tokens `[a, b, =]` (n_ctx 3) or `[a, b]` (n_ctx 2), a-major.
pub(crate) fn grid_tokens(p: usize, n_ctx: usize) -> Vec<i64> {
    (0..p * p)
        .flat_map(|i| {
            [(i / p) as i64, (i % p) as i64, p as i64]
                .into_iter()
                .take(n_ctx)
        })
        .collect()
}

/// Runs the model on all p² inputs in f64: the fused forward of [`crate::models::fused`] where it
/// applies (1 layer, no LayerNorm, ReLU; the OV circuit factored through the (position, token)
/// table), the burn model otherwise.
pub fn run_all_inputs(cfg: &TransformerConfig, store: &ParamStore, p: usize) -> AllInputs {
    if !fused::applies(cfg) {
        return burn_all_inputs(cfg, store, p, Precision::F64);
    }
    let f = fused::forward::<f64>(cfg, store, &grid_tokens(p, 3)).expect("every input ends in `=`");
    let rows = p * p;
    let h = cfg.n_heads;
    let mut mean_attention = vec![vec![0.0; 3]; h];
    for (i, pattern) in f.pattern.iter().enumerate() {
        let mean = &mut mean_attention[i % h];
        mean.iter_mut()
            .zip(pattern)
            .for_each(|(m, x)| *m += x / rows as f64);
    }
    AllInputs {
        logits: Matrix::from_vec(rows, cfg.d_vocab_out, f.logits).first_cols(p),
        mlp_post: Some(Matrix::from_vec(rows, cfg.d_mlp, f.post)),
        mean_attention,
    }
}

/// Runs the burn model (forward only, flex CPU device, `precision`) on all p² inputs: the
/// reference the fused forward is tested against.
pub fn burn_all_inputs(
    cfg: &TransformerConfig,
    store: &ParamStore,
    p: usize,
    precision: Precision,
) -> AllInputs {
    let device = Device::flex();
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new(grid_tokens(p, cfg.n_ctx), [p * p, cfg.n_ctx]),
        &device,
    );
    let model = Transformer::new(cfg, store, &device, precision.dtype(), false);
    let out = model.forward(tokens);
    let to_matrix = |t: Tensor<2>| {
        let [rows, cols] = t.dims();
        let data = t.into_data().try_into_vec_as::<f64>().expect("float data");
        Matrix::from_vec(rows, cols, data)
    };
    let logits = to_matrix(out.logits).first_cols(p);
    let mlp_post = out.mlp_post_last.map(to_matrix);
    let [_, h, t] = out.pattern_last.dims();
    let mean = out.pattern_last.mean_dim(0).reshape([h, t]);
    let mean = mean
        .into_data()
        .try_into_vec_as::<f64>()
        .expect("float data");
    AllInputs {
        logits,
        mlp_post,
        mean_attention: mean.chunks(t).map(<[f64]>::to_vec).collect(),
    }
}
