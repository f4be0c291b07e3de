//! Every progress measure of one checkpoint (Nanda et al. 2023 §4–5; REFERENCES §2).

use super::activations::run_all_inputs;
use super::clock_pizza::{
    distance_irrelevance, gradient_symmetricity, symmetricity_triples, SYMMETRICITY_SAMPLES,
    SYMMETRICITY_SEED,
};
use super::fourier::{fourier_basis, freq_norms, gini};
use super::logits::{
    excluded_logits, key_direction_fve, restricted_logits, trig_fit, trig_part, Combine, Scores,
};
use super::matrix::Matrix;
use super::neurons::{
    neuron_freqs, neuron_views, Clusters, KeyFreqVotes, NeuronViews, MIN_CLUSTER_SHARE,
};
use super::weights::{embed_component_norms, neuron_logit_map, w_l_component_norms};
use crate::error::{GrokError, Result};
use crate::models::{ParamStore, TransformerConfig};
use crate::tasks::{ModularDataset, Operation, Split};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The embedding rule's default threshold (fraction of the largest `W_E` Fourier norm).
pub const DEFAULT_EMBED_THRESHOLD: f64 = 0.5;

/// How the key frequencies are chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyFreqRule {
    /// The default: neuron clusters ∪ embedding norms at this threshold
    /// ([`KeyFreqVotes::consensus`]), the paper's analysis of a finished model.
    Consensus(f64),
    /// The distinct argmax frequencies of the neurons (the reference code's rule).
    NeuronArgmax,
    /// Frequencies whose embedding Fourier norm is at least this fraction of the largest.
    EmbedNorm(f64),
    /// Given by hand.
    Fixed(Vec<usize>),
}

impl KeyFreqRule {
    /// One-line description, stored with the measures.
    pub fn describe(&self) -> String {
        match self {
            Self::Consensus(t) => format!(
                "consensus: frequencies with an FVE >= 0.85 neuron cluster of >= {MIN_CLUSTER_SHARE} x \
                 the largest one's size, and those with W_E Fourier norm >= {t} x the largest"
            ),
            Self::NeuronArgmax => {
                "neuron_argmax: distinct argmax frequencies of the MLP neurons".into()
            }
            Self::EmbedNorm(t) => {
                format!("embed_norm: frequencies with W_E Fourier norm >= {t} x the largest")
            }
            Self::Fixed(k) => format!("fixed: {k:?}"),
        }
    }
}

