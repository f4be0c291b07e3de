//! Host-side parameter storage and its safetensors form.

use super::config::{Init, ParamSpec, TransformerConfig};
use crate::error::{GrokError, Result};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// One parameter tensor, flattened row-major in its TransformerLens layout.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamEntry {
    /// TransformerLens name (`embed.W_E`, `blocks.0.mlp.W_in`, ...).
    pub name: String,
    /// TransformerLens shape.
    pub shape: Vec<usize>,
    /// Values, row-major, f64 master copy (rounded to f32 after every update in f32 runs).
    pub data: Vec<f64>,
    /// Whether the optimiser updates it.
    pub trainable: bool,
}

/// Every parameter of a model, in [`TransformerConfig::param_specs`] order.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamStore {
    /// The tensors.
    pub entries: Vec<ParamEntry>,
}

impl ParamStore {
    /// Draws a fresh initialisation from `seed` (ChaCha8; specs in order, row-major).
    pub fn init(cfg: &TransformerConfig, seed: u64) -> Self {
        Self::init_specs(cfg.param_specs(), seed)
    }

    /// Draws a fresh initialisation of any model's `specs` from `seed` (ChaCha8; specs in
    /// order, row-major).
    pub fn init_specs(specs: Vec<ParamSpec>, seed: u64) -> Self {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let entries = specs
            .into_iter()
            .map(
                |ParamSpec {
                     name,
                     shape,
                     init,
                     trainable,
                 }| {
                    let n = shape.iter().product();
                    let data = match init {
                        Init::Zeros => vec![0.0; n],
                        Init::Ones => vec![1.0; n],
                        Init::Normal(std) => (0..n)
                            .map(|_| std * Distribution::<f64>::sample(&StandardNormal, &mut rng))
                            .collect(),
                        Init::TruncatedNormal(scale) => (0..n)
                            .map(|_| loop {
                                let z: f64 = Distribution::sample(&StandardNormal, &mut rng);
                                if z.abs() <= 2.0 {
                                    break scale * z;
                                }
                            })
                            .collect(),
                    };
                    ParamEntry {
                        name,
                        shape,
                        data,
                        trainable,
                    }
                },
            )
            .collect();
        Self { entries }
    }

    /// Every tensor at zero: the layout of `cfg`, for loading weights or shaping optimiser state.
    pub fn zeros(cfg: &TransformerConfig) -> Self {
        Self::zeros_specs(cfg.param_specs())
    }

