//! Activations by TransformerLens hook name ([`HookCache`]): what [`super::Model::hooks`] returns,
//! so a measure asks for `blocks.0.attn.hook_pattern` rather than for a model type.

use std::collections::BTreeMap;

/// Activations of one forward pass, each under its TransformerLens hook name with its shape
/// (row-major f64).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HookCache {
    entries: BTreeMap<String, (Vec<usize>, Vec<f64>)>,
}

impl HookCache {
    /// Stores `data` of `shape` under `name`.
    ///
    /// # Panics
    /// When `data` does not hold `shape`'s element count (a programming error).
    pub fn insert(&mut self, name: impl Into<String>, shape: Vec<usize>, data: Vec<f64>) {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "hook shape");
        self.entries.insert(name.into(), (shape, data));
    }

    /// The shape and values of hook `name`, where the pass produced it.
    pub fn get(&self, name: &str) -> Option<(&[usize], &[f64])> {
        (self.entries.get(name)).map(|(s, d)| (s.as_slice(), d.as_slice()))
    }

    /// The hook names held, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_are_found_by_name_with_their_shape() {
        let mut c = HookCache::default();
        c.insert(
            "blocks.0.attn.hook_pattern",
            vec![1, 1, 2, 2],
            vec![1.0, 0.0, 0.5, 0.5],
        );
        let (shape, data) = c.get("blocks.0.attn.hook_pattern").unwrap();
        assert_eq!((shape, data[2]), (&[1, 1, 2, 2][..], 0.5));
        assert!(c.get("blocks.1.attn.hook_pattern").is_none());
        assert_eq!(
            c.names().collect::<Vec<_>>(),
            ["blocks.0.attn.hook_pattern"]
        );
    }
}
