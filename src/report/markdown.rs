//! `summary.md`: the sweep's headline numbers as Markdown tables, to paste into a README,
//! an issue or a paper draft. Same numbers as `report.html`, no plots.
//!
//! Per metric (MSE, SSIM, LPIPS) one table operators × models of each model's best step
//! count — chosen by mean validation MSE among the step counts the report's figures use,
//! as in the report, so the three tables describe the same runs — and, for operators run
//! at more than one step count, MSE per NFE.

use std::fmt::Write;

use super::figures::{
    ambient_columns, best_table, floor_table, model_columns, nfe_table, paired_table, winner,
};
use super::format::{fmt_num, fmt_signed, lower_is_better, metric_name};
use super::stats::Verdict;
use super::{PairedDiff, SettingSummary, FLOOR_METRICS, PAIRED_METRICS};

/// (metric key, heading).
const TABLES: [(&str, &str); 3] = [
    ("mse", "MSE (lower is better)"),
    ("ssim", "SSIM (higher is better)"),
    ("lpips", "LPIPS (lower is better)"),
];

/// Renders the tables; the best model per row is in bold.
/// A table of paired differences: operators × `columns`, each cell the difference and
/// its interval, bold where the interval excludes zero.
fn diff_table(
    o: &mut String,
    columns: &[&(String, f64)],
    table: Vec<(String, Vec<Option<&PairedDiff>>)>,
    metric: &str,
) {
    let mut h = "| operator |".to_string();
    for (m, p) in columns {
        let _ = write!(h, " {m} (p = {p}) |");
    }
    let _ = writeln!(h, "\n|---|{}", "---:|".repeat(columns.len()));
    o.push_str(&h);
    for (op, cells) in table {
        let _ = write!(o, "| `{op}` |");
        for d in cells {
            match d {
                Some(d) => {
                    let text = format!(
                        "{} [{}, {}]",
                        fmt_signed(d.mean),
                        fmt_signed(d.lo),
                        fmt_signed(d.hi)
                    );
                    if d.verdict(lower_is_better(metric)) == Verdict::Unclear {
                        let _ = write!(o, " {text} |");
                    } else {
                        let _ = write!(o, " **{text}** |");
                    }
                }
                None => o.push_str(" – |"),
            }
        }
        o.push('\n');
    }
    o.push('\n');
}

