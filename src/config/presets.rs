//! The embedded presets: each a TOML file under `presets/` whose header comment says where it
//! comes from and, value by value, which settings are a paper's and which are groklab's. A preset
//! describes itself ([`describe_preset`]): nothing about it is kept anywhere else.

use super::{flatten_table, RunConfig};
use crate::error::{GrokError, Result};

/// Every embedded preset, `(name, TOML)`, the default (`quick`) first.
pub const PRESETS: [(&str, &str); 35] = [
    ("quick", include_str!("../../presets/quick.toml")),
    ("nanda2023", include_str!("../../presets/nanda2023.toml")),
    (
        "power2022_s5",
        include_str!("../../presets/power2022_s5.toml"),
    ),
    (
        "power2022_div",
        include_str!("../../presets/power2022_div.toml"),
    ),
    (
        "nanda_digit_add5_infinite",
        include_str!("../../presets/nanda_digit_add5_infinite.toml"),
    ),
    (
        "digit_add5_d128_infinite",
        include_str!("../../presets/digit_add5_d128_infinite.toml"),
    ),
    (
        "nanda_digit_add5_finite",
        include_str!("../../presets/nanda_digit_add5_finite.toml"),
    ),
    (
        "nanda_induction_infinite",
        include_str!("../../presets/nanda_induction_infinite.toml"),
    ),
    (
        "nanda_induction_finite",
        include_str!("../../presets/nanda_induction_finite.toml"),
    ),
    (
        "induction_standard",
        include_str!("../../presets/induction_standard.toml"),
    ),
    (
        "nanda_skip_trigram_infinite",
        include_str!("../../presets/nanda_skip_trigram_infinite.toml"),
    ),
    (
        "nanda_skip_trigram_finite",
        include_str!("../../presets/nanda_skip_trigram_finite.toml"),
    ),
    (
        "max_element_infinite",
        include_str!("../../presets/max_element_infinite.toml"),
    ),
    (
        "max_element_finite",
        include_str!("../../presets/max_element_finite.toml"),
    ),
    (
        "sparse_parity",
        include_str!("../../presets/sparse_parity.toml"),
    ),
    ("mlp_modadd", include_str!("../../presets/mlp_modadd.toml")),
    (
        "lr_jump_x10",
        include_str!("../../presets/lr_jump_x10.toml"),
    ),
    (
        "lr_jump_x50",
        include_str!("../../presets/lr_jump_x50.toml"),
    ),
    (
        "div_lr5_from_start",
        include_str!("../../presets/div_lr5_from_start.toml"),
    ),
    (
        "div_lr5_at_grok",
        include_str!("../../presets/div_lr5_at_grok.toml"),
    ),
    ("s5_lr_jump", include_str!("../../presets/s5_lr_jump.toml")),
    (
        "sgd_vs_adam",
        include_str!("../../presets/sgd_vs_adam.toml"),
    ),
    (
        "f32_slingshot",
        include_str!("../../presets/f32_slingshot.toml"),
    ),
    ("wd_0.1", include_str!("../../presets/wd_0.1.toml")),
    (
        "grokfast_ema",
        include_str!("../../presets/grokfast_ema.toml"),
    ),
    (
        "grokfast_ma",
        include_str!("../../presets/grokfast_ma.toml"),
    ),
    (
        "stablemax_no_wd",
        include_str!("../../presets/stablemax_no_wd.toml"),
    ),
    ("orthograd", include_str!("../../presets/orthograd.toml")),
    (
        "omnigrok_constrained",
        include_str!("../../presets/omnigrok_constrained.toml"),
    ),
    ("saliency", include_str!("../../presets/saliency.toml")),
    ("icl_1layer", include_str!("../../presets/icl_1layer.toml")),
    (
        "icl_2layer_recurrent",
        include_str!("../../presets/icl_2layer_recurrent.toml"),
    ),
    (
        "icl_softmax_1head",
        include_str!("../../presets/icl_softmax_1head.toml"),
    ),
    (
        "icl_softmax_2heads",
        include_str!("../../presets/icl_softmax_2heads.toml"),
    ),
    (
        "icl_dampened_rollout",
        include_str!("../../presets/icl_dampened_rollout.toml"),
    ),
];

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
