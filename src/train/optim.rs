//! Optimisers with PyTorch semantics: the update rules behind [`UpdateRule`] (AdamW, Adam with
//! coupled L2, SGD with momentum and Nesterov; weight decay toward zero or toward the initial
//! weights) and the gradient filters behind [`GradFilter`] (Grokfast, ⊥Grad, clipping), which
//! [`Optimizer::step`] applies in that order before the rule, with Omnigrok's norm constraint
//! after it.

use super::grad_filter::{self, Grads, Grokfast};
use crate::config::{DecayTarget, OptimizerKind, TrainSection};
use crate::models::ParamStore;
use rayon::prelude::*;

/// An optimiser's hyper-parameters and state, one flat f64 vector per store entry (empty for
/// frozen tensors and for state a rule does not keep).
///
/// Per element, with `d` = `θ` (decay to zero) or `θ − θ₀` (decay to init), `λ` the weight
/// decay and `t` the update count after increment:
///
/// ```text
/// AdamW:  θ ← θ − lr_λ·λ·d;  m ← m + (1−β₁)(g − m);  v ← β₂v + (1−β₂)g²
///         θ ← θ − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)
/// Adam:   g ← g + λ·d, then as AdamW without its decay line
/// SGD:    g ← g + λ·d;  b ← g (t = 1) else μb + g;  g ← g + μb (Nesterov) else b;  θ ← θ − lr·g
/// ```
///
/// `lr_λ` is `lr` (PyTorch) unless the schedule keeps the decay fixed under LR jumps
/// ([`crate::config::JumpDecay::Fixed`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Optimizer {
    /// Update rule.
    pub kind: OptimizerKind,
    /// Adam (β₁, β₂).
    pub betas: [f64; 2],
    /// Adam ε added to the bias-corrected √v.
    pub eps: f64,
    /// Weight decay λ (decoupled for AdamW, L2 for Adam and SGD).
    pub weight_decay: f64,
    /// SGD momentum μ (0: none).
    pub momentum: f64,
    /// SGD Nesterov momentum.
    pub nesterov: bool,
    /// θ₀ for decay toward the initial weights (`None`: toward zero); not checkpointed, the
    /// run regenerates it from its init seed.
    pub anchor: Option<Vec<Vec<f64>>>,
    /// Updates taken so far (PyTorch's `state['step']`).
    pub step: u64,
    /// Adam first moments, or SGD momentum buffers.
    pub exp_avg: Vec<Vec<f64>>,
    /// Adam second moments (empty for SGD).
    pub exp_avg_sq: Vec<Vec<f64>>,
    /// Grokfast's filter and its state (applied first by [`Optimizer::step`]).
    pub grokfast: Grokfast,
    /// ⊥Grad (applied second).
    pub orthograd: bool,
    /// Global-norm clipping threshold (applied third; 0: none).
    pub clip_grad_norm: f64,
    /// Omnigrok: the joint L2 norm the weights are rescaled to after every update.
    pub constrain_norm: Option<f64>,
}

impl Optimizer {
    /// AdamW with zero moments for every trainable tensor of `store`.
    pub fn adamw(store: &ParamStore, betas: [f64; 2], eps: f64, weight_decay: f64) -> Self {
        let zeros = state(store, true);
        Self {
            kind: OptimizerKind::Adamw,
            betas,
            eps,
            weight_decay,
            momentum: 0.0,
            nesterov: false,
            anchor: None,
            step: 0,
            exp_avg: zeros.clone(),
            exp_avg_sq: zeros,
            grokfast: Grokfast::default(),
            orthograd: false,
            clip_grad_norm: 0.0,
            constrain_norm: None,
        }
    }

