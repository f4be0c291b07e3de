//! Binary operations on a finite set (Power et al. 2022; Nanda et al. 2023): modulo p, and
//! composition in S5 (p = 120 permutations).
//!
//! Every task enumerates all valid pairs `(a, b)` with `a, b ∈ [0, p)` in a-major order (row
//! `a·p + b`, skipping `b = 0` for division) and encodes each as the sequence `[a, b, =]` where the
//! `=` token has id `p` (so `d_vocab = p + 1`, `n_ctx = 3`).

use super::permutation::{s5_apply, S5_ORDER};
use crate::error::{GrokError, Result};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// A binary operation `c = f(a, b) mod p`. Names follow Power et al. 2022, Table/Appendix A.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// a + b
    Add,
    /// a − b
    Sub,
    /// a · b
    Mul,
    /// a · b⁻¹ (b ≠ 0; p prime)
    Div,
    /// a² + b²
    X2PlusY2,
    /// a² + ab + b²
    X2XyY2,
    /// a² + ab + b² + a
    X2XyY2X,
    /// a³ + ab
    X3Xy,
    /// a³ + ab² + b
    X3Xy2Y,
    /// a · b⁻¹ if b is odd, else a − b (p prime)
    DivIfOddElseSub,
    /// A fixed random label per pair (pure memorisation; labels drawn from the task seed).
    RandomTable,
    /// S5: x∘y, permutations by lexicographic index ([`super::permutation`]); p = 120.
    S5Compose,
    /// S5: x∘y∘x⁻¹ (conjugation); p = 120.
    S5Conj,
    /// S5: x∘y∘x; p = 120.
    S5Aba,
}

impl Operation {
    /// Every operation, in the order `groklab` lists them.
    pub const ALL: [Operation; 14] = [
        Operation::Add,
        Operation::Sub,
        Operation::Mul,
        Operation::Div,
        Operation::X2PlusY2,
        Operation::X2XyY2,
        Operation::X2XyY2X,
        Operation::X3Xy,
        Operation::X3Xy2Y,
        Operation::DivIfOddElseSub,
        Operation::RandomTable,
        Operation::S5Compose,
        Operation::S5Conj,
        Operation::S5Aba,
    ];

