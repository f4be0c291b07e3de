//! Metrics logged during training: `metrics.jsonl` and `metrics.csv`, one row per log step,
//! both rewritten atomically after every row.

use crate::error::{GrokError, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// One log row: the model after `step` updates.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsRow {
    /// Updates taken.
    pub step: u64,
    /// Passes over the training set (`step · batch / n_train`).
    pub epoch: f64,
    /// Mean cross-entropy on the training set (nats).
    pub train_loss: f64,
    /// Training accuracy in [0, 1].
    pub train_acc: f64,
    /// Mean cross-entropy on the test set (nats).
    pub test_loss: f64,
    /// Test accuracy in [0, 1].
    pub test_acc: f64,
    /// Learning rate of the update taken at this step.
    pub lr: f64,
    /// Global L2 norm of the gradient at this step.
    pub grad_norm: f64,
    /// Σ w² over every parameter.
    pub sum_sq_weights: f64,
    /// Σ w² per parameter tensor, `(TransformerLens name, value)`.
    pub sum_sq: Vec<(String, f64)>,
    /// Further metrics, sorted by key. Every run's numerics
    /// ([`crate::train::LogitStats`]): `slingshots` (so far), `softmax_collapse` and
    /// `logit_scale` on the training set, `last_layer_norm`. A sequence task's own:
    /// - `test_loss_at.<t>`, `test_acc_at.<t>`: test loss and accuracy at scored position t, for
    ///   tasks that score several fixed positions (digit addition: one per answer digit);
    /// - `test_loss_class.<c>`, `test_acc_class.<c>`: per target class, for max of a sequence;
    /// - `induction_score.<l>.<h>`, `prev_token_score.<l>.<h>`: per head of block l
    ///   ([`crate::measures::attention`]), for the induction task.
    ///
    /// In-context regression's ([`crate::measures::icl`]): `gd_loss`, `gd_eta`,
    /// `preds_diff_gd`, `model_cos_gd`, `model_diff_gd`, and the same with `gdpp` for K ≥ 2.
    /// Every key a row holds besides the fixed fields is read back as one of these.
    pub task_metrics: Vec<(String, f64)>,
    /// Seconds of training so far (excluded from determinism checks).
    pub wall_s: f64,
}

const SCALARS: [&str; 9] = [
    "step",
    "epoch",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "lr",
    "grad_norm",
    "sum_sq_weights",
];

impl MetricsRow {
    /// The row of the model after `step` updates: `(loss, accuracy)` on each side, the learning
    /// rate of this step's update, the global norm of the gradient it will use, and Σ w² per
    /// tensor.
    pub fn new(
        step: u64,
        epoch: f64,
        (train_loss, train_acc): (f64, f64),
        (test_loss, test_acc): (f64, f64),
        (lr, grad_norm): (f64, f64),
        sum_sq: Vec<(String, f64)>,
        wall_s: f64,
    ) -> Self {
        Self {
            step,
            epoch,
            train_loss,
            train_acc,
            test_loss,
            test_acc,
            lr,
            grad_norm,
            sum_sq_weights: sum_sq.iter().map(|(_, v)| v).sum(),
            sum_sq,
            task_metrics: Vec::new(),
            wall_s,
        }
    }

    /// Sets [`MetricsRow::task_metrics`] (sorted here, as a reloaded row's are).
    pub fn set_task_metrics(&mut self, mut values: Vec<(String, f64)>) {
        values.sort_by(|a, b| a.0.cmp(&b.0));
        self.task_metrics = values;
    }

    /// The value of a metric by its `metrics.jsonl` key (`test_acc`, `sum_sq.embed.W_E`,
    /// `slingshots`, `test_loss_at.5`, ...); `None` when the row has no such key.
    pub fn get(&self, key: &str) -> Option<f64> {
        if let Some(i) = SCALARS.iter().position(|k| *k == key) {
            return Some(self.scalars()[i]);
        }
        let find = |list: &[(String, f64)], k: &str| list.iter().find(|(n, _)| n == k).map(|x| x.1);
        match key.strip_prefix("sum_sq.") {
            Some(name) => find(&self.sum_sq, name),
            None => find(&self.task_metrics, key),
        }
    }

    /// Every key [`MetricsRow::get`] answers for this row.
    pub fn keys(&self) -> Vec<String> {
        (SCALARS.iter().map(|k| k.to_string()))
            .chain(self.sum_sq.iter().map(|(n, _)| format!("sum_sq.{n}")))
            .chain(self.task_metrics.iter().map(|(n, _)| n.clone()))
            .collect()
    }

    fn scalars(&self) -> [f64; 9] {
        [
            self.step as f64,
            self.epoch,
            self.train_loss,
            self.train_acc,
            self.test_loss,
            self.test_acc,
            self.lr,
            self.grad_norm,
            self.sum_sq_weights,
        ]
    }