    /// The optimiser `[train]` asks for, fresh, over `store`; `init` are the initial weights
    /// (the anchor of `decay_to = "init"`).
    pub fn for_run(store: &ParamStore, t: &TrainSection, init: &ParamStore) -> Self {
        let adam = t.optimizer != OptimizerKind::Sgd;
        let anchor = (t.decay_to == DecayTarget::Init)
            .then(|| init.entries.iter().map(|e| e.data.clone()).collect());
        Self {
            kind: t.optimizer,
            momentum: t.momentum,
            nesterov: t.nesterov,
            anchor,
            exp_avg: state(store, adam || t.momentum != 0.0),
            exp_avg_sq: state(store, adam),
            grokfast: Grokfast {
                kind: t.grokfast,
                alpha: t.grokfast_alpha,
                lambda: t.grokfast_lambda,
                window: t.grokfast_window,
                ..Grokfast::default()
            },
            orthograd: t.orthograd,
            clip_grad_norm: t.clip_grad_norm,
            constrain_norm: (t.constrain_norm > 0.0)
                .then(|| t.constrain_norm * grad_filter::trainable_norm(init)),
            ..Self::adamw(store, t.betas, t.eps, t.weight_decay)
        }
    }

    /// A whole step from the raw gradient: the gradient filters in their documented order
    /// ([`Optimizer::filters`]: Grokfast, ⊥Grad, clipping), the update rule at `lr`, then the
    /// norm constraint. `decay_lr` is the lr of AdamW's decoupled decay (`lr_λ`; equal to `lr`
    /// but under [`crate::config::JumpDecay::Fixed`]).
    pub fn step(&mut self, store: &mut ParamStore, mut grads: Grads, lr: f64, decay_lr: f64) {
        let filters: [&mut dyn GradFilter; 3] = [
            &mut self.grokfast,
            &mut Orthograd(self.orthograd),
            &mut ClipGlobalNorm(self.clip_grad_norm),
        ];
        for f in filters {
            f.filter(&mut grads, store);
        }
        self.update_decaying(store, &grads, lr, decay_lr);
        if let Some(target) = self.constrain_norm {
            grad_filter::rescale_to_norm(store, target);
        }
    }

    /// One update of every trainable tensor with its gradient (`grads[i]` flat, store order).
    pub fn update(&mut self, store: &mut ParamStore, grads: &[Option<Vec<f64>>], lr: f64) {
        self.update_decaying(store, grads, lr, lr);
    }

    /// [`Optimizer::update`] with AdamW's decoupled decay at `decay_lr` instead of `lr`.
    pub fn update_decaying(
        &mut self,
        store: &mut ParamStore,
        grads: &[Option<Vec<f64>>],
        lr: f64,
        decay_lr: f64,
    ) {
        self.step += 1;
        let t = self.step;
        let rule = self.rule(decay_lr);
        let rule = &*rule;
        let anchors: Vec<Option<&Vec<f64>>> = match &self.anchor {
            Some(a) => a.iter().map(Some).collect(),
            None => vec![None; store.entries.len()],
        };
        // One tensor per rayon task: the arithmetic per element is the same, so the result is
        // independent of the thread count.
        (store.entries.par_iter_mut())
            .zip(self.exp_avg.par_iter_mut())
            .zip(self.exp_avg_sq.par_iter_mut())
            .zip(grads.par_iter().zip(anchors.into_par_iter()))
            .for_each(|(((entry, m), v), (g, anchor))| {
                let (Some(g), true) = (g, entry.trainable) else {
                    return;
                };
                let tensor = Tensor {
                    w: &mut entry.data,
                    m,
                    v,
                    anchor: anchor.map(|a| &a[..]),
                };
                rule.update_tensor(tensor, g, lr, t);
            });
    }
}

