//! The one writer of `report.html` ([`ReportPage`]): every family's page has the same layout —
//! a summary with the run's config, an optional checkpoint explorer (slider, views, their data
//! and the family's view script on top of the shared `explorer_core.js`), then the family's
//! sections of charts. A family fills a [`ReportPage`]; it writes no HTML skeleton of its own.

use super::html::{escape, page, run_name_and_config, SLIDER_ROW};
use crate::error::Result;
use crate::rundir::atomic_write;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The shared core every view script builds on (`el`, `frame`, `lines`, `heatmap`, the slider).
const CORE: &str = include_str!("explorer_core.js");

/// A checkpoint explorer: the slider, the views it redraws, their data and the script that
/// draws them.
pub(super) struct Explorer {
    /// HTML shown above the slider (may be empty).
    pub note: String,
    /// `(svg id, caption)` of each view, in page order.
    pub views: Vec<(String, String)>,
    /// The data the script reads (`#report-data`).
    pub data: Value,
    /// The family's view script (run after [`CORE`]).
    pub script: &'static str,
}

/// A titled section of the page.
pub(super) struct Section {
    /// Its element id.
    pub id: &'static str,
    /// Its heading.
    pub title: String,
    /// Its HTML (figures, tables).
    pub body: String,
}

/// One run's report page.
pub(super) struct ReportPage {
    /// HTML blocks of the summary (tables, lists of findings, notes), above the config.
    pub summary: Vec<String>,
    /// The checkpoint explorer, where the family has one.
    pub explorer: Option<Explorer>,
    /// The sections below the explorer; an empty one is left out.
    pub sections: Vec<Section>,
}

/// One explorer view: an SVG the view script draws into, with its caption.
fn view(id: &str, caption: &str) -> String {
    format!("<figure><figcaption>{caption}</figcaption><svg id=\"{id}\" class=\"view\" viewBox=\"0 0 460 260\"></svg></figure>\n")
}

impl ReportPage {
    /// The page's HTML for the run named `name` with `config.toml` text `config`.
    pub(super) fn html(&self, name: &str, config: &str) -> String {
        let mut body = format!(
            "<section id=\"summary\">\n{}\n<details><summary>config.toml</summary><pre>{}</pre></details>\n</section>\n",
            self.summary.join("\n"),
            escape(config)
        );
        if let Some(x) = &self.explorer {
            let views: String = x.views.iter().map(|(id, c)| view(id, c)).collect();
            body += &format!(
                "<section id=\"explorer\">\n<h2>Checkpoint explorer</h2>\n{}{SLIDER_ROW}\n<div class=\"views\">\n{views}</div>\n</section>\n",
                if x.note.is_empty() {
                    String::new()
                } else {
                    format!("{}\n", x.note)
                }
            );
        }
        for s in self.sections.iter().filter(|s| !s.body.is_empty()) {
            body += &format!(
                "<section id=\"{}\">\n<h2>{}</h2>\n{}</section>\n",
                s.id, s.title, s.body
            );
        }
        if let Some(x) = &self.explorer {
            // `</` cannot end the script element early inside JSON strings.
            let data = x.data.to_string().replace("</", "<\\/");
            body += &format!(
                "<script type=\"application/json\" id=\"report-data\">{data}</script>\n<script>{CORE}{}</script>\n",
                x.script
            );
        }
        page(&format!("groklab report: {name}"), &body)
    }

    /// Writes `run_dir/report.html` (atomically) and returns its path.
    ///
    /// # Errors
    /// [`crate::GrokError::Io`] when the config cannot be read or the page cannot be written.
    pub(super) fn write(&self, run_dir: &Path) -> Result<PathBuf> {
        let (name, config) = run_name_and_config(run_dir)?;
        let path = run_dir.join("report.html");
        atomic_write(&path, self.html(&name, &config).as_bytes())?;
        Ok(path)
    }
}
