//! Learning-rate schedules: linear warm-up, then constant, cosine or linear decay, times any
//! step multipliers (`lr ×k from step N`, at once or over a linear ramp: the LR jumps of the
//! seed thread, REFERENCES.md §4), and the learning rate AdamW's decoupled decay is scaled by.

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// A learning-rate multiplier from update `from` on: `[from_step, factor]` (at once) or
/// `[from_step, factor, ramp_steps]` (linearly over `ramp` updates) in `train.lr_jumps`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrJump {
    /// First update the jump affects (0-based).
    pub from: u64,
    /// The multiplier once reached (> 0).
    pub factor: f64,
    /// Updates over which the multiplier rises (or falls) linearly from 1 to `factor`
    /// (0: at once).
    pub ramp: u64,
}

impl LrJump {
    /// The multiplier of update `step`: 1 before `from`; `1 + (factor − 1)·(step − from)/ramp`
    /// during the ramp (so update `from` still has 1, as warm-up's update 0 has 0); `factor`
    /// from `from + ramp` on.
    pub fn multiplier(&self, step: u64) -> f64 {
        if step < self.from {
            1.0
        } else if step - self.from >= self.ramp {
            self.factor
        } else {
            1.0 + (self.factor - 1.0) * (step - self.from) as f64 / self.ramp as f64
        }
    }
}

impl Serialize for LrJump {
    /// `[from, factor]`, or `[from, factor, ramp]` when it ramps (so configs without ramps read
    /// as before).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ramped = self.ramp > 0;
        let mut t = s.serialize_tuple(if ramped { 3 } else { 2 })?;
        t.serialize_element(&self.from)?;
        t.serialize_element(&self.factor)?;
        if ramped {
            t.serialize_element(&self.ramp)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for LrJump {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct JumpVisitor;
        impl<'de> Visitor<'de> for JumpVisitor {
            type Value = LrJump;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("[from_step, factor] or [from_step, factor, ramp_steps]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LrJump, A::Error> {
                let named = |e: A::Error| {
                    de::Error::custom(format!(
                        "{e}; expected [from_step, factor] or [from_step, factor, ramp_steps]"
                    ))
                };
                let from = (seq.next_element().map_err(named)?)
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let factor = (seq.next_element().map_err(named)?)
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let ramp = seq.next_element().map_err(named)?.unwrap_or(0);
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(4, &self));
                }
                Ok(LrJump { from, factor, ramp })
            }
        }
        d.deserialize_seq(JumpVisitor)
    }
}

/// What AdamW's decoupled decay step `lr·λ·θ` scales with when the learning rate jumps
/// (`train.jump_decay`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JumpDecay {
    /// PyTorch's AdamW: the decay step uses the jumped lr, so a ×50 jump is also ×50 decay.
    #[default]
    Scaled,
    /// The decay step keeps the lr without the jumps (warm-up and shape still apply), so a jump
    /// changes only the gradient step.
    Fixed,
}

/// The learning rate of every update: `lr · warmup(step) · shape(step) · Π_jumps m(step)`
/// ([`LrJump::multiplier`]).
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
    /// Multipliers; every one whose step has been reached applies.
    pub jumps: Vec<LrJump>,
    /// Whether the decay step follows the jumps ([`Schedule::decay_lr_at`]).
    pub jump_decay: JumpDecay,
}

impl Schedule {
    /// Learning rate of update `step` (0-based): update 0 has lr 0 under warm-up, as
    /// `LambdaLR(lambda s: min(s / warmup, 1))` gives (Nanda et al. 2023).
    pub fn lr_at(&self, step: u64) -> f64 {
        self.unjumped_lr_at(step) * self.jump_at(step)
    }

    /// The learning rate AdamW's decoupled decay uses at update `step`: [`Schedule::lr_at`]
    /// under [`JumpDecay::Scaled`], the same without the jumps under [`JumpDecay::Fixed`].
    pub fn decay_lr_at(&self, step: u64) -> f64 {
        match self.jump_decay {
            JumpDecay::Scaled => self.lr_at(step),
            JumpDecay::Fixed => self.unjumped_lr_at(step),
        }
    }

