//! Embeds every `presets/*.toml` as `PRESETS` (`quick`, the default, and `nanda2023`, the paper's
//! run, first; then by name), so a new preset is one new file.

use std::fmt::Write;

fn main() {
    let dir = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("presets");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("presets/ exists")
        .filter_map(|e| {
            let path = e.ok()?.path();
            println!("cargo:rerun-if-changed={}", path.display());
            let name = path.file_name()?.to_str()?.strip_suffix(".toml")?;
            Some(name.to_string())
        })
        .collect();
    const FIRST: [&str; 2] = ["quick", "nanda2023"];
    names.sort_by_key(|n| {
        (
            FIRST.iter().position(|f| f == n).unwrap_or(FIRST.len()),
            n.clone(),
        )
    });
    let mut out = format!(
        "/// Every embedded preset, `(name, TOML)`: `quick` (the default), `nanda2023`, then by name.\n\
         pub const PRESETS: [(&str, &str); {}] = [\n",
        names.len()
    );
    for n in &names {
        let path = dir.join(format!("{n}.toml"));
        writeln!(
            out,
            "    ({n:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("presets.rs");
    std::fs::write(dest, out).unwrap();
}
