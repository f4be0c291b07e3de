//! What happens to the gradient between backward and the optimiser step, in this order:
//! Grokfast's slow-gradient amplification (Lee et al. 2024), ⊥Grad (Prieto et al. 2025) and
//! global-norm clipping; and, after the step, Omnigrok's norm constraint (Liu et al. 2022).

use crate::config::GrokfastKind;
use crate::models::ParamStore;

/// A run's gradients: one flat vector per store entry, `None` for frozen tensors.
pub type Grads = Vec<Option<Vec<f64>>>;

/// Grokfast's state: the EMA, or the window of the last w gradients and their running sum.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Grokfast {
    /// Filter.
    pub kind: GrokfastKind,
    /// EMA momentum α.
    pub alpha: f64,
    /// Amplification λ.
    pub lambda: f64,
    /// MA window w.
    pub window: usize,
    /// Gradients seen so far.
    pub seen: u64,
    /// EMA μ (per store entry), or the MA's running sum of the window.
    pub slow: Grads,
    /// MA: the last w gradients, `history[k]` the one seen at count `k mod w`.
    pub history: Vec<Grads>,
}

impl Grokfast {
    /// Amplifies the slow component of `grads` in place and records them.
    pub fn apply(&mut self, grads: &mut Grads) {
        let (alpha, lambda) = (self.alpha, self.lambda);
        match self.kind {
            GrokfastKind::None => return,
            GrokfastKind::Ema => {
                if self.seen == 0 {
                    self.slow = grads.clone();
                } else {
                    for_pairs(&mut self.slow, grads, |mu, g| {
                        *mu = *mu * alpha + g * (1.0 - alpha)
                    });
                }
                for_pairs(grads, &self.slow, |g, mu| *g += lambda * mu);
            }
            GrokfastKind::Ma => {
                let w = self.window;
                let slot = (self.seen % w as u64) as usize;
                if self.history.len() < w {
                    if self.slow.is_empty() {
                        self.slow = zeros_like(grads);
                    }
                    self.history.push(grads.clone());
                } else {
                    let old = std::mem::replace(&mut self.history[slot], grads.clone());
                    for_pairs(&mut self.slow, &old, |s, o| *s -= o);
                }
                for_pairs(&mut self.slow, grads, |s, g| *s += g);
                if self.history.len() == w {
                    let scale = lambda / w as f64;
                    for_pairs(grads, &self.slow, |g, s| *g += scale * s);
                }
            }
        }
        self.seen += 1;
    }
}

/// ⊥Grad (Prieto et al. 2025, §5): per tensor, the gradient's component orthogonal to the
/// weights, `g⊥ = g − (w·g)/(w·w)·w`, rescaled to the norm of `g`. A zero tensor keeps `g`.
pub fn orthogonalize(grads: &mut Grads, params: &ParamStore) {
    for (g, e) in grads.iter_mut().zip(&params.entries) {
        let Some(g) = g else { continue };
        let w = &e.data;
        let ww: f64 = w.iter().map(|x| x * x).sum();
        if ww == 0.0 {
            continue;
        }
        let wg: f64 = w.iter().zip(g.iter()).map(|(a, b)| a * b).sum();
        let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        g.iter_mut().zip(w).for_each(|(g, w)| *g -= wg / ww * w);
        let norm_perp = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm_perp > 0.0 {
            g.iter_mut().for_each(|g| *g *= norm / norm_perp);
        }
    }
}

/// Global L2 norm of a gradient.
pub fn global_norm(grads: &Grads) -> f64 {
    grads
        .iter()
        .flatten()
        .flatten()
        .map(|g| g * g)
        .sum::<f64>()
        .sqrt()
}

/// `torch.nn.utils.clip_grad_norm_`: scales every gradient by `max_norm / (‖g‖ + 1e-6)` when
/// that is below 1; returns the norm before clipping.
pub fn clip_global_norm(grads: &mut Grads, max_norm: f64) -> f64 {
    let norm = global_norm(grads);
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        grads
            .iter_mut()
            .flatten()
            .flatten()
            .for_each(|g| *g *= coef);
    }
    norm
}

/// Omnigrok's constraint (Liu et al. 2022, "Omnigrok", §3): rescales every trainable tensor by
/// one factor so that their joint L2 norm is `target`.
pub fn rescale_to_norm(params: &mut ParamStore, target: f64) {
    let norm = trainable_norm(params);
    if norm > 0.0 {
        let k = target / norm;
        (params.entries.iter_mut())
            .filter(|e| e.trainable)
            .for_each(|e| e.data.iter_mut().for_each(|x| *x *= k));
    }
}