    /// Every tensor of `specs` at zero.
    pub fn zeros_specs(specs: Vec<ParamSpec>) -> Self {
        let entries = specs
            .into_iter()
            .map(|spec| ParamEntry {
                data: vec![0.0; spec.shape.iter().product()],
                name: spec.name,
                shape: spec.shape,
                trainable: spec.trainable,
            })
            .collect();
        Self { entries }
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&ParamEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Mutable access to the entry called `name`.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut ParamEntry> {
        self.entries.iter_mut().find(|e| e.name == name)
    }

    /// Rounds every value to the nearest f32 (keeps f32 runs bit-exact across checkpoints).
    pub fn round_to_f32(&mut self) {
        for e in &mut self.entries {
            for x in &mut e.data {
                *x = *x as f32 as f64;
            }
        }
    }

    /// Sum of squared weights per tensor, `(name, Σ w²)` in store order.
    pub fn sum_squares(&self) -> Vec<(String, f64)> {
        self.entries
            .iter()
            .map(|e| (e.name.clone(), e.data.iter().map(|x| x * x).sum()))
            .collect()
    }

    /// The name of the first tensor holding a NaN or an infinity, if any.
    pub fn first_non_finite(&self) -> Option<&str> {
        (self.entries.iter())
            .find(|e| e.data.iter().any(|x| !x.is_finite()))
            .map(|e| e.name.as_str())
    }

    /// Serialises every tensor (frozen biases included) as safetensors in `dtype` (F32 or F64),
    /// followed by `buffers` as they are (TransformerLens' non-parameter state such as
    /// [`TransformerConfig::tl_buffers`]), with `metadata` in the header.
    pub fn to_safetensors(
        &self,
        dtype: Dtype,
        buffers: &[RawTensor],
        metadata: HashMap<String, String>,
    ) -> Vec<u8> {
        let named = self
            .entries
            .iter()
            .map(|e| (e.name.as_str(), &e.shape[..], &e.data[..]));
        encode_safetensors(named, dtype, buffers, metadata)
    }

    /// Loads a TransformerLens-layout safetensors file whose tensor names and shapes match the
    /// config (`W_U`/`b_U` may have one more output column than `cfg.d_vocab_out`; it is dropped).
    /// Missing frozen biases are taken as zeros.
    ///
    /// # Errors
    /// [`GrokError::Checkpoint`] for unreadable files, missing tensors and shape mismatches.
    pub fn from_safetensors(path: &Path, cfg: &TransformerConfig) -> Result<Self> {
        Self::from_safetensors_specs(path, cfg.param_specs())
    }

    /// As [`ParamStore::from_safetensors`] for any model's `specs`.
    ///
    /// # Errors
    /// [`GrokError::Checkpoint`] for unreadable files, missing tensors and shape mismatches.
    pub fn from_safetensors_specs(path: &Path, specs: Vec<ParamSpec>) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| GrokError::Checkpoint {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_tensors_specs(path, &read_safetensors(path, &bytes)?, specs)
    }

    /// As [`ParamStore::from_safetensors`] over tensors already read from `path` (named in errors).
    ///
    /// # Errors
    /// [`GrokError::Checkpoint`] for missing tensors and shape mismatches.
    pub fn from_tensors(
        path: &Path,
        tensors: &NamedTensors,
        cfg: &TransformerConfig,
    ) -> Result<Self> {
        Self::from_tensors_specs(path, tensors, cfg.param_specs())
    }

    /// As [`ParamStore::from_tensors`] for any model's `specs`.
    ///
    /// # Errors
    /// [`GrokError::Checkpoint`] for missing tensors and shape mismatches.
    pub fn from_tensors_specs(
        path: &Path,
        tensors: &NamedTensors,
        specs: Vec<ParamSpec>,
    ) -> Result<Self> {
        let bad = |reason: String| GrokError::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let mut store = Self::zeros_specs(specs);
        for entry in &mut store.entries {
            let Some((shape, data)) = tensors.get(&entry.name) else {
                if entry.trainable {
                    return Err(bad(format!("missing tensor `{}`", entry.name)));
                }
                continue;
            };
            entry.data = if *shape == entry.shape {
                data.clone()
            } else if entry.name.starts_with("unembed.")
                && shape.len() == entry.shape.len()
                && shape.last() == Some(&(entry.shape.last().unwrap() + 1))
            {
                drop_last_column(data, *shape.last().unwrap())
            } else {
                return Err(bad(format!(
                    "tensor `{}` has shape {:?}, expected {:?}",
                    entry.name, shape, entry.shape
                )));
            };
        }
        Ok(store)
    }
}

/// A store on a burn device: one rank-1 tensor per entry (store order) and the index of each
/// name. With `track_grads`, trainable entries are leaves that receive gradients (the device
/// must have autodiff enabled).
pub(crate) fn upload(
    store: &ParamStore,
    device: &burn::tensor::Device,
    dtype: burn::tensor::DType,
    track_grads: bool,
) -> (Vec<burn::tensor::Tensor<1>>, HashMap<String, usize>) {
    use burn::tensor::{Tensor, TensorData};
    let index = (store.entries.iter().enumerate())
        .map(|(i, e)| (e.name.clone(), i))
        .collect();
    let leaves = (store.entries.iter())
        .map(|e| {
            let data = TensorData::new(e.data.clone(), [e.data.len()]);
            let t = Tensor::<1>::from_data(data, (device, dtype));
            if track_grads && e.trainable {
                t.require_grad()
            } else {
                t
            }
        })
        .collect();
    (leaves, index)
}

/// The gradient of every leaf of [`upload`], flattened (f64), `None` for untracked ones.
pub(crate) fn leaf_gradients(
    leaves: &[burn::tensor::Tensor<1>],
    grads: &burn::tensor::Gradients,
) -> Vec<Option<Vec<f64>>> {
    (leaves.iter())
        .map(|leaf| {
            (leaf.grad(grads)).map(|g| {
                g.into_data()
                    .try_into_vec_as::<f64>()
                    .expect("float gradient")
            })
        })
        .collect()
}

fn drop_last_column(data: &[f64], cols: usize) -> Vec<f64> {
    data.chunks(cols)
        .flat_map(|row| &row[..cols - 1])
        .copied()
        .collect()
}

/// A tensor already in its stored form: any safetensors dtype, little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    /// State-dict key.
    pub name: String,
    /// Stored dtype (e.g. `BOOL` for TransformerLens' attention mask).
    pub dtype: Dtype,
    /// Shape (`[]` for a scalar).
    pub shape: Vec<usize>,
    /// Row-major little-endian bytes.
    pub bytes: Vec<u8>,
}

/// Whether `name` is one of TransformerLens' attention buffers (`blocks.{l}.attn.mask`,
/// `blocks.{l}.attn.IGNORE`): written for strict loading, never read as a parameter.
pub fn is_tl_buffer(name: &str) -> bool {
    name.ends_with(".attn.mask") || name.ends_with(".attn.IGNORE")
}

