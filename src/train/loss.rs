//! Cross-entropy over the last position's logits, with log-softmax in f64 by default.

use super::config::Precision;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Mean cross-entropy `−(1/B) Σ_b log softmax(logits_b)[label_b]`, shape `[1]`.
///
/// `logits` `[batch, classes]`, `labels` `[batch]`. With [`Precision::F64`] the logits are cast to
/// f64 before the log-softmax: Nanda et al. 2023 (Appendix) found f32 rounds losses below ~1e-7 to
/// zero and causes "slingshot" spikes.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>, precision: Precision) -> Tensor<1> {
    let [b, _] = logits.dims();
    let logits = if logits.dtype() == precision.dtype() {
        logits
    } else {
        logits.cast(precision.dtype())
    };
    let picked = log_softmax(logits, 1).gather(1, labels.reshape([b, 1])); // (B, 1)
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
