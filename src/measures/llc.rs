//! The local learning coefficient (LLC; Lau et al. 2023, "Quantifying degeneracy in singular
//! models via the learning coefficient", arXiv 2308.12108, §4 and Algorithm 1; the `devinterp`
//! package): the effective dimension of a model at a point `w*`,
//!
//! ```text
//! λ̂(w*) = nβ · (E_w[L_n(w)] − L_n(w*)),    nβ = n / ln n by default,
//! ```
//!
//! with `L_n` the mean training loss over the `n` training examples and the expectation over
//! draws of SGLD chains started at `w*` and localised toward it (devinterp's `SGLD`):
//!
//! ```text
//! w ← w − ε/2 · (nβ · ∇L_batch(w) + γ (w − w*)) + N(0, ε)
//! ```
//!
//! `ε` is devinterp's `lr`, `γ` its `localization`. A regular model whose loss is quadratic in
//! `d` directions has λ = d/2; singular models (all neural networks) have less.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// SGLD's settings, under devinterp's names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlcOptions {
    /// Step size ε (devinterp `lr`).
    pub lr: f64,
    /// Pull toward `w*`, γ (devinterp `localization`).
    pub localization: f64,
    /// Inverse temperature nβ (devinterp `nbeta`); `None`: `n / ln n` of the training set
    /// (devinterp's `default_nbeta`).
    pub nbeta: Option<f64>,
    /// Independent chains (devinterp `num_chains`), run in parallel.
    pub num_chains: usize,
    /// Draws per chain after burn-in (devinterp `num_draws`).
    pub num_draws: usize,
    /// SGLD steps before the first draw (devinterp `num_burnin_steps`).
    pub num_burnin_steps: usize,
    /// SGLD steps between draws (devinterp `num_steps_bw_draws`).
    pub num_steps_bw_draws: usize,
    /// Training examples per SGLD step's gradient and draw's loss (devinterp `batch_size`).
    pub batch_size: usize,
    /// Seed of the batch order (shared by all chains, as devinterp's
    /// `match_sampling_input_ids_across_chains`) and of chain `c`'s noise (`seed + 1 + c`).
    pub seed: u64,
    /// How the minibatches walk the training set (devinterp `epoch_mode`); absent: reshuffle.
    #[serde(default)]
    pub epoch_mode: EpochMode,
    /// Whether the batch order is a seeded permutation (devinterp `shuffle`, default true);
    /// false: the training split in its stored order, cut into consecutive batches (drop_last),
    /// so another program can be fed the very same batches.
    #[serde(default = "shuffle_default")]
    pub shuffle: bool,
}

fn shuffle_default() -> bool {
    true
}

/// How SGLD's minibatches walk the training examples (devinterp `epoch_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpochMode {
    /// A fresh permutation every epoch, cut into batches (drop_last): every example is seen
    /// (PyTorch's `DataLoader(shuffle=True, drop_last=True)` iterated anew each epoch).
    #[default]
    Reshuffle,
    /// devinterp 2.x's default (`epoch_mode="cycle"`): the first epoch's batches replayed in the
    /// same order for the whole chain (`itertools.cycle` over the loader), so the `n mod batch`
    /// examples left out of that epoch are never seen, and every chain sees the same few batches.
    Cycle,
}

impl Default for LlcOptions {
    /// devinterp's grokking example's γ and chain shape with an ε for transformers of
    /// `nanda2023`'s size; calibrate ε per model (the trace should be flat after burn-in).
    fn default() -> Self {
        Self {
            lr: 1e-4,
            localization: 100.0,
            nbeta: None,
            num_chains: 4,
            num_draws: 200,
            num_burnin_steps: 500,
            num_steps_bw_draws: 1,
            batch_size: 512,
            seed: 0,
            epoch_mode: EpochMode::Reshuffle,
            shuffle: true,
        }
    }
}

impl LlcOptions {
    /// nβ for `n` training examples: the option, or `n / ln n` (`n ≥ 2`).
    pub fn nbeta_for(&self, n: usize) -> f64 {
        self.nbeta
            .unwrap_or_else(|| n as f64 / (n.max(2) as f64).ln())
    }

