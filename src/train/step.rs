//! One training step (forward + backward) and one evaluation, data-parallel over CPU threads.

use super::loss::{accuracy, classification_loss};
use crate::config::LossFn;
use crate::config::{Engine, Precision, TrainSection};
use crate::error::Result;
use crate::models::{fused, fused_seq, Model, Net, ParamStore, TransformerConfig};
use crate::tasks::Batch;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rayon::prelude::*;

/// Below this many rows per thread a step runs as one graph.
const MIN_CHUNK_ROWS: usize = 512;

/// What a step needs besides its batch: the model, its weights, where and at which precision.
#[derive(Clone, Copy)]
pub struct Step<'a> {
    /// The model.
    pub model: &'a dyn Model,
    /// Weights.
    pub params: &'a ParamStore,
    /// Device (with autodiff enabled for [`Step::train`]).
    pub device: &'a Device,
    /// Precision of the forward and backward pass.
    pub compute: Precision,
    /// Precision of log-softmax and the loss.
    pub loss_dtype: Precision,
    /// Class probabilities of the loss (the fused steps compute softmax only).
    pub loss_fn: LossFn,
    /// Which implementation runs [`Step::train_host`] / [`Step::evaluate_host`].
    pub engine: Engine,
    /// Row chunks run in parallel at most (1 when several runs share the cores, as in
    /// batched seeds).
    pub threads: usize,
}

/// Loss, accuracy and gradients of one forward + backward pass.
pub struct StepResult {
    /// Mean cross-entropy (nats).
    pub loss: f64,
    /// Accuracy in [0, 1].
    pub acc: f64,
    /// Flat gradient per store entry (`None` for frozen tensors).
    pub grads: Vec<Option<Vec<f64>>>,
}

impl StepResult {
    /// The result over the union of chunks, each `(n_i, result_i)` with `n_i` its scored
    /// examples: `L = Σ_i (n_i/n)·L_i`, likewise for accuracy and gradients (the mean over all
    /// examples decomposes so). Gradients are laid out as `params`.
    pub fn combine(params: &ParamStore, results: Vec<(usize, StepResult)>) -> Self {
        let total: usize = results.iter().map(|(n, _)| n).sum();
        let mut sum = StepResult {
            loss: 0.0,
            acc: 0.0,
            grads: (params.entries.iter())
                .map(|e| e.trainable.then(|| vec![0.0; e.data.len()]))
                .collect(),
        };
        for (n, r) in results {
            let w = n as f64 / total as f64;
            sum.loss += w * r.loss;
            sum.acc += w * r.acc;
            for (s, g) in sum.grads.iter_mut().zip(r.grads) {
                if let (Some(s), Some(g)) = (s.as_mut(), g) {
                    s.iter_mut().zip(g).for_each(|(s, g)| *s += w * g);
                }
            }
        }
        sum
    }
}

impl<'a> Step<'a> {
    /// The step of a run: its precisions come from `[train]`.
    pub fn for_run(
        model: &'a dyn Model,
        params: &'a ParamStore,
        device: &'a Device,
        train: &TrainSection,
    ) -> Self {
        Self {
            model,
            params,
            device,
            compute: train.compute_dtype,
            loss_dtype: train.loss_dtype,
            loss_fn: train.loss_fn,
            engine: train.engine,
            threads: train.threads,
        }
    }

    /// Loss, accuracy and (with `backward`) gradients of `batch` on the engine the model picks
    /// ([`Model::step`]).
    ///
    /// # Errors
    /// A batch the model cannot read.
    pub fn step(&self, batch: &Batch, backward: bool) -> Result<StepResult> {
        self.model.step(self, batch, backward)
    }

    /// The loss's precision and probability map.
    pub fn loss(&self) -> (Precision, LossFn) {
        (self.loss_dtype, self.loss_fn)
    }

    /// Whether the fused step ([`crate::models::fused`]) runs this step: engine `auto`, an
    /// architecture it covers, and a softmax loss (its log-softmax in f64 or f32).
    pub fn uses_fused(&self) -> bool {
        self.fused_cfg().is_some()
    }

