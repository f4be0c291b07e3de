//! The one writer of a run's row files — `metrics.{jsonl,csv}` during training,
//! `measures.{jsonl,csv}` from `analyze`: one JSON object per line, and the same rows as CSV
//! cells under a header, both written atomically (temp + rename).

use super::atomic_write;
use crate::error::Result;
use serde_json::Value;
use std::path::Path;

/// Writes `dir/<stem>.jsonl` (each of `rows` on its own line) and `dir/<stem>.csv` (`header`,
/// then each of `cells` joined by commas; nothing at all for no header).
///
/// # Errors
/// [`crate::GrokError::Io`] naming the file.
pub fn write_row_files(
    dir: &Path,
    stem: &str,
    rows: &[Value],
    header: &[String],
    cells: &[Vec<String>],
) -> Result<()> {
    let mut jsonl = String::new();
    for row in rows {
        jsonl.push_str(&row.to_string());
        jsonl.push('\n');
    }
    let mut csv = String::new();
    if !header.is_empty() {
        for line in std::iter::once(header).chain(cells.iter().map(Vec::as_slice)) {
            csv.push_str(&line.join(","));
            csv.push('\n');
        }
    }
    atomic_write(&dir.join(format!("{stem}.jsonl")), jsonl.as_bytes())?;
    atomic_write(&dir.join(format!("{stem}.csv")), csv.as_bytes())
}
