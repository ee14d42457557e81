//! `summary.md`: the sweep's headline numbers as Markdown tables, to paste into a README,
//! an issue or a paper draft. Same numbers as `report.html`, no plots.
//!
//! Per metric (MSE, SSIM, LPIPS) one table operators × models of each model's best step
//! count — chosen by mean test MSE, as in the report, so the three tables describe the
//! same runs — and, for operators run at more than one step count, MSE per NFE.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::html::{kind_rank, operators};
use super::svg::fmt_num;
use super::{best_per_model_operator, steps_of, SettingSummary};

/// (metric key, heading, lower is better).
const TABLES: [(&str, &str, bool); 3] = [
    ("mse", "MSE (lower is better)", true),
    ("ssim", "SSIM (higher is better)", false),
    ("lpips", "LPIPS (lower is better)", true),
];

/// Renders the tables; the best model per row is in bold.
pub fn render_markdown(title: &str, rows: &[SettingSummary]) -> String {
    let models = super::models(rows);
    let ops = operators(rows);
    let best = best_per_model_operator(rows);
    let header = |first: &str| {
        let mut h = format!("| {first} |");
        for (m, p) in &models {
            let _ = write!(h, " {m} (p = {p}) |");
        }
        h.push_str("\n|---|");
        h.push_str(&"---:|".repeat(models.len()));
        h.push('\n');
        h
    };

    let mut o = format!("# {title}\n\n");
    let _ = writeln!(
        o,
        "{} settings. Mean over the test images; each cell is the model's best step count for \
         that operator (by mean MSE, as the paper reports); the best model per row is in bold.\n",
        rows.len()
    );
    for (key, heading, lower) in TABLES {
        if !rows.iter().any(|r| r.metrics.contains_key(key)) {
            continue;
        }
        let _ = writeln!(o, "## {heading}\n");
        o.push_str(&header("operator"));
        for (op, _, _) in &ops {
            let cells: Vec<Option<f64>> = models
                .iter()
                .map(|(m, _)| {
                    best.get(&(m.clone(), op.clone()))
                        .and_then(|&i| rows[i].metrics.get(key))
                        .map(|s| s.mean)
                        .filter(|v| v.is_finite())
                })
                .collect();
            push_row(&mut o, &format!("`{op}`"), &cells, lower);
        }
        o.push('\n');
    }

    // MSE against NFE for operators run at several step counts.
    let mut nfe_ops: Vec<&(String, String, f64)> = ops
        .iter()
        .filter(|(op, _, _)| steps_of(rows, op).len() > 1)
        .collect();
    nfe_ops.sort_by(|a, b| {
        kind_rank(&a.1)
            .cmp(&kind_rank(&b.1))
            .then(a.2.total_cmp(&b.2))
    });
    if !nfe_ops.is_empty() {
        o.push_str("## MSE per number of function evaluations (NFE)\n\n");
        o.push_str(&header("operator, steps N (NFE)"));
        for (op, _, _) in nfe_ops {
            // (steps, nfe) → model → mean MSE (mean over seeds where there are several).
            let mut by_steps: BTreeMap<(u32, u32), BTreeMap<&str, Vec<f64>>> = BTreeMap::new();
            for r in rows.iter().filter(|r| &r.operator == op) {
                if let Some(s) = r.metrics.get("mse").filter(|s| s.mean.is_finite()) {
                    by_steps
                        .entry((r.steps, r.nfe))
                        .or_default()
                        .entry(r.model.as_str())
                        .or_default()
                        .push(s.mean);
                }
            }
            for ((steps, nfe), per_model) in by_steps {
                let cells: Vec<Option<f64>> = models
                    .iter()
                    .map(|(m, _)| {
                        per_model
                            .get(m.as_str())
                            .map(|v| v.iter().sum::<f64>() / v.len() as f64)
                    })
                    .collect();
                push_row(
                    &mut o,
                    &format!("`{op}`, N = {steps} ({nfe})"),
                    &cells,
                    true,
                );
            }
        }
        o.push('\n');
    }
    o
}

fn push_row(o: &mut String, label: &str, cells: &[Option<f64>], lower_is_better: bool) {
    let winner = cells
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.map(|v| (i, v)))
        .min_by(|a, b| {
            if lower_is_better {
                a.1.total_cmp(&b.1)
            } else {
                b.1.total_cmp(&a.1)
            }
        })
        .map(|(i, _)| i);
    let _ = write!(o, "| {label} |");
    for (i, c) in cells.iter().enumerate() {
        match c {
            Some(v) if Some(i) == winner => {
                let _ = write!(o, " **{}** |", fmt_num(*v, 3));
            }
            Some(v) => {
                let _ = write!(o, " {} |", fmt_num(*v, 3));
            }
            None => o.push_str(" – |"),
        }
    }
    o.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(model: &str, p: f64, op: &str, steps: u32, mse: f64, ssim: f64) -> SettingSummary {
        crate::report::test_setting(model, p, op, steps, &[("mse", mse), ("ssim", ssim)])
    }

    #[test]
    fn tables_take_each_models_best_step_count_and_bold_the_winner() {
        let rows = vec![
            setting("clean", 0.0, "cs:64", 5, 0.2, 0.1),
            setting("clean", 0.0, "cs:64", 10, 0.1, 0.3),
            setting("ambient", 0.8, "cs:64", 5, 0.15, 0.5),
            setting("ambient", 0.8, "cs:64", 10, 0.12, 0.4),
            setting("clean", 0.0, "sr:4", 10, 0.05, 0.6),
            setting("ambient", 0.8, "sr:4", 10, 0.07, 0.7),
        ];
        let md = render_markdown("t", &rows);
        // Columns in order of p; best over steps: clean N=10 (0.1), ambient N=10 (0.12).
        assert!(
            md.contains("| operator | clean (p = 0) | ambient (p = 0.8) |"),
            "{md}"
        );
        assert!(md.contains("| `cs:64` | **0.100** | 0.120 |"), "{md}");
        assert!(md.contains("| `sr:4` | **0.0500** | 0.0700 |"), "{md}");
        // SSIM of the same (MSE-best) runs, higher is better: ambient's 0.4, not its 0.5.
        assert!(md.contains("| `cs:64` | 0.300 | **0.400** |"), "{md}");
        // No LPIPS in the rows: no LPIPS table.
        assert!(!md.contains("LPIPS"), "{md}");
        // NFE table only for cs:64 (two step counts), each step count a row.
        assert!(
            md.contains("| `cs:64`, N = 5 (9) | 0.200 | **0.150** |"),
            "{md}"
        );
        assert!(
            md.contains("| `cs:64`, N = 10 (19) | **0.100** | 0.120 |"),
            "{md}"
        );
        assert!(!md.contains("`sr:4`, N ="), "{md}");
    }
}
