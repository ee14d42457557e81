//! `report.html`: one self-contained file (inline CSS, inline SVG plots, PNGs as
//! `data:` URIs; no scripts, nothing fetched) reproducing the paper's comparisons:
//! clean-trained vs Ambient models across compressed-sensing measurement counts
//! (Fig. 2), super-resolution factors (Fig. 3) and numbers of function evaluations
//! (Fig. 4), plus the ζ search, every setting, and example reconstructions.
//!
//! This module turns the setting summaries into the views `templates/report.html`
//! lays out (auto-escaped); what is shown comes from [`super::figures`], the plots
//! from [`super::plot`].

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use minijinja::Value;
use serde::Serialize;

use super::figures::{self, kind_rank, LevelFigure};
use super::format::{
    fmt_level, fmt_num, fmt_p, fmt_short, fmt_signed, lower_is_better, metric_axis, metric_name,
    palette_color,
};
use super::plot::{self, LinePlot, Point, Scale, Series};
use super::stats::Verdict;
use super::templates::{environment, Grid};
use super::{is_baseline, ExampleGrid, PairedDiff, SettingSummary, FLOOR_METRICS, PAIRED_METRICS};

/// Colour of the plain baseline in every plot.
const BASELINE_COLOR: &str = "#111111";

/// Colour marking the chosen ζ in the sparklines.
const MARK: &str = "#111827";

