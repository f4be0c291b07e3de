//! Cross-entropy over the last position's logits, with log-softmax in f64 by default, or over
//! StableMax probabilities (Prieto et al. 2025).

use crate::config::{LossFn, Precision};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Mean `−log p[label]` under `loss_fn`, in `precision` (shape `[1]`); `logits`
/// `[batch, classes]`, `labels` `[batch]`.
pub fn classification_loss(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    precision: Precision,
    loss_fn: LossFn,
) -> Tensor<1> {
    match loss_fn {
        LossFn::Softmax => cross_entropy(logits, labels, precision),
        LossFn::Stablemax => stablemax_cross_entropy(logits, labels, precision),
    }
}

/// `log p` of every class under `loss_fn`, in `precision`: `[batch, classes]` from logits
/// `[batch, classes]`.
pub fn log_probs(logits: Tensor<2>, precision: Precision, loss_fn: LossFn) -> Tensor<2> {
    let x = in_precision(logits, precision);
    match loss_fn {
        LossFn::Softmax => log_softmax(x, 1),
        LossFn::Stablemax => {
            let s = stablemax_s(x);
            s.clone().log() - s.sum_dim(1).log()
        }
    }
}

/// `s(x) = max(x, 0) + 1/(1 − min(x, 0))`: StableMax's piecewise `s` without a branch, so
/// neither piece's derivative is evaluated where it does not apply.
fn stablemax_s(x: Tensor<2>) -> Tensor<2> {
    x.clone().clamp_min(0.0) + x.clamp_max(0.0).neg().add_scalar(1.0).recip()
}

fn in_precision(logits: Tensor<2>, precision: Precision) -> Tensor<2> {
    if logits.dtype() == precision.dtype() {
        logits
    } else {
        logits.cast(precision.dtype())
    }
}

/// Mean StableMax cross-entropy `−(1/B) Σ_b log(s(x_b)[label_b] / Σ_j s(x_b)_j)` (Prieto et al.
/// 2025, eq. 4; their code casts to f64 first, as [`Precision::F64`] does), shape `[1]`.
pub fn stablemax_cross_entropy(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    precision: Precision,
) -> Tensor<1> {
    let [b, _] = logits.dims();
    let s = stablemax_s(in_precision(logits, precision));
    let picked = s.clone().gather(1, labels.reshape([b, 1])).log(); // (B, 1)
    let total = s.sum_dim(1).log(); // (B, 1)
    (total - picked).mean()
}

/// Mean cross-entropy `−(1/B) Σ_b log softmax(logits_b)[label_b]`, shape `[1]`.
///
/// `logits` `[batch, classes]`, `labels` `[batch]`. With [`Precision::F64`] the logits are cast to
/// f64 before the log-softmax: Nanda et al. 2023 (Appendix) found f32 rounds losses below ~1e-7 to
/// zero and causes "slingshot" spikes.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>, precision: Precision) -> Tensor<1> {
    let [b, _] = logits.dims();
    let picked = log_softmax(in_precision(logits, precision), 1).gather(1, labels.reshape([b, 1])); // (B, 1)
    picked.mean().neg()
}

/// Fraction of rows whose arg-max logit is the label (`logits` `[batch, classes]`).
pub fn accuracy(logits: Tensor<2>, labels: Tensor<1, Int>) -> f64 {
    let [b, _] = logits.dims();
    let predicted = logits.detach().inner().argmax(1).reshape([b]);
    let correct: i64 = predicted.equal(labels.inner()).int().sum().into_scalar();
    correct as f64 / b as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// Uniform logits give exactly ln(classes), whatever the labels, in either precision.
    #[test]
    fn uniform_logits_give_ln_classes() {
        let device = Device::flex();
        for precision in [Precision::F32, Precision::F64] {
            let logits = Tensor::<2>::zeros([5, 113], (&device, Precision::F32.dtype()));
            let labels = Tensor::<1, Int>::from_data(
                TensorData::new(vec![0i64, 3, 7, 112, 50], [5]),
                &device,
            );
            let loss = cross_entropy(logits, labels, precision).into_scalar::<f64>();
            let tol = if precision == Precision::F64 {
                1e-15
            } else {
                1e-6
            };
            assert!((loss - 113f64.ln()).abs() < tol, "{precision:?}: {loss}");
        }
    }

    /// StableMax by hand: logits (1, −1, 0) give s = (2, 1/2, 1), so −log p₀ = ln(3.5/2); and
    /// uniform logits give ln(classes), as softmax does.
    #[test]
    fn stablemax_matches_its_formula() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![1.0, -1.0, 0.0, 0.0, 0.0, 0.0], [2, 3]),
            &device,
        );
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2], [2]), &device);
        let loss = stablemax_cross_entropy(logits, labels, Precision::F64).into_scalar::<f64>();
        let want = ((3.5f64 / 0.5).ln() + 3f64.ln()) / 2.0;
        assert!((loss - want).abs() < 1e-14, "{loss} vs {want}");
    }

    #[test]
    fn accuracy_counts_argmax_hits() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![0.0, 2.0, 1.0, 5.0, 0.0, 0.0], [2, 3]),
            &device,
        );
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2], [2]), &device);
        assert_eq!(accuracy(logits, labels), 0.5);
    }
}
