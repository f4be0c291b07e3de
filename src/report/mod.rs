//! Reports: plots of a run's metrics and measures, the readable measures table, the HTML report.

mod analyses;
pub mod charts;
pub mod compare;
mod html;
mod icl_html;
pub mod icl_plots;
pub mod llc_plots;
mod measure_plots;
mod page;
mod plots;
pub mod saliency_plots;
mod sequence_html;
pub mod sweep_plots;
mod table;

pub use analyses::{analysis_for, AnalyzeOptions, RunAnalysis};
pub use html::write_report;
pub use icl_html::write_icl_report;
pub use icl_plots::plot_icl;
pub use measure_plots::plot_measures;
pub use plots::plot_run;
pub use saliency_plots::plot_saliency;
pub use sequence_html::write_sequence_report;
pub use table::measures_table;
