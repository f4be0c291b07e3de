//! The embedded presets: each a TOML file under `presets/` whose header comment says where it
//! comes from and, value by value, which settings are a paper's and which are groklab's. A preset
//! describes itself ([`describe_preset`]): nothing about it is kept anywhere else.

use super::{flatten_table, RunConfig};
use crate::error::{GrokError, Result};

// `PRESETS`: every `presets/*.toml`, written by `build.rs`.
include!(concat!(env!("OUT_DIR"), "/presets.rs"));

/// Names of the embedded presets, joined by `|`.
pub fn preset_names() -> String {
    PRESETS.map(|(n, _)| n).join("|")
}

/// The preset `name` and its TOML text.
///
/// # Errors
/// An unknown name ([`GrokError::InvalidValue`] naming `--preset` and the presets).
pub fn find_preset(name: &str) -> Result<(&'static str, &'static str)> {
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .copied()
        .ok_or_else(|| GrokError::invalid("--preset", name, preset_names()))
}

/// The preset `name` as a TOML table.
///
/// # Errors
/// As [`find_preset`].
pub(super) fn preset_table(name: &str) -> Result<toml::Table> {
    Ok(toml::from_str(find_preset(name)?.1).expect("embedded presets parse"))
}

/// The one-line description `groklab presets` prints for preset `name`, read from the preset
/// itself so that it cannot drift from it: where it comes from (its header comment up to the
/// first top-level `: ` or `. `), then the values that matter most, from the resolved config.
///
/// # Errors
/// An unknown preset name.
pub fn describe_preset(name: &str) -> Result<String> {
    let (_, text) = find_preset(name)?;
    let header: Vec<&str> = (text.lines())
        .map_while(|l| l.strip_prefix('#'))
        .map(str::trim)
        .collect();
    let source = lead(&header.join(" "));
    let cfg = RunConfig::build(name, None, &[])?;
    let table: toml::Table = toml::from_str(&cfg.to_toml()).expect("own TOML parses");
    let mut flat = Vec::new();
    flatten_table("", &toml::Value::Table(table), &mut flat);
    let get = |k: &str| {
        flat.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let facts: Vec<String> = SUMMARY_KEYS
        .iter()
        .filter_map(|(key, label)| {
            let v = get(key)?;
            match *key {
                "train.batch_size" if v == "0" => Some("full batch".to_string()),
                // the defaults, or keys that do not apply, are not worth a word
                "train.loss_fn" if v == "softmax" => None,
                "model.d_mlp" if get("model.attn_only").as_deref() == Some("true") => None,
                _ => Some(format!("{label}{v}")),
            }
        })
        .collect();
    Ok(format!("{source} [{}]", facts.join(", ")))
}

/// The keys [`describe_preset`] shows, in order, each with its label (any family's: a key the
/// preset's config lacks is left out).
const SUMMARY_KEYS: [(&str, &str); 16] = [
    ("task.name", ""),
    ("task.p", "p "),
    ("task.frac_train", "train fraction "),
    ("task.regime", ""),
    ("task.n_train", "n_train "),
    ("model.n_layers", "layers "),
    ("model.d_model", "d_model "),
    ("model.n_heads", "heads "),
    ("model.d_mlp", "d_mlp "),
    ("model.d_hidden", "hidden "),
    ("train.optimizer", ""),
    ("train.lr", "lr "),
    ("train.weight_decay", "wd "),
    ("train.batch_size", "batch "),
    ("train.steps", "steps "),
    ("train.loss_fn", "loss "),
];

/// `text` up to its first `: `, or `. ` before a capital, outside quotes, brackets and
/// backticks; at most 200 characters (cut with `…`).
fn lead(text: &str) -> String {
    let (mut depth, mut quoted, mut end) = (0i32, false, text.len());
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        match c {
            '"' | '`' => quoted = !quoted,
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ':' if !quoted && depth <= 0 && chars.get(k + 1).is_some_and(|n| n.1 == ' ') => {
                end = i;
                break;
            }
            // a full stop ends the lead only before a capital (not "et al. 2022", "e.g. x")
            '.' if !quoted
                && depth <= 0
                && chars.get(k + 1).is_some_and(|n| n.1 == ' ')
                && chars.get(k + 2).is_some_and(|n| n.1.is_uppercase())
                && !text[..i].ends_with("al") =>
            {
                end = i;
                break;
            }
            _ => {}
        }
    }
    crate::error::clip(&text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_describes_itself_from_its_file() {
        for (name, text) in PRESETS {
            let d = describe_preset(name).unwrap();
            let cfg = RunConfig::build(name, None, &[]).unwrap();
            // the figures shown are the resolved config's, so they cannot drift from the file
            assert!(
                d.contains(&format!("steps {}", cfg.train.steps)),
                "{name}: {d}"
            );
            assert!(d.contains(&format!("lr {}", cfg.train.lr)), "{name}: {d}");
            assert!(text.starts_with('#'), "{name} has no header comment");
            assert!(!d.starts_with(" ["), "{name}: no source in {d}");
        }
        let s5 = describe_preset("power2022_s5").unwrap();
        assert!(s5.starts_with("Power et al. 2022"), "{s5}");
        assert!(
            s5.contains("train fraction 0.4") && s5.contains("steps 60000"),
            "{s5}"
        );
    }

    #[test]
    fn lead_stops_at_the_first_top_level_colon_or_full_stop() {
        assert_eq!(
            lead("Power et al. 2022, \"Grokking: x\": S5 composition"),
            "Power et al. 2022, \"Grokking: x\""
        );
        assert_eq!(lead("A (see: b). Then"), "A (see: b)");
        assert_eq!(lead("no stop"), "no stop");
    }
}
