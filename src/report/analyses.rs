//! The analysis of a run, chosen by its config: `groklab analyze` and `groklab report` go through
//! [`analysis_for`], so the command line knows no family. One [`RunAnalysis`] per family:
//! in-context regression, sequence tasks, the MLP on a binary operation, the transformer on a
//! binary operation (Nanda et al. 2023's progress measures; also the fallback, which reports an
//! unreadable config).

use crate::config::{IclTaskSection, MlpSection, RunConfig, SeqTaskSection};
use crate::error::Result;
use crate::measures::{self, KeyFreqRule};
use crate::rundir::{MetricsLog, RunDir};
use std::path::{Path, PathBuf};

/// What `groklab analyze` asks of an analysis.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalyzeOptions {
    /// How the key frequencies are chosen (binary operations).
    pub rule: KeyFreqRule,
    /// Fraction of embedding norm that makes a frequency key (the MLP's clusters).
    pub embed_threshold: f64,
    /// Draw the measures' plots.
    pub plots: bool,
}

/// One family's analysis: measures over a run's checkpoints, their plots, and the report page.
pub trait RunAnalysis: Sync {
    /// Whether this analysis is the one for a run with config `cfg`.
    fn applies(&self, cfg: &RunConfig) -> bool;

    /// Measures every checkpoint of `run_dir`, writes `measures.jsonl` (and the family's other
    /// files) and, with `opts.plots`, its plots. Returns the lines to print.
    ///
    /// # Errors
    /// An unreadable config, metrics or checkpoint; I/O errors.
    fn analyze(&self, run_dir: &Path, opts: &AnalyzeOptions) -> Result<Vec<String>>;

    /// Writes `report.html`, measuring first when the run has no `measures.jsonl` or
    /// `reanalyze`; returns its path.
    ///
    /// # Errors
    /// As [`RunAnalysis::analyze`].
    fn report(&self, run_dir: &Path, reanalyze: bool) -> Result<PathBuf>;
}

/// Every analysis, the first that applies wins; the last applies to every run.
const ANALYSES: [&dyn RunAnalysis; 4] = [&Icl, &Sequence, &MlpModular, &TransformerModular];

/// The analysis of the run in `run_dir`: by its config, or the transformer's (which reports a
/// config that cannot be read).
pub fn analysis_for(run_dir: &Path) -> &'static dyn RunAnalysis {
    let cfg = RunDir::new(run_dir).try_config();
    (ANALYSES.iter())
        .find(|a| cfg.as_ref().is_some_and(|c| a.applies(c)))
        .copied()
        .unwrap_or(&TransformerModular)
}

fn needs_measures(run_dir: &Path, reanalyze: bool) -> bool {
    let missing = !run_dir.join("measures.jsonl").exists();
    if reanalyze || missing {
        println!("measuring every checkpoint of {} first", run_dir.display());
    }
    reanalyze || missing
}

fn measured(
    checkpoints: usize,
    seconds: f64,
    run_dir: &Path,
    mut lines: Vec<String>,
) -> Vec<String> {
    lines.insert(
        0,
        format!("{checkpoints} checkpoints measured in {seconds:.1} s"),
    );
    lines.push(format!(
        "wrote {}",
        run_dir.join("measures.jsonl").display()
    ));
    lines
}

/// In-context regression: the LSA against GD and GD++ (von Oswald et al. 2023).
struct Icl;

impl RunAnalysis for Icl {
    fn applies(&self, cfg: &RunConfig) -> bool {
        cfg.task.get::<IclTaskSection>().is_some()
    }

    fn analyze(&self, run_dir: &Path, opts: &AnalyzeOptions) -> Result<Vec<String>> {
        let (rows, a) = measures::icl_run::analyze_icl_run(run_dir)?;
        let mut lines = measured(
            a.checkpoints,
            a.seconds,
            run_dir,
            a.summary_lines(rows.last()),
        );
        if opts.plots {
            let dir = super::plot_icl(run_dir, &rows, &a)?;
            lines.push(format!("plots in {}", dir.display()));
        }
        Ok(lines)
    }

    fn report(&self, run_dir: &Path, reanalyze: bool) -> Result<PathBuf> {
        use measures::icl_run::{analyze_icl_run, load_icl_analysis};
        let (rows, analysis) = if needs_measures(run_dir, reanalyze) {
            analyze_icl_run(run_dir)?
        } else {
            load_icl_analysis(run_dir)?
        };
        super::plot_run(run_dir, &MetricsLog::load(run_dir)?.rows)?;
        super::plot_icl(run_dir, &rows, &analysis)?;
        super::write_icl_report(run_dir, &rows, &analysis)
    }
}

