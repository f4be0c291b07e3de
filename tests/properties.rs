//! Property tests of the four readers of outside input (issue 24): the config parser, the
//! `--set` parser, the manifest reader and the checkpoint loader. On any input each either
//! accepts or returns an error that renders on one line; none panics. Each runs
//! [`CASES`] seeded cases (mutations of valid inputs, which reach deep into each reader, and
//! arbitrary text or bytes), and the corpus of `tests/data/bad_inputs/` (the cases the issue
//! reported) is checked case by case.

use groklab::models::{read_safetensors, read_safetensors_metadata, ParamStore, TransformerConfig};
use groklab::sweep::spec::parse_manifest;
use groklab::train::RunConfig;
use groklab::GrokError;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use std::path::Path;

/// Cases per reader.
const CASES: u32 = 100_000;

/// Values that break parsers: non-finite, out of range, wrong type, huge, empty, odd text.
const WEIRD: [&str; 24] = [
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "1e400",
    "-0.0",
    "18446744073709551615",
    "9223372036854775808",
    "-9223372036854775809",
    "\"\"",
    "\"x\"",
    "[]",
    "[1, [2]]",
    "{}",
    "{ a = 1 }",
    "true",
    "1979-05-27T07:32:00Z",
    "\"\u{0}\"",
    "0x10",
    "1_000",
    "'''",
    "\"../../etc\"",
    "99999999999",
];

fn runner(seed: u64) -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    })
}

fn one_line(e: &GrokError) -> std::result::Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(!text.contains('\n'), "a multi-line error: {text}");
    prop_assert!(text.len() < 2000, "an error of {} bytes", text.len());
    Ok(())
}

/// A config text: the `quick` preset's resolved TOML with up to 4 lines replaced (a value by a
/// weird one, or the line by arbitrary text), or arbitrary text.
fn config_text() -> impl Strategy<Value = String> {
    let base = RunConfig::build("quick", None, &[]).unwrap().to_toml();
    let lines: Vec<String> = base.lines().map(String::from).collect();
    let n = lines.len();
    let edit = (
        0..n,
        prop::sample::select(WEIRD.to_vec()),
        ".{0,40}",
        any::<bool>(),
    );
    let mutated = prop::collection::vec(edit, 1..5).prop_map(move |edits| {
        let mut l = lines.clone();
        for (i, weird, junk, whole) in edits {
            l[i] = match (whole, l[i].split_once(" = ")) {
                (false, Some((k, _))) => format!("{k} = {weird}"),
                _ => junk,
            };
        }
        l.join("\n")
    });
    prop_oneof![4 => mutated, 1 => ".{0,200}"]
}

#[test]
fn the_config_parser_never_panics() {
    runner(1)
        .run(&config_text(), |text| {
            if let Err(e) = RunConfig::build_from_toml(&text, &[]) {
                one_line(&e)?;
            }
            Ok(())
        })
        .unwrap();
}

/// `--set` items: a real key (or a near one) with a weird or arbitrary value, or anything.
fn set_items() -> impl Strategy<Value = Vec<String>> {
    let keys = [
        "train.lr",
        "train.steps",
        "train.threads",
        "train.batch_size",
        "task.p",
        "task.name",
        "task.frac_train",
        "model.d_model",
        "model.n_layers",
        "model.init_std.W_Q",
        "model.residual",
        "train.lr_jumps",
        "train.loss_scale",
        "model.d_vocab_out",
        "train",
        "train.",
        ".lr",
        "task.p.x",
        "nope.key",
    ];
    let value = prop_oneof![
        prop::sample::select(WEIRD.to_vec()).prop_map(String::from),
        ".{0,20}"
    ];
    let item = prop_oneof![
        4 => (prop::sample::select(keys.to_vec()), value).prop_map(|(k, v)| format!("{k}={v}")),
        1 => ".{0,40}",
    ];
    prop::collection::vec(item, 1..4)
}

#[test]
fn the_set_parser_never_panics() {
    runner(2)
        .run(&set_items(), |sets| {
            if let Err(e) = RunConfig::build("quick", None, &sets) {
                one_line(&e)?;
            }
            Ok(())
        })
        .unwrap();
}

