//! Phase changes read off loss curves: a generic detector for any falling curve
//! ([`detect_phase_change`]: onset, steepest point, end), and from it the three boundaries of a
//! grokking run (Nanda et al. 2023 §5.2: memorisation, circuit formation, clean-up).
//!
//! Rates are falls per step, each measured from a checkpoint to the first one at least 1% of the
//! run later (so dense early checkpoints do not make the rates noisy). A phase change of a curve
//! is the fall around its steepest rate r*:
//! - **steepest**: the checkpoint with the largest fall rate r*;
//! - **onset**: walking back from the steepest checkpoint, the first of the unbroken run of
//!   checkpoints whose rate is ≥ r*/2;
//! - **end**: the first checkpoint after the steepest whose rate is < r*/20 (the loss is flat
//!   again);
//! - a fall that does not at least halve the loss from onset to end is not a phase change (the
//!   jitter of a flat or rising curve).
//!
//! [`detect_phase_change`] measures falls of the loss itself (nats per step): a phase change is a
//! large fall, and on a noisy curve the log of a small loss jitters by more per step than the
//! real fall moves it. The grokking boundaries measure falls of log₁₀ loss, since clean-up happens
//! between losses of 1e-2 and 1e-7:
//! - **end of memorisation**: the end of the train loss's phase change;
//! - **end of circuit formation / start of clean-up**: the onset of the test loss's phase change,
//!   searched after memorisation. The test loss's fall back from its peak while memorisation
//!   finishes is a transient: it is slower than the grokking fall and separated from it by a slow
//!   stretch, so it is not the unbroken run around the steepest fall;
//! - **end of clean-up**: the end of the test loss's phase change.
//!
//! On the paper's seed-0 run the paper puts the boundaries at 1.4k, 9.4k and 14k epochs.

use super::snapshot::Measures;
use crate::rundir::MetricsRow;
use serde::{Deserialize, Serialize};

/// Fraction of the steepest fall below which a loss counts as flat.
const PLATEAU: f64 = 1.0 / 20.0;
/// Fraction of the steepest fall at which the test loss counts as falling.
const FALLING: f64 = 0.5;
/// The least factor by which a phase change lowers the loss from its onset to its end.
const MIN_FALL: f64 = 2.0;

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

/// As [`fall_rates`], in the curve's own units (non-finite values give `None`).
fn linear_fall_rates(steps: &[u64], loss: &[f64], span: u64) -> Vec<Option<f64>> {
    (0..steps.len())
        .map(|i| {
            let j = (i + 1..steps.len()).find(|&j| steps[j] - steps[i] >= span)?;
            let (a, b) = (loss[i], loss[j]);
            (a.is_finite() && b.is_finite()).then(|| (a - b) / (steps[j] - steps[i]) as f64)
        })
        .collect()
}

fn steepest(rates: &[Option<f64>], from: usize) -> Option<(usize, f64)> {
    (from..rates.len())
        .filter_map(|i| rates[i].map(|r| (i, r)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|&(_, r)| r > 0.0)
}

/// A phase change of one curve, as checkpoint steps (see the module doc for the rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseChange {
    /// First checkpoint of the unbroken fast fall around the steepest point.
    pub onset: u64,
    /// Checkpoint with the steepest fall.
    pub steepest: u64,
    /// First checkpoint after the steepest whose fall is < 1/20 of it (`None`: still falling at
    /// the end of the run).
    pub end: Option<u64>,
}

/// Index form of [`PhaseChange`] over `rates`, searched from index `from`.
fn phase_change_at(rates: &[Option<f64>], from: usize) -> Option<(usize, usize, Option<usize>)> {
    let (top, max) = steepest(rates, from)?;
    let fast = |j: usize| rates[j].is_some_and(|r| r >= FALLING * max);
    let onset = (from..top)
        .rev()
        .take_while(|&j| fast(j))
        .last()
        .unwrap_or(top);
    let end = (top..rates.len()).find(|&j| rates[j].is_some_and(|r| r < PLATEAU * max));
    Some((onset, top, end))
}

/// The phase change of a falling curve (`loss` at `steps`, ascending), with rates in loss units
/// per step over at least 1% of the run; `None` when the curve never falls, or when its
/// steepest fall does not at least halve the loss between onset and end (or the last step):
/// the jitter of a flat or rising curve.
pub fn detect_phase_change(steps: &[u64], loss: &[f64]) -> Option<PhaseChange> {
    let last = *steps.last()?;
    let rates = linear_fall_rates(steps, loss, (last / 100).max(1));
    let (onset, top, end) = phase_change_at(&rates, 0)?;
    let after = loss[end.unwrap_or(steps.len() - 1)];
    if after.is_nan() || after > loss[onset] / MIN_FALL {
        return None;
    }
    Some(PhaseChange {
        onset: steps[onset],
        steepest: steps[top],
        end: end.map(|j| steps[j]),
    })
}

