//! The python split reproduces `random.seed(s); random.shuffle(pairs)` (REFERENCES.md §1 check
//! values), and splits respect their invariants.

use groklab::tasks::{split_indices, ModularDataset, Operation, SplitMode};

fn check(seed: u64, first: [(u64, u64); 5], sum: u64) {
    let data = ModularDataset::new(Operation::Add, 113, seed).unwrap();
    let split = split_indices(&data, 0.3, SplitMode::Python, seed, false).unwrap();
    assert_eq!(split.train.len(), 3830);
    assert_eq!(split.test.len(), 8939);
    let pairs: Vec<(u64, u64)> = split.train[..5].iter().map(|&r| data.pairs[r]).collect();
    assert_eq!(pairs, first);
    let total: u64 = split
        .train
        .iter()
        .map(|&r| data.pairs[r].0 * 113 + data.pairs[r].1)
        .sum();
    assert_eq!(total, sum);
}

#[test]
fn python_split_seed_0_matches_paper() {
    check(
        0,
        [(18, 34), (10, 83), (55, 28), (25, 51), (63, 65)],
        24_672_933,
    );
}

#[test]
fn python_split_seed_1_matches_paper() {
    check(
        1,
        [(58, 58), (76, 57), (60, 23), (100, 89), (29, 27)],
        24_321_622,
    );
}

#[test]
fn splits_partition_the_examples() {
    let data = ModularDataset::new(Operation::Add, 31, 0).unwrap();
    for mode in [SplitMode::Native, SplitMode::Python] {
        for keep in [false, true] {
            let s = split_indices(&data, 0.4, mode, 3, keep).unwrap();
            let mut all: Vec<usize> = s.train.iter().chain(&s.test).copied().collect();
            all.sort_unstable();
            assert_eq!(all, (0..data.len()).collect::<Vec<_>>());
            if keep {
                for &r in &s.train {
                    let (a, b) = data.pairs[r];
                    assert!(
                        s.train.contains(&(b as usize * 31 + a as usize)),
                        "mirror of ({a},{b})"
                    );
                }
            }
        }
    }
}

#[test]
fn fractions_outside_unit_interval_are_rejected() {
    let data = ModularDataset::new(Operation::Add, 7, 0).unwrap();
    for frac in [0.0, -0.1, 1.5, f64::NAN] {
        let err = split_indices(&data, frac, SplitMode::Native, 0, false).unwrap_err();
        assert!(err.to_string().contains("task.frac_train"), "{err}");
    }
    assert_eq!(
        split_indices(&data, 1.0, SplitMode::Native, 0, false)
            .unwrap()
            .test
            .len(),
        0
    );
}