/// The progress measures of one checkpoint. Losses are mean cross-entropy in nats (log-softmax
/// in f64) over the p residue classes (an extra `=` output is dropped, as in Nanda et al.'s
/// analysis, so they differ from a `d_vocab_out = p + 1` run's training loss until the `=` logit
/// is negligible), accuracies in [0, 1]; `None` where a measure does not apply (no MLP, or a task that
/// is not `a ± b` for the trig-based ones); NaN (`null` in JSON) for an empty split.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measures {
    /// Training step (= epoch for full-batch runs) of the checkpoint.
    pub step: u64,
    /// Loss over all labelled inputs.
    pub loss_all: f64,
    /// Loss over the training split.
    pub loss_train: f64,
    /// Loss over the test split.
    pub loss_test: f64,
    /// Accuracy over the training split.
    pub acc_train: f64,
    /// Accuracy over the test split.
    pub acc_test: f64,
    /// The key frequencies the logit measures used.
    pub key_freqs: Vec<usize>,
    /// Restricted loss (only the key frequencies' directions kept) over all inputs.
    pub restricted_loss_all: Option<f64>,
    /// Restricted loss over the training split.
    pub restricted_loss_train: Option<f64>,
    /// Restricted loss over the test split.
    pub restricted_loss_test: Option<f64>,
    /// Restricted accuracy over all inputs.
    pub restricted_acc_all: Option<f64>,
    /// Excluded loss (key frequencies' directions removed) over the training split.
    pub excluded_loss_train: Option<f64>,
    /// Excluded accuracy over the training split.
    pub excluded_acc_train: Option<f64>,
    /// Per key frequency: training-split loss with only that frequency removed.
    pub excluded_loss_train_per_freq: BTreeMap<usize, f64>,
    /// `[p/2 + 1]` embedding Fourier norm per frequency (index 0: constant).
    pub embed_freq_norms: Vec<f64>,
    /// `[p/2 + 1]` W_L Fourier norm per frequency along the output axis.
    pub w_l_freq_norms: Option<Vec<f64>>,
    /// Gini of the p embedding Fourier component norms.
    pub gini_w_e: f64,
    /// Gini of the p W_L Fourier component norms.
    pub gini_w_l: Option<f64>,
    /// Neuron clusters at FVE ≥ 0.85.
    pub clusters: Option<Clusters>,
    /// `[d_mlp]` each neuron's argmax frequency (0: dead).
    pub neuron_freq: Option<Vec<usize>>,
    /// Fraction of neurons in the clusters of the key frequencies.
    pub key_cluster_fraction: Option<f64>,
    /// Fraction of the input-centred logits' variance in the key directions
    /// (`‖trig‖² / ‖L − mean_inputs(L)‖²`).
    pub key_direction_fve: Option<f64>,
    /// Logit trig fit: α_k per key frequency.
    pub trig_fit_alpha: BTreeMap<usize, f64>,
    /// Logit trig fit: fraction of the class-centred logits' squared norm explained.
    pub trig_fit_fve: Option<f64>,
    /// Sum of squared weights over every tensor.
    pub sum_sq_weights: f64,
    /// Sum of squared weights per tensor (TransformerLens names).
    pub sum_sq: BTreeMap<String, f64>,
    /// `[n_heads][n_ctx]` mean attention from the last position to each position.
    pub mean_attention: Vec<Vec<f64>>,
    /// Clock/pizza gradient symmetricity (Zhong et al. 2023 §4.2, ≈ 1 for a pizza;
    /// [`super::clock_pizza::gradient_symmetricity`]); addition only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient_symmetricity: Option<f64>,
    /// Clock/pizza distance irrelevance of the correct logits (Zhong et al. 2023 §4.2, ≈ 1 for a
    /// clock; [`super::clock_pizza::distance_irrelevance`]); addition only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_irrelevance: Option<f64>,
    /// The same statistic of the largest *incorrect* logit: what the authors' `train-main.py`
    /// logs as distance irrelevance and what their phase-plot table (`result/1l_*.csv`) holds
    /// (it equals that table on their released model 2k4ohj6bhd, 0.81956, where the correct-logit
    /// figure is 0.72012); addition only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_irrelevance_incorrect: Option<f64>,
}

/// What the measures of a run share: the model shape, the task's labels on the p × p input grid
/// and the split, the Fourier basis.
pub struct Analyzer {
    /// Model shape.
    pub cfg: TransformerConfig,
    /// Modulus.
    pub p: usize,
    /// `a + b` or `a − b` for the trig measures; `None` for other operations.
    pub combine: Option<Combine>,
    /// `[p²]` label of each grid row `a·p + b` (`usize::MAX` where the task has no example).
    pub(crate) labels: Vec<usize>,
    /// Grid rows of every example.
    pub(crate) all: Vec<usize>,
    /// Grid rows of the training split.
    pub(crate) train: Vec<usize>,
    /// Grid rows of the test split.
    pub(crate) test: Vec<usize>,
    /// The `[p, p]` Fourier basis.
    pub(crate) basis: Matrix,
    /// Zhong et al.'s 100 (a, b, c) triples for gradient symmetricity (addition only; drawn once:
    /// the shuffle of all p³ triples costs more than the measure).
    symmetricity_triples: Vec<[usize; 3]>,
}