/// The phase change ([`detect_phase_change`]) of the test loss of a run's metrics rows (step
/// order) and, for sequence tasks, of each scored position's (`test_loss_at.<t>`) and each
/// class's (`test_loss_class.<c>`) test loss, by curve name; curves without one are left out.
pub fn phase_changes_of_rows(rows: &[MetricsRow]) -> Vec<(String, PhaseChange)> {
    let steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
    let curve = |key: &str| -> Vec<f64> {
        (rows.iter())
            .map(|r| r.get(key).unwrap_or(f64::NAN))
            .collect()
    };
    let keys = std::iter::once("test_loss".to_string()).chain(
        (rows.last().into_iter())
            .flat_map(|r| r.task_metrics.iter().map(|(k, _)| k.clone()))
            .filter(|k| k.starts_with("test_loss_at.") || k.starts_with("test_loss_class.")),
    );
    keys.filter_map(|k| Some((k.clone(), detect_phase_change(&steps, &curve(&k))?)))
        .collect()
}

/// Phase boundaries of a grokking run from its measured checkpoints (in step order).
pub fn detect_phases(rows: &[Measures]) -> Phases {
    let steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
    let train: Vec<f64> = rows.iter().map(|r| r.loss_train).collect();
    let test: Vec<f64> = rows.iter().map(|r| r.loss_test).collect();
    grokking_phases(&steps, &train, &test)
}

/// Phase boundaries of a grokking run from its train and test loss curves at `steps`.
pub fn grokking_phases(steps: &[u64], train: &[f64], test: &[f64]) -> Phases {
    let mut phases = Phases {
        rule: "memorisation_end: end of the train loss's phase change; circuit_formation_end: \
               onset of the test loss's phase change after memorisation; cleanup_end: its end. \
               Phase change: steepest log10-loss fall rate r* (rates over >= 1% of the run), \
               onset = start of the unbroken run of rates >= r*/2 around it, end = first rate \
               < r*/20 after it"
            .into(),
        ..Phases::default()
    };
    let Some(&last) = steps.last() else {
        return phases;
    };
    let span = (last / 100).max(1);
    let train = fall_rates(steps, train, span);
    let test = fall_rates(steps, test, span);
    let Some((_, _, Some(mem))) = phase_change_at(&train, 0) else {
        return phases;
    };
    phases.memorisation_end = Some(steps[mem]);
    let Some((onset, _, end)) = phase_change_at(&test, mem) else {
        return phases;
    };
    phases.circuit_formation_end = Some(steps[onset]);
    phases.cleanup_end = end.map(|j| steps[j]);
    phases
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A logistic fall of `decades` centred at `mid` with width `w`, on top of `base`.
    fn sigmoid_fall(steps: &[u64], base: f64, decades: f64, mid: f64, w: f64) -> Vec<f64> {
        (steps.iter())
            .map(|&s| base * 10f64.powf(decades / (1.0 + ((s as f64 - mid) / w).exp())))
            .collect()
    }

    #[test]
    fn a_logistic_fall_is_found_around_its_centre() {
        let steps: Vec<u64> = (0..=200).map(|i| i * 50).collect();
        // 2.3 nats falling to 0.01 around step 6000 (width 300), with ±20% multiplicative noise
        // on the low plateau after it, which a log-rate would take for the steepest fall
        let loss: Vec<f64> = (steps.iter())
            .map(|&s| {
                let x = (s as f64 - 6000.0) / 300.0;
                let jitter = if s > 8000 && (s / 50) % 2 == 0 {
                    1.2
                } else {
                    0.8
                };
                0.01 * jitter + 2.3 / (1.0 + x.exp())
            })
            .collect();
        let pc = detect_phase_change(&steps, &loss).unwrap();
        // steepest at the centre (rates look 1% of the run ahead); the rate is half its peak
        // 1.76 widths from the centre and 1/20 of it 4.4 widths away
        assert!((5900..=6000).contains(&pc.steepest), "{pc:?}");
        assert!((5300..=5600).contains(&pc.onset), "{pc:?}");
        assert!((7100..=7500).contains(&pc.end.unwrap()), "{pc:?}");
        // a flat curve has none, nor a rising one with a 1% dip (the induction run at wd 1)
        assert_eq!(detect_phase_change(&steps, &vec![1.0; steps.len()]), None);
        let rising: Vec<f64> = (steps.iter())
            .map(|&s| 5.0 + s as f64 / 5000.0 - if s == 6000 { 0.06 } else { 0.0 })
            .collect();
        assert_eq!(detect_phase_change(&steps, &rising), None);
    }

    /// The quick preset's shape: the test loss peaks as memorisation ends and falls back part of
    /// the way quickly, then falls for real much later. The transient is not the phase change.
    #[test]
    fn the_transient_after_memorisation_is_not_circuit_formation() {
        let steps: Vec<u64> = (0..=300).map(|i| i * 10).collect();
        let train = sigmoid_fall(&steps, 1e-4, 4.5, 45.0, 8.0);
        let peak = |s: f64| 4.0 + 10.0 * (-((s - 70.0) / 25.0).powi(2)).exp();
        let grok = sigmoid_fall(&steps, 3e-3, 3.5, 820.0, 70.0);
        let test: Vec<f64> = (steps.iter().zip(&grok))
            .map(|(&s, g)| g * (1.0 + peak(s as f64) / 4.0) / 2.0)
            .collect();
        let ph = grokking_phases(&steps, &train, &test);
        let mem = ph.memorisation_end.unwrap();
        assert!((50..=120).contains(&mem), "{ph:?}");
        let cf = ph.circuit_formation_end.unwrap();
        assert!((600..=800).contains(&cf), "{ph:?}");
        assert!(ph.cleanup_end.unwrap() > 900, "{ph:?}");
    }
}
