//! Measures read off the weights alone: Fourier norms of the embedding and of the neuron-logit
//! map W_L, their Gini coefficients (Nanda et al. 2023 §4.1, §5.1; REFERENCES §2).

use super::matrix::Matrix;
use crate::models::{ParamStore, TransformerConfig};

fn matrix(store: &ParamStore, name: &str, rows: usize, cols: usize) -> Matrix {
    let e = store
        .get(name)
        .unwrap_or_else(|| panic!("parameter `{name}` exists for this config"));
    Matrix::from_vec(rows, cols, e.data.clone())
}

/// Norms of the p Fourier components of the embedding, `[p]` in basis order:
/// `‖(B · W_E[:p])_i‖` over d_model (the `=` token's row is left out).
pub fn embed_component_norms(
    store: &ParamStore,
    cfg: &TransformerConfig,
    basis: &Matrix,
) -> Vec<f64> {
    let p = basis.rows;
    let w_e = matrix(store, "embed.W_E", cfg.d_vocab, cfg.d_model);
    let w_e = Matrix::from_vec(p, cfg.d_model, w_e.data[..p * cfg.d_model].to_vec());
    let f = basis.matmul(&w_e); // (component, d_model)
    (0..p)
        .map(|i| f.row(i).iter().map(|x| x * x).sum::<f64>().sqrt())
        .collect()
}

/// `W_L = W_out · W_U[:, :p]`, `[d_mlp, p]`: how each neuron of the last block writes to the
/// residue logits (Nanda et al. 2023 §4.2). `None` for attention-only models.
pub fn neuron_logit_map(store: &ParamStore, cfg: &TransformerConfig, p: usize) -> Option<Matrix> {
    if cfg.attn_only {
        return None;
    }
    let last = cfg.n_layers - 1;
    let w_out = matrix(
        store,
        &format!("blocks.{last}.mlp.W_out"),
        cfg.d_mlp,
        cfg.d_model,
    );
    let w_u = matrix(store, "unembed.W_U", cfg.d_model, cfg.d_vocab_out).first_cols(p);
    Some(w_out.matmul(&w_u))
}

/// Norms of the p Fourier components of W_L along its output (class) axis, `[p]` in basis
/// order: column norms (over d_mlp) of `W_L · Bᵀ`.
pub fn w_l_component_norms(w_l: &Matrix, basis: &Matrix) -> Vec<f64> {
    w_l.matmul_t(basis).col_norms()
}