    /// The product of the jumps' multipliers at update `step`.
    pub fn jump_at(&self, step: u64) -> f64 {
        self.jumps.iter().map(|j| j.multiplier(step)).product()
    }

    fn unjumped_lr_at(&self, step: u64) -> f64 {
        let warm = warmup_lr(1.0, step, self.warmup_steps);
        let decay_len = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = (step.saturating_sub(self.warmup_steps) as f64 / decay_len).min(1.0);
        let shape = match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
            ScheduleKind::Linear => 1.0 - progress,
        };
        self.lr * warm * shape
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
            jumps: (jumps.into_iter())
                .map(|(from, factor)| LrJump {
                    from,
                    factor,
                    ramp: 0,
                })
                .collect(),
            jump_decay: JumpDecay::Scaled,
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

    /// A ramped jump rises linearly from ×1 at its first update to ×k after `ramp` updates,
    /// and a ramp down (k < 1) falls the same way; a jump's ramp composes with another jump.
    #[test]
    fn ramped_jumps_interpolate_linearly() {
        let mut s = schedule(ScheduleKind::Constant, vec![]);
        s.jumps = vec![LrJump {
            from: 50,
            factor: 51.0,
            ramp: 100,
        }];
        s.steps = 1000;
        assert_eq!(s.lr_at(49), 1e-3);
        assert_eq!(s.lr_at(50), 1e-3);
        assert!(close(s.lr_at(51), 1.5e-3));
        assert!(close(s.lr_at(100), 26e-3));
        assert!(close(s.lr_at(149), 50.5e-3));
        assert!(close(s.lr_at(150), 51e-3));
        assert!(close(s.lr_at(999), 51e-3));
        s.jumps.push(LrJump {
            from: 200,
            factor: 0.1,
            ramp: 10,
        });
        assert!(close(s.lr_at(205), 51e-3 * 0.55));
        assert!(close(s.lr_at(210), 51e-3 * 0.1));
    }

    /// Under `jump_decay = "fixed"` the decay's lr is the schedule without its jumps (warm-up
    /// and shape kept); under `"scaled"` it is the lr itself, bit for bit.
    #[test]
    fn fixed_decay_ignores_the_jumps_only() {
        let mut s = schedule(ScheduleKind::Cosine, vec![(50, 10.0)]);
        for step in [0, 5, 49, 50, 80, 110] {
            assert_eq!(s.decay_lr_at(step).to_bits(), s.lr_at(step).to_bits());
        }
        s.jump_decay = JumpDecay::Fixed;
        let plain = schedule(ScheduleKind::Cosine, vec![]);
        for step in [0, 5, 49, 50, 80, 109] {
            assert_eq!(s.decay_lr_at(step), plain.lr_at(step));
        }
        assert!(close(s.lr_at(80), 10.0 * s.decay_lr_at(80)));
    }

    /// `[from, factor]` and `[from, factor, ramp]` read from TOML; a jump without a ramp writes
    /// back as two numbers (configs written before ramps read the same), one with a ramp as three.
    #[test]
    fn jumps_read_and_write_two_or_three_numbers() {
        #[derive(Serialize, Deserialize)]
        struct T {
            lr_jumps: Vec<LrJump>,
        }
        let t: T = toml::from_str("lr_jumps = [[1000, 10], [2000, 0.1, 500]]").unwrap();
        assert_eq!(
            t.lr_jumps,
            vec![
                LrJump {
                    from: 1000,
                    factor: 10.0,
                    ramp: 0
                },
                LrJump {
                    from: 2000,
                    factor: 0.1,
                    ramp: 500
                }
            ]
        );
        let text = toml::to_string(&t).unwrap();
        assert_eq!(text.trim(), "lr_jumps = [[1000, 10.0], [2000, 0.1, 500]]");
        for bad in ["[[1000]]", "[[1000, 2.0, 3, 4]]", "[[1000, \"x\"]]"] {
            let e = toml::from_str::<T>(&format!("lr_jumps = {bad}"))
                .err()
                .unwrap();
            assert!(e.to_string().contains("[from_step, factor]"), "{bad}: {e}");
        }
    }
}
