//! Learning-rate schedules: linear warm-up, then constant, cosine or linear decay, times any
//! step multipliers (`lr ×k from step N`, the LR jumps of the seed thread, REFERENCES.md §4).

use serde::{Deserialize, Serialize};

/// Shape of the learning rate after warm-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// `lr` throughout (Nanda et al. 2023, Power et al. 2022).
    #[default]
    Constant,
    /// Half a cosine from `lr` at the end of warm-up to 0 at `steps`
    /// (`torch.optim.lr_scheduler.CosineAnnealingLR` with `T_max = steps − warmup`, η_min 0).
    Cosine,
    /// A straight line from `lr` at the end of warm-up to 0 at `steps`.
    Linear,
}

/// The learning rate of every update: `lr · warmup(step) · shape(step) · Π_{(N, k): step ≥ N} k`.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up length (0: none).
    pub warmup_steps: u64,
    /// Updates of the run.
    pub steps: u64,
    /// Shape after warm-up.
    pub kind: ScheduleKind,
    /// Multipliers `(from_step, factor)`; every one whose step has been reached applies.
    pub jumps: Vec<(u64, f64)>,
}

impl Schedule {
    /// Learning rate of update `step` (0-based): update 0 has lr 0 under warm-up, as
    /// `LambdaLR(lambda s: min(s / warmup, 1))` gives (Nanda et al. 2023).
    pub fn lr_at(&self, step: u64) -> f64 {
        let warm = warmup_lr(1.0, step, self.warmup_steps);
        let decay_len = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = (step.saturating_sub(self.warmup_steps) as f64 / decay_len).min(1.0);
        let shape = match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
            ScheduleKind::Linear => 1.0 - progress,
        };
        let jumps: f64 = (self.jumps.iter())
            .filter(|(from, _)| step >= *from)
            .map(|(_, k)| k)
            .product();
        self.lr * warm * shape * jumps
    }
}

/// Learning rate at `step` (0-based update index): `lr · min(step / warmup, 1)`
/// (Nanda et al. 2023, `LambdaLR(lambda s: min(s/10, 1))`), so update 0 has lr 0.
pub fn warmup_lr(lr: f64, step: u64, warmup: u64) -> f64 {
    if warmup == 0 {
        lr
    } else {
        lr * (step as f64 / warmup as f64).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind, jumps: Vec<(u64, f64)>) -> Schedule {
        Schedule {
            lr: 1e-3,
            warmup_steps: 10,
            steps: 110,
            kind,
            jumps,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-15
    }

    #[test]
    fn warmup_starts_at_zero_and_saturates() {
        assert_eq!(warmup_lr(1e-3, 0, 10), 0.0);
        assert!((warmup_lr(1e-3, 5, 10) - 5e-4).abs() < 1e-18);
        assert_eq!(warmup_lr(1e-3, 10, 10), 1e-3);
        assert_eq!(warmup_lr(1e-3, 1000, 10), 1e-3);
    }

    #[test]
    fn constant_is_warmup_then_flat() {
        let s = schedule(ScheduleKind::Constant, vec![]);
        assert_eq!(s.lr_at(0), 0.0);
        assert!(close(s.lr_at(5), 5e-4));
        assert_eq!(s.lr_at(10), 1e-3);
        assert_eq!(s.lr_at(109), 1e-3);
    }

    /// Cosine: the peak after warm-up, half of it midway, 0 at the end (the closed form of
    /// CosineAnnealingLR).
    #[test]
    fn cosine_halves_midway_and_ends_at_zero() {
        let s = schedule(ScheduleKind::Cosine, vec![]);
        assert!(close(s.lr_at(10), 1e-3));
        assert!(close(s.lr_at(60), 5e-4));
        assert!(close(
            s.lr_at(35),
            1e-3 * 0.5 * (1.0 + (0.25 * std::f64::consts::PI).cos())
        ));
        assert!(close(s.lr_at(110), 0.0));
    }

    #[test]
    fn linear_falls_in_a_straight_line() {
        let s = schedule(ScheduleKind::Linear, vec![]);
        assert!(close(s.lr_at(10), 1e-3));
        assert!(close(s.lr_at(35), 7.5e-4));
        assert!(close(s.lr_at(60), 5e-4));
        assert!(close(s.lr_at(110), 0.0));
    }

    /// Each multiplier applies from its step on and they compose.
    #[test]
    fn jumps_multiply_from_their_step() {
        let s = schedule(ScheduleKind::Constant, vec![(50, 10.0), (80, 0.5)]);
        assert_eq!(s.lr_at(49), 1e-3);
        assert!(close(s.lr_at(50), 1e-2));
        assert!(close(s.lr_at(79), 1e-2));
        assert!(close(s.lr_at(80), 5e-3));
    }
}