    /// Checks every setting, naming the option and its allowed values.
    ///
    /// # Errors
    /// [`crate::error::GrokError::InvalidValue`] for a non-positive or non-finite ε or nβ, a
    /// negative γ, or zero chains, draws or batch size.
    pub fn validate(&self) -> crate::error::Result<()> {
        use crate::error::GrokError;
        let pos = |name: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(GrokError::invalid(name, v, "a positive number"))
            }
        };
        pos("--lr", self.lr)?;
        if let Some(b) = self.nbeta {
            pos("--nbeta", b)?;
        }
        if !(self.localization >= 0.0 && self.localization.is_finite()) {
            return Err(GrokError::invalid(
                "--localization",
                self.localization,
                "a number ≥ 0",
            ));
        }
        for (name, v) in [
            ("--num-chains", self.num_chains),
            ("--num-draws", self.num_draws),
            ("--num-steps-bw-draws", self.num_steps_bw_draws),
            ("--batch-size", self.batch_size),
        ] {
            if v == 0 {
                return Err(GrokError::invalid(name, 0, "a positive integer"));
            }
        }
        Ok(())
    }
}

/// One point's estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlcEstimate {
    /// Mean of the chains' estimates.
    pub llc_mean: f64,
    /// Their standard deviation (n − 1 in the denominator, as torch's `std`).
    pub llc_std: f64,
    /// Standard error of the mean over chains, `llc_std / √chains`.
    pub llc_se: f64,
    /// `nβ · (mean of chain c's draws − L_n(w*))` per chain.
    pub llc_per_chain: Vec<f64>,
    /// `L_n(w*)`, the full training loss at the point (nats); with [`EpochMode::Cycle`], the
    /// mean loss at the point over the replayed batches, the only examples the chains see.
    pub init_loss: f64,
    /// The nβ used.
    pub nbeta: f64,
    /// `[chains][draws]` each draw's minibatch loss (nats): the trace people check is flat
    /// after burn-in and above `init_loss`.
    pub loss_trace: Vec<Vec<f64>>,
    /// Diagnostics: a chain whose mean draw loss fell below `L_n(w*)` (the point is not a
    /// local minimum at this resolution, or ε is too large), or that diverged (a non-finite
    /// loss, or a draw above `max(10·L_n(w*), L_n(w*) + 10)` nats).
    pub warnings: Vec<String>,
}

/// The loss and gradient an SGLD step reads: `(mean loss over the examples, ∇ of it)` at the
/// flat weights `w`, for the training examples `batch` (indices into `0..n`).
pub type LossGrad<'a> = dyn Fn(&[f64], &[usize]) -> (f64, Vec<f64>) + Sync + 'a;

