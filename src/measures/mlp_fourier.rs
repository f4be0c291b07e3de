//! The Fourier measures of an MLP trained on a binary operation mod p (Liu et al. 2022; the
//! measures of Nanda et al. 2023 §4.1–4.2 carried over): the embedding's Fourier norms, each
//! first-layer neuron's frequency and FVE over the p × p inputs, the clusters, and the key
//! frequencies by every rule.

use super::fourier::{fourier_basis, freq_norms};
use super::matrix::Matrix;
use super::neurons::{neuron_freqs, Clusters, KeyFreqVotes};
use crate::models::mlp::{Combine, Mlp, MlpConfig};
use crate::models::ParamStore;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// The Fourier picture of one MLP checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MlpFourier {
    /// `[p/2 + 1]` Fourier norm per frequency of the input embedding's first p rows (position
    /// 0's table for concatenated inputs; index 0: constant).
    pub embed_freq_norms: Vec<f64>,
    /// `[d_hidden₀]` each first-layer neuron's frequency (0: dead).
    pub neuron_freq: Vec<usize>,
    /// Clusters at FVE ≥ 0.85.
    pub clusters: Clusters,
    /// What each key-frequency rule finds; the default is [`KeyFreqVotes::consensus`].
    pub key_freq_votes: KeyFreqVotes,
}

/// Measures `store` (an MLP of `cfg` reading `[a, b]`) on all p² inputs `a·p + b` (a-major): the
/// first hidden layer's activations `hidden.0.hook_post` `[p², d_hidden₀]`, and `W_E`'s norms;
/// the embedding rule at `threshold`.
pub fn mlp_fourier(cfg: &MlpConfig, store: &ParamStore, p: usize, threshold: f64) -> MlpFourier {
    let device = Device::flex();
    let mlp = Mlp::new(cfg, store, &device, DType::F64, false);
    let tokens: Vec<i64> = (0..p * p)
        .flat_map(|r| [(r / p) as i64, (r % p) as i64, p as i64])
        .collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [p * p, 3]), &device);
    let hidden = mlp.forward(tokens).hidden.swap_remove(0);
    let h0 = cfg.d_hidden[0];
    let post = Matrix::from_vec(
        p * p,
        h0,
        hidden.into_data().try_into_vec_as::<f64>().expect("float"),
    );
    let nf = neuron_freqs(p, &post);

    let w_e = &store
        .get("embed.W_E")
        .expect("an MLP has an embedding")
        .data;
    // the first p rows of position 0's table: the same layout for sum and concat
    let rows = Matrix::from_vec(p, h0, w_e[..p * h0].to_vec());
    debug_assert!(matches!(cfg.combine, Combine::Sum | Combine::Concat));
    let f = fourier_basis(p).matmul(&rows);
    let comps: Vec<f64> = (0..p)
        .map(|i| f.row(i).iter().map(|x| x * x).sum::<f64>().sqrt())
        .collect();
    let embed_freq_norms = freq_norms(&comps);
    MlpFourier {
        key_freq_votes: KeyFreqVotes::new(Some(&nf), &embed_freq_norms, threshold),
        embed_freq_norms,
        clusters: nf.clusters(),
        neuron_freq: nf.freq,
    }
}

/// The Fourier picture of an MLP run's final checkpoint, written to `analysis.json`
/// (`{"step", "key_freqs", ...MlpFourier}`); the run must be a binary operation mod p.
///
/// # Errors
/// A run that is not an MLP on a binary operation, without checkpoints, or unreadable.
pub fn analyze_mlp_run(
    run_dir: &std::path::Path,
    threshold: f64,
) -> crate::Result<(u64, MlpFourier)> {
    use crate::error::GrokError;
    use crate::rundir::{atomic_write, list_steps, model_path};
    let cfg = crate::rundir::RunDir::new(run_dir).config()?;
    let task = cfg.modular("analyze")?;
    let model = cfg.model_spec();
    let Some(mlp) = model
        .as_any()
        .downcast_ref::<crate::models::mlp::MlpConfig>()
    else {
        return Err(GrokError::invalid("model.arch", model.arch(), "mlp"));
    };
    let step = *list_steps(run_dir)
        .last()
        .ok_or_else(|| GrokError::Checkpoint {
            path: run_dir.join("checkpoints"),
            reason: "no checkpoints to analyze".into(),
        })?;
    let store = ParamStore::from_safetensors_specs(&model_path(run_dir, step), mlp.param_specs())?;
    let m = mlp_fourier(mlp, &store, task.p as usize, threshold);
    let mut json = serde_json::to_value(&m).expect("serialisable");
    json["step"] = step.into();
    json["key_freqs"] = serde_json::to_value(m.key_freq_votes.consensus()).expect("serialisable");
    let text = serde_json::to_string_pretty(&json).expect("serialisable");
    atomic_write(&run_dir.join("analysis.json"), text.as_bytes())?;
    Ok((step, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Activation;
    use std::f64::consts::PI;

    /// A constructed MLP whose embedding carries frequencies 3 and 5 (cos and sin in four
    /// columns) and whose first-layer neurons each read one of them: the measures find 3 and 5
    /// by every rule, and every neuron in one of their clusters.
    #[test]
    fn a_constructed_two_frequency_mlp() {
        let p = 23;
        let cfg = MlpConfig {
            d_vocab: p + 1,
            n_inputs: 2,
            d_hidden: vec![8],
            d_vocab_out: p,
            act_fn: Activation::Relu,
            combine: Combine::Sum,
            biases: false,
        };
        let mut store = ParamStore::init_specs(cfg.param_specs(), 1);
        let w = |k: usize, x: usize| 2.0 * PI * (k * x) as f64 / p as f64;
        let e = &mut store.get_mut("embed.W_E").unwrap().data;
        e.fill(0.0);
        for x in 0..p {
            // neuron j = 2i + s reads cos (s = 0) or sin (s = 1) of frequency [3, 5, 3, 5][i]
            for j in 0..8 {
                let k = [3, 5, 3, 5][j / 2];
                let v = if j % 2 == 0 {
                    w(k, x).cos()
                } else {
                    w(k, x).sin()
                };
                e[x * 8 + j] = v;
            }
        }
        let m = mlp_fourier(&cfg, &store, p, 0.5);
        assert_eq!(m.key_freq_votes.embed_norm, vec![3, 5]);
        assert_eq!(m.key_freq_votes.consensus(), vec![3, 5]);
        assert!(
            m.neuron_freq.iter().all(|&k| k == 3 || k == 5),
            "{:?}",
            m.neuron_freq
        );
    }
}
