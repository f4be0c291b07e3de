//! What a run reached, read from its logged metrics, and what a setting reached over its seeds:
//! the first steps at 90 / 95 / 99% test accuracy, the best test accuracy, the grokking stage
//! (10% → 95% test), Liu et al. 2022's phase (REFERENCES.md §4), with runs cut off before a
//! threshold marked as censored and a bootstrap 95% interval over seeds. `compare` and
//! `sweep collect` both report these.

use crate::rundir::MetricsRow;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// Steps within which test accuracy must follow train accuracy to 90% for comprehension.
pub const COMPREHENSION_WINDOW: u64 = 1000;

/// The test-accuracy thresholds whose first steps are reported.
pub const TEST_THRESHOLDS: [f64; 3] = [0.90, 0.95, 0.99];

/// Bootstrap resamples behind each interval.
pub const BOOTSTRAP_DRAWS: usize = 10_000;

/// Liu et al. 2022's four phases, from the first logged steps at ≥ 90% train and test
/// accuracy within the run's budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Train and test accuracy reach 90% within [`COMPREHENSION_WINDOW`] steps of each other.
    Comprehension,
    /// Test accuracy reaches 90% more than the window after train.
    Grokking,
    /// Train accuracy reaches 90%, test never does.
    Memorisation,
    /// Train accuracy never reaches 90%.
    Confusion,
}

impl Phase {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Comprehension => "comprehension",
            Phase::Grokking => "grokking",
            Phase::Memorisation => "memorisation",
            Phase::Confusion => "confusion",
        }
    }

    /// The rule, from the first steps at ≥ 90% train and test accuracy.
    pub fn of(train_90: Option<u64>, test_90: Option<u64>) -> Self {
        match (train_90, test_90) {
            (None, _) => Phase::Confusion,
            (Some(_), None) => Phase::Memorisation,
            (Some(a), Some(b)) if b <= a + COMPREHENSION_WINDOW => Phase::Comprehension,
            _ => Phase::Grokking,
        }
    }
}

/// One run's outcome. Steps are logged steps, so each is exact to the run's `log_every`.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Last logged step: the budget the run had (a threshold not reached by it is censored).
    pub steps: u64,
    /// First step with train accuracy ≥ 90%.
    pub train_90: Option<u64>,
    /// First step with train accuracy ≥ 99%.
    pub train_99: Option<u64>,
    /// First step with test accuracy ≥ 10% (the start of the grokking stage).
    pub test_10: Option<u64>,
    /// First steps with test accuracy ≥ each of [`TEST_THRESHOLDS`].
    pub test: [Option<u64>; 3],
    /// First step with test loss < 1 (Nanda et al. 2023's time to grok).
    pub test_loss_below_1: Option<u64>,
    /// Highest logged test accuracy, in [0, 1].
    pub best_test_acc: f64,
    /// The last row's train and test loss and accuracy.
    pub last: (f64, f64, f64, f64),
    /// Liu et al.'s phase.
    pub phase: Phase,
}

impl Outcome {
    /// The outcome of a run's rows (in step order); `None` without rows.
    pub fn of(rows: &[MetricsRow]) -> Option<Self> {
        let last = rows.last()?;
        let first = |f: &dyn Fn(&MetricsRow) -> bool| rows.iter().find(|r| f(r)).map(|r| r.step);
        let train_90 = first(&|r| r.train_acc >= 0.9);
        let test = TEST_THRESHOLDS.map(|t| first(&|r| r.test_acc >= t));
        Some(Outcome {
            steps: last.step,
            train_90,
            train_99: first(&|r| r.train_acc >= 0.99),
            test_10: first(&|r| r.test_acc >= 0.1),
            test,
            test_loss_below_1: first(&|r| r.test_loss < 1.0),
            best_test_acc: rows.iter().map(|r| r.test_acc).fold(0.0, f64::max),
            last: (
                last.train_loss,
                last.test_loss,
                last.train_acc,
                last.test_acc,
            ),
            phase: Phase::of(train_90, test[0]),
        })
    }

    /// The grokking stage, test accuracy 10% → 95%, in steps: `(length, censored)`, where a run
    /// that reached 10% but not 95% gives its lower bound `steps − test_10`; `None` when test
    /// accuracy never reached 10%.
    pub fn grok_stage(&self) -> Option<(u64, bool)> {
        let start = self.test_10?;
        Some(match self.test[1] {
            Some(end) => (end.saturating_sub(start), false),
            None => (self.steps.saturating_sub(start), true),
        })
    }