pub fn render_markdown(title: &str, rows: &[SettingSummary]) -> String {
    let models = super::models(rows);
    let header = |first: &str| {
        let mut h = format!("| {first} |");
        for (m, p) in &models {
            if p.is_nan() {
                let _ = write!(h, " {m} |");
            } else {
                let _ = write!(h, " {m} (p = {p}) |");
            }
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
         that operator (by mean MSE on the validation images, among the step counts every \
         operator of its kind was run at); the best model per row is in bold.\n",
        rows.iter().filter(|r| !super::is_baseline(r)).count()
    );
    let table = best_table(rows, &models);
    for (key, heading) in TABLES {
        if !rows.iter().any(|r| r.metrics.contains_key(key)) {
            continue;
        }
        let _ = writeln!(o, "## {heading}\n");
        o.push_str(&header("operator"));
        for row in &table {
            push_row(
                rows,
                &mut o,
                &format!("`{}`", row.operator),
                &row.cells,
                key,
            );
        }
        o.push('\n');
    }

    // Each Ambient model against the clean one, and every model against its operator's
    // least-squares floor, image by image.
    let columns =
        |ks: Vec<usize>| -> Vec<&(String, f64)> { ks.into_iter().map(|k| &models[k]).collect() };
    let (ambient, trained) = (
        columns(ambient_columns(&models)),
        columns(model_columns(&models)),
    );
    for metric in PAIRED_METRICS {
        if rows.iter().any(|r| r.paired.contains_key(metric)) {
            let _ = writeln!(
                o,
                "## {}: Ambient − clean, paired (95% bootstrap interval)\n\n\
                 Same test images, operator, step count and seed; each Ambient model at its \
                 best step count. **Bold**: the interval excludes zero.\n",
                metric_name(metric)
            );
            diff_table(
                &mut o,
                &ambient,
                paired_table(rows, &models, metric),
                metric,
            );
        }
    }
    for metric in FLOOR_METRICS {
        if rows.iter().any(|r| r.floor.contains_key(metric)) {
            let _ = writeln!(
                o,
                "## {}: model − least squares (A⁺y), paired (95% bootstrap interval)\n\n\
                 Same test images; each model at its best step count. **Bold**: the interval \
                 excludes zero.\n",
                metric_name(metric)
            );
            diff_table(&mut o, &trained, floor_table(rows, &models, metric), metric);
        }
    }

    // MSE against NFE for operators run at several step counts.
    let nfe_rows = nfe_table(rows, &models);
    if !nfe_rows.is_empty() {
        o.push_str("## MSE per number of function evaluations (NFE)\n\n");
        o.push_str(&header("operator, steps N (NFE)"));
        for r in nfe_rows {
            let label = format!("`{}`, N = {} ({})", r.operator, r.steps, r.nfe);
            push_row(rows, &mut o, &label, &r.cells, "mse");
        }
        o.push('\n');
    }
    o
}

/// One table row: `metric` of the settings in `cells` (one per model), the best in bold.
fn push_row(
    rows: &[SettingSummary],
    o: &mut String,
    label: &str,
    cells: &[Option<usize>],
    metric: &str,
) {
    let best = winner(rows, cells.iter().flatten().copied(), metric);
    let _ = write!(o, "| {label} |");
    for c in cells {
        let value = c.and_then(|i| {
            rows[i]
                .metrics
                .get(metric)
                .map(|s| s.mean)
                .filter(|v| v.is_finite())
        });
        // A metric over fewer images than the setting's says how many.
        let short = c.and_then(|i| {
            let n = rows[i].metrics.get(metric)?.count;
            (n < super::image_count(&rows[i])).then(|| format!(" (n = {n})"))
        });
        let short = short.unwrap_or_default();
        match value {
            Some(v) if *c == best => {
                let _ = write!(o, " **{}**{short} |", fmt_num(v, 3));
            }
            Some(v) => {
                let _ = write!(o, " {}{short} |", fmt_num(v, 3));
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

    #[test]
    fn the_baseline_is_no_setting_and_no_nfe_row() {
        let mut rows = vec![
            setting("clean", 0.0, "cs:64", 5, 0.2, 0.1),
            setting("clean", 0.0, "cs:64", 10, 0.1, 0.3),
        ];
        let mut base = setting("x", 0.0, "cs:64", 1, 0.5, 0.05);
        base.model = crate::report::BASELINE_MODEL.into();
        base.train_p = f64::NAN;
        base.solver = crate::report::BASELINE_SOLVER.into();
        (base.steps, base.nfe, base.zeta) = (0, 0, f64::NAN);
        rows.push(base);
        let md = render_markdown("t", &rows);
        assert!(md.contains("\n2 settings."), "{md}");
        assert!(md.contains("| `cs:64` | **0.100** | 0.500 |"), "{md}");
        assert!(
            md.contains("| `cs:64`, N = 5 (9) | **0.200** | – |"),
            "{md}"
        );
        assert!(!md.contains("N = 0"), "{md}");
    }

    #[test]
    fn a_cell_over_fewer_images_than_its_setting_says_how_many() {
        let mut rows = vec![
            setting("clean", 0.0, "cs:64", 10, 0.1, 0.3),
            setting("ambient", 0.8, "cs:64", 10, 0.12, 0.4),
        ];
        // SSIM on 15 of the setting's 16 images.
        rows[0].metrics.get_mut("ssim").unwrap().count = 15;
        let md = render_markdown("t", &rows);
        assert!(
            md.contains("| `cs:64` | 0.300 (n = 15) | **0.400** |"),
            "{md}"
        );
        assert!(md.contains("| `cs:64` | **0.100** | 0.120 |"), "{md}");
    }

    #[test]
    fn paired_tables_bold_only_intervals_that_exclude_zero() {
        let mut rows = vec![
            setting("clean", 0.0, "cs:64", 10, 0.1, 0.3),
            setting("amb", 0.8, "cs:64", 10, 0.12, 0.4),
            setting("clean", 0.0, "sr:4", 10, 0.05, 0.6),
            setting("amb", 0.8, "sr:4", 10, 0.07, 0.7),
        ];
        let d = |mean: f64, lo: f64, hi: f64| crate::report::PairedDiff {
            mean,
            lo,
            hi,
            count: 16,
        };
        rows[1].paired.insert("mse".into(), d(0.02, 0.01, 0.03));
        rows[3].paired.insert("mse".into(), d(0.02, -0.01, 0.05));
        let md = render_markdown("t", &rows);
        assert!(md.contains("## MSE: Ambient − clean, paired"), "{md}");
        assert!(md.contains("| operator | amb (p = 0.8) |"), "{md}");
        assert!(
            md.contains("| `cs:64` | **+0.020 [+0.010, +0.030]** |"),
            "{md}"
        );
        assert!(md.contains("| `sr:4` | +0.020 [−0.010, +0.050] |"), "{md}");
        // No SSIM pairs: no SSIM paired table.
        assert!(!md.contains("SSIM: Ambient"), "{md}");
        assert!(!md.contains("least squares (A⁺y), paired"), "{md}");
    }

    #[test]
    fn floor_tables_compare_every_model_with_least_squares() {
        let mut rows = vec![
            setting("clean", 0.0, "cs:64", 10, 0.1, 0.3),
            setting("amb", 0.8, "cs:64", 10, 0.12, 0.4),
        ];
        let d = |mean: f64, lo: f64, hi: f64| crate::report::PairedDiff {
            mean,
            lo,
            hi,
            count: 16,
        };
        rows[0].floor.insert("mse".into(), d(-0.05, -0.06, -0.04));
        rows[1]
            .floor
            .insert("mse".into(), d(f64::NAN, f64::NAN, f64::NAN));
        let md = render_markdown("t", &rows);
        assert!(
            md.contains("## MSE: model − least squares (A⁺y), paired"),
            "{md}"
        );
        assert!(
            md.contains("| operator | clean (p = 0) | amb (p = 0.8) |"),
            "{md}"
        );
        // A diverged image: no verdict, shown as –, never as 0.
        assert!(
            md.contains("| `cs:64` | **−0.050 [−0.060, −0.040]** | – [–, –] |"),
            "{md}"
        );
    }
}
