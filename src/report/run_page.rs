//! The run report page (`adps report`): one self-contained HTML file from a template
//! (minijinja, auto-escaped), histograms from [`super::plot`] (plotters), images
//! inlined as base64. Pure: it renders a [`RunReport`] that `crate::run_report` read.

use anyhow::{Context, Result};
use serde::Serialize;

use super::format::{fmt_short, metric_axis};
use super::html::CSS;
use super::plot::histogram;
use super::templates::{environment, Grid};
use crate::run_report::RunReport;

/// Shards listed one per row; the rest are summarised (a run can have thousands).
const SHARDS_LISTED: usize = 50;

#[derive(Serialize)]
struct ShardLine {
    shard: String,
    rows: usize,
    errors: usize,
    seconds: String,
    rate: String,
    finished: bool,
}

#[derive(Serialize)]
struct Problem {
    shard: String,
    state: String,
    reason: String,
}

#[derive(Serialize)]
struct MetricPlot {
    plot: minijinja::Value,
    summary: String,
}

/// The page for one run.
pub fn render_run_report(r: &RunReport) -> Result<String> {
    let st = &r.status;
    let shards: Vec<ShardLine> = r
        .shards
        .iter()
        .take(SHARDS_LISTED)
        .map(|s| ShardLine {
            shard: s.shard.clone(),
            rows: s.rows,
            errors: s.errors,
            seconds: format!("{:.1}", s.seconds),
            rate: rate(s.rows, s.seconds),
            finished: s.finished,
        })
        .collect();
    let (rows, seconds) = r
        .shards
        .iter()
        .fold((0, 0.0), |(n, t), s| (n + s.rows, t + s.seconds));
    let time_summary = format!(
        "In all: {rows} image(s) in {:.1} restore-seconds, {} images/s.",
        seconds,
        rate(rows, seconds)
    );
    let problems: Vec<Problem> = st
        .shards
        .iter()
        .filter(|s| s.state != "committed")
        .map(|s| Problem {
            shard: s.shard.clone(),
            state: s.state.to_string(),
            reason: s.reason.clone().unwrap_or_default(),
        })
        .chain(st.orphan_failures.iter().map(|f| Problem {
            shard: f.clone(),
            state: "failed (not in the input listing)".into(),
            reason: String::new(),
        }))
        .collect();
    let metrics: Vec<MetricPlot> = r
        .metrics
        .iter()
        .map(|(name, v)| {
            Ok(MetricPlot {
                plot: minijinja::Value::from_safe_string(histogram(v, &metric_axis(name))?),
                summary: summary(v),
            })
        })
        .collect::<Result<_>>()?;
    let grids: Vec<Grid> = r.examples.iter().map(Grid::from).collect();
    let residual_plot = if r.residual.is_empty() {
        minijinja::Value::from("no restored images")
    } else {
        minijinja::Value::from_safe_string(histogram(&r.residual, "‖y − A x̂‖")?)
    };
    let page = environment()?
        .get_template("run.html")
        .context("the run report template")?
        .render(minijinja::context! {
            title => format!("adps run report: {}", st.output),
            css => minijinja::Value::from_safe_string(CSS.to_string()),
            output => st.output,
            complete => st.is_complete(),
            version => env!("CARGO_PKG_VERSION"),
            records_ok => st.records_ok,
            records_failed => st.records_failed,
            duplicates => st.duplicate_ids.len(),
            duplicate_lines => st.duplicate_ids.iter().take(SHARDS_LISTED)
                .map(|(id, shards)| format!("{id}: {}", shards.join(", ")))
                .collect::<Vec<_>>(),
            shards_committed => st.shards_committed,
            shards_pending => st.shards_pending,
            shards_failed => st.shards_failed,
            other_settings => r.other_settings,
            problems => problems,
            provenance => r.provenance,
            shards => shards,
            shards_more => r.shards.len().saturating_sub(SHARDS_LISTED),
            time_summary => time_summary,
            residual_plot => residual_plot,
            residual_summary => summary(&r.residual),
            metrics => metrics,
            grids => grids,
            examples_shard => r.examples_shard,
            input_unreachable => st.input_unreachable,
            examples_note => r.examples_note,
            errors => r.errors.iter().map(|e| minijinja::context! {
                id => e.id, shard => e.shard, stage => e.stage, reason => e.reason,
            }).collect::<Vec<_>>(),
            errors_total => r.errors_total,
        })
        .context("rendering the run report")?;
    Ok(page)
}

fn rate(rows: usize, seconds: f64) -> String {
    if seconds > 0.0 {
        format!("{:.2}", rows as f64 / seconds)
    } else {
        "—".into()
    }
}

/// "mean 21.3, median 21.9, 5–95%: 17.0–24.8 (n = 256)".
fn summary(v: &[f64]) -> String {
    if v.is_empty() {
        return "No values.".into();
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
    let mean = s.iter().sum::<f64>() / s.len() as f64;
    format!(
        "Mean {}, median {}, 5–95%: {}–{} (n = {}).",
        fmt_short(mean, 4),
        fmt_short(q(0.5), 4),
        fmt_short(q(0.05), 4),
        fmt_short(q(0.95), 4),
        s.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_mean_median_and_range() {
        let s = summary(&[1.0, 2.0, 3.0, 4.0, 100.0]);
        assert!(s.starts_with("Mean 22"), "{s}");
        assert!(s.contains("median 3") && s.contains("n = 5"), "{s}");
        assert_eq!(summary(&[]), "No values.");
    }
}