/// The LLC at `w_star` (flat weights) of a loss over `n` training examples whose full-batch
/// value there is `init_loss`: `num_chains` SGLD chains in parallel (rayon), each
/// `num_burnin_steps + num_draws · num_steps_bw_draws` steps, drawing the minibatch loss at
/// every `num_steps_bw_draws`-th step after burn-in (the loss of the batch the step's gradient
/// is taken on, before the step, as devinterp records it). Batches walk a seeded permutation of
/// the examples, a fresh one per epoch, the same for every chain ([`EpochMode::Reshuffle`]), or
/// replay the first epoch's ([`EpochMode::Cycle`], devinterp 2.x's default). When cycling, the
/// chains only ever see that epoch's examples, so `L_n(w*)` is taken over the same batches (the
/// mean of their losses at `w*`, as devinterp's `init_loss` over its cycled loader), and
/// `init_loss` is not used: λ̂ = nβ (E[L_subset(w)] − L_subset(w*)).
pub fn estimate_llc(
    w_star: &[f64],
    n: usize,
    init_loss: f64,
    opts: &LlcOptions,
    loss_grad: &LossGrad<'_>,
) -> LlcEstimate {
    let nbeta = opts.nbeta_for(n);
    let steps = opts.num_burnin_steps + opts.num_draws * opts.num_steps_bw_draws;
    let size = opts.batch_size.min(n.max(1));
    let (batches, init_loss) = match opts.epoch_mode {
        EpochMode::Reshuffle => (
            batch_order(n, size, steps, opts.seed, opts.shuffle),
            init_loss,
        ),
        // the first epoch's n / size batches, replayed
        EpochMode::Cycle => {
            let epoch = batch_order(n, size, n / size, opts.seed, opts.shuffle);
            let subset_loss =
                epoch.iter().map(|b| loss_grad(w_star, b).0).sum::<f64>() / epoch.len() as f64;
            let replayed = (0..steps).map(|t| epoch[t % epoch.len()].clone()).collect();
            (replayed, subset_loss)
        }
    };
    let ceiling = (10.0 * init_loss).max(init_loss + 10.0);
    let chains: Vec<(Vec<f64>, Option<String>)> = (0..opts.num_chains)
        .into_par_iter()
        .map(|c| {
            let mut rng = ChaCha8Rng::seed_from_u64(opts.seed.wrapping_add(1 + c as u64));
            let mut w = w_star.to_vec();
            let mut trace = Vec::with_capacity(opts.num_draws);
            let (half, noise) = (0.5 * opts.lr, opts.lr.sqrt());
            for (t, batch) in batches.iter().enumerate() {
                let (loss, grad) = loss_grad(&w, batch);
                let after = t.checked_sub(opts.num_burnin_steps);
                if after.is_some_and(|a| a % opts.num_steps_bw_draws == 0) {
                    trace.push(loss);
                }
                if !loss.is_finite() || (after.is_some() && loss > ceiling) {
                    let why = format!(
                        "chain {c} diverged at SGLD step {t} (minibatch loss {loss:.3e} nats); lower --lr"
                    );
                    return (trace, Some(why));
                }
                for ((wi, gi), si) in w.iter_mut().zip(&grad).zip(w_star) {
                    let xi: f64 = rng.sample(StandardNormal);
                    *wi += -half * (nbeta * gi + opts.localization * (*wi - si)) + noise * xi;
                }
            }
            (trace, None)
        })
        .collect();
    let mut warnings = Vec::new();
    let mut llc_per_chain = Vec::new();
    let mut loss_trace = Vec::new();
    for (c, (trace, diverged)) in chains.into_iter().enumerate() {
        let mean = trace.iter().sum::<f64>() / trace.len().max(1) as f64;
        if let Some(w) = diverged {
            warnings.push(w);
        } else if mean < init_loss {
            warnings.push(format!(
                "chain {c}: mean draw loss {mean:.4e} below L_n(w*) = {init_loss:.4e} nats (not a local minimum at this ε; lower --lr or raise --localization)"
            ));
        } else if let Some((first, second)) = drift(&trace, init_loss) {
            warnings.push(format!(
                "chain {c}: draws still drifting after burn-in (mean excess loss {first:.3e} in the first half, {second:.3e} in the second); raise --num-burnin-steps"
            ));
        }
        llc_per_chain.push(nbeta * (mean - init_loss));
        loss_trace.push(trace);
    }
    let k = llc_per_chain.len().max(1) as f64;
    let llc_mean = llc_per_chain.iter().sum::<f64>() / k;
    let llc_std = if llc_per_chain.len() > 1 {
        (llc_per_chain
            .iter()
            .map(|x| (x - llc_mean).powi(2))
            .sum::<f64>()
            / (k - 1.0))
            .sqrt()
    } else {
        0.0
    };
    LlcEstimate {
        llc_mean,
        llc_std,
        llc_se: llc_std / k.sqrt(),
        llc_per_chain,
        init_loss,
        nbeta,
        loss_trace,
        warnings,
    }
}

/// The mean excess loss (over `init_loss`) of the first and second half of a trace when they
/// differ by more than 20% of the larger: the chain had not reached its stationary level.
fn drift(trace: &[f64], init_loss: f64) -> Option<(f64, f64)> {
    let h = trace.len() / 2;
    if h < 4 {
        return None;
    }
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64 - init_loss;
    let (a, b) = (mean(&trace[..h]), mean(&trace[h..]));
    ((a - b).abs() > 0.2 * a.abs().max(b.abs())).then_some((a, b))
}

