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

/// Offsets of [`induction_offset_profile`]: keys from 3 before to 4 after the earlier
/// occurrence of the query's token (+1 is the induction target).
pub const INDUCTION_OFFSETS: std::ops::RangeInclusive<i64> = -3..=4;

/// Offsets of [`query_offset_profile`]: keys 0 (the query itself) to 8 positions back (1 is the
/// previous token).
pub const QUERY_OFFSETS: std::ops::RangeInclusive<usize> = 0..=8;

/// Per head, the mean attention from each scored position q of `batch` to the key `s + k` for
/// every offset k of [`INDUCTION_OFFSETS`], where s is the latest earlier position holding q's
/// token: the induction stripe shows at k = +1. Keys outside `[0, q]` count as 0; scored
/// positions without an earlier occurrence are skipped. `pattern` as in
/// [`previous_token_score`]; returns `[H][K]`.
pub fn induction_offset_profile(pattern: &[f64], batch: &SeqBatch, h: usize) -> Vec<Vec<f64>> {
    let (b, t) = (batch.len(), batch.n_ctx);
    assert_eq!(pattern.len(), b * h * t * t, "pattern shape");
    let offsets: Vec<i64> = INDUCTION_OFFSETS.collect();
    let mut sums = vec![vec![0.0; offsets.len()]; h];
    let mut count = 0usize;
    for s in 0..b {
        let (tokens, targets) = (batch.tokens_of(s), batch.targets_of(s));
        for q in (0..t).filter(|&q| targets[q] != IGNORE) {
            let Some(src) = (0..q).rev().find(|&j| tokens[j] == tokens[q]) else {
                continue;
            };
            for (head, row_sums) in sums.iter_mut().enumerate() {
                let row = &pattern[((s * h + head) * t + q) * t..][..t];
                for (sum, &k) in row_sums.iter_mut().zip(&offsets) {
                    let key = src as i64 + k;
                    if (0..=q as i64).contains(&key) {
                        *sum += row[key as usize];
                    }
                }
            }
            count += 1;
        }
    }
    (sums.into_iter())
        .map(|r| r.into_iter().map(|x| x / count.max(1) as f64).collect())
        .collect()
}

/// Per head, the mean attention from every query position q ≥ 8 to the key q − j for each j of
/// [`QUERY_OFFSETS`]: the previous-token diagonal shows at j = 1. `pattern` as in
/// [`previous_token_score`] (`b` sequences of `t` tokens); returns `[H][9]`.
pub fn query_offset_profile(pattern: &[f64], b: usize, h: usize, t: usize) -> Vec<Vec<f64>> {
    assert_eq!(pattern.len(), b * h * t * t, "pattern shape");
    let back = *QUERY_OFFSETS.end();
    let queries = t.saturating_sub(back);
    (0..h)
        .map(|head| {
            QUERY_OFFSETS
                .map(|j| {
                    let total: f64 = (0..b)
                        .flat_map(|s| {
                            (back..t).map(move |q| pattern[((s * h + head) * t + q) * t + q - j])
                        })
                        .sum();
                    total / (b * queries).max(1) as f64
                })
                .collect()
        })
        .collect()
}

/// Per head, the mean total attention from each scored position of `batch` to the keys (up to
/// it) whose token is in `tokens`: for skip trigrams, how much END reads the signal token.
/// `pattern` as in [`previous_token_score`], for `batch`'s sequences; returns `[H]`.
pub fn attention_to_tokens(
    pattern: &[f64],
    batch: &SeqBatch,
    h: usize,
    tokens: std::ops::Range<i64>,
) -> Vec<f64> {
    let (b, t) = (batch.len(), batch.n_ctx);
    assert_eq!(pattern.len(), b * h * t * t, "pattern shape");
    let mut sums = vec![0.0; h];
    let mut count = 0usize;
    for s in 0..b {
        let (toks, targets) = (batch.tokens_of(s), batch.targets_of(s));
        for q in (0..t).filter(|&q| targets[q] != IGNORE) {
            let keys: Vec<usize> = (0..=q).filter(|&j| tokens.contains(&toks[j])).collect();
            for (head, sum) in sums.iter_mut().enumerate() {
                let row = &pattern[((s * h + head) * t + q) * t..][..t];
                *sum += keys.iter().map(|&j| row[j]).sum::<f64>();
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

    /// The profiles of the constructed heads above: the induction head puts all its weight at
    /// offset +1 from the earlier occurrence, the previous-token head at one back; on a skip
    /// trigram sequence, a head that reads the signal scores 1 and a uniform one 1/(q + 1).
    #[test]
    fn offset_profiles_and_token_attention_of_constructed_heads() {
        let (t, h) = (12, 2);
        let mut batch = SeqBatch::new(t);
        let toks = [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6];
        let mut targets = [IGNORE; 12];
        targets[6..11].copy_from_slice(&toks[7..12]);
        batch.push(&toks, &targets);
        let mut pattern = vec![0.0; h * t * t];
        for q in 0..t {
            let at = |head: usize, k: usize| (head * t + q) * t + k;
            pattern[at(0, if q >= 6 { q - 5 } else { q })] = 1.0;
            pattern[at(1, q.saturating_sub(1))] = 1.0;
        }
        let ind = induction_offset_profile(&pattern, &batch, h);
        let plus_one = INDUCTION_OFFSETS.clone().position(|k| k == 1).unwrap();
        assert_eq!(ind[0][plus_one], 1.0);
        assert_eq!(ind[0].iter().sum::<f64>(), 1.0);
        // the previous-token head's key q − 1 is 5 after the earlier occurrence: outside −3..=4
        assert_eq!(ind[1].iter().sum::<f64>(), 0.0);
        let by_query = query_offset_profile(&pattern, 1, h, t);
        assert_eq!(by_query[1][1], 1.0);
        assert_eq!(by_query[1].iter().sum::<f64>(), 1.0);
        assert_eq!(by_query[0][5], 1.0);

        let mut skip = SeqBatch::new(5);
        skip.push(&[0, 3, 15, 2, 1], &[IGNORE, IGNORE, IGNORE, IGNORE, 3]);
        let mut p = vec![0.0; h * 25];
        p[(4) * 5 + 2] = 1.0; // head 0: END reads the signal at position 2
        for k in 0..5 {
            p[(5 + 4) * 5 + k] = 0.2; // head 1: uniform
        }
        let a = attention_to_tokens(&p, &skip, h, 12..22);
        assert_eq!(a, vec![1.0, 0.2]);
    }
}