    /// The config name of the operation (`add`, `x2_xy_y2`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Operation::Add => "add",
            Operation::Sub => "sub",
            Operation::Mul => "mul",
            Operation::Div => "div",
            Operation::X2PlusY2 => "x2_plus_y2",
            Operation::X2XyY2 => "x2_xy_y2",
            Operation::X2XyY2X => "x2_xy_y2_x",
            Operation::X3Xy => "x3_xy",
            Operation::X3Xy2Y => "x3_xy2_y",
            Operation::DivIfOddElseSub => "div_if_odd_else_sub",
            Operation::RandomTable => "random_table",
            Operation::S5Compose => "s5_compose",
            Operation::S5Conj => "s5_conj",
            Operation::S5Aba => "s5_aba",
        }
    }

    /// Parses a config name; the error lists every allowed name.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|op| op.name() == name)
            .ok_or_else(|| GrokError::invalid("task.name", name, Self::allowed_names()))
    }

    /// The allowed names joined by `|`, for error messages.
    pub fn allowed_names() -> String {
        Self::ALL.map(|op| op.name()).join("|")
    }

    /// Whether the operation needs a multiplicative inverse, hence a prime modulus.
    pub fn needs_prime(self) -> bool {
        matches!(self, Operation::Div | Operation::DivIfOddElseSub)
    }

    /// Checks that `p` is a valid modulus for the operation.
    ///
    /// Whether the operation acts on the permutations of S5 rather than residues mod p.
    pub fn is_s5(self) -> bool {
        matches!(
            self,
            Operation::S5Compose | Operation::S5Conj | Operation::S5Aba
        )
    }

    /// # Errors
    /// `task.p` below 2, not prime when the operation needs an inverse, not 120 for S5.
    pub fn check_modulus(self, p: u64) -> Result<()> {
        if self.is_s5() && p != S5_ORDER as u64 {
            return Err(GrokError::invalid(
                "task.p",
                p,
                format!(
                    "120 (task `{}` acts on the 5! permutations of S5)",
                    self.name()
                ),
            ));
        }
        if p < 2 {
            return Err(GrokError::invalid("task.p", p, "an integer >= 2"));
        }
        if self.needs_prime() && !is_prime(p) {
            return Err(GrokError::invalid(
                "task.p",
                p,
                format!("a prime (task `{}` needs b⁻¹ mod p)", self.name()),
            ));
        }
        Ok(())
    }

    /// Whether `f(a, b) = f(b, a)` for all pairs (used to keep mirrored pairs on one side).
    pub fn is_commutative(self) -> bool {
        matches!(
            self,
            Operation::Add | Operation::Mul | Operation::X2PlusY2 | Operation::X2XyY2
        )
    }

    /// Whether the pair `(a, b)` is in the task's domain (division excludes b = 0).
    pub fn valid_pair(self, _a: u64, b: u64) -> bool {
        !(self == Operation::Div && b == 0)
    }

    /// `f(a, b) mod p` for the arithmetic operations, the index of the product for S5; `None` for
    /// [`Operation::RandomTable`].
    pub fn apply(self, a: u64, b: u64, p: u64) -> Option<u64> {
        let m = |x: u64, y: u64| x * y % p;
        Some(match self {
            Operation::Add => (a + b) % p,
            Operation::Sub => (a + p - b) % p,
            Operation::Mul => m(a, b),
            Operation::Div => m(a, mod_inverse(b, p)),
            Operation::X2PlusY2 => (m(a, a) + m(b, b)) % p,
            Operation::X2XyY2 => (m(a, a) + m(a, b) + m(b, b)) % p,
            Operation::X2XyY2X => (m(a, a) + m(a, b) + m(b, b) + a) % p,
            Operation::X3Xy => (m(m(a, a), a) + m(a, b)) % p,
            Operation::X3Xy2Y => (m(m(a, a), a) + m(a, m(b, b)) + b) % p,
            Operation::DivIfOddElseSub if b % 2 == 1 => m(a, mod_inverse(b, p)),
            Operation::DivIfOddElseSub => (a + p - b) % p,
            Operation::RandomTable => return None,
            Operation::S5Compose | Operation::S5Conj | Operation::S5Aba => {
                s5_apply(self, a as usize, b as usize) as u64
            }
        })
    }
}

/// b⁻¹ mod p by Fermat's little theorem (p prime, b ≠ 0 mod p).
fn mod_inverse(b: u64, p: u64) -> u64 {
    let (mut base, mut exp, mut acc) = (b % p, p - 2, 1u64);
    while exp > 0 {
        if exp & 1 == 1 {
            acc = acc * base % p;
        }
        base = base * base % p;
        exp >>= 1;
    }
    acc
}

/// Whether `n` is prime (trial division; p is small).
pub fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// All examples of a modular task.
///
/// `tokens` is `[n_examples, 3]` row-major (`[a, b, =]`), `labels` is `[n_examples]`, and `pairs`
/// holds `(a, b)`. Example `i` of an add/sub/mul task is the pair with `a·p + b = i`.
#[derive(Clone, Debug)]
pub struct ModularDataset {
    /// The operation.
    pub op: Operation,
    /// The modulus.
    pub p: u64,
    /// `(a, b)` per example, a-major.
    pub pairs: Vec<(u64, u64)>,
    /// `[n_examples, n_ctx]` token ids, row-major.
    pub tokens: Vec<i64>,
    /// Positions per example: 3 (`[a, b, =]`), or 2 (`[a, b]`, [`ModularDataset::without_equals`]).
    pub n_ctx: usize,
    /// `[n_examples]` class ids in `[0, p)`.
    pub labels: Vec<i64>,
}