    /// The transformer's config where the fused step runs.
    fn fused_cfg(&self) -> Option<&'a TransformerConfig> {
        let cfg = self.model.transformer()?;
        (self.engine == Engine::Auto && fused::applies(cfg) && self.loss_fn == LossFn::Softmax)
            .then_some(cfg)
    }

    fn chunks_for(&self, rows: usize) -> usize {
        self.threads.min(rows / MIN_CHUNK_ROWS).max(1)
    }

    fn fused(&self, tokens: &[i64], labels: &[i64], backward: bool) -> Option<fused::FusedResult> {
        let cfg = self.fused_cfg()?;
        let chunks = self.chunks_for(labels.len());
        let f32_loss = self.loss_dtype == Precision::F32;
        let (p, c, b) = (self.params, chunks, backward);
        match self.compute {
            Precision::F32 => fused::run::<f32>(cfg, p, tokens, labels, c, b, f32_loss),
            Precision::F64 => fused::run::<f64>(cfg, p, tokens, labels, c, b, f32_loss),
        }
    }

    fn upload(&self, tokens: &[i64], labels: &[i64]) -> (Tensor<2, Int>, Tensor<1, Int>) {
        let n = labels.len();
        let t = tokens.len() / n.max(1); // [a, b, =] or [a, b]
        (
            Tensor::from_data(TensorData::new(tokens.to_vec(), [n, t]), self.device),
            Tensor::from_data(TensorData::new(labels.to_vec(), [n]), self.device),
        )
    }

    /// The fused sequence pass ([`fused_seq`]) on `[a, b, =]` rows, scoring the last position,
    /// where [`Step::uses_fused_seq`] (any other transformer: several layers, LayerNorm, GELU).
    fn fused_rows(&self, tokens: &[i64], labels: &[i64], backward: bool) -> Option<StepResult> {
        let cfg = self.model.transformer().filter(|_| self.uses_fused_seq())?;
        let t = tokens.len() / labels.len().max(1);
        let input = fused_seq::SeqInput {
            tokens,
            t,
            positions: &[t - 1],
            targets: labels,
            ignore: -1,
            f32_loss: self.loss_dtype == Precision::F32,
        };
        let chunks = self.threads.min(labels.len().div_ceil(64)).max(1);
        let r = match self.compute {
            Precision::F32 => fused_seq::run::<f32>(cfg, self.params, &input, chunks, backward),
            Precision::F64 => fused_seq::run::<f64>(cfg, self.params, &input, chunks, backward),
        };
        Some(StepResult {
            loss: r.loss,
            acc: r.acc,
            grads: r.grads.unwrap_or_default(),
        })
    }

    /// Forward and backward on host data (`tokens` `[B, 3]` row-major, `labels` `[B]`): the
    /// fused step where [`Step::uses_fused`], else the fused sequence pass where
    /// [`Step::uses_fused_seq`], else [`Step::train`] on the step's device.
    pub fn train_host(&self, tokens: &[i64], labels: &[i64]) -> StepResult {
        if let Some(r) = self.fused(tokens, labels, true) {
            return StepResult {
                loss: r.loss,
                acc: r.acc,
                grads: r.grads.expect("backward was requested"),
            };
        }
        if let Some(r) = self.fused_rows(tokens, labels, true) {
            return r;
        }
        self.train(self.upload(tokens, labels))
    }

    /// Loss and accuracy on host data without gradients (NaN for an empty set); fused as in
    /// [`Step::train_host`].
    pub fn evaluate_host(&self, tokens: &[i64], labels: &[i64]) -> (f64, f64) {
        if labels.is_empty() {
            return (f64::NAN, f64::NAN);
        }
        if let Some(r) = self.fused(tokens, labels, false) {
            return (r.loss, r.acc);
        }
        if let Some(r) = self.fused_rows(tokens, labels, false) {
            return (r.loss, r.acc);
        }
        self.evaluate(&self.upload(tokens, labels))
    }

    /// Forward and backward on `batch` (`tokens` `[B, 3]`, `labels` `[B]`, on the step's device).
    ///
    /// Data-parallel over the CPU threads: the rows are cut into one contiguous chunk per thread,
    /// each chunk runs its own forward/backward graph, and the results are combined exactly as
    /// the mean loss over all rows decomposes, `L = Σ_i (n_i/n)·L_i` (likewise for gradients and
    /// accuracy). gemm's own threading barely scales on these shapes; independent chunks do.
    pub fn train(&self, batch: (Tensor<2, Int>, Tensor<1, Int>)) -> StepResult {
        let rows = batch.1.dims()[0];
        self.train_chunked(batch, self.chunks_for(rows))
    }

    /// [`Step::train`] with an explicit number of chunks (each its own graph, on the rayon pool).
    pub fn train_chunked(
        &self,
        batch: (Tensor<2, Int>, Tensor<1, Int>),
        chunks: usize,
    ) -> StepResult {
        let [rows, t] = batch.0.dims();
        if chunks <= 1 {
            return self.train_one_graph(batch);
        }
        let results: Vec<(usize, StepResult)> = (0..chunks)
            .into_par_iter()
            .map(|i| {
                let (lo, hi) = (i * rows / chunks, (i + 1) * rows / chunks);
                let part = (
                    batch.0.clone().slice([lo..hi, 0..t]),
                    batch.1.clone().slice(lo..hi),
                );
                (hi - lo, self.train_one_graph(part))
            })
            .collect();
        StepResult::combine(self.params, results)
    }

    fn model(&self, track_grads: bool) -> Box<dyn Net> {
        bind(
            self.model,
            self.params,
            self.device,
            self.compute,
            track_grads,
        )
    }

    fn train_one_graph(&self, batch: (Tensor<2, Int>, Tensor<1, Int>)) -> StepResult {
        let model = self.model(true);
        let logits = model.logits_last(batch.0);
        let acc = accuracy(logits.clone(), batch.1.clone());
        let loss = classification_loss(logits, batch.1, self.loss_dtype, self.loss_fn);
        let grads = model.gradients(&loss.backward());
        let loss = loss.into_scalar::<f64>();
        StepResult { loss, acc, grads }
    }

    /// Logits `[B, classes]` (f32, row-major) of host rows (`tokens` `[B, 3]`) on the burn
    /// graph, for the numerics the loop logs ([`super::numerics::logit_stats`]).
    pub fn logits_host(&self, tokens: &[i64], labels: &[i64]) -> Vec<f32> {
        let (x, _) = self.upload(tokens, labels);
        let logits = self.model(false).logits_last(x);
        logits.into_data().try_into_vec_as::<f32>().expect("float")
    }

    /// Loss and accuracy of `data` without gradients (NaN for an empty set).
    pub fn evaluate(&self, data: &(Tensor<2, Int>, Tensor<1, Int>)) -> (f64, f64) {
        if data.1.dims()[0] == 0 {
            return (f64::NAN, f64::NAN);
        }
        let model = self.model(false);
        let logits = model.logits_last(data.0.clone());
        let acc = accuracy(logits.clone(), data.1.clone());
        let loss = classification_loss(logits, data.1.clone(), self.loss_dtype, self.loss_fn)
            .into_scalar::<f64>();
        (loss, acc)
    }
}

/// `model` bound for one pass on burn's graph.
///
/// # Panics
/// A model without a burn graph (the LSA): the config's validation sends its runs to its own
/// step, never here.
pub(crate) fn bind(
    model: &dyn Model,
    params: &ParamStore,
    device: &Device,
    compute: Precision,
    track: bool,
) -> Box<dyn Net> {
    (model.bind(params, device, compute.dtype(), track))
        .unwrap_or_else(|e| panic!("validated: a graph model runs here ({e})"))
}