impl Optimizer {
    /// The update rule of `kind` with this optimiser's hyper-parameters (the one place the kind
    /// is matched); `decay_lr` is the lr of AdamW's decoupled decay.
    pub fn rule(&self, decay_lr: f64) -> Box<dyn UpdateRule> {
        let wd = self.weight_decay;
        match self.kind {
            OptimizerKind::Adamw => Box::new(Adam {
                betas: self.betas,
                eps: self.eps,
                decay: Decay::Decoupled { wd, lr: decay_lr },
            }),
            OptimizerKind::Adam => Box::new(Adam {
                betas: self.betas,
                eps: self.eps,
                decay: Decay::L2(wd),
            }),
            OptimizerKind::Sgd => Box::new(Sgd {
                momentum: self.momentum,
                nesterov: self.nesterov,
                weight_decay: wd,
            }),
        }
    }
}

/// One trainable tensor's weights, optimiser state and decay anchor, as an update sees them.
pub struct Tensor<'a> {
    /// Weights θ, updated in place.
    pub w: &'a mut [f64],
    /// First moment (Adam) or momentum buffer (SGD); empty when the rule keeps none.
    pub m: &'a mut [f64],
    /// Second moment (Adam); empty for SGD.
    pub v: &'a mut [f64],
    /// θ₀ for decay toward the initial weights (`None`: toward zero).
    pub anchor: Option<&'a [f64]>,
}