impl ModularDataset {
    /// Builds every example of `op` modulo `p`.
    ///
    /// # Errors
    /// `task.p` below 2, or not prime for an operation that needs an inverse.
    pub fn new(op: Operation, p: u64, seed: u64) -> Result<Self> {
        op.check_modulus(p)?;
        let mut table_rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x7ab1e);
        let mut pairs = Vec::new();
        let mut tokens = Vec::new();
        let mut labels = Vec::new();
        for a in 0..p {
            for b in 0..p {
                if !op.valid_pair(a, b) {
                    continue;
                }
                let c = op
                    .apply(a, b, p)
                    .unwrap_or_else(|| table_rng.random_range(0..p));
                pairs.push((a, b));
                tokens.extend_from_slice(&[a as i64, b as i64, p as i64]);
                labels.push(c as i64);
            }
        }
        Ok(Self {
            op,
            p,
            pairs,
            tokens,
            labels,
            n_ctx: Self::N_CTX,
        })
    }

    /// The same examples as `[a, b]` without the `=` token (Zhong et al. 2023's inputs: the
    /// answer is read at b's position, `d_vocab = p`).
    pub fn without_equals(mut self) -> Self {
        if self.n_ctx == 3 {
            self.tokens = (self.tokens.chunks(3)).flat_map(|t| [t[0], t[1]]).collect();
            self.n_ctx = 2;
        }
        self
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset has no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Sequence length with the `=` token (`[a, b, =]`).
    pub const N_CTX: usize = 3;

    /// Gathers the `[rows.len(), n_ctx]` tokens and `[rows.len()]` labels of the given example
    /// rows.
    pub fn gather(&self, rows: &[usize]) -> (Vec<i64>, Vec<i64>) {
        let t = self.n_ctx;
        let mut toks = Vec::with_capacity(rows.len() * t);
        let mut labs = Vec::with_capacity(rows.len());
        for &r in rows {
            toks.extend_from_slice(&self.tokens[r * t..r * t + t]);
            labs.push(self.labels[r]);
        }
        (toks, labs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_match_their_formulas() {
        let p = 7;
        assert_eq!(Operation::Add.apply(5, 4, p), Some(2));
        assert_eq!(Operation::Sub.apply(2, 5, p), Some(4));
        // 3 / 5 mod 7: 5⁻¹ = 3, so 3·3 = 9 = 2
        assert_eq!(Operation::Div.apply(3, 5, p), Some(2));
        assert_eq!(Operation::DivIfOddElseSub.apply(3, 4, p), Some(6));
        assert_eq!(Operation::X3Xy2Y.apply(2, 3, p), Some((8 + 18 + 3) % 7));
        for b in 1..p {
            assert_eq!(mod_inverse(b, p) * b % p, 1);
        }
    }

    #[test]
    fn division_skips_zero_divisor() {
        let d = ModularDataset::new(Operation::Div, 5, 0).unwrap();
        assert_eq!(d.len(), 20);
        assert!(d.pairs.iter().all(|&(_, b)| b != 0));
    }

    #[test]
    fn s5_tasks_enumerate_the_group_table() {
        let d = ModularDataset::new(Operation::S5Compose, 120, 0).unwrap();
        assert_eq!(d.len(), 120 * 120);
        for (r, &(x, y)) in d.pairs.iter().enumerate() {
            // identity row and column; every row a permutation of the group (Latin square)
            if x == 0 {
                assert_eq!(d.labels[r], y as i64);
            }
            if y == 0 {
                assert_eq!(d.labels[r], x as i64);
            }
            assert_eq!(&d.tokens[3 * r..3 * r + 3], &[x as i64, y as i64, 120]);
        }
        for x in 0..120 {
            let mut row: Vec<i64> = d.labels[x * 120..(x + 1) * 120].to_vec();
            row.sort_unstable();
            assert_eq!(row, (0..120).collect::<Vec<i64>>());
        }
        let conj = ModularDataset::new(Operation::S5Conj, 120, 0).unwrap();
        // x∘e∘x⁻¹ = e
        assert!((0..120).all(|x| conj.labels[x * 120] == 0));
        assert!(Operation::S5Aba.check_modulus(119).is_err());
        assert!(!Operation::S5Compose.is_commutative());
    }

    #[test]
    fn primes() {
        let primes: Vec<u64> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(primes, vec![2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
    }
}