impl Analyzer {
    /// Places the task's labels on the p × p input grid and maps `split` (rows of `data`, or
    /// `None`: every example counts as training and the test split is empty) to grid rows `a·p + b`.
    ///
    /// # Errors
    /// A model whose vocabulary cannot hold `[a, b, =]` for the task's p (named `task.p`).
    pub fn new(
        cfg: &TransformerConfig,
        data: &ModularDataset,
        split: Option<&Split>,
    ) -> Result<Self> {
        let p = data.p as usize;
        // [a, b, =] needs p + 1 tokens; [a, b] (no `=`) p
        let tokens = if data.n_ctx == 2 { p } else { p + 1 };
        if cfg.d_vocab < tokens || cfg.d_vocab_out < p || cfg.n_ctx != data.n_ctx {
            return Err(GrokError::invalid(
                "task.p",
                p,
                format!(
                    "a modulus the model fits: d_vocab {} >= {tokens}, d_vocab_out {} >= p, n_ctx {} = {}",
                    cfg.d_vocab, cfg.d_vocab_out, cfg.n_ctx, data.n_ctx
                ),
            ));
        }
        let grid = |r: usize| {
            let (a, b) = data.pairs[r];
            a as usize * p + b as usize
        };
        let mut labels = vec![usize::MAX; p * p];
        for (r, &c) in data.labels.iter().enumerate() {
            labels[grid(r)] = c as usize;
        }
        let all: Vec<usize> = (0..data.len()).map(grid).collect();
        let (train, test) = match split {
            Some(s) => (
                s.train.iter().map(|&r| grid(r)).collect(),
                s.test.iter().map(|&r| grid(r)).collect(),
            ),
            None => (all.clone(), Vec::new()),
        };
        let combine = match data.op {
            Operation::Add => Some(Combine::Sum),
            Operation::Sub => Some(Combine::Difference),
            _ => None,
        };
        Ok(Self {
            cfg: cfg.clone(),
            p,
            combine,
            labels,
            all,
            train,
            test,
            basis: fourier_basis(p),
            symmetricity_triples: match combine {
                Some(Combine::Sum) => {
                    symmetricity_triples(p, SYMMETRICITY_SAMPLES, SYMMETRICITY_SEED)
                }
                _ => Vec::new(),
            },
        })
    }

    /// Key frequencies of `store` by `rule` (1..=p/2, ascending).
    pub fn key_freqs(&self, store: &ParamStore, rule: &KeyFreqRule) -> Vec<usize> {
        self.choose_key_freqs(store, rule).0
    }

    /// Key frequencies of `store` by `rule`, with what every rule finds (the embedding rule at
    /// `rule`'s threshold, else [`DEFAULT_EMBED_THRESHOLD`]).
    pub fn choose_key_freqs(
        &self,
        store: &ParamStore,
        rule: &KeyFreqRule,
    ) -> (Vec<usize>, KeyFreqVotes) {
        let threshold = match rule {
            KeyFreqRule::Consensus(t) | KeyFreqRule::EmbedNorm(t) => *t,
            _ => DEFAULT_EMBED_THRESHOLD,
        };
        let acts = run_all_inputs(&self.cfg, store, self.p);
        let neurons = acts.mlp_post.map(|post| neuron_freqs(self.p, &post));
        let embed = freq_norms(&self.embed_norms(store));
        let votes = KeyFreqVotes::new(neurons.as_ref(), &embed, threshold);
        let keys = match rule {
            KeyFreqRule::Fixed(k) => k.clone(),
            KeyFreqRule::EmbedNorm(_) => votes.embed_norm.clone(),
            KeyFreqRule::NeuronArgmax => votes.neuron_argmax.clone(),
            KeyFreqRule::Consensus(_) => votes.consensus(),
        };
        (keys, votes)
    }

    /// Neuron pictures of `store` ([`NeuronViews`], up to `count` neurons); `None` without MLP.
    pub fn neuron_views(&self, store: &ParamStore, count: usize) -> Option<NeuronViews> {
        let acts = run_all_inputs(&self.cfg, store, self.p);
        acts.mlp_post
            .map(|post| neuron_views(&self.basis, &post, count))
    }

    fn embed_norms(&self, store: &ParamStore) -> Vec<f64> {
        embed_component_norms(store, &self.cfg, &self.basis)
    }