/// `steps` batches of `size` example indices (`size ≤ n`): consecutive slices of a seeded
/// permutation of `0..n`, reshuffled when one runs out (PyTorch's `DataLoader(shuffle=True,
/// drop_last=True)`); without `shuffle`, of `0..n` itself (`shuffle=False`).
fn batch_order(n: usize, size: usize, steps: usize, seed: u64, shuffle: bool) -> Vec<Vec<usize>> {
    use rand::seq::SliceRandom;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut perm: Vec<usize> = (0..n).collect();
    let mut at = n;
    (0..steps)
        .map(|_| {
            if at + size > n {
                if shuffle {
                    perm.shuffle(&mut rng);
                }
                at = 0;
            }
            at += size;
            perm[at - size..at].to_vec()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `L(w) = ½ |P w|²` with `P` the projection onto a random `d`-dimensional subspace of
    /// `R^D`: regular in `d` directions, flat in the rest, so λ = d/2. With localization γ the
    /// sampled distribution is Gaussian with variance `1/(nβ + γ)` in the curved directions
    /// (and SGLD's step adds a factor `1/(1 − ε(nβ+γ)/4)`), so
    /// `λ̂ → nβ·d / (2(nβ + γ)(1 − ε(nβ+γ)/4))`, which is d/2 as γ/nβ and ε·nβ shrink.
    #[test]
    fn quadratic_in_d_directions_gives_half_d() {
        let big_d = 9;
        for d in [1usize, 4, 7] {
            // an orthonormal basis of a random d-dim subspace (Gram–Schmidt)
            let mut rng = ChaCha8Rng::seed_from_u64(d as u64);
            let mut basis: Vec<Vec<f64>> = Vec::new();
            while basis.len() < d {
                let mut v: Vec<f64> = (0..big_d).map(|_| rng.sample(StandardNormal)).collect();
                for b in &basis {
                    let dot: f64 = v.iter().zip(b).map(|(x, y)| x * y).sum();
                    v.iter_mut().zip(b).for_each(|(x, y)| *x -= dot * y);
                }
                let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
                basis.push(v.iter().map(|x| x / norm).collect());
            }
            let w_star: Vec<f64> = (0..big_d).map(|i| 0.1 * i as f64).collect();
            let loss_grad = |w: &[f64], _batch: &[usize]| {
                // P(w − w*) = Σ_b (b·(w − w*)) b
                let diff: Vec<f64> = w.iter().zip(&w_star).map(|(a, b)| a - b).collect();
                let mut g = vec![0.0; big_d];
                let mut loss = 0.0;
                for b in &basis {
                    let dot: f64 = diff.iter().zip(b).map(|(x, y)| x * y).sum();
                    loss += 0.5 * dot * dot;
                    g.iter_mut().zip(b).for_each(|(gi, bi)| *gi += dot * bi);
                }
                (loss, g)
            };
            let opts = LlcOptions {
                lr: 2e-5,
                localization: 1.0,
                nbeta: Some(1000.0),
                num_chains: 8,
                num_draws: 20_000,
                num_burnin_steps: 2_000,
                num_steps_bw_draws: 5,
                batch_size: 1,
                seed: 0,
                epoch_mode: EpochMode::Reshuffle,
                shuffle: true,
            };
            let e = estimate_llc(&w_star, 10_000, 0.0, &opts, &loss_grad);
            let a = 1000.0 + 1.0;
            let expected = 1000.0 * d as f64 / (2.0 * a * (1.0 - 2e-5 * a / 4.0));
            assert!(
                (e.llc_mean - expected).abs() < 0.03 * expected + 3.0 * e.llc_se,
                "d = {d}: λ̂ = {} ± {}, expected {expected}",
                e.llc_mean,
                e.llc_se
            );
            assert!((expected - d as f64 / 2.0).abs() < 0.01 * d as f64);
            assert!(e.warnings.is_empty(), "{:?}", e.warnings);
            assert_eq!(e.loss_trace.len(), 8);
            assert_eq!(e.loss_trace[0].len(), 20_000);
        }
    }

    /// The same seed gives the same estimate (the chains run in parallel, each on its own
    /// seeded noise); a too-large ε diverges and says so; chains far shorter than their relaxation
    /// time are reported as drifting.
    #[test]
    fn seeded_and_divergence_is_reported() {
        let loss_grad = |w: &[f64], _: &[usize]| (0.5 * w[0] * w[0], vec![w[0]]);
        let opts = LlcOptions {
            lr: 1e-3,
            localization: 0.0,
            nbeta: Some(100.0),
            num_chains: 3,
            num_draws: 50,
            num_burnin_steps: 0,
            num_steps_bw_draws: 1,
            batch_size: 4,
            seed: 7,
            epoch_mode: EpochMode::Reshuffle,
            shuffle: true,
        };
        let a = estimate_llc(&[0.0], 100, 0.0, &opts, &loss_grad);
        assert_eq!(a, estimate_llc(&[0.0], 100, 0.0, &opts, &loss_grad));
        let wild = LlcOptions { lr: 0.05, ..opts };
        let b = estimate_llc(&[0.0], 100, 0.0, &wild, &loss_grad);
        assert!(
            b.warnings.iter().any(|w| w.contains("diverged")),
            "{:?}",
            b.warnings
        );
        // relaxation time 2/(ε·nβ) = 2,000 steps against 200 draws: still rising (200 dimensions,
        // so each chain's loss is an average, not one Brownian path)
        let slow = LlcOptions {
            lr: 1e-5,
            num_draws: 200,
            ..opts
        };
        let bowl =
            |w: &[f64], _: &[usize]| (0.5 * w.iter().map(|x| x * x).sum::<f64>(), w.to_vec());
        let c = estimate_llc(&[0.0; 200], 100, 0.0, &slow, &bowl);
        assert!(
            c.warnings.iter().all(|w| w.contains("drifting")) && c.warnings.len() == 3,
            "{:?}",
            c.warnings
        );
    }

    /// Batches cover every example once per epoch, in a seeded order.
    #[test]
    fn batches_walk_permutations() {
        let b = batch_order(10, 3, 6, 1, true);
        let first: std::collections::BTreeSet<usize> = b[..3].iter().flatten().copied().collect();
        assert_eq!(first.len(), 9);
        assert_eq!(b, batch_order(10, 3, 6, 1, true));
        assert!(b.iter().all(|x| x.len() == 3));
    }

    /// devinterp's `cycle`: the first epoch's batches again and again, the leftover never seen.
    #[test]
    fn cycled_batches_replay_the_first_epoch() {
        let cycle = |steps| {
            let o = LlcOptions {
                epoch_mode: EpochMode::Cycle,
                batch_size: 3,
                num_chains: 1,
                num_draws: steps,
                num_burnin_steps: 0,
                ..LlcOptions::default()
            };
            let seen = std::sync::Mutex::new(Vec::new());
            let loss_grad = |w: &[f64], batch: &[usize]| {
                seen.lock().unwrap().push(batch.to_vec());
                (w[0] * w[0], vec![2.0 * w[0]])
            };
            estimate_llc(&[0.0], 10, 0.0, &o, &loss_grad);
            seen.into_inner().unwrap()
        };
        // the first 3 calls are the replayed epoch's losses at w* (the subset's L(w*))
        let calls = cycle(7);
        assert_eq!(calls.len(), 3 + 7);
        let b = &calls[3..];
        assert_eq!(calls[..3], b[..3]);
        assert_eq!(b[..3], batch_order(10, 3, 3, 0, true)[..]);
        assert_eq!(
            (b[3..6].to_vec(), b[6].clone()),
            (b[..3].to_vec(), b[0].clone())
        );
        let seen: std::collections::BTreeSet<usize> = b.iter().flatten().copied().collect();
        assert_eq!(seen.len(), 9, "one example is never seen");
    }

    /// Cycling, L_n(w*) is the replayed batches' mean loss at w* (devinterp's `init_loss`), not
    /// the full set's: with a loss that depends on which examples a batch holds, the estimate
    /// moves by exactly nβ times the difference.
    #[test]
    fn cycled_init_loss_is_the_subsets() {
        // example i's loss at w is (w − i)² / 2: the point w* = 0 has loss i² / 2 per example
        let loss_grad = |w: &[f64], batch: &[usize]| {
            let m = batch.len() as f64;
            let l = batch
                .iter()
                .map(|&i| 0.5 * (w[0] - i as f64).powi(2))
                .sum::<f64>()
                / m;
            let g = batch.iter().map(|&i| w[0] - i as f64).sum::<f64>() / m;
            (l, vec![g])
        };
        let o = LlcOptions {
            epoch_mode: EpochMode::Cycle,
            shuffle: false,
            batch_size: 3,
            num_chains: 2,
            num_draws: 10,
            num_burnin_steps: 0,
            nbeta: Some(1.0),
            ..LlcOptions::default()
        };
        let e = estimate_llc(&[0.0], 10, 123.0, &o, &loss_grad);
        // batches {0,1,2}, {3,4,5}, {6,7,8}: mean of i²/2 over 0..9 = 204 / 18
        assert!(
            (e.init_loss - 204.0 / 18.0).abs() < 1e-12,
            "{}",
            e.init_loss
        );
        let r = estimate_llc(
            &[0.0],
            10,
            123.0,
            &LlcOptions {
                epoch_mode: EpochMode::Reshuffle,
                ..o.clone()
            },
            &loss_grad,
        );
        assert_eq!(r.init_loss, 123.0);
    }

    /// devinterp's `shuffle=False`: the examples in their stored order, consecutive batches, the
    /// same every epoch (so `cycle` and `reshuffle` then give the same batches).
    #[test]
    fn unshuffled_batches_are_consecutive_slices() {
        let b = batch_order(10, 3, 7, 5, false);
        let slice = |i: usize| (3 * i..3 * i + 3).collect::<Vec<_>>();
        let expected: Vec<Vec<usize>> = (0..7).map(|t| slice(t % 3)).collect();
        assert_eq!(b, expected);
    }

    #[test]
    fn default_nbeta_is_n_over_ln_n() {
        let o = LlcOptions::default();
        assert!((o.nbeta_for(1000) - 1000.0 / 1000f64.ln()).abs() < 1e-9);
        assert_eq!(
            LlcOptions {
                nbeta: Some(2.0),
                ..o
            }
            .nbeta_for(1000),
            2.0
        );
    }
}