/// An optimiser's update of one tensor (PyTorch semantics; formulas on [`Optimizer`]).
pub trait UpdateRule: Sync {
    /// Updates `x.w` (and its state) with gradient `g` at learning rate `lr`; `t` is the update
    /// count after increment (Adam's bias correction, SGD's first momentum step).
    fn update_tensor(&self, x: Tensor<'_>, g: &[f64], lr: f64, t: u64);
}

/// A transformation of the raw gradient before the update rule (Grokfast, ⊥Grad, clipping).
pub trait GradFilter {
    /// Transforms `grads` (store order) in place; `store` holds the current weights.
    fn filter(&mut self, grads: &mut Grads, store: &ParamStore);
}

impl GradFilter for Grokfast {
    fn filter(&mut self, grads: &mut Grads, _store: &ParamStore) {
        self.apply(grads);
    }
}

/// ⊥Grad (Prieto et al. 2025, §5) when on: each tensor's gradient without its component along
/// the weights, rescaled to the original norm ([`grad_filter::orthogonalize`]).
struct Orthograd(bool);

impl GradFilter for Orthograd {
    fn filter(&mut self, grads: &mut Grads, store: &ParamStore) {
        if self.0 {
            grad_filter::orthogonalize(grads, store);
        }
    }
}

/// Global-norm clipping to this norm (0: none; [`grad_filter::clip_global_norm`]).
struct ClipGlobalNorm(f64);

impl GradFilter for ClipGlobalNorm {
    fn filter(&mut self, grads: &mut Grads, _store: &ParamStore) {
        if self.0 > 0.0 {
            grad_filter::clip_global_norm(grads, self.0);
        }
    }
}

/// How Adam applies weight decay λ.
#[derive(Clone, Copy)]
enum Decay {
    /// AdamW: `θ ← θ − lr_λ·λ·d` before the moment update (Loshchilov & Hutter 2019), with
    /// `lr_λ` the update's lr unless the decay is kept fixed under jumps.
    Decoupled {
        /// λ.
        wd: f64,
        /// lr_λ.
        lr: f64,
    },
    /// Adam: `g ← g + λ·d` (coupled L2).
    L2(f64),
}

/// Adam with decoupled (`torch.optim.AdamW`) or coupled L2 (`torch.optim.Adam`) decay.
struct Adam {
    betas: [f64; 2],
    eps: f64,
    decay: Decay,
}

impl UpdateRule for Adam {
    fn update_tensor(&self, x: Tensor<'_>, g: &[f64], lr: f64, t: u64) {
        let Tensor { w, m, v, anchor } = x;
        let [b1, b2] = self.betas;
        let bc1 = 1.0 - b1.powi(t as i32);
        let bc2_sqrt = (1.0 - b2.powi(t as i32)).sqrt();
        let step_size = lr / bc1;
        for i in 0..w.len() {
            let mut gi = g[i];
            match self.decay {
                Decay::Decoupled { wd, lr: dlr } => match anchor {
                    None => w[i] *= 1.0 - dlr * wd,
                    Some(a) => w[i] -= dlr * wd * (w[i] - a[i]),
                },
                Decay::L2(wd) if wd != 0.0 => gi += wd * anchor.map_or(w[i], |a| w[i] - a[i]),
                Decay::L2(_) => {}
            }
            m[i] += (1.0 - b1) * (gi - m[i]);
            v[i] = v[i] * b2 + (1.0 - b2) * gi * gi;
            w[i] -= step_size * m[i] / (v[i].sqrt() / bc2_sqrt + self.eps);
        }
    }
}

/// `torch.optim.SGD`: coupled L2 decay, momentum μ (dampening 0), optionally Nesterov.
struct Sgd {
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
}

impl UpdateRule for Sgd {
    fn update_tensor(&self, x: Tensor<'_>, g: &[f64], lr: f64, t: u64) {
        let Tensor { w, m, anchor, .. } = x;
        let (mu, wd) = (self.momentum, self.weight_decay);
        for i in 0..w.len() {
            let mut gi = g[i];
            if wd != 0.0 {
                gi += wd * anchor.map_or(w[i], |a| w[i] - a[i]);
            }
            if mu != 0.0 {
                m[i] = if t == 1 { gi } else { mu * m[i] + gi };
                gi = if self.nesterov { gi + mu * m[i] } else { m[i] };
            }
            w[i] -= lr * gi;
        }
    }
}

/// Zero state per trainable tensor where `keep`, else empty vectors.
fn state(store: &ParamStore, keep: bool) -> Vec<Vec<f64>> {
    (store.entries.iter())
        .map(|e| {
            if e.trainable && keep {
                vec![0.0; e.data.len()]
            } else {
                Vec::new()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{ParamEntry, ParamStore};

    /// One trainable tensor `[w0, w1]`.
    fn store(w: [f64; 2]) -> ParamStore {
        ParamStore {
            entries: vec![ParamEntry {
                name: "w".into(),
                shape: vec![2],
                data: w.to_vec(),
                trainable: true,
            }],
        }
    }

    fn optim(kind: OptimizerKind, wd: f64, momentum: f64, nesterov: bool) -> Optimizer {
        let s = store([0.0; 2]);
        let mut o = Optimizer::adamw(&s, [0.9, 0.99], 1e-8, wd);
        o.kind = kind;
        o.momentum = momentum;
        o.nesterov = nesterov;
        if kind == OptimizerKind::Sgd {
            o.exp_avg_sq = vec![Vec::new()];
        }
        o
    }

    fn run(o: &mut Optimizer, w: [f64; 2], grads: &[[f64; 2]], lr: f64) -> Vec<f64> {
        let mut s = store(w);
        for g in grads {
            o.update(&mut s, &[Some(g.to_vec())], lr);
        }
        s.entries[0].data.clone()
    }

    fn assert_close(got: &[f64], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-14, "got {got:?}, want {want:?}");
        }
    }

    /// torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.01): buf₁ = g₁ + λw₀, then
    /// buf₂ = 0.9·buf₁ + (g₂ + λw₁); by hand for w₀ = 1.
    #[test]
    fn sgd_momentum_matches_hand_computed_steps() {
        let mut o = optim(OptimizerKind::Sgd, 0.01, 0.9, false);
        let got = run(&mut o, [1.0, -2.0], &[[0.5, 0.0], [0.2, 1.0]], 0.1);
        // first element: d₁ = 0.5 + 0.01 = 0.51, w₁ = 1 − 0.051 = 0.949;
        // d₂ = 0.2 + 0.00949 = 0.20949, buf₂ = 0.9·0.51 + 0.20949 = 0.66849, w₂ = 0.882151
        // second: d₁ = −0.02, w₁ = −1.998; d₂ = 1 − 0.01998 = 0.98002, buf₂ = −0.018 + 0.98002
        // = 0.96202, w₂ = −1.998 − 0.096202 = −2.094202
        assert_close(&got, &[0.882151, -2.094202]);
    }

    /// Nesterov: the step uses g + μ·buf.
    #[test]
    fn sgd_nesterov_matches_hand_computed_steps() {
        let mut o = optim(OptimizerKind::Sgd, 0.0, 0.5, true);
        let got = run(&mut o, [1.0, 0.0], &[[1.0, 2.0], [1.0, -2.0]], 0.1);
        // step 1: buf = g = 1, step = 1 + 0.5·1 = 1.5, w = 0.85;
        // step 2: buf = 0.5 + 1 = 1.5, step = 1 + 0.75 = 1.75, w = 0.675
        // second: buf = 2, step 3, w = −0.3; buf = 1 − 2 = −1, step = −2.5, w = −0.05
        assert_close(&got, &[0.675, -0.05]);
    }

    /// AdamW with the decay at its own lr: with a zero gradient (m = v = 0, so the Adam step
    /// is 0) the weights shrink by exactly `1 − lr_λ·λ`, whatever the update's lr.
    #[test]
    fn adamw_decay_uses_its_own_lr() {
        let mut o = optim(OptimizerKind::Adamw, 0.5, 0.0, false);
        let mut s = store([2.0, -1.0]);
        o.update_decaying(&mut s, &[Some(vec![0.0, 0.0])], 0.5, 0.01);
        assert_close(&s.entries[0].data, &[2.0 * 0.995, -0.995]);
        o.update(&mut s, &[Some(vec![0.0, 0.0])], 0.01);
        assert_close(&s.entries[0].data, &[2.0 * 0.995 * 0.995, -0.995 * 0.995]);
    }

    /// Adam with coupled L2: the first step of Adam moves each weight by lr·sign(g + λw)
    /// (m̂ = g', v̂ = g'², up to ε); the second by hand.
    #[test]
    fn adam_l2_matches_hand_computed_steps() {
        let mut o = optim(OptimizerKind::Adam, 0.5, 0.0, false);
        o.eps = 0.0;
        let got = run(&mut o, [1.0, -1.0], &[[-0.2, 0.1]], 0.01);
        // g' = −0.2 + 0.5 = 0.3 > 0 → w = 0.99;  g' = 0.1 − 0.5 = −0.4 → w = −0.99
        assert_close(&got, &[0.99, -0.99]);
        let got = run(&mut o, [0.99, -0.99], &[[0.0, 0.0]], 0.01);
        // t = 2, zero gradient: g' = λw = ±0.495; m and v by their recursions
        let (b1, b2) = (0.9f64, 0.99f64);
        let step = |g1: f64, g2: f64, w: f64| {
            let m = (1.0 - b1) * g1 * b1 + (1.0 - b1) * g2;
            let v = (1.0 - b2) * g1 * g1 * b2 + (1.0 - b2) * g2 * g2;
            w - 0.01 / (1.0 - b1 * b1) * m / (v.sqrt() / (1.0 - b2 * b2).sqrt())
        };
        assert_close(&got, &[step(0.3, 0.495, 0.99), step(-0.4, -0.495, -0.99)]);
    }

    /// AdamW decaying toward θ₀: weights at θ₀ with a zero gradient stay put; away from it,
    /// the decay moves them by lr·λ·(θ − θ₀).
    #[test]
    fn decay_toward_init_pulls_to_the_anchor() {
        let mut o = optim(OptimizerKind::Adamw, 0.1, 0.0, false);
        o.anchor = Some(vec![vec![1.0, 2.0]]);
        let got = run(&mut o, [1.0, 3.0], &[[0.0, 0.0]], 0.5);
        assert_close(&got, &[1.0, 3.0 - 0.5 * 0.1 * 1.0]);
    }
}