/// Encodes `(name, shape, values)` triples as a safetensors buffer of `dtype` (F32 or F64), and
/// `raw` tensors as they are.
pub fn encode_safetensors<'a>(
    tensors: impl Iterator<Item = (&'a str, &'a [usize], &'a [f64])>,
    dtype: Dtype,
    raw: &[RawTensor],
    metadata: HashMap<String, String>,
) -> Vec<u8> {
    let buffers: Vec<(&str, Vec<usize>, Vec<u8>)> = tensors
        .map(|(name, shape, data)| {
            let bytes = match dtype {
                Dtype::F64 => data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                _ => data
                    .iter()
                    .flat_map(|&x| (x as f32).to_le_bytes())
                    .collect(),
            };
            (name, shape.to_vec(), bytes)
        })
        .collect();
    let dtype = if dtype == Dtype::F64 {
        Dtype::F64
    } else {
        Dtype::F32
    };
    let views = (buffers
        .iter()
        .map(|(name, shape, bytes)| (*name, dtype, shape, bytes)))
    .chain(
        raw.iter()
            .map(|r| (r.name.as_str(), r.dtype, &r.shape, &r.bytes)),
    )
    .map(|(name, dtype, shape, bytes)| {
        let view = TensorView::new(dtype, shape.clone(), bytes).expect("consistent tensor view");
        (name, view)
    });
    let meta = (!metadata.is_empty()).then_some(metadata);
    let bytes =
        safetensors::serialize(views, meta).expect("safetensors serialisation of valid views");
    sorted_header(bytes)
}

/// `bytes` (a safetensors buffer) with its JSON header's keys, and those of `__metadata__`, in
/// sorted order: safetensors writes the metadata map in `HashMap` order, which differs from one
/// write to the next, so identical runs would write checkpoints that differ in bytes. The same
/// keys and values in another order take the same bytes, so the header keeps its length and the
/// tensors their offsets.
fn sorted_header(mut bytes: Vec<u8>) -> Vec<u8> {
    use serde_json::Value;
    use std::collections::BTreeMap;
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8-byte length")) as usize;
    let header: BTreeMap<String, Value> =
        serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors writes a JSON object");
    let sorted: BTreeMap<String, Value> = (header.into_iter())
        .map(|(k, v)| match v {
            Value::Object(m) => {
                let m: BTreeMap<String, Value> = m.into_iter().collect();
                (k, serde_json::to_value(m).expect("a JSON object"))
            }
            v => (k, v),
        })
        .collect();
    let mut text = serde_json::to_vec(&sorted).expect("JSON serialises");
    assert!(text.len() <= n, "a reordered header has the same length");
    text.resize(n, b' ');
    bytes[8..8 + n].copy_from_slice(&text);
    bytes
}

/// Tensors by name: `(shape, row-major values as f64)`.
pub type NamedTensors = HashMap<String, (Vec<usize>, Vec<f64>)>;

/// Decodes every numeric tensor of a safetensors buffer (F64, F32, F16, BF16, I64) into
/// `(shape, f64 values)`. TransformerLens' attention buffers ([`is_tl_buffer`]) and tensors of
/// other dtypes are skipped: no parameter has them.
///
/// # Errors
/// [`GrokError::Checkpoint`] when the buffer is not valid safetensors.
pub fn read_safetensors(path: &Path, bytes: &[u8]) -> Result<NamedTensors> {
    let bad = |reason: String| GrokError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if is_tl_buffer(&name) {
            continue;
        }
        let data = view.data();
        let values: Vec<f64> = match view.dtype() {
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            _ => continue,
        };
        out.insert(name, (view.shape().to_vec(), values));
    }
    Ok(out)
}

/// The first tensor (in name order, so the answer does not depend on the map's order) holding a
/// NaN or an infinity, if any.
pub fn first_non_finite_tensor(tensors: &NamedTensors) -> Option<&str> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    (names.into_iter())
        .find(|n| tensors[*n].1.iter().any(|x| !x.is_finite()))
        .map(String::as_str)
}

/// The header metadata (`__metadata__`) of a safetensors buffer.
///
/// # Errors
/// [`GrokError::Checkpoint`] when the header cannot be parsed.
pub fn read_safetensors_metadata(path: &Path, bytes: &[u8]) -> Result<HashMap<String, String>> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| GrokError::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("not a valid safetensors file ({e})"),
    })?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Identical tensors and metadata give identical bytes, whatever order the metadata map
    /// iterates in (each `HashMap` draws its own hash seed), and the file reads back.
    #[test]
    fn safetensors_bytes_do_not_depend_on_the_metadata_map_order() {
        let data = [1.0, -2.5, 3.25, 0.0, 7.0, 0.125];
        let write = || {
            let meta: HashMap<String, String> = (0..12)
                .map(|i| (format!("key{i}"), format!("{i}")))
                .collect();
            let tensors = [
                ("b.w", &[2usize, 3][..], &data[..]),
                ("a.w", &[6][..], &data[..]),
            ];
            encode_safetensors(tensors.into_iter(), Dtype::F32, &[], meta)
        };
        let first = write();
        for _ in 0..20 {
            assert_eq!(write(), first);
        }
        let path = Path::new("memory");
        let read = read_safetensors(path, &first).unwrap();
        assert_eq!(read["b.w"], (vec![2, 3], data.to_vec()));
        assert_eq!(
            read_safetensors_metadata(path, &first).unwrap()["key7"],
            "7"
        );
    }
}
