//! What the loop logs about a run's numerics (REFERENCES.md §4): slingshots (Thilak et al. 2022;
//! Nanda et al. 2023 trace them to f32 losses), softmax collapse (Prieto et al. 2025, §3), the
//! logit scale and the last layer's weight norm.

use crate::models::ParamStore;
use std::collections::VecDeque;

/// Steps over which a slingshot's rise is measured.
pub const SLINGSHOT_WINDOW: usize = 10;
/// Rise of the train loss over the recent minimum that counts as a slingshot.
pub const SLINGSHOT_RISE: f64 = 10.0;

/// Counts slingshots: a step whose train loss is at least [`SLINGSHOT_RISE`] times the lowest
/// of the previous [`SLINGSHOT_WINDOW`] steps' starts one, unless the step before already was
/// one (a spike over several steps counts once).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Slingshots {
    /// Train losses of the last [`SLINGSHOT_WINDOW`] steps, oldest first.
    pub recent: VecDeque<f64>,
    /// Slingshots so far.
    pub count: u64,
    /// Whether the last step was in a slingshot.
    pub rising: bool,
}

impl Slingshots {
    /// Records the train loss of one step; true when a slingshot starts here.
    pub fn observe(&mut self, loss: f64) -> bool {
        let floor = self.recent.iter().copied().fold(f64::INFINITY, f64::min);
        let spike = floor > 0.0 && loss >= SLINGSHOT_RISE * floor;
        let starts = spike && !self.rising;
        self.rising = spike;
        self.count += u64::from(starts);
        if self.recent.len() == SLINGSHOT_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(loss);
        starts
    }

    /// The state as checkpoint metadata: count, rising flag and recent losses (each written in
    /// Rust's shortest round-trip form, so a resumed run counts exactly as an unbroken one).
    pub fn to_meta(&self) -> String {
        let recent: Vec<String> = self.recent.iter().map(|l| format!("{l:e}")).collect();
        format!("{};{};{}", self.count, self.rising, recent.join(","))
    }

    /// Parses [`Slingshots::to_meta`]; `None` when malformed.
    pub fn from_meta(s: &str) -> Option<Self> {
        let mut parts = s.split(';');
        let count = parts.next()?.parse().ok()?;
        let rising = parts.next()?.parse().ok()?;
        let recent = (parts.next()?.split(',').filter(|x| !x.is_empty()))
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        Some(Self {
            recent,
            count,
            rising,
        })
    }
}

/// Statistics of a set of logits `[n, classes]` (row-major f32) against their labels `[n]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogitStats {
    /// Fraction of rows whose f32 softmax gives the label probability exactly 1: the label's
    /// logit is the largest and `Σ_j exp(x_j − x_max)`, summed in f32, equals 1
    /// (Prieto et al. 2025, §3, "softmax collapse").
    pub softmax_collapse: f64,
    /// Root mean square of the logits over rows and classes.
    pub logit_scale: f64,
}

/// [`LogitStats`] of `logits` `[n, classes]` with labels `[n]` (NaN for no rows).
pub fn logit_stats(logits: &[f32], labels: &[i64]) -> LogitStats {
    let n = labels.len();
    if n == 0 {
        return LogitStats {
            softmax_collapse: f64::NAN,
            logit_scale: f64::NAN,
        };
    }
    let c = logits.len() / n;
    let mut collapsed = 0usize;
    let mut sum_sq = 0.0f64;
    for (row, &label) in logits.chunks_exact(c).zip(labels) {
        let (arg, max) =
            (row.iter().enumerate()).fold((0, f32::NEG_INFINITY), |(a, m), (j, &x)| {
                if x > m {
                    (j, x)
                } else {
                    (a, m)
                }
            });
        let total: f32 = row.iter().map(|&x| (x - max).exp()).sum();
        collapsed += usize::from(arg == label as usize && total == 1.0);
        sum_sq += row
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>();
    }
    LogitStats {
        softmax_collapse: collapsed as f64 / n as f64,
        logit_scale: (sum_sq / (n * c) as f64).sqrt(),
    }
}

/// Frobenius norm of the last layer's weights: `unembed.W_U` for the transformer, the last
/// trainable matrix of the store otherwise (the MLP's read-out).
pub fn last_layer_norm(params: &ParamStore) -> f64 {
    let last = (params.entries.iter())
        .find(|e| e.name == "unembed.W_U")
        .or_else(|| {
            (params.entries.iter())
                .rev()
                .find(|e| e.trainable && e.shape.len() == 2)
        });
    last.map_or(f64::NAN, |e| {
        e.data.iter().map(|x| x * x).sum::<f64>().sqrt()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenfold_rise_over_the_recent_minimum_is_one_slingshot() {
        let mut s = Slingshots::default();
        let losses = [
            1e-3, 8e-4, 5e-4, 4e-3, 6e-3, 2e-3, 4e-4, 3e-4, 9.0, 1.0, 1e-3,
        ];
        let starts: Vec<bool> = losses.iter().map(|&l| s.observe(l)).collect();
        // 6e-3 is 12x 5e-4 (starts), 2e-3 is 4x (ends), 9.0 starts another, 1.0 continues it
        let want = [
            false, false, false, false, true, false, false, false, true, false, false,
        ];
        assert_eq!(starts, want);
        assert_eq!(s.count, 2);
        assert_eq!(Slingshots::from_meta(&s.to_meta()), Some(s));
    }

    /// Uniform logits never collapse; one logit 200 above the rest does in f32 (exp(−200)
    /// underflows) while 5 above does not.
    #[test]
    fn softmax_collapse_needs_the_others_to_vanish_in_f32() {
        let rows = [
            0.0f32, 0.0, 0.0, 200.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 200.0, 0.0,
        ];
        let st = logit_stats(&rows, &[0, 0, 0, 2]);
        // row 1 collapses on class 0; row 3's collapsed class is 1, not its label 2
        assert_eq!(st.softmax_collapse, 0.25);
        let rms = ((2.0 * 200.0f64 * 200.0 + 25.0) / 12.0).sqrt();
        assert!((st.logit_scale - rms).abs() < 1e-9);
    }
}
