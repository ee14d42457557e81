//! The run report page (`adps report`): one self-contained HTML file from a template
//! (minijinja, auto-escaped), histograms drawn with plotters' SVG backend, images
//! inlined as base64. Pure: it renders a [`RunReport`] that `crate::run_report` read.

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde::Serialize;

use super::html::CSS;
use super::svg::fmt_short;
use super::templates::{environment, Grid};
use crate::run_report::RunReport;

/// Shards listed one per row; the rest are summarised (a run can have thousands).
const SHARDS_LISTED: usize = 50;

/// Histogram bars: about √n of them, at least 5 and at most this many.
const MAX_BINS: usize = 40;

#[derive(Serialize)]
struct ShardLine {
    shard: String,
    rows: usize,
    errors: usize,
    seconds: String,
    rate: String,
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
                plot: minijinja::Value::from_safe_string(histogram_svg(v, &metric_label(name))?),
                summary: summary(v),
            })
        })
        .collect::<Result<_>>()?;
    let grids: Vec<Grid> = r.examples.iter().map(Grid::from).collect();
    let residual_plot = if r.residual.is_empty() {
        minijinja::Value::from("no restored images")
    } else {
        minijinja::Value::from_safe_string(histogram_svg(&r.residual, "‖y − A x̂‖")?)
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
            examples_shard => r.shards.first().map(|s| s.shard.clone()),
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

fn metric_label(name: &str) -> String {
    match name {
        "psnr" => "PSNR (dB)".into(),
        "ssim" => "SSIM".into(),
        "mse" => "MSE".into(),
        "lpips" => "LPIPS".into(),
        other => other.to_string(),
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

/// Bar counts of `v` over `bins` equal bins from `lo` to `hi` (the last bin closed).
fn bin_counts(v: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<u32> {
    let mut counts = vec![0u32; bins];
    let width = (hi - lo) / bins as f64;
    for &x in v {
        let i = (((x - lo) / width).floor().max(0.0) as usize).min(bins - 1);
        counts[i] += 1;
    }
    counts
}

/// A histogram of `v` as an SVG element.
fn histogram_svg(v: &[f64], x_label: &str) -> Result<String> {
    let (mut lo, mut hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
            (l.min(x), h.max(x))
        });
    if !(lo.is_finite() && hi.is_finite()) {
        return Ok(String::new());
    }
    if hi - lo < 1e-12 * lo.abs().max(1.0) {
        let pad = 0.05 * lo.abs().max(1e-6);
        (lo, hi) = (lo - pad, hi + pad);
    }
    let bins = ((v.len() as f64).sqrt().ceil() as usize).clamp(5, MAX_BINS);
    let counts = bin_counts(v, lo, hi, bins);
    let top = counts.iter().copied().max().unwrap_or(1).max(1);
    let width = (hi - lo) / bins as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (480, 260)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d(lo..hi, 0u32..top + top / 10 + 1)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(RGBColor(229, 231, 235))
            .x_desc(x_label)
            .y_desc("images")
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 13))
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&|x| fmt_short(*x, 3))
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let x0 = lo + i as f64 * width;
                Rectangle::new(
                    [(x0, 0), (x0 + width, c)],
                    RGBColor(29, 78, 216).mix(0.7).filled(),
                )
            }))
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a histogram: {e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_the_range_and_count_every_value() {
        let v = [0.0, 0.1, 0.5, 0.99, 1.0];
        let c = bin_counts(&v, 0.0, 1.0, 5);
        assert_eq!(c, vec![2, 0, 1, 0, 2]);
        assert_eq!(c.iter().sum::<u32>(), 5);
    }

    #[test]
    fn histogram_is_an_svg_with_one_bar_per_bin() {
        let v: Vec<f64> = (0..100).map(|i| (i % 10) as f64).collect();
        let svg = histogram_svg(&v, "x").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        // 10 bins (√100), each drawn as a filled rectangle, plus the background.
        assert!(svg.matches("<rect").count() >= 10, "{svg}");
        // Constant values still draw (the range is widened), nothing is NaN.
        let flat = histogram_svg(&[2.5; 7], "x").unwrap();
        assert!(flat.contains("<rect") && !flat.contains("NaN"));
    }

    #[test]
    fn summary_names_mean_median_and_range() {
        let s = summary(&[1.0, 2.0, 3.0, 4.0, 100.0]);
        assert!(s.starts_with("Mean 22"), "{s}");
        assert!(s.contains("median 3") && s.contains("n = 5"), "{s}");
        assert_eq!(summary(&[]), "No values.");
    }
}