    /// Steps to 99% test over steps to 99% train: a grokking regime has ≥ 3 (the issue's
    /// criterion; Power et al. 2022's delays are far longer). `None` unless both were reached.
    pub fn delay_ratio(&self) -> Option<f64> {
        Some(self.test[2]? as f64 / self.train_99?.max(1) as f64)
    }
}

/// A mean with a percentile-bootstrap 95% interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Mean of the values.
    pub mean: f64,
    /// 2.5th percentile of the resampled means.
    pub lo: f64,
    /// 97.5th percentile of the resampled means.
    pub hi: f64,
}

/// The mean of `values` and its percentile-bootstrap 95% interval (Efron & Tibshirani 1993,
/// §13.3): [`BOOTSTRAP_DRAWS`] resamples with replacement, seeded, so the interval is the same
/// on every machine. With one value the interval is that value; `None` for none.
pub fn bootstrap_mean(values: &[f64]) -> Option<Interval> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut means: Vec<f64> = (0..BOOTSTRAP_DRAWS)
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| {
        means[((q * (BOOTSTRAP_DRAWS - 1) as f64).round() as usize).min(BOOTSTRAP_DRAWS - 1)]
    };
    Some(Interval {
        mean,
        lo: at(0.025),
        hi: at(0.975),
    })
}

/// Steps to one threshold over a setting's seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Censored {
    /// Per run: the step reached, or `Err(budget)` when cut off before it.
    pub per_run: Vec<std::result::Result<u64, u64>>,
    /// Mean and interval with each censored run at its budget: a lower bound when any is
    /// censored.
    pub interval: Option<Interval>,
}

impl Censored {
    fn new(per_run: Vec<std::result::Result<u64, u64>>) -> Self {
        let values: Vec<f64> = (per_run.iter())
            .map(|r| *r.as_ref().unwrap_or_else(|b| b) as f64)
            .collect();
        Censored {
            interval: bootstrap_mean(&values),
            per_run,
        }
    }

    /// Runs that reached the threshold.
    pub fn reached(&self) -> usize {
        self.per_run.iter().filter(|r| r.is_ok()).count()
    }

    /// Runs cut off before it.
    pub fn censored(&self) -> usize {
        self.per_run.len() - self.reached()
    }

    /// `"1,200 [1,050, 1,400]"`, or `"≥ 5,300 [4,800, 6,000]"` when any run is censored;
    /// `"—"` for no runs.
    pub fn describe(&self) -> String {
        let Some(i) = self.interval else {
            return "—".into();
        };
        let bound = if self.censored() > 0 { "≥ " } else { "" };
        format!(
            "{bound}{} [{}, {}]",
            thousands(i.mean),
            thousands(i.lo),
            thousands(i.hi)
        )
    }

    /// Per-run values, `;`-separated, censored ones as `>budget`.
    pub fn per_run_text(&self) -> String {
        (self.per_run.iter())
            .map(|r| match r {
                Ok(s) => s.to_string(),
                Err(b) => format!(">{b}"),
            })
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// One setting's outcome over its seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct SettingSummary {
    /// The setting's label (its config keys without the seed).
    pub label: String,
    /// Runs (seeds).
    pub runs: usize,
    /// Steps to each of [`TEST_THRESHOLDS`].
    pub test: [Censored; 3],
    /// Best test accuracy, in [0, 1].
    pub best_test_acc: Interval,
    /// Final test accuracy, in [0, 1].
    pub final_test_acc: Interval,
    /// The grokking stage (10% → 95% test) over the runs that reached 10%.
    pub grok_stage: Censored,
    /// How many runs ended in each of Liu et al.'s phases.
    pub phases: BTreeMap<Phase, usize>,
}

impl SettingSummary {
    /// The summary of `outcomes` (at least one).
    pub fn of(label: &str, outcomes: &[Outcome]) -> Self {
        let steps_to =
            |i: usize| Censored::new(outcomes.iter().map(|o| o.test[i].ok_or(o.steps)).collect());
        let stage = (outcomes.iter())
            .filter_map(Outcome::grok_stage)
            .map(|(len, censored)| if censored { Err(len) } else { Ok(len) })
            .collect();
        let mut phases = BTreeMap::new();
        for o in outcomes {
            *phases.entry(o.phase).or_insert(0) += 1;
        }
        let interval = |f: fn(&Outcome) -> f64| {
            let v: Vec<f64> = outcomes.iter().map(f).collect();
            bootstrap_mean(&v).unwrap_or(Interval {
                mean: f64::NAN,
                lo: f64::NAN,
                hi: f64::NAN,
            })
        };
        SettingSummary {
            label: label.to_string(),
            runs: outcomes.len(),
            test: [steps_to(0), steps_to(1), steps_to(2)],
            best_test_acc: interval(|o| o.best_test_acc),
            final_test_acc: interval(|o| o.last.3),
            grok_stage: Censored::new(stage),
            phases,
        }
    }

