//! The grokking phase markers on the loss curves of real groklab runs (`tests/data/*_curves.csv`,
//! written by `groklab analyze` from runs of the `quick` and `nanda2023` presets).

use groklab::measures::phases::grokking_phases;
use std::path::PathBuf;

struct Curves {
    steps: Vec<u64>,
    loss_train: Vec<f64>,
    loss_test: Vec<f64>,
    acc_train: Vec<f64>,
    acc_test: Vec<f64>,
}

fn curves(name: &str) -> Curves {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/{name}"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut c = Curves {
        steps: vec![],
        loss_train: vec![],
        loss_test: vec![],
        acc_train: vec![],
        acc_test: vec![],
    };
    for line in text.lines().filter(|l| !l.starts_with('#')).skip(1) {
        let v: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
        c.steps.push(v[0] as u64);
        c.loss_train.push(v[1]);
        c.loss_test.push(v[2]);
        c.acc_train.push(v[3]);
        c.acc_test.push(v[4]);
    }
    c
}

impl Curves {
    fn at(&self, step: u64) -> usize {
        self.steps.iter().position(|&s| s == step).unwrap()
    }

    fn first(&self, acc: &[f64], level: f64) -> u64 {
        self.steps[acc.iter().position(|&a| a >= level).unwrap()]
    }

    /// The markers bracket what the accuracies show: memorisation ends once train accuracy is
    /// ≥ 99%; circuit formation ends after test accuracy has left its level at the end of
    /// memorisation (×1.5) and before it reaches 99%; clean-up ends after that.
    fn check(&self) -> (u64, u64, u64) {
        let ph = grokking_phases(&self.steps, &self.loss_train, &self.loss_test);
        let (mem, cf, clean) = (
            ph.memorisation_end.unwrap(),
            ph.circuit_formation_end.unwrap(),
            ph.cleanup_end.unwrap(),
        );
        let (train_99, test_99) = (
            self.first(&self.acc_train, 0.99),
            self.first(&self.acc_test, 0.99),
        );
        assert!(
            mem >= train_99,
            "{ph:?}: train acc >= 99% only at {train_99}"
        );
        let test_at_mem = self.acc_test[self.at(mem)];
        assert!(
            self.acc_test[self.at(cf)] >= 1.5 * test_at_mem,
            "{ph:?}: test acc {} at circuit formation's end, {test_at_mem} at memorisation's",
            self.acc_test[self.at(cf)]
        );
        assert!(cf < test_99, "{ph:?}: test acc >= 99% at {test_99}");
        assert!(clean > test_99, "{ph:?}: test acc >= 99% at {test_99}");
        (mem, cf, clean)
    }
}

/// The quick preset: test accuracy climbs from 24% at step 100 to 99% at step 1,050; the test
/// loss's fall back from its peak at step 70 is not the circuit forming.
#[test]
fn quick_run_markers_follow_the_test_accuracy() {
    let c = curves("quick_curves.csv");
    let (mem, cf, _) = c.check();
    assert!(mem <= 200, "memorisation ends at {mem}");
    assert!(cf > 300, "circuit formation ends at {cf}");
}

/// The paper's recipe: the paper puts the boundaries at 1.4k, 9.4k and 14k epochs (seed 0; our
/// initialisation is not the paper's draw).
#[test]
fn nanda2023_run_markers_are_near_the_papers() {
    let c = curves("nanda2023_curves.csv");
    let (mem, cf, clean) = c.check();
    assert!((1_000..=2_000).contains(&mem), "memorisation ends at {mem}");
    assert!(
        (8_000..=11_000).contains(&cf),
        "circuit formation ends at {cf}"
    );
    assert!(
        (11_000..=16_000).contains(&clean),
        "clean-up ends at {clean}"
    );
}
