//! The symmetric group S5 (Power et al. 2022, the S5 tasks): its 120 permutations of
//! `{0, 1, 2, 3, 4}` numbered in lexicographic order (index 0 is the identity), composition and
//! inverse.
//!
//! A permutation `x` is the array `[x(0), …, x(4)]`; composition is `(x∘y)(i) = x(y(i))` (apply
//! `y` first). The S5 tasks are binary operations on these indices, encoded as `[x, y, =]` like
//! the modular ones (`=` has id 120).

use super::modular::Operation;

/// Elements permuted.
pub const S5_N: usize = 5;
/// Number of permutations, 5!.
pub const S5_ORDER: usize = 120;

/// A permutation of `{0, …, 4}`: entry `i` is the image of `i`.
pub type Perm = [u8; S5_N];

/// The permutation with lexicographic index `index` (< 120), by the factorial number system.
pub fn perm(index: usize) -> Perm {
    assert!(index < S5_ORDER, "S5 index {index} out of range");
    let mut left: Vec<u8> = (0..S5_N as u8).collect();
    let mut out = [0u8; S5_N];
    let mut rest = index;
    for (i, slot) in out.iter_mut().enumerate() {
        let f = factorial(S5_N - 1 - i);
        *slot = left.remove(rest / f);
        rest %= f;
    }
    out
}

/// The lexicographic index of `x` (inverse of [`perm`]).
pub fn index(x: &Perm) -> usize {
    (0..S5_N)
        .map(|i| {
            let smaller_later = x[i + 1..].iter().filter(|&&v| v < x[i]).count();
            smaller_later * factorial(S5_N - 1 - i)
        })
        .sum()
}

/// `x∘y`: apply `y`, then `x`.
pub fn compose(x: &Perm, y: &Perm) -> Perm {
    std::array::from_fn(|i| x[y[i] as usize])
}

/// `x⁻¹`.
pub fn inverse(x: &Perm) -> Perm {
    let mut inv = [0u8; S5_N];
    for (i, &v) in x.iter().enumerate() {
        inv[v as usize] = i as u8;
    }
    inv
}

/// The index of `op(x, y)` for an S5 operation: x∘y, x∘y∘x⁻¹ or x∘y∘x.
///
/// # Panics
/// For a non-S5 operation (callers check [`Operation::is_s5`]).
pub fn s5_apply(op: Operation, x: usize, y: usize) -> usize {
    let (px, py) = (perm(x), perm(y));
    let xy = compose(&px, &py);
    index(&match op {
        Operation::S5Compose => xy,
        Operation::S5Conj => compose(&xy, &inverse(&px)),
        Operation::S5Aba => compose(&xy, &px),
        other => panic!("`{}` is not an S5 operation", other.name()),
    })
}

fn factorial(n: usize) -> usize {
    (1..=n).product()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_enumerate_every_permutation_once_in_lexicographic_order() {
        let all: Vec<Perm> = (0..S5_ORDER).map(perm).collect();
        assert_eq!(all[0], [0, 1, 2, 3, 4]);
        assert_eq!(all[1], [0, 1, 2, 4, 3]);
        assert_eq!(all[119], [4, 3, 2, 1, 0]);
        for (i, p) in all.iter().enumerate() {
            let mut sorted = *p;
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3, 4], "{p:?} is not a permutation");
            assert_eq!(index(p), i);
        }
        assert!(all.windows(2).all(|w| w[0] < w[1]), "lexicographic order");
    }

    /// Group laws: identity, inverses, associativity (all 120³ triples), and closure.
    #[test]
    fn s5_is_a_group() {
        let id = perm(0);
        let all: Vec<Perm> = (0..S5_ORDER).map(perm).collect();
        for x in &all {
            assert_eq!(compose(x, &id), *x);
            assert_eq!(compose(&id, x), *x);
            assert_eq!(compose(x, &inverse(x)), id);
            assert_eq!(compose(&inverse(x), x), id);
        }
        for x in &all {
            for y in &all {
                let xy = compose(x, y);
                for z in &all {
                    assert_eq!(compose(&xy, z), compose(x, &compose(y, z)));
                }
            }
        }
        // S5 is not abelian: some pair does not commute.
        assert!(all
            .iter()
            .any(|x| all.iter().any(|y| compose(x, y) != compose(y, x))));
    }

    #[test]
    fn the_three_operations() {
        // x = the transposition (0 1), y = the 5-cycle 0→1→2→3→4→0.
        let x: Perm = [1, 0, 2, 3, 4];
        let y: Perm = [1, 2, 3, 4, 0];
        let (ix, iy) = (index(&x), index(&y));
        // (x∘y)(i) = x(y(i)): 0→y→1→x→0, 1→2, 2→3, 3→4, 4→0→1
        assert_eq!(
            perm(s5_apply(Operation::S5Compose, ix, iy)),
            [0, 2, 3, 4, 1]
        );
        // x∘y∘x⁻¹ is the cycle y with 0 and 1 relabelled: 1→0→2→3→4→1
        let conj = perm(s5_apply(Operation::S5Conj, ix, iy));
        assert_eq!(conj, [2, 0, 3, 4, 1]);
        // x∘y∘x = (x∘y)∘x
        let aba = perm(s5_apply(Operation::S5Aba, ix, iy));
        assert_eq!(aba, compose(&compose(&x, &y), &x));
        // conjugation by the identity is the identity map
        for y in 0..S5_ORDER {
            assert_eq!(s5_apply(Operation::S5Conj, 0, y), y);
        }
    }
}
