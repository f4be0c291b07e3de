//! AdamW with PyTorch semantics, and the paper's linear warm-up.

use crate::models::ParamStore;
use rayon::prelude::*;

/// Learning rate at `step` (0-based update index): `lr · min(step / warmup, 1)`
/// (Nanda et al. 2023, `LambdaLR(lambda s: min(s/10, 1))`), so update 0 has lr 0.
pub fn warmup_lr(lr: f64, step: u64, warmup: u64) -> f64 {
    if warmup == 0 {
        lr
    } else {
        lr * (step as f64 / warmup as f64).min(1.0)
    }
}

/// AdamW (Loshchilov & Hutter 2019) exactly as `torch.optim.AdamW` (single-tensor path):
///
/// ```text
/// t ← t + 1
/// θ ← θ·(1 − lr·λ)                          decoupled weight decay
/// m ← m + (1 − β₁)(g − m)                    (torch's lerp)
/// v ← β₂·v + (1 − β₂)·g²
/// θ ← θ − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
/// ```
///
/// Moments are kept in f64 for every trainable tensor (empty for frozen ones).
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    /// (β₁, β₂).
    pub betas: [f64; 2],
    /// ε added to the bias-corrected √v.
    pub eps: f64,
    /// Decoupled weight decay λ.
    pub weight_decay: f64,
    /// Updates taken so far (PyTorch's `state['step']`).
    pub step: u64,
    /// First moments, one flat vector per store entry.
    pub exp_avg: Vec<Vec<f64>>,
    /// Second moments, one flat vector per store entry.
    pub exp_avg_sq: Vec<Vec<f64>>,
}

impl AdamW {
    /// Zero moments for every trainable tensor of `store`.
    pub fn new(store: &ParamStore, betas: [f64; 2], eps: f64, weight_decay: f64) -> Self {
        let zeros: Vec<Vec<f64>> = store
            .entries
            .iter()
            .map(|e| {
                if e.trainable {
                    vec![0.0; e.data.len()]
                } else {
                    Vec::new()
                }
            })
            .collect();
        Self {
            betas,
            eps,
            weight_decay,
            step: 0,
            exp_avg: zeros.clone(),
            exp_avg_sq: zeros,
        }
    }

    /// One update of every trainable tensor with its gradient (`grads[i]` flat, store order).
    pub fn update(&mut self, store: &mut ParamStore, grads: &[Option<Vec<f64>>], lr: f64) {
        self.step += 1;
        let [b1, b2] = self.betas;
        let bc1 = 1.0 - b1.powi(self.step as i32);
        let bc2_sqrt = (1.0 - b2.powi(self.step as i32)).sqrt();
        let step_size = lr / bc1;
        let (decay, eps) = (1.0 - lr * self.weight_decay, self.eps);
        // One tensor per rayon task: the arithmetic per element is the same, so the result is
        // independent of the thread count.
        (store.entries.par_iter_mut())
            .zip(self.exp_avg.par_iter_mut())
            .zip(self.exp_avg_sq.par_iter_mut())
            .zip(grads.par_iter())
            .for_each(|(((entry, m), v), g)| {
                let (Some(g), true) = (g, entry.trainable) else {
                    return;
                };
                for (((w, &g), m), v) in entry.data.iter_mut().zip(g).zip(m).zip(v) {
                    *w *= decay;
                    *m += (1.0 - b1) * (g - *m);
                    *v = *v * b2 + (1.0 - b2) * g * g;
                    *w -= step_size * *m / (v.sqrt() / bc2_sqrt + eps);
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_starts_at_zero_and_saturates() {
        assert_eq!(warmup_lr(1e-3, 0, 10), 0.0);
        assert!((warmup_lr(1e-3, 5, 10) - 5e-4).abs() < 1e-18);
        assert_eq!(warmup_lr(1e-3, 10, 10), 1e-3);
        assert_eq!(warmup_lr(1e-3, 1000, 10), 1e-3);
    }
}