/// A manifest: valid lines with a field replaced, a line cut short, or arbitrary text.
fn manifest_text() -> impl Strategy<Value = String> {
    let config = RunConfig::build("quick", None, &[]).unwrap().to_toml();
    let valid = serde_json::json!({
        "id": groklab::sweep::spec::run_id(&config),
        "preset": "quick",
        "swept": {"train.lr": 0.001},
        "config": config,
    });
    let fields = ["id", "preset", "swept", "config"];
    let junk = prop_oneof![
        prop::sample::select(WEIRD.to_vec()).prop_map(String::from),
        ".{0,30}",
    ];
    let edit = (
        prop::sample::select(fields.to_vec()),
        junk,
        0usize..4,
        0usize..2000,
    );
    let mutated = prop::collection::vec(edit, 0..3).prop_map(move |edits| {
        let mut line = valid.clone();
        let mut cut = None;
        for (field, junk, how, at) in edits {
            match how {
                0 => line[field] = serde_json::Value::String(junk),
                1 => line[field] = serde_json::from_str(&junk).unwrap_or(serde_json::Value::Null),
                2 => cut = Some(at),
                _ => {
                    line.as_object_mut().unwrap().remove(field);
                }
            }
        }
        let mut text = line.to_string();
        if let Some(at) = cut {
            let at = (0..=at.min(text.len()))
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap();
            text.truncate(at);
        }
        format!("{text}\n{text}\n")
    });
    prop_oneof![4 => mutated, 1 => ".{0,300}"]
}

#[test]
fn the_manifest_reader_never_panics() {
    runner(3)
        .run(&manifest_text(), |text| {
            match parse_manifest(&text, "m.jsonl") {
                Err(e) => one_line(&e)?,
                // an accepted line's id names its config, so it cannot leave the sweep
                Ok(lines) => {
                    for l in lines {
                        prop_assert_eq!(&l.id, &groklab::sweep::spec::run_id(&l.config));
                        prop_assert!(l.id.chars().all(|c| c.is_ascii_hexdigit()));
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

/// What `analyze --checkpoint` and a resume do with a checkpoint's bytes: decode, read the
/// metadata, infer the shape, load the parameters.
fn load_checkpoint(bytes: &[u8]) -> groklab::Result<ParamStore> {
    let path = Path::new("step_000000.safetensors");
    read_safetensors_metadata(path, bytes)?;
    let tensors = read_safetensors(path, bytes)?;
    let cfg = TransformerConfig::infer(&tensors, groklab::models::Activation::Relu)?;
    ParamStore::from_tensors(path, &tensors, &cfg)
}

#[test]
fn the_checkpoint_loader_never_panics() {
    let mut cfg = TransformerConfig::nanda2023(7);
    (cfg.d_model, cfg.d_head, cfg.d_mlp, cfg.n_heads) = (8, 4, 16, 2);
    let store = ParamStore::init(&cfg, 0);
    let meta = [("format".to_string(), "TransformerLens".to_string())].into();
    let valid = store.to_safetensors(safetensors::Dtype::F32, &[], meta);
    let mut expected = store.clone();
    expected.round_to_f32();
    assert_eq!(load_checkpoint(&valid).unwrap(), expected);
    let n = valid.len();
    // header bytes are where the structure is: most edits land there
    let header = 8 + u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;
    let edit = (prop_oneof![3 => 0..header, 1 => 0..n], any::<u8>());
    let bytes = prop_oneof![
        4 => (prop::collection::vec(edit, 1..6), 0..=n).prop_map(move |(edits, keep)| {
            let mut b = valid.clone();
            for (i, v) in edits {
                b[i] = v;
            }
            if keep < n / 2 {
                b.truncate(keep); // a torn file
            }
            b
        }),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ];
    runner(4)
        .run(&bytes, |b| {
            if let Err(e) = load_checkpoint(&b) {
                one_line(&e)?;
            }
            Ok(())
        })
        .unwrap();
}

/// The corpus: every bad config, `--set` item and manifest the issue reported, each a one-line
/// error (a file per case; `sets.txt` one item per line).
#[test]
fn the_corpus_of_reported_inputs_is_rejected_on_one_line() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad_inputs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let errors: Vec<GrokError> = if name.ends_with(".toml") {
            vec![RunConfig::build("quick", Some(&text), &[]).unwrap_err()]
        } else if name.ends_with(".jsonl") {
            vec![parse_manifest(&text, &name).unwrap_err()]
        } else if name == "sets.txt" {
            (text.lines())
                .map(|l| RunConfig::build("quick", None, &[l.to_string()]).unwrap_err())
                .collect()
        } else {
            continue;
        };
        for e in errors {
            let line = e.to_string();
            assert!(!line.contains('\n') && line.len() < 2000, "{name}: {line}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} corpus cases");
}