    /// The row as `metrics.jsonl` writes it: `step`, the scalars, `sum_sq.<name>`, the task's
    /// metrics and `wall_s` (non-finite values as `null`).
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        for (k, v) in SCALARS.iter().zip(self.scalars()) {
            m.insert(k.to_string(), json_number(v));
        }
        m.insert("step".into(), Value::from(self.step));
        for (name, v) in &self.sum_sq {
            m.insert(format!("sum_sq.{name}"), json_number(*v));
        }
        for (key, v) in &self.task_metrics {
            m.insert(key.clone(), json_number(*v));
        }
        m.insert("wall_s".into(), json_number(self.wall_s));
        m
    }

    fn from_json(m: &Map<String, Value>) -> Option<Self> {
        let f = |k: &str| m.get(k).and_then(Value::as_f64);
        Some(Self {
            step: m.get("step")?.as_u64()?,
            epoch: f("epoch")?,
            train_loss: f("train_loss")?,
            // null where accuracy has no meaning (regression)
            train_acc: f("train_acc").unwrap_or(f64::NAN),
            // null when the test set is empty (frac_train = 1)
            test_loss: f("test_loss").unwrap_or(f64::NAN),
            test_acc: f("test_acc").unwrap_or(f64::NAN),
            lr: f("lr")?,
            grad_norm: f("grad_norm")?,
            sum_sq_weights: f("sum_sq_weights")?,
            sum_sq: m
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("sum_sq.")?.to_string(), v.as_f64()?)))
                .collect(),
            task_metrics: (m.iter())
                .filter(|(k, _)| {
                    !SCALARS.contains(&k.as_str()) && *k != "wall_s" && !k.starts_with("sum_sq.")
                })
                .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(f64::NAN)))
                .collect(),
            wall_s: f("wall_s")?,
        })
    }
}

fn json_number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// The rows of a run, mirrored to disk.
#[derive(Clone, Debug, Default)]
pub struct MetricsLog {
    /// Rows in step order.
    pub rows: Vec<MetricsRow>,
}

impl MetricsLog {
    /// Reads `metrics.jsonl` from `run_dir` (an absent file is an empty log).
    ///
    /// # Errors
    /// [`GrokError::Io`] when it cannot be read, [`GrokError::Config`] for a malformed line.
    pub fn load(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join("metrics.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(GrokError::io(&path, e)),
        };
        let rows = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str::<Map<String, Value>>(line)
                    .ok()
                    .and_then(|m| MetricsRow::from_json(&m))
                    .ok_or_else(|| {
                        GrokError::data_file(
                            format!("{} line {}", path.display(), i + 1),
                            "not a metrics row",
                        )
                    })
            })
            .collect::<Result<_>>()?;
        Ok(Self { rows })
    }

    /// Appends a row and rewrites both files atomically.
    ///
    /// # Errors
    /// [`GrokError::Io`].
    pub fn push(&mut self, row: MetricsRow, run_dir: &Path) -> Result<()> {
        self.rows.push(row);
        self.write(run_dir)
    }

    /// Writes `metrics.jsonl` and `metrics.csv`.
    ///
    /// # Errors
    /// [`GrokError::Io`].
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let mut header = Vec::new();
        if let Some(first) = self.rows.first() {
            header.extend(SCALARS.iter().map(|s| s.to_string()));
            header.extend(first.sum_sq.iter().map(|(n, _)| format!("sum_sq.{n}")));
            header.extend(first.task_metrics.iter().map(|(k, _)| k.clone()));
            header.push("wall_s".into());
        }
        let json: Vec<Value> = (self.rows.iter())
            .map(|row| Value::Object(row.to_json()))
            .collect();
        let cells: Vec<Vec<String>> = (self.rows.iter())
            .map(|row| {
                let mut cells: Vec<String> = row.scalars().iter().map(|v| format!("{v}")).collect();
                cells[0] = row.step.to_string();
                cells.extend(row.sum_sq.iter().map(|(_, v)| format!("{v}")));
                cells.extend(row.task_metrics.iter().map(|(_, v)| format!("{v}")));
                cells.push(format!("{:.3}", row.wall_s));
                cells
            })
            .collect();
        super::write_row_files(run_dir, "metrics", &json, &header, &cells)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log read back (as `train --resume` does) is written again byte for byte. 239/2089 is
    /// the quick preset's test accuracy at step 50, which serde_json's default float parser
    /// reads one ulp off (0.1144088080421254).
    #[test]
    fn a_reloaded_log_is_rewritten_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let tricky = [
            239.0 / 2089.0,
            0.1 + 0.2,
            1.0 / 3.0,
            2.0f64.sqrt() * 1e-300,
            9.107e-8,
        ];
        let mut log = MetricsLog::default();
        for (i, &x) in tricky.iter().enumerate() {
            let mut row = MetricsRow::new(
                10 * i as u64,
                i as f64 / 7.0,
                (x, 1.0 - x),
                (x * 3.0, x / 3.0),
                (1e-3 * x, x.sqrt()),
                vec![("embed.W_E".into(), x * 1e3)],
                x * 11.0,
            );
            row.set_task_metrics(vec![("test_loss_at.11".into(), x / 7.0)]);
            log.rows.push(row);
        }
        log.write(dir.path()).unwrap();
        let first = std::fs::read(dir.path().join("metrics.jsonl")).unwrap();
        let first_csv = std::fs::read(dir.path().join("metrics.csv")).unwrap();
        let reloaded = MetricsLog::load(dir.path()).unwrap();
        assert_eq!(reloaded.rows, log.rows);
        assert_eq!(
            reloaded.rows[0].train_loss.to_bits(),
            (239.0f64 / 2089.0).to_bits()
        );
        reloaded.write(dir.path()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("metrics.jsonl")).unwrap(),
            first
        );
        assert_eq!(
            std::fs::read(dir.path().join("metrics.csv")).unwrap(),
            first_csv
        );
    }
}