    /// `"phases"` text: `"3 grokking, 2 comprehension"`.
    pub fn phases_text(&self) -> String {
        (self.phases.iter())
            .map(|(p, n)| format!("{n} {}", p.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One paragraph: steps to 90/95/99% test (mean and 95% interval over seeds, how many
    /// reached it, censored runs counted at their budget), best test accuracy, grokking stage,
    /// phases.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (t, c) in TEST_THRESHOLDS.iter().zip(&self.test) {
            parts.push(format!(
                "{:.0}% test at {} ({}/{} reached)",
                100.0 * t,
                c.describe(),
                c.reached(),
                self.runs
            ));
        }
        let pct = |i: &Interval| {
            format!(
                "{:.1}% [{:.1}, {:.1}]",
                100.0 * i.mean,
                100.0 * i.lo,
                100.0 * i.hi
            )
        };
        format!(
            "{} ({} runs): {}; best test accuracy {}; final {}; grokking stage 10→95% {} ({} runs); phases: {}",
            self.label,
            self.runs,
            parts.join(", "),
            pct(&self.best_test_acc),
            pct(&self.final_test_acc),
            self.grok_stage.describe(),
            self.grok_stage.per_run.len(),
            self.phases_text()
        )
    }

    /// Header of [`SettingSummary::csv_row`].
    pub const CSV_HEADER: &'static str =
        "runs,test_90_mean,test_90_lo,test_90_hi,test_90_reached,test_90_per_run,\
test_95_mean,test_95_lo,test_95_hi,test_95_reached,test_95_per_run,\
test_99_mean,test_99_lo,test_99_hi,test_99_reached,test_99_per_run,\
best_test_acc_mean,best_test_acc_lo,best_test_acc_hi,final_test_acc_mean,\
grok_stage_mean,grok_stage_lo,grok_stage_hi,grok_stage_censored,phases";

    /// The summary's CSV cells (after the setting's own columns); a mean over censored runs is
    /// a lower bound, recognisable by `reached < runs` and `>` in `per_run`.
    pub fn csv_row(&self) -> String {
        let iv = |i: &Option<Interval>| match i {
            Some(i) => format!("{},{},{}", i.mean, i.lo, i.hi),
            None => ",,".into(),
        };
        let mut cells = vec![self.runs.to_string()];
        for c in &self.test {
            cells.push(iv(&c.interval));
            cells.push(c.reached().to_string());
            cells.push(c.per_run_text());
        }
        cells.push(iv(&Some(self.best_test_acc)));
        cells.push(self.final_test_acc.mean.to_string());
        cells.push(iv(&self.grok_stage.interval));
        cells.push(self.grok_stage.censored().to_string());
        cells.push(self.phases_text().replace(", ", ";"));
        cells.join(",")
    }
}

/// `12345.6` → `"12,346"`.
fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(accs: &[(f64, f64)]) -> Vec<MetricsRow> {
        (accs.iter().enumerate())
            .map(|(i, &(train, test))| {
                MetricsRow::new(
                    100 * i as u64,
                    0.0,
                    (0.0, train),
                    (2.0, test),
                    (0.0, 0.0),
                    vec![],
                    0.0,
                )
            })
            .collect()
    }

    /// Liu et al.'s rule: the four cases and the window's edge.
    #[test]
    fn liu_phases() {
        assert_eq!(Phase::of(None, None), Phase::Confusion);
        assert_eq!(Phase::of(None, Some(10)), Phase::Confusion);
        assert_eq!(Phase::of(Some(100), None), Phase::Memorisation);
        assert_eq!(Phase::of(Some(100), Some(1100)), Phase::Comprehension);
        assert_eq!(Phase::of(Some(100), Some(1101)), Phase::Grokking);
        assert_eq!(Phase::of(Some(500), Some(300)), Phase::Comprehension);
    }

    /// A run's first steps at each threshold, its best accuracy and its stage.
    #[test]
    fn outcome_reads_first_steps() {
        let o = Outcome::of(&rows(&[
            (0.5, 0.0),
            (0.995, 0.05),
            (1.0, 0.2),
            (1.0, 0.93),
            (1.0, 0.97),
            (1.0, 0.96),
        ]))
        .unwrap();
        assert_eq!(
            (o.steps, o.train_90, o.train_99),
            (500, Some(100), Some(100))
        );
        assert_eq!(o.test, [Some(300), Some(400), None]);
        assert_eq!(o.best_test_acc, 0.97);
        assert_eq!(o.grok_stage(), Some((200, false)));
        assert_eq!(o.delay_ratio(), None);
        assert_eq!(o.phase, Phase::Comprehension);
        assert!(Outcome::of(&[]).is_none());
    }

    /// The interval of identical values is that value; the interval holds the mean, lies within
    /// the values' range, and is the same on every call (seeded); for a sample of 0s and 1s it
    /// approaches the normal approximation mean ± 1.96·σ/√n.
    #[test]
    fn bootstrap_interval() {
        let same = bootstrap_mean(&[3.0; 5]).unwrap();
        assert_eq!((same.mean, same.lo, same.hi), (3.0, 3.0, 3.0));
        let v = [1.0, 2.0, 4.0, 8.0, 16.0];
        let i = bootstrap_mean(&v).unwrap();
        assert_eq!(i.mean, 6.2);
        assert!(
            1.0 <= i.lo && i.lo < i.mean && i.mean < i.hi && i.hi <= 16.0,
            "{i:?}"
        );
        assert_eq!(bootstrap_mean(&v), Some(i));
        let coin: Vec<f64> = (0..400).map(|k| f64::from(k % 2 == 0)).collect();
        let c = bootstrap_mean(&coin).unwrap();
        let half = 1.96 * 0.5 / 20.0;
        assert!(
            (c.lo - (0.5 - half)).abs() < 0.01 && (c.hi - (0.5 + half)).abs() < 0.01,
            "{c:?}"
        );
        assert!(bootstrap_mean(&[]).is_none());
    }

    /// A setting where one seed is cut off before 99%: that seed counts at its budget, the
    /// figure reads as a lower bound, and the per-run text marks it.
    #[test]
    fn censored_runs_are_lower_bounds() {
        let reached = Outcome::of(&rows(&[(1.0, 0.0), (1.0, 0.5), (1.0, 0.999)])).unwrap();
        let cut = Outcome::of(&rows(&[(1.0, 0.0), (1.0, 0.2), (1.0, 0.96), (1.0, 0.97)])).unwrap();
        let s = SettingSummary::of("lr=1", &[reached, cut]);
        assert_eq!(s.test[2].per_run, vec![Ok(200), Err(300)]);
        assert_eq!((s.test[2].reached(), s.test[2].censored()), (1, 1));
        assert_eq!(s.test[2].interval.unwrap().mean, 250.0);
        assert!(
            s.test[2].describe().starts_with("≥ 250 ["),
            "{}",
            s.test[2].describe()
        );
        assert_eq!(s.test[2].per_run_text(), "200;>300");
        assert_eq!(s.test[1].per_run, vec![Ok(200), Ok(200)]);
        assert_eq!(s.test[1].describe(), "200 [200, 200]");
        assert_eq!(s.grok_stage.per_run, vec![Ok(100), Ok(100)]);
        assert!((s.best_test_acc.mean - 0.9845).abs() < 1e-12);
        assert_eq!(s.phases_text(), "2 comprehension");
        let cells = s.csv_row();
        assert_eq!(
            cells.split(',').count(),
            SettingSummary::CSV_HEADER.split(',').count()
        );
        assert!(
            s.describe().contains("99% test at ≥ 250"),
            "{}",
            s.describe()
        );
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1000.0), "-1,000");
    }
}