/// Joint L2 norm of the trainable tensors.
pub fn trainable_norm(params: &ParamStore) -> f64 {
    (params.entries.iter())
        .filter(|e| e.trainable)
        .flat_map(|e| &e.data)
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
}

fn zeros_like(grads: &Grads) -> Grads {
    (grads.iter())
        .map(|g| g.as_ref().map(|g| vec![0.0; g.len()]))
        .collect()
}

fn for_pairs(a: &mut Grads, b: &Grads, f: impl Fn(&mut f64, f64)) {
    for (a, b) in a.iter_mut().zip(b) {
        if let (Some(a), Some(b)) = (a, b) {
            a.iter_mut().zip(b).for_each(|(a, &b)| f(a, b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ParamEntry;

    fn g(v: &[f64]) -> Grads {
        vec![Some(v.to_vec()), None]
    }

    fn filter(kind: GrokfastKind, alpha: f64, lambda: f64, window: usize) -> Grokfast {
        Grokfast {
            kind,
            alpha,
            lambda,
            window,
            ..Grokfast::default()
        }
    }

    /// EMA by hand: μ₁ = g₁, μ₂ = αμ₁ + (1−α)g₂; each output is g + λμ.
    #[test]
    fn grokfast_ema_matches_its_recursion() {
        let mut f = filter(GrokfastKind::Ema, 0.9, 2.0, 0);
        let mut a = g(&[1.0, -2.0]);
        f.apply(&mut a);
        assert_eq!(a, g(&[3.0, -6.0]));
        let mut b = g(&[0.0, 4.0]);
        f.apply(&mut b);
        // μ₂ = (0.9, −1.8 + 0.4 = −1.4)
        let want = [2.0 * 0.9, 4.0 + 2.0 * (0.9 * -2.0 + 0.1 * 4.0)];
        let got = b[0].as_ref().unwrap();
        assert!((got[0] - want[0]).abs() < 1e-15 && (got[1] - want[1]).abs() < 1e-15);
        assert_eq!(b[1], None);
    }

    /// MA with w = 3: untouched until the window is full, then g + λ·(mean of the last 3).
    #[test]
    fn grokfast_ma_waits_for_a_full_window_then_adds_the_mean() {
        let mut f = filter(GrokfastKind::Ma, 0.0, 5.0, 3);
        let seq = [1.0, 2.0, 4.0, 8.0, 16.0];
        let mut out = Vec::new();
        for x in seq {
            let mut a = g(&[x]);
            f.apply(&mut a);
            out.push(a[0].as_ref().unwrap()[0]);
        }
        let want = [
            1.0,
            2.0,
            4.0 + 5.0 * 7.0 / 3.0,
            8.0 + 5.0 * 14.0 / 3.0,
            16.0 + 5.0 * 28.0 / 3.0,
        ];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-12, "{out:?} vs {want:?}");
        }
    }

    fn store(w: &[f64]) -> ParamStore {
        ParamStore {
            entries: vec![ParamEntry {
                name: "w".into(),
                shape: vec![w.len()],
                data: w.to_vec(),
                trainable: true,
            }],
        }
    }

    /// ⊥Grad: the result is orthogonal to w and as long as g.
    #[test]
    fn orthograd_removes_the_radial_part_and_keeps_the_norm() {
        let p = store(&[3.0, 4.0, 0.0]);
        let mut grads: Grads = vec![Some(vec![1.0, 2.0, 2.0])];
        orthogonalize(&mut grads, &p);
        let g = grads[0].as_ref().unwrap();
        let dot: f64 = g.iter().zip(&p.entries[0].data).map(|(a, b)| a * b).sum();
        let norm: f64 = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!(dot.abs() < 1e-12 && (norm - 3.0).abs() < 1e-12, "{g:?}");
        // by hand: g − (11/25)·w = (−0.32, 0.24, 2), norm √4.16, times 3/√4.16
        let k = 3.0 / 4.16f64.sqrt();
        for (a, b) in g.iter().zip([-0.32 * k, 0.24 * k, 2.0 * k]) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn clipping_scales_to_the_max_norm_only_above_it() {
        let mut a = g(&[3.0, 4.0]);
        assert_eq!(clip_global_norm(&mut a, 10.0), 5.0);
        assert_eq!(a, g(&[3.0, 4.0]));
        clip_global_norm(&mut a, 1.0);
        let n = global_norm(&a);
        assert!((n - 5.0 / (5.0 + 1e-6)).abs() < 1e-12, "{n}");
    }

    #[test]
    fn rescaling_reaches_the_target_norm() {
        let mut p = store(&[3.0, 4.0]);
        rescale_to_norm(&mut p, 10.0);
        assert_eq!(p.entries[0].data, vec![6.0, 8.0]);
        assert_eq!(trainable_norm(&p), 10.0);
    }
}