/// Sequence tasks: per-position and per-class curves, phase changes, attention patterns.
struct Sequence;

impl RunAnalysis for Sequence {
    fn applies(&self, cfg: &RunConfig) -> bool {
        cfg.task.get::<SeqTaskSection>().is_some()
    }

    fn analyze(&self, run_dir: &Path, _opts: &AnalyzeOptions) -> Result<Vec<String>> {
        let (_, a) = measures::sequence_run::analyze_sequence_run(run_dir)?;
        Ok(measured(
            a.checkpoints,
            a.seconds,
            run_dir,
            a.summary_lines(),
        ))
    }

    fn report(&self, run_dir: &Path, reanalyze: bool) -> Result<PathBuf> {
        use measures::sequence_run::{analyze_sequence_run, load_sequence_analysis};
        let analysis = if needs_measures(run_dir, reanalyze) {
            analyze_sequence_run(run_dir)?.1
        } else {
            load_sequence_analysis(run_dir)?
        };
        let log = MetricsLog::load(run_dir)?;
        super::plot_run(run_dir, &log.rows)?;
        super::write_sequence_report(run_dir, &log.rows, &analysis)
    }
}

/// The MLP on a binary operation: key frequencies and neuron clusters of the final checkpoint
/// (Liu et al. 2022); its report is the binary-operation report.
struct MlpModular;

impl RunAnalysis for MlpModular {
    fn applies(&self, cfg: &RunConfig) -> bool {
        cfg.model.get::<MlpSection>().is_some()
    }

    fn analyze(&self, run_dir: &Path, opts: &AnalyzeOptions) -> Result<Vec<String>> {
        let (step, m) = measures::mlp_fourier::analyze_mlp_run(run_dir, opts.embed_threshold)?;
        let v = &m.key_freq_votes;
        Ok(vec![
            format!(
                "MLP at step {step}: key frequencies {:?} (consensus; neuron clusters {:?}, W_E norms {:?}, neuron argmax {:?}); cluster sizes {:?}, {} neurons in none",
                v.consensus(),
                v.neuron_clusters,
                v.embed_norm,
                v.neuron_argmax,
                m.clusters.sizes,
                m.clusters.none
            ),
            format!("wrote {}", run_dir.join("analysis.json").display()),
        ])
    }

    fn report(&self, run_dir: &Path, reanalyze: bool) -> Result<PathBuf> {
        TransformerModular.report(run_dir, reanalyze)
    }
}

/// The transformer on a binary operation: Nanda et al. 2023's progress measures.
struct TransformerModular;

impl RunAnalysis for TransformerModular {
    fn applies(&self, _cfg: &RunConfig) -> bool {
        true
    }

    fn analyze(&self, run_dir: &Path, opts: &AnalyzeOptions) -> Result<Vec<String>> {
        let (rows, analysis, views) = measures::analyze_run(run_dir, &opts.rule)?;
        let mut lines = vec![format!(
            "{} checkpoints measured in {:.1} s; key frequencies {:?} ({}, step {})",
            analysis.checkpoints,
            analysis.seconds,
            analysis.key_freqs,
            analysis.key_freq_rule,
            analysis.key_freq_step
        )];
        if let Some(note) = &analysis.key_freq_votes.disagreement {
            lines.push(format!("key frequencies: {note}"));
        }
        let ph = &analysis.phases;
        let at = |s: Option<u64>| s.map_or("not detected".to_string(), |s| format!("step {s}"));
        lines.push(format!(
            "phases: memorisation ends {}, circuit formation ends {}, clean-up ends {}",
            at(ph.memorisation_end),
            at(ph.circuit_formation_end),
            at(ph.cleanup_end)
        ));
        lines.push(format!(
            "wrote {}",
            run_dir.join("measures.jsonl").display()
        ));
        if opts.plots {
            let dir = super::plot_measures(run_dir, &rows, &analysis, views.as_ref())?;
            lines.push(format!("plots in {}", dir.display()));
        }
        Ok(lines)
    }

    fn report(&self, run_dir: &Path, reanalyze: bool) -> Result<PathBuf> {
        let (rows, analysis, views) = if needs_measures(run_dir, reanalyze) {
            measures::analyze_run(
                run_dir,
                &KeyFreqRule::Consensus(measures::DEFAULT_EMBED_THRESHOLD),
            )?
        } else {
            measures::load_measures(run_dir)?
        };
        super::plot_run(run_dir, &MetricsLog::load(run_dir)?.rows)?;
        super::plot_measures(run_dir, &rows, &analysis, views.as_ref())?;
        super::write_report(run_dir, &rows, &analysis)
    }
}
