//! Automatic phase boundaries of a grokking run (Nanda et al. 2023 §5.2: memorisation, circuit
//! formation, clean-up), read off the train and test loss curves of the measured checkpoints.
//!
//! Rates are falls of log₁₀ loss per step, each measured from a checkpoint to the first one at
//! least 1% of the run later (so dense early checkpoints do not make the rates noisy):
//! - **end of memorisation** (train loss plateau): the first checkpoint after the train loss's
//!   steepest fall whose fall rate is below 1/20 of that steepest rate;
//! - **end of circuit formation / start of clean-up** (test loss falls): the first checkpoint
//!   after the end of memorisation whose test-loss fall rate reaches half of its steepest;
//! - **end of clean-up**: the first checkpoint after the steepest test-loss fall whose fall rate
//!   is below 1/20 of the steepest.
//!
//! On the paper's seed-0 run the paper puts the boundaries at 1.4k, 9.4k and 14k epochs.

use super::snapshot::Measures;
use serde::{Deserialize, Serialize};

/// Fraction of the steepest fall below which a loss counts as flat.
const PLATEAU: f64 = 1.0 / 20.0;
/// Fraction of the steepest fall at which the test loss counts as falling.
const FALLING: f64 = 0.5;

/// Detected boundaries (steps); `None` where a curve never shows the feature.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// End of memorisation (train loss plateau).
    pub memorisation_end: Option<u64>,
    /// End of circuit formation = start of clean-up (test loss starts falling fast).
    pub circuit_formation_end: Option<u64>,
    /// End of clean-up (test loss flat again).
    pub cleanup_end: Option<u64>,
    /// The rules, as documented in this module.
    pub rule: String,
}

/// Fall rate (decades per step) from each checkpoint to the first one ≥ `span` steps later;
/// `None` at the end of the run or where a loss is not finite and positive.
fn fall_rates(steps: &[u64], loss: &[f64], span: u64) -> Vec<Option<f64>> {
    (0..steps.len())
        .map(|i| {
            let j = (i + 1..steps.len()).find(|&j| steps[j] - steps[i] >= span)?;
            let (a, b) = (loss[i], loss[j]);
            (a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite())
                .then(|| (a.log10() - b.log10()) / (steps[j] - steps[i]) as f64)
        })
        .collect()
}

fn steepest(rates: &[Option<f64>], from: usize) -> Option<(usize, f64)> {
    (from..rates.len())
        .filter_map(|i| rates[i].map(|r| (i, r)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|&(_, r)| r > 0.0)
}

/// Phase boundaries from measured checkpoints (in step order).
pub fn detect_phases(rows: &[Measures]) -> Phases {
    let mut phases = Phases {
        rule: "memorisation_end: train-loss fall rate < 1/20 of its max (after the max); \
               circuit_formation_end: test-loss fall rate >= 1/2 of its max; cleanup_end: \
               test-loss fall rate < 1/20 of its max (after the max); rates in log10 loss per \
               step over >= 1% of the run"
            .into(),
        ..Phases::default()
    };
    let steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
    let Some(&last) = steps.last() else {
        return phases;
    };
    let span = (last / 100).max(1);
    let train = fall_rates(
        &steps,
        &rows.iter().map(|r| r.loss_train).collect::<Vec<_>>(),
        span,
    );
    let test = fall_rates(
        &steps,
        &rows.iter().map(|r| r.loss_test).collect::<Vec<_>>(),
        span,
    );
    let flat_after = |rates: &[Option<f64>], (i, max): (usize, f64)| {
        (i..rates.len()).find(|&j| rates[j].is_some_and(|r| r < PLATEAU * max))
    };
    let Some(mem) = steepest(&train, 0).and_then(|m| flat_after(&train, m)) else {
        return phases;
    };
    phases.memorisation_end = Some(steps[mem]);
    let Some(fall) = steepest(&test, mem) else {
        return phases;
    };
    phases.circuit_formation_end = (mem..=fall.0)
        .find(|&j| test[j].is_some_and(|r| r >= FALLING * fall.1))
        .map(|j| steps[j]);
    phases.cleanup_end = flat_after(&test, fall).map(|j| steps[j]);
    phases
}
