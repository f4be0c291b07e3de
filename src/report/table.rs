//! The measures of one checkpoint as a readable plain-text table.

use crate::measures::Measures;
use std::fmt::Write;

/// Formats `m` as aligned `name  value` lines, grouped as the paper reads them.
pub fn measures_table(m: &Measures) -> String {
    let mut out = String::new();
    let opt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.6e}"));
    let mut line = |name: &str, value: String| {
        let _ = writeln!(out, "{name:<34} {value}");
    };
    line("loss (all inputs)", format!("{:.6e}", m.loss_all));
    line(
        "loss train / test",
        format!("{:.6e} / {:.6e}", m.loss_train, m.loss_test),
    );
    line(
        "accuracy train / test",
        format!("{:.4} / {:.4}", m.acc_train, m.acc_test),
    );
    line("key frequencies", format!("{:?}", m.key_freqs));
    line("restricted loss all", opt(m.restricted_loss_all));
    line(
        "restricted loss train / test",
        format!(
            "{} / {}",
            opt(m.restricted_loss_train),
            opt(m.restricted_loss_test)
        ),
    );
    line("excluded loss train", opt(m.excluded_loss_train));
    for (k, v) in &m.excluded_loss_train_per_freq {
        line(
            &format!("  excluded train, only k = {k}"),
            format!("{v:.6e}"),
        );
    }
    if let Some(c) = &m.clusters {
        let total: usize = c.sizes.values().sum();
        line("neurons with FVE >= 0.85", total.to_string());
        for (k, n) in &c.sizes {
            line(&format!("  cluster k = {k}"), n.to_string());
        }
        line("  no cluster", c.none.to_string());
    }
    let top = |norms: &[f64]| {
        let mut k: Vec<usize> = (1..norms.len()).collect();
        k.sort_by(|&a, &b| norms[b].total_cmp(&norms[a]));
        let shown: Vec<String> = k
            .iter()
            .take(6)
            .map(|&k| format!("{k}: {:.3}", norms[k]))
            .collect();
        shown.join(", ")
    };
    line(
        "W_E Fourier norm, top frequencies",
        top(&m.embed_freq_norms),
    );
    if let Some(w_l) = &m.w_l_freq_norms {
        line("W_L Fourier norm, top frequencies", top(w_l));
    }
    line(
        "Gini W_E / W_L",
        format!(
            "{:.4} / {}",
            m.gini_w_e,
            m.gini_w_l.map_or("n/a".into(), |g| format!("{g:.4}"))
        ),
    );
    line("logit variance in key directions", opt(m.key_direction_fve));
    line("trig fit variance explained", opt(m.trig_fit_fve));
    for (k, a) in &m.trig_fit_alpha {
        line(&format!("  alpha k = {k}"), format!("{a:.4}"));
    }
    if m.gradient_symmetricity.is_some() {
        line(
            "gradient symmetricity (pizza ≈ 1)",
            m.gradient_symmetricity
                .map_or("n/a".into(), |v| format!("{v:.4}")),
        );
        line(
            "distance irrelevance (clock ≈ 1)",
            m.distance_irrelevance
                .map_or("n/a".into(), |v| format!("{v:.4}")),
        );
    }
    line("sum of squared weights", format!("{:.3}", m.sum_sq_weights));
    for (name, v) in m.sum_sq.iter().filter(|(_, &v)| v > 0.0) {
        line(&format!("  {name}"), format!("{v:.3}"));
    }
    for (h, row) in m.mean_attention.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:.4}")).collect();
        line(
            &format!("mean attention head {h} (last → pos)"),
            cells.join(" "),
        );
    }
    out
}