pub(crate) const CSS: &str = r#"
:root{--fg:#1f2933;--muted:#6b7280;--faint:#9ca3af;--line:#e5e7eb;--soft:#f8fafc;--best:#fff8e1;--accent:#1d4ed8}
*{box-sizing:border-box}
html{background:#f3f4f6}
body{margin:0;color:var(--fg);font:14px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1360px;margin:0 auto;padding:36px 32px 72px;background:#fff;min-height:100vh}
h1{font-size:26px;line-height:1.25;margin:0 0 6px;font-weight:650}
h2{font-size:19px;margin:44px 0 8px;padding-bottom:6px;border-bottom:1px solid var(--line);font-weight:620}
h3{font-size:15px;margin:22px 0 8px;font-weight:600}
p{margin:6px 0 10px;max-width:980px}
a{color:var(--accent);text-decoration:none}
a:hover{text-decoration:underline}
code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--soft);padding:1px 4px;border-radius:4px}
.meta{color:var(--muted);margin-bottom:14px}
.intro{font-size:15px}
.caption{color:var(--muted);font-size:13px}
nav.toc{display:flex;flex-wrap:wrap;gap:6px 18px;margin:14px 0 0;padding:10px 14px;background:var(--soft);border:1px solid var(--line);border-radius:8px;font-size:13px}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:16px;margin:10px 0}
.card{border:1px solid var(--line);border-radius:8px;padding:8px;background:#fff}
.card svg{display:block;width:100%;max-width:480px;height:auto;margin:0 auto}
.table-wrap{overflow-x:auto;border:1px solid var(--line);border-radius:8px;margin:10px 0}
table{border-collapse:collapse;font-size:13px}
.table-wrap>table{width:100%}
.table-wrap.compact{display:inline-block;max-width:100%}
table.settings th,table.settings td{padding:6px 8px}
.table-wrap.compact>table{width:auto}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap;vertical-align:middle}
tbody tr:last-child>*{border-bottom:none}
thead th{background:var(--soft);font-weight:600;color:#374151;border-bottom:1px solid #d1d5db}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:hover>td{background:#f9fafb}
tr.best>td{background:var(--best)}
tr.best:hover>td{background:#fff1c2}
tr.grp>td{border-top:2px solid #d1d5db}
td.win{font-weight:650}
.pm{color:var(--muted)}
.n{color:var(--faint);font-size:11px;margin-left:3px}
.n.short{color:#b91c1c;font-weight:600}
.star{color:#b45309}
.swatch{display:inline-block;width:12px;height:12px;border-radius:3px;vertical-align:-1px;margin-right:7px}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:11px;line-height:17px;background:#fdecea;color:#9b1c1c;margin-left:6px}
.ok{color:var(--faint);font-size:11px;margin-left:6px}
td.zeta{padding:4px 10px}
td.zeta svg{display:block}
.zv{font-size:12px;font-variant-numeric:tabular-nums}
.examples{display:flex;flex-wrap:wrap;gap:20px;align-items:flex-start}
.examples figure{margin:0;border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.examples figcaption{font-weight:600;margin-bottom:6px}
table.grid th,table.grid td{padding:3px 4px;border:none}
table.grid thead th{background:none;font-weight:500;color:var(--muted);font-size:11px;text-align:center}
table.grid tbody th{font-weight:500;text-align:right;padding-right:10px;font-size:12px}
table.grid img{display:block;border-radius:2px}
img.px{image-rendering:pixelated}
td.better{background:#ecfdf3;color:#166534}
td.worse{background:#fef2f2;color:#991b1b}
td.unclear{color:var(--muted)}
.better-key{color:#166534;font-weight:600}
.worse-key{color:#991b1b;font-weight:600}
footer{margin-top:56px;color:var(--faint);font-size:12px}
"#;

/// Standard base64 (RFC 4648, with padding), for images inlined as data URIs.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// PNG width and height from its IHDR chunk.
pub(crate) fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.len() < 24 || &png[..8] != b"\x89PNG\r\n\x1a\n" || &png[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(png[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(png[20..24].try_into().ok()?);
    Some((w, h))
}

/// (section title, x-axis label, paper figure) for a kind.
fn kind_info(kind: &str) -> (String, String, Option<&'static str>) {
    match kind {
        "cs" => (
            "Compressed sensing".into(),
            "measurements M".into(),
            Some("Figure 2"),
        ),
        "sr" => (
            "Super-resolution".into(),
            "downsampling factor f".into(),
            Some("Figure 3"),
        ),
        k => (format!("Operator “{k}”"), "level".into(), None),
    }
}

/// Settings in table order: kind, level, operator, model (by p), steps, seed.
fn setting_order(rows: &[SettingSummary], a: usize, b: usize) -> std::cmp::Ordering {
    let (x, y) = (&rows[a], &rows[b]);
    kind_rank(&x.kind)
        .cmp(&kind_rank(&y.kind))
        .then(x.level.total_cmp(&y.level))
        .then(x.operator.cmp(&y.operator))
        .then(x.train_p.total_cmp(&y.train_p))
        .then(x.model.cmp(&y.model))
        .then(x.steps.cmp(&y.steps))
        .then(x.seed.cmp(&y.seed))
        .then(a.cmp(&b))
}

/// A fragment id from arbitrary text (ASCII alphanumerics and '-').
fn anchor(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Where the chosen ζ sits in its grid: `Some("lower")`/`Some("upper")` at an edge.
fn zeta_edge(r: &SettingSummary) -> Option<&'static str> {
    let grid: Vec<f64> = r
        .zeta_grid
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if grid.len() < 2 {
        return None;
    }
    let lo = grid.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = grid.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let near = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300);
    if near(r.zeta, lo) {
        Some("lower")
    } else if near(r.zeta, hi) {
        Some("upper")
    } else {
        None
    }
}

/// A metric value as the tables show it: mean ± half-width of its 95% CI (count), the
/// count flagged when it is below the setting's number of images.
#[derive(Serialize)]
struct StatView {
    mean: String,
    /// None with fewer than two values: no interval.
    ci: Option<String>,
    count: u64,
    short: bool,
}

fn stat_view(r: &SettingSummary, metric: &str) -> Option<StatView> {
    r.metrics.get(metric).map(|s| StatView {
        mean: fmt_num(s.mean, 3),
        ci: s.ci95().map(|c| fmt_num(c, 2)),
        count: s.count,
        short: s.count < super::image_count(r),
    })
}

/// A paired difference (Ambient − clean) as the tables show it.
#[derive(Serialize)]
struct PairedCell {
    diff: String,
    lo: String,
    hi: String,
    count: u64,
    /// `better` / `worse` (for the Ambient model) when the interval excludes zero,
    /// `unclear` otherwise.
    verdict: &'static str,
}

#[derive(Serialize)]
struct PairedRow {
    operator: String,
    cells: Vec<Option<PairedCell>>,
}

#[derive(Serialize)]
struct PairedTable {
    metric: String,
    rows: Vec<PairedRow>,
    better: usize,
    worse: usize,
    unclear: usize,
}

#[derive(Serialize)]
struct CellView {
    stat: Option<StatView>,
    win: bool,
}

#[derive(Serialize)]
struct ModelView {
    name: String,
    color: &'static str,
    p: String,
    clean: bool,
    ambient: bool,
    baseline: bool,
    erased: String,
    settings: usize,
}

#[derive(Serialize)]
struct KindView {
    anchor: String,
    name: String,
    figure: Option<&'static str>,
    x_label: String,
    levels: String,
    /// The step counts searched, when more than one.
    steps: Option<String>,
    equal_budgets: bool,
    plots: Vec<Value>,
}

#[derive(Serialize)]
struct ZetaCell {
    spark: Value,
    zeta: String,
    edge: Option<&'static str>,
    searched: bool,
}

#[derive(Serialize)]
struct ZetaRow {
    first: bool,
    operator: String,
    steps: u32,
    cells: Vec<Option<ZetaCell>>,
}

#[derive(Serialize)]
struct Constant {
    name: &'static str,
    value: String,
    code: bool,
}

#[derive(Serialize)]
struct SettingView {
    classes: String,
    best: bool,
    color: &'static str,
    model: String,
    p: String,
    operator: String,
    steps: u32,
    solver: String,
    nfe: u32,
    seed: u64,
    zeta: String,
    metrics: Vec<CellView>,
    seconds: String,
}

/// Models in display order with their colours.
struct Models {
    list: Vec<(String, f64)>,
    color: BTreeMap<String, &'static str>,
}

impl Models {
    fn new(rows: &[SettingSummary]) -> Self {
        let list = super::models(rows);
        let baselines: BTreeSet<&str> = rows
            .iter()
            .filter(|r| is_baseline(r))
            .map(|r| r.model.as_str())
            .collect();
        let color = list
            .iter()
            .enumerate()
            .map(|(i, (m, _))| {
                let c = if baselines.contains(m.as_str()) {
                    BASELINE_COLOR
                } else {
                    palette_color(i)
                };
                (m.clone(), c)
            })
            .collect();
        Models { list, color }
    }

    fn color(&self, model: &str) -> &'static str {
        self.color.get(model).copied().unwrap_or("#6b7280")
    }
}

/// Renders the whole report as one self-contained HTML document.
///
/// `intro_html` is inserted as-is (it is HTML written by the caller); everything taken
/// from `rows` and `examples` is escaped by the template.
pub fn render_report(
    title: &str,
    intro_html: &str,
    rows: &[SettingSummary],
    examples: &[ExampleGrid],
) -> Result<String> {
    let models = Models::new(rows);
    let seeds: BTreeSet<u64> = rows.iter().map(|r| r.seed).collect();
    let kinds = figures::kinds(rows)
        .iter()
        .map(|k| kind_view(rows, &models, k))
        .collect::<Result<Vec<_>>>()?;
    let nfe_plots = figures::nfe_operators(rows)
        .iter()
        .map(|op| nfe_plot(rows, &models, op))
        .collect::<Result<Vec<_>>>()?;
    let (zeta, zeta_searched, zeta_at_edge) = zeta_rows(rows, &models)?;
    let (settings, metric_columns, constant, show_solver, show_seed) = settings(rows, &models);
    let grids: Vec<Grid> = examples.iter().map(Grid::from).collect();
    let paired = paired_tables(rows, &models);
    let paired_plots = paired_plots(rows, &models)?;
    let floor = floor_tables(rows, &models);
    environment()?
        .get_template("report.html")
        .context("the evaluation report template")?
        .render(minijinja::context! {
            version => env!("CARGO_PKG_VERSION"),
            title => title,
            css => Value::from_safe_string(CSS.to_string()),
            intro => Value::from_safe_string(intro_html.to_string()),
            n_settings => rows.iter().filter(|r| !is_baseline(r)).count(),
            n_models => models.list.iter().filter(|(_, p)| !p.is_nan()).count(),
            n_operators => figures::operators(rows).len(),
            n_seeds => seeds.len(),
            models => model_views(rows, &models),
            headline => headline(rows, &models),
            kinds => kinds,
            nfe_plots => nfe_plots,
            paired => paired,
            paired_plots => paired_plots,
            floor => floor,
            mark => MARK,
            zeta => zeta,
            zeta_searched => zeta_searched,
            zeta_at_edge => zeta_at_edge,
            constant => constant,
            show_solver => show_solver,
            show_seed => show_seed,
            metric_columns => metric_columns,
            settings => settings,
            grids => grids,
        })
        .context("rendering the evaluation report")
}

fn model_views(rows: &[SettingSummary], models: &Models) -> Vec<ModelView> {
    models
        .list
        .iter()
        .map(|(m, p)| ModelView {
            name: m.clone(),
            color: models.color(m),
            p: fmt_p(*p),
            clean: *p == 0.0,
            ambient: *p > 0.0,
            baseline: p.is_nan(),
            erased: format!("{:.0}", p * 100.0),
            settings: rows.iter().filter(|r| &r.model == m).count(),
        })
        .collect()
}

/// Best MSE per task: each model's best step count per operator, the best model bold.
fn headline(rows: &[SettingSummary], models: &Models) -> Vec<minijinja::Value> {
    figures::best_table(rows, &models.list)
        .into_iter()
        .map(|row| {
            let win = figures::winner(rows, row.cells.iter().flatten().copied(), "mse");
            let cells: Vec<CellView> = row
                .cells
                .iter()
                .map(|c| CellView {
                    stat: c.and_then(|i| stat_view(&rows[i], "mse")),
                    win: c.is_some() && *c == win,
                })
                .collect();
            minijinja::context! { operator => row.operator, cells => cells }
        })
        .collect()
}

/// The Ambient models (train p > 0), in display order.
fn ambient(models: &Models) -> Vec<&str> {
    models
        .list
        .iter()
        .filter(|(_, p)| *p > 0.0)
        .map(|(m, _)| m.as_str())
        .collect()
}

/// Per paired metric with data: operators × Ambient models, each cell the paired
/// difference at that model's best step count (the setting the headline table shows).
fn paired_tables(rows: &[SettingSummary], models: &Models) -> Vec<PairedTable> {
    PAIRED_METRICS
        .iter()
        .filter(|&&m| rows.iter().any(|r| r.paired.contains_key(m)))
        .map(|&m| verdict_table(m, figures::paired_table(rows, &models.list, m)))
        .collect()
}

/// Per floor metric with data: operators × trained models, each cell the paired
/// difference with the least-squares floor at the model's best step count.
fn floor_tables(rows: &[SettingSummary], models: &Models) -> Vec<PairedTable> {
    FLOOR_METRICS
        .iter()
        .filter(|&&m| rows.iter().any(|r| r.floor.contains_key(m)))
        .map(|&m| verdict_table(m, figures::floor_table(rows, &models.list, m)))
        .collect()
}

/// A table of paired differences, each cell marked by its verdict, and the counts.
fn verdict_table(metric: &str, table: Vec<(String, Vec<Option<&PairedDiff>>)>) -> PairedTable {
    let (mut better, mut worse, mut unclear) = (0, 0, 0);
    let table_rows = table
        .into_iter()
        .map(|(operator, cells)| PairedRow {
            operator,
            cells: cells
                .into_iter()
                .map(|d| {
                    let d = d?;
                    let verdict = d.verdict(lower_is_better(metric));
                    *match verdict {
                        Verdict::Better => &mut better,
                        Verdict::Worse => &mut worse,
                        Verdict::Unclear => &mut unclear,
                    } += 1;
                    Some(PairedCell {
                        diff: fmt_signed(d.mean),
                        lo: fmt_signed(d.lo),
                        hi: fmt_signed(d.hi),
                        count: d.count,
                        verdict: verdict.as_str(),
                    })
                })
                .collect(),
        })
        .collect();
    PairedTable {
        metric: metric_name(metric),
        rows: table_rows,
        better,
        worse,
        unclear,
    }
}

/// Per operator kind: the paired MSE difference (Ambient − clean) against the level, at
/// each Ambient model's points of the Fig. 2/3 curve, with the bootstrap intervals, and
/// the clean model as the zero line.
fn paired_plots(rows: &[SettingSummary], models: &Models) -> Result<Vec<Value>> {
    let mut plots = Vec::new();
    for kind in figures::kinds(rows) {
        let fig = figures::level_figure(rows, &models.list, &kind);
        let mut series: Vec<Series> = fig
            .curves
            .iter()
            .filter(|(m, _)| ambient(models).contains(&m.as_str()))
            .map(|(m, points)| Series {
                label: m.clone(),
                color: models.color(m).into(),
                points: points
                    .iter()
                    .filter_map(|&(level, i)| {
                        rows[i].paired.get("mse").map(|d| Point {
                            x: level,
                            y: d.mean,
                            lo: d.lo,
                            hi: d.hi,
                        })
                    })
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let reference = rows
            .iter()
            .find(|r| r.kind == kind && !r.paired_with.is_empty())
            .map(|r| r.paired_with.clone())
            .unwrap_or_default();
        series.insert(
            0,
            Series {
                label: format!("{reference} (reference)"),
                color: models.color(&reference).into(),
                points: fig
                    .levels
                    .iter()
                    .map(|&l| Point::sym(l, 0.0, 0.0))
                    .collect(),
            },
        );
        let (name, x_label, _) = kind_info(&kind);
        let mut plot = LinePlot::new(
            &format!("{name} — ΔMSE vs clean"),
            &x_label,
            "ΔMSE (Ambient − clean) ↓",
        );
        level_axis(&mut plot, &fig.levels);
        plot.series = series;
        plots.push(Value::from_safe_string(plot.render()?));
    }
    Ok(plots)
}

/// The x axis of a plot against the operator level: log₂ when the levels span 4× or more
/// (measurement counts, factors), the measured levels as the ticks when there are few.
fn level_axis(plot: &mut LinePlot, levels: &[f64]) {
    let positive = levels.iter().all(|v| *v > 0.0);
    let span = levels.last().copied().unwrap_or(1.0) / levels.first().copied().unwrap_or(1.0);
    if positive && span >= 4.0 {
        plot.x_scale = Scale::Log2;
    }
    if levels.len() <= 12 {
        plot.x_ticks = Some(levels.to_vec());
    }
}

/// Log y for MSE-like metrics spanning more than 30×, linear otherwise.
fn auto_y_scale(metric: &str, series: &[Series]) -> Scale {
    if metric == "mse" {
        log_if_wide(series, 30.0)
    } else {
        Scale::Linear
    }
}

/// A log axis when the series' positive means span at least `ratio`, else linear.
fn log_if_wide(series: &[Series], ratio: f64) -> Scale {
    let (lo, hi) = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.y))
        .filter(|y| y.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
    if lo > 0.0 && hi / lo >= ratio {
        Scale::Log10
    } else {
        Scale::Linear
    }
}

/// A Fig. 2/3 analogue section: metrics against the operator level.
fn kind_view(rows: &[SettingSummary], models: &Models, kind: &str) -> Result<KindView> {
    let (name, x_label, figure) = kind_info(kind);
    let LevelFigure {
        levels,
        steps,
        all_steps,
        curves,
    } = figures::level_figure(rows, &models.list, kind);
    let mut plots = Vec::new();
    for metric in ["mse", "ssim", "lpips"] {
        let series: Vec<Series> = curves
            .iter()
            .map(|(m, points)| Series {
                label: m.clone(),
                color: models.color(m).into(),
                points: points
                    .iter()
                    .filter_map(|&(level, i)| {
                        rows[i]
                            .metrics
                            .get(metric)
                            // No bar where there is no interval (one image).
                            .map(|s| Point::sym(level, s.mean, s.ci95().unwrap_or(0.0)))
                    })
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let mut plot = LinePlot::new(
            &format!("{} — {}", name, metric_name(metric)),
            &x_label,
            &metric_axis(metric),
        );
        level_axis(&mut plot, &levels);
        plot.y_scale = auto_y_scale(metric, &series);
        match metric {
            "ssim" => plot.y_max = Some(1.0),
            _ => plot.y_min = Some(0.0),
        }
        plot.series = series;
        plots.push(Value::from_safe_string(plot.render()?));
    }
    let join = |v: &mut dyn Iterator<Item = String>| v.collect::<Vec<_>>().join(", ");
    Ok(KindView {
        anchor: anchor(kind),
        name,
        figure,
        x_label,
        levels: join(&mut levels.iter().map(|v| fmt_level(*v))),
        steps: (steps.len() > 1).then(|| join(&mut steps.iter().map(|s| s.to_string()))),
        equal_budgets: steps.len() < all_steps.len(),
        plots,
    })
}

/// Fig. 4 analogue: MSE against NFE for one operator, one line per model.
fn nfe_plot(rows: &[SettingSummary], models: &Models, op: &str) -> Result<Value> {
    let series: Vec<Series> = models
        .list
        .iter()
        .map(|(m, _)| Series {
            label: m.clone(),
            color: models.color(m).into(),
            points: figures::nfe_curve(rows, op, m)
                .into_iter()
                .filter_map(|(nfe, i)| {
                    rows[i]
                        .metrics
                        .get("mse")
                        .map(|s| Point::sym(f64::from(nfe), s.mean, s.ci95().unwrap_or(0.0)))
                })
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    // The baseline has no NFE: a flat line across the sweep's range.
    let mut series = series;
    let (lo_nfe, hi_nfe) = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.x))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    if let Some(b) = rows.iter().find(|r| is_baseline(r) && r.operator == op) {
        if let (Some(s), true) = (b.metrics.get("mse"), lo_nfe < hi_nfe) {
            series.push(Series {
                label: b.model.clone(),
                color: models.color(&b.model).into(),
                points: vec![
                    Point::sym(lo_nfe, s.mean, 0.0),
                    Point::sym(hi_nfe, s.mean, 0.0),
                ],
            });
        }
    }
    let mut plot = LinePlot::new(
        &format!("{op} — MSE vs NFE"),
        "NFE (denoiser evaluations per image)",
        &metric_axis("mse"),
    );
    let (lo, hi) = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.x))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    plot.x_scale = if lo > 0.0 && hi / lo >= 4.0 {
        Scale::Log10
    } else {
        Scale::Linear
    };
    // The measured NFEs are the ticks, as the levels are in Figs. 2/3.
    let nfes: BTreeSet<u64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.x.to_bits()))
        .collect();
    if nfes.len() <= 8 {
        plot.x_ticks = Some(nfes.into_iter().map(f64::from_bits).collect());
    }
    // MSE falls steeply over the first NFEs; on a linear axis that hides the cross-over
    // at large NFE, so a wide span goes on a log axis like x.
    plot.y_scale = log_if_wide(&series, 4.0);
    plot.y_min = Some(0.0);
    plot.series = series;
    Ok(Value::from_safe_string(plot.render()?))
}

/// The ζ search: validation MSE against ζ per (operator, steps) × model; with the
/// number of searched settings and of those whose choice sits at a grid edge.
fn zeta_rows(rows: &[SettingSummary], models: &Models) -> Result<(Vec<ZetaRow>, usize, usize)> {
    let searched = rows.iter().filter(|r| r.zeta_grid.len() > 1).count();
    let at_edge = rows.iter().filter(|r| zeta_edge(r).is_some()).count();
    let mut out = Vec::new();
    for (op, _, _) in figures::operators(rows) {
        for (k, s) in super::steps_of(rows, &op).into_iter().enumerate() {
            let cells = models
                .list
                .iter()
                .map(|(m, _)| {
                    let Some(r) = rows
                        .iter()
                        .find(|r| &r.model == m && r.operator == op && r.steps == s)
                    else {
                        return Ok(None);
                    };
                    let pts: Vec<(f64, f64)> = r
                        .zeta_grid
                        .iter()
                        .copied()
                        .zip(r.zeta_val_mse.iter().copied())
                        .collect();
                    let spark = if pts.len() > 1 {
                        plot::sparkline(
                            &pts,
                            Some(r.zeta),
                            Scale::Log10,
                            (120, 30),
                            models.color(m),
                            MARK,
                        )?
                    } else {
                        String::new()
                    };
                    Ok(Some(ZetaCell {
                        spark: Value::from_safe_string(spark),
                        zeta: fmt_short(r.zeta, 3),
                        edge: zeta_edge(r),
                        searched: pts.len() > 1,
                    }))
                })
                .collect::<Result<Vec<_>>>()?;
            out.push(ZetaRow {
                first: k == 0,
                operator: op.clone(),
                steps: s,
                cells,
            });
        }
    }
    Ok((out, searched, at_edge))
}

/// Every setting, with the best per (model, operator) marked: the rows, the metric
/// column headers, what every setting shares (stated once), and which varying columns
/// to show (solver, seed).
fn settings(
    rows: &[SettingSummary],
    models: &Models,
) -> (Vec<SettingView>, Vec<String>, Vec<Constant>, bool, bool) {
    let metrics: Vec<String> = {
        let present: BTreeSet<&String> = rows.iter().flat_map(|r| r.metrics.keys()).collect();
        let mut v: Vec<String> = super::summary::METRICS
            .iter()
            .filter(|m| present.iter().any(|p| p.as_str() == **m))
            .map(|m| m.to_string())
            .collect();
        v.extend(
            present
                .into_iter()
                .filter(|p| !super::summary::METRICS.contains(&p.as_str()))
                .cloned(),
        );
        v
    };
    let best_set: BTreeSet<usize> = super::best_over_steps(rows);
    let solvers: BTreeSet<&str> = rows.iter().map(|r| r.solver.as_str()).collect();
    let seeds: BTreeSet<u64> = rows.iter().map(|r| r.seed).collect();
    let (show_solver, show_seed) = (solvers.len() > 1, seeds.len() > 1);
    let mut constant = Vec::new();
    if let (false, Some(s)) = (show_solver, solvers.first()) {
        constant.push(Constant {
            name: "solver",
            value: s.to_string(),
            code: true,
        });
    }
    if let (false, Some(s)) = (show_seed, seeds.first()) {
        constant.push(Constant {
            name: "seed",
            value: s.to_string(),
            code: false,
        });
    }
    // The lowest test MSE per operator, in bold: what the test images say, not a choice.
    let mut op_rows: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        op_rows.entry(r.operator.as_str()).or_default().push(i);
    }
    let op_best: BTreeMap<&str, usize> = op_rows
        .into_iter()
        .filter_map(|(op, idx)| figures::winner(rows, idx, "mse").map(|b| (op, b)))
        .collect();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| setting_order(rows, a, b));
    let mut prev_op: Option<&str> = None;
    let mut out = Vec::new();
    for i in order {
        let r = &rows[i];
        let mut classes = Vec::new();
        if best_set.contains(&i) {
            classes.push("best");
        }
        if prev_op.is_some_and(|p| p != r.operator) {
            classes.push("grp");
        }
        prev_op = Some(&r.operator);
        let op_winner = op_best.get(r.operator.as_str()) == Some(&i)
            && r.metrics.get("mse").is_some_and(|s| s.mean.is_finite());
        out.push(SettingView {
            classes: classes.join(" "),
            best: best_set.contains(&i),
            color: models.color(&r.model),
            model: r.model.clone(),
            p: fmt_p(r.train_p),
            operator: r.operator.clone(),
            steps: r.steps,
            solver: r.solver.clone(),
            nfe: r.nfe,
            seed: r.seed,
            zeta: fmt_short(r.zeta, 3),
            metrics: metrics
                .iter()
                .map(|m| CellView {
                    stat: stat_view(r, m),
                    win: m == "mse" && op_winner,
                })
                .collect(),
            seconds: fmt_num(r.seconds, 3),
        });
    }
    let headers = metrics.iter().map(|m| metric_axis(m)).collect();
    (out, headers, constant, show_solver, show_seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::format::escape;

    fn setting(model: &str, p: f64, op: &str, steps: u32, mse: f64) -> SettingSummary {
        crate::report::test_setting(
            model,
            p,
            op,
            steps,
            &[("mse", mse), ("ssim", 0.8), ("lpips", 0.2)],
        )
    }

    fn fixture() -> Vec<SettingSummary> {
        let mut rows = Vec::new();
        for (m, p) in [("clean-p0", 0.0), ("amb-p0.4", 0.4), ("<b>&evil", 0.8)] {
            for (op, base) in [("cs:16", 0.08), ("cs:64", 0.04), ("sr:4", 0.02)] {
                rows.push(setting(m, p, op, 10, base * (1.0 + p)));
                rows.push(setting(m, p, op, 50, base * (0.7 + p)));
            }
        }
        let mut edge = setting("clean-p0", 0.0, "sr:2", 10, 0.01);
        edge.zeta = 3.0;
        edge.metrics.remove("lpips");
        rows.push(edge);
        rows
    }

    #[test]
    fn nfe_plots_are_for_the_step_count_sweep() {
        // Every operator has two step counts; cs:64 also a third: only it gets an NFE plot.
        let mut rows = fixture();
        rows.push(setting("clean-p0", 0.0, "cs:64", 25, 0.03));
        let html = render_report("t", "", &rows, &[]).unwrap();
        assert!(html.contains("cs:64 — MSE vs NFE"));
        assert!(!html.contains("cs:16 — MSE vs NFE"));
        // With two step counts everywhere, every such operator gets one.
        let html = render_report("t", "", &fixture(), &[]).unwrap();
        assert!(html.contains("cs:16 — MSE vs NFE") && html.contains("sr:4 — MSE vs NFE"));
        assert!(!html.contains("sr:2 — MSE vs NFE"));
    }

    #[test]
    fn level_curves_compare_the_step_counts_every_level_was_run_at() {
        // cs:64 also ran at N = 100 with a much lower MSE; the cs curve must not use it,
        // since cs:16 never ran that long.
        let mut rows = fixture();
        let mut long = setting("clean-p0", 0.0, "cs:64", 100, 0.00123);
        long.metrics.get_mut("mse").unwrap().std = 0.0;
        rows.push(long);
        let html = render_report("t", "", &rows, &[]).unwrap();
        let fig = &html[html.find("id=\"fig-cs\"").unwrap()..];
        let fig = &fig[..fig
            .find("</section>")
            .unwrap_or(fig.len())
            .min(fig.find("id=\"fig-sr\"").unwrap())];
        assert!(fig.contains("N ∈ {10, 50}"), "{fig}");
        assert!(fig.contains("equal budgets"), "{fig}");
        assert!(
            !fig.contains("0.00123"),
            "the N = 100 point leaked into the curve"
        );
        // The headline table chooses among the same step counts as the curve; the
        // settings table still lists the N = 100 run, without ★.
        let start = html.find(r#"id="headline""#).unwrap();
        let headline = &html[start..start + html[start..].find("</table>").unwrap()];
        assert!(!headline.contains("0.00123"), "{headline}");
        let start = html.find(r#"id="settings""#).unwrap();
        let row = &html[start..];
        let row = &row[..row.find("0.00123").expect("the N = 100 row")];
        let row = &row[row.rfind("<tr").unwrap()..];
        assert!(!row.contains("★"), "{row}");
    }

    fn examples() -> Vec<ExampleGrid> {
        let png = crate::io::image::encode_png([1, 4, 4], &[0.5; 16]).unwrap();
        vec![ExampleGrid {
            operator: "cs:16".into(),
            ids: vec!["img-0".into(), "img-<1>".into()],
            rows: vec![
                ("ground truth".into(), vec![png.clone(), png.clone()]),
                ("clean-p0".into(), vec![png.clone(), Vec::new()]),
            ],
        }]
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn names_every_setting() {
        let rows = fixture();
        let html = render_report("Eval <1>", "<p>Intro.</p>", &rows, &examples()).unwrap();
        assert!(html.contains("<title>Eval &lt;1&gt;</title>"));
        assert!(html.contains("<p>Intro.</p>"));
        for r in &rows {
            assert!(html.contains(&escape(&r.operator)), "{}", r.operator);
            assert!(html.contains(&escape(&r.model)), "{}", r.model);
        }
        // Raw model text never leaks unescaped.
        assert!(!html.contains("<b>&evil"));
        assert!(html.contains("&lt;b&gt;&amp;evil"));
        // Figure sections for both kinds and the NFE sweep.
        for id in [
            r#"id="fig-cs""#,
            r#"id="fig-sr""#,
            r#"id="nfe""#,
            r#"id="zeta""#,
        ] {
            assert!(html.contains(id), "{id}");
        }
        // Best rows are marked: one per (model, operator) = 3 models × 3 ops + 1.
        assert_eq!(html.matches(r#"<tr class="best"#).count(), 10);
        // The sr:2 ζ sits at the upper edge of its grid.
        assert!(html.contains("upper edge"));
    }

    #[test]
    fn without_a_comparison_no_caption_points_at_one() {
        let html = render_report("t", "", &fixture(), &[]).unwrap();
        assert!(
            !html.contains("href=\"#paired\""),
            "no link to a section that is not there"
        );
        assert!(html.contains("so none is compared image by image"));
    }

    #[test]
    fn is_self_contained() {
        let html = render_report("t", "<p>x</p>", &fixture(), &examples()).unwrap();
        let stripped = html.replace("http://www.w3.org/2000/svg", "");
        assert!(!stripped.contains("http://") && !stripped.contains("https://"));
        for bad in [
            "<script",
            "<link",
            "<iframe",
            "@import",
            "url(",
            "src=\"http",
            "href=\"http",
            "src=\"//",
        ] {
            assert!(!html.contains(bad), "{bad}");
        }
        // Every src is a data URI.
        for (pos, _) in html.match_indices(" src=\"") {
            assert!(html[pos + 6..].starts_with("data:image/png;base64,"));
        }
        assert_eq!(html.matches("data:image/png;base64,iVBORw0KGgo").count(), 3);
        assert!(!html.contains("NaN"));
    }

    #[test]
    fn is_well_formed_enough() {
        let html = render_report("t", "", &fixture(), &examples()).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        for tag in [
            "table", "svg", "tr", "td", "th", "div", "figure", "section", "thead", "tbody", "h2",
            "nav",
        ] {
            let open = html.matches(&format!("<{tag}>")).count()
                + html.matches(&format!("<{tag} ")).count();
            let close = html.matches(&format!("</{tag}>")).count();
            assert_eq!(open, close, "<{tag}>");
        }
        assert_eq!(html.matches("<html").count(), 1);
        assert!(html.trim_end().ends_with("</html>"));
    }

    #[test]
    fn a_metric_over_fewer_images_than_its_setting_is_flagged() {
        let mut rows = fixture();
        rows[0].metrics.get_mut("ssim").unwrap().count = 15;
        let html = render_report("t", "", &rows, &[]).unwrap();
        assert_eq!(html.matches(r#"class="n short""#).count(), 1, "{html}");
        assert!(html.contains("(15)</span>"));
    }

    #[test]
    fn a_mean_over_one_image_has_no_interval() {
        let mut rows = fixture();
        rows[0].metrics.get_mut("mse").unwrap().count = 1;
        let html = render_report("t", "", &rows, &[]).unwrap();
        let start = html.find(r#"id="settings""#).unwrap();
        let cell = &html[start..];
        let cell = &cell[..cell.find("(1)</span>").expect("the one-image cell")];
        let cell = &cell[cell.rfind("<td").unwrap()..];
        assert!(!cell.contains('±'), "{cell}");
        assert!(!html.contains("± 0<"), "no zero-width interval");
    }

    #[test]
    fn empty_inputs_render() {
        let html = render_report("empty", "", &[], &[]).unwrap();
        assert!(html.contains("0 settings"));
        assert_eq!(
            html.matches("<table").count(),
            html.matches("</table>").count()
        );
    }

    #[test]
    fn paired_section_colours_each_verdict() {
        let mut rows = fixture();
        let d = |mean: f64, lo: f64, hi: f64| crate::report::PairedDiff {
            mean,
            lo,
            hi,
            count: 16,
        };
        for r in rows.iter_mut().filter(|r| r.train_p > 0.0) {
            r.paired_with = "clean-p0".into();
            let diff = match r.operator.as_str() {
                "cs:16" => d(-0.01, -0.02, -0.005),
                "cs:64" => d(0.01, 0.005, 0.02),
                _ => d(0.001, -0.002, 0.004),
            };
            r.paired.insert("mse".into(), diff);
        }
        let html = render_report("t", "", &rows, &[]).unwrap();
        assert!(html.contains(r#"id="paired""#));
        assert!(html.contains(r##"<a href="#paired">the paired comparison</a>"##));
        // Two Ambient models × (cs:16 better, cs:64 worse, sr:4 unclear).
        assert_eq!(html.matches(r#"<td class="num better">"#).count(), 2);
        assert_eq!(html.matches(r#"<td class="num worse">"#).count(), 2);
        assert_eq!(html.matches(r#"<td class="num unclear">"#).count(), 2);
        assert!(html.contains("(2 better, 2 worse, 2 not distinguishable)"));
        // One ΔMSE plot per kind with pairs, the clean model as the zero line.
        assert!(html.contains("Compressed sensing — ΔMSE vs clean"));
        assert!(html.contains("clean-p0 (reference)"));
        // Without pairs, no section.
        let plain = render_report("t", "", &fixture(), &[]).unwrap();
        assert!(!plain.contains(r#"id="paired""#));
    }

    #[test]
    fn the_baseline_is_a_row_on_every_plot_and_table_but_not_a_model_to_tune() {
        let mut rows = fixture();
        let base = |op: &str, mse: f64| {
            let mut r = setting("x", 0.0, op, 1, mse);
            r.model = crate::report::BASELINE_MODEL.into();
            r.train_p = f64::NAN;
            r.solver = crate::report::BASELINE_SOLVER.into();
            (r.steps, r.nfe, r.zeta) = (0, 0, f64::NAN);
            r.zeta_grid.clear();
            r.zeta_val_mse.clear();
            r
        };
        let plain = render_report("t", "", &rows, &[]).unwrap();
        rows.push(base("cs:16", 0.2));
        rows.push(base("cs:64", 0.1));
        rows.push(base("sr:4", 0.05));
        let html = render_report("t", "", &rows, &[]).unwrap();
        // On the level plots (hover text names its points) and the NFE plots.
        assert!(
            html.contains("least squares (A⁺y): 16 → 0.200"),
            "level plot"
        );
        assert!(html.contains("least squares (A⁺y): 19 → 0.100"), "NFE plot");
        // Its steps (0) are not a step count the sweep searched, nor a ζ row.
        assert!(!html.contains("N ∈ {0,"));
        assert_eq!(
            html.matches("ζ = ").count(),
            plain.matches("ζ = ").count(),
            "no ζ cells for the baseline"
        );
        assert!(html.contains("the plain baseline A⁺y"));
    }
}
