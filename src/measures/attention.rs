//! Attention-pattern scores of sequence models (Olsson et al. 2022, "In-context learning and
//! induction heads"; TransformerLens' head detectors): per head, how much a query attends to the
//! previous token, and how much a repeated token attends to the token after its earlier
//! occurrence.

use crate::tasks::{SeqBatch, IGNORE};

/// Per head, the mean attention from each query position t ≥ 1 to position t − 1.
///
/// `pattern` is `blocks.{l}.attn.hook_pattern` `[B, H, T, T]` row-major (query, then key), over
/// every query position; returns `[H]`.
pub fn previous_token_score(pattern: &[f64], b: usize, h: usize, t: usize) -> Vec<f64> {
    assert_eq!(pattern.len(), b * h * t * t, "pattern shape");
    (0..h)
        .map(|head| {
            let total: f64 = (0..b)
                .flat_map(|s| (1..t).map(move |q| pattern[((s * h + head) * t + q) * t + q - 1]))
                .sum();
            total / (b * (t - 1)) as f64
        })
        .collect()
}

/// Per head, the induction score: over the scored positions q of `batch` (the tokens a copy
/// predicts), the mean total attention from q to the positions j ≤ q whose previous token equals
/// q's token (the token after an earlier occurrence of the current one). A perfect induction
/// head scores 1, a uniform one about (occurrences)/(q + 1).
///
/// `pattern` as in [`previous_token_score`], for `batch`'s B sequences; returns `[H]`.
pub fn induction_score(pattern: &[f64], batch: &SeqBatch, h: usize) -> Vec<f64> {
    let (b, t) = (batch.len(), batch.n_ctx);
    assert_eq!(pattern.len(), b * h * t * t, "pattern shape");
    let mut sums = vec![0.0; h];
    let mut count = 0usize;
    for s in 0..b {
        let (tokens, targets) = (batch.tokens_of(s), batch.targets_of(s));
        for q in (0..t).filter(|&q| targets[q] != IGNORE) {
            let after_earlier: Vec<usize> =
                (1..=q).filter(|&j| tokens[j - 1] == tokens[q]).collect();
            for (head, sum) in sums.iter_mut().enumerate() {
                let row = &pattern[((s * h + head) * t + q) * t..][..t];
                *sum += after_earlier.iter().map(|&j| row[j]).sum::<f64>();
            }
            count += 1;
        }
    }
    sums.iter().map(|s| s / count.max(1) as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One sequence `[5, 7, 9, 5, 7, 9]` scored at positions 3 and 4 (predicting 7 and 9); head 0
    /// attends to the token after the earlier occurrence (an induction head), head 1 to the
    /// previous token, head 2 uniformly.
    #[test]
    fn constructed_heads_score_as_defined() {
        let (t, h) = (6, 3);
        let mut batch = SeqBatch::new(t);
        batch.push(&[5, 7, 9, 5, 7, 9], &[IGNORE, IGNORE, IGNORE, 7, 9, IGNORE]);
        let mut pattern = vec![0.0; h * t * t];
        for q in 0..t {
            let at = |head: usize, k: usize| (head * t + q) * t + k;
            // induction: from q ≥ 3 to q − 2 (after the earlier copy), else to itself
            pattern[at(0, if q >= 3 { q - 2 } else { q })] = 1.0;
            pattern[at(1, q.saturating_sub(1))] = 1.0;
            for k in 0..=q {
                pattern[at(2, k)] = 1.0 / (q + 1) as f64;
            }
        }
        let ind = induction_score(&pattern, &batch, h);
        assert_eq!(ind[0], 1.0);
        assert_eq!(ind[1], 0.0);
        // uniform: one target position of q + 1 keys, at q = 3 and q = 4
        assert!((ind[2] - (0.25 + 0.2) / 2.0).abs() < 1e-12);
        let prev = previous_token_score(&pattern, 1, h, t);
        assert_eq!(prev[1], 1.0);
        // the induction head never looks at the previous token
        assert_eq!(prev[0], 0.0);
        assert!((prev[2] - (1.0 / 2.0 + 1.0 / 3.0 + 0.25 + 0.2 + 1.0 / 6.0) / 5.0).abs() < 1e-12);
    }
}