    /// Every measure of `store` (the checkpoint of `step`) with the given key frequencies.
    pub fn measure(&self, store: &ParamStore, step: u64, key_freqs: &[usize]) -> Measures {
        let acts = run_all_inputs(&self.cfg, store, self.p);
        let score = |l: &Matrix, rows: &[usize]| Scores::new(l, &self.labels, rows);
        let full = score(&acts.logits, &self.all);
        let (loss_all, _) = full.mean(&self.all);
        let (loss_train, acc_train) = full.mean(&self.train);
        let (loss_test, acc_test) = full.mean(&self.test);

        let embed = self.embed_norms(store);
        let w_l = neuron_logit_map(store, &self.cfg, self.p)
            .map(|w_l| w_l_component_norms(&w_l, &self.basis));
        let neurons = acts
            .mlp_post
            .as_ref()
            .map(|post| neuron_freqs(self.p, post));
        let clusters = neurons.as_ref().map(|n| n.clusters());
        let sum_sq: BTreeMap<String, f64> = store.sum_squares().into_iter().collect();
        let key_cluster_fraction = clusters.as_ref().map(|c| {
            let inside: usize = key_freqs.iter().filter_map(|k| c.sizes.get(k)).sum();
            inside as f64 / self.cfg.d_mlp as f64
        });

        let mut m = Measures {
            step,
            loss_all,
            loss_train,
            loss_test,
            acc_train,
            acc_test,
            key_freqs: key_freqs.to_vec(),
            restricted_loss_all: None,
            restricted_loss_train: None,
            restricted_loss_test: None,
            restricted_acc_all: None,
            excluded_loss_train: None,
            excluded_acc_train: None,
            excluded_loss_train_per_freq: BTreeMap::new(),
            embed_freq_norms: freq_norms(&embed),
            w_l_freq_norms: w_l.as_ref().map(|c| freq_norms(c)),
            gini_w_e: gini(&embed),
            gini_w_l: w_l.as_ref().map(|c| gini(c)),
            clusters,
            neuron_freq: neurons.map(|n| n.freq),
            key_cluster_fraction,
            key_direction_fve: None,
            trig_fit_alpha: BTreeMap::new(),
            trig_fit_fve: None,
            sum_sq_weights: sum_sq.values().sum(),
            sum_sq,
            mean_attention: acts.mean_attention,
            gradient_symmetricity: None,
            distance_irrelevance: None,
            distance_irrelevance_incorrect: None,
        };
        if self.combine == Some(Combine::Sum) {
            let correct: Vec<f64> = (0..self.p * self.p)
                .map(|r| acts.logits.at(r, self.labels[r]))
                .collect();
            m.distance_irrelevance = distance_irrelevance(&correct, self.p);
            let incorrect: Vec<f64> = (0..self.p * self.p)
                .map(|r| {
                    let row = acts.logits.row(r);
                    (row.iter().enumerate())
                        .filter(|&(c, _)| c != self.labels[r])
                        .map(|(_, &l)| l)
                        .fold(f64::NEG_INFINITY, f64::max)
                })
                .collect();
            m.distance_irrelevance_incorrect = distance_irrelevance(&incorrect, self.p);
            let equals = (self.cfg.n_ctx == 3).then_some(self.p);
            m.gradient_symmetricity = Some(gradient_symmetricity(
                &self.cfg,
                store,
                &self.symmetricity_triples,
                equals,
            ));
        }
        if let (Some(combine), false) = (self.combine, key_freqs.is_empty()) {
            let trig = trig_part(&acts.logits, key_freqs, combine);
            m.key_direction_fve = Some(key_direction_fve(&acts.logits, &trig));
            let restricted = score(&restricted_logits(&acts.logits, &trig), &self.all);
            let (rl_all, ra_all) = restricted.mean(&self.all);
            m.restricted_loss_all = Some(rl_all);
            m.restricted_acc_all = Some(ra_all);
            m.restricted_loss_train = Some(restricted.mean(&self.train).0);
            m.restricted_loss_test = Some(restricted.mean(&self.test).0);
            let excluded = score(&excluded_logits(&acts.logits, &trig), &self.train);
            let (el_train, ea_train) = excluded.mean(&self.train);
            m.excluded_loss_train = Some(el_train);
            m.excluded_acc_train = Some(ea_train);
            for &k in key_freqs {
                let one = trig_part(&acts.logits, &[k], combine);
                let one = score(&excluded_logits(&acts.logits, &one), &self.train);
                m.excluded_loss_train_per_freq
                    .insert(k, one.mean(&self.train).0);
            }
            let (alphas, fve) = trig_fit(&acts.logits, key_freqs, combine);
            m.trig_fit_alpha = key_freqs.iter().copied().zip(alphas).collect();
            m.trig_fit_fve = Some(fve);
        }
        m
    }
}
