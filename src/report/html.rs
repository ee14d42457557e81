//! `report.html`: one self-contained file (inline CSS, inline SVG plots, PNGs as
//! `data:` URIs; no scripts, nothing fetched) reproducing the paper's comparisons:
//! clean-trained vs Ambient models across compressed-sensing measurement counts
//! (Fig. 2), super-resolution factors (Fig. 3) and numbers of function evaluations
//! (Fig. 4), plus the ζ search, every setting, and example reconstructions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::svg::{self, escape, fmt_num, fmt_short, Errors, LinePlot, Point, Scale, Series};
use super::{best_of, best_per_model_operator, mse_key, steps_of, ExampleGrid, SettingSummary};

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

fn metric_name(m: &str) -> String {
    match m {
        "mse" => "MSE".into(),
        "psnr" => "PSNR".into(),
        "ssim" => "SSIM".into(),
        "lpips" => "LPIPS".into(),
        "residual" => "residual".into(),
        m => m.to_string(),
    }
}

/// Axis label with the direction of "better".
fn metric_axis(m: &str) -> String {
    match m {
        "mse" | "lpips" | "residual" => format!("{} ↓", metric_name(m)),
        "psnr" => "PSNR (dB) ↑".into(),
        "ssim" => "SSIM ↑".into(),
        m => m.to_string(),
    }
}

/// Sort rank of an operator kind: compressed sensing, super-resolution, then the rest.
pub(crate) fn kind_rank(kind: &str) -> (u8, &str) {
    match kind {
        "cs" => (0, kind),
        "sr" => (1, kind),
        k => (2, k),
    }
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

/// Models in display order (train p, then name) with their colours.
struct Models {
    list: Vec<(String, f64)>,
    color: BTreeMap<String, &'static str>,
}

impl Models {
    fn new(rows: &[SettingSummary]) -> Self {
        let list = super::models(rows);
        let color = list
            .iter()
            .enumerate()
            .map(|(i, (m, _))| (m.clone(), svg::palette_color(i)))
            .collect();
        Models { list, color }
    }

    fn color(&self, model: &str) -> &'static str {
        self.color.get(model).copied().unwrap_or("#6b7280")
    }
}

/// Operators in display order: (operator, kind, level).
pub(crate) fn operators(rows: &[SettingSummary]) -> Vec<(String, String, f64)> {
    let mut ops: Vec<(String, String, f64)> = Vec::new();
    for r in rows {
        if !ops.iter().any(|(o, _, _)| o == &r.operator) {
            ops.push((r.operator.clone(), r.kind.clone(), r.level));
        }
    }
    ops.sort_by(|a, b| {
        kind_rank(&a.1)
            .cmp(&kind_rank(&b.1))
            .then(a.2.total_cmp(&b.2))
            .then(a.0.cmp(&b.0))
    });
    ops
}

fn fmt_stat(s: Option<&super::Stat>) -> String {
    match s {
        Some(s) => format!(
            r#"{}<span class="pm"> ± {}</span><span class="n">({})</span>"#,
            escape(&fmt_num(s.mean, 3)),
            escape(&fmt_num(s.std, 2)),
            s.count
        ),
        None => r#"<span class="pm">—</span>"#.into(),
    }
}

fn fmt_p(p: f64) -> String {
    if p.is_finite() {
        let s = format!("{p:.3}");
        let s = s.trim_end_matches('0');
        if s.ends_with('.') {
            format!("{s}0")
        } else {
            s.to_string()
        }
    } else {
        "–".into()
    }
}

fn fmt_level(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        fmt_num(v, 4)
    }
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

/// Renders the whole report as one self-contained HTML document.
///
/// `intro_html` is inserted as-is (it is HTML written by the caller); everything taken
/// from `rows` and `examples` is escaped.
pub fn render_report(
    title: &str,
    intro_html: &str,
    rows: &[SettingSummary],
    examples: &[ExampleGrid],
) -> String {
    let models = Models::new(rows);
    let ops = operators(rows);
    let best = best_per_model_operator(rows);
    let mut kinds: Vec<String> = rows
        .iter()
        .map(|r| r.kind.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    kinds.sort_by(|a, b| kind_rank(a).cmp(&kind_rank(b)));
    let n_steps = |op: &str| steps_of(rows, op).len();
    // The NFE plots are for the step-count sweep (Fig. 4): when some operators were run at
    // three or more step counts, those; otherwise every operator with more than one.
    let widest = ops.iter().map(|(op, _, _)| n_steps(op)).max().unwrap_or(0);
    let min_steps = if widest >= 3 { 3 } else { 2 };
    let mut nfe_ops: Vec<&(String, String, f64)> = ops
        .iter()
        .filter(|(op, _, _)| n_steps(op) >= min_steps)
        .collect();
    // Stable: the widest sweeps first, display order within.
    nfe_ops.sort_by_key(|(op, _, _)| std::cmp::Reverse(n_steps(op)));

    let mut o = String::with_capacity(64 * 1024);
    let _ = write!(
        o,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="adps {}">
<title>{}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<h1>{}</h1>
"#,
        env!("CARGO_PKG_VERSION"),
        escape(title),
        escape(title)
    );
    let seeds: BTreeSet<u64> = rows.iter().map(|r| r.seed).collect();
    let _ = writeln!(
        o,
        r#"<div class="meta">{} settings · {} models · {} operators · {} seed{}</div>"#,
        rows.len(),
        models.list.len(),
        ops.len(),
        seeds.len(),
        if seeds.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(o, r#"<div class="intro">{intro_html}</div>"#);

    // Table of contents.
    o.push_str(r##"<nav class="toc"><a href="#models">Models</a><a href="#headline">Best MSE per task</a>"##);
    for k in &kinds {
        let (name, _, fig) = kind_info(k);
        let _ = write!(
            o,
            r##"<a href="#fig-{}">{}{}</a>"##,
            escape(&anchor(k)),
            escape(&name),
            fig.map(|f| format!(" ({f})")).unwrap_or_default()
        );
    }
    if !nfe_ops.is_empty() {
        o.push_str(r##"<a href="#nfe">Speed vs quality (Figure 4)</a>"##);
    }
    o.push_str(r##"<a href="#zeta">ζ search</a><a href="#settings">All settings</a>"##);
    if !examples.is_empty() {
        o.push_str(r##"<a href="#examples">Examples</a>"##);
    }
    o.push_str("</nav>\n");

    section_models(&mut o, rows, &models);
    section_headline(&mut o, rows, &models, &ops, &best);
    for k in &kinds {
        section_levels(&mut o, rows, &models, k);
    }
    if !nfe_ops.is_empty() {
        section_nfe(&mut o, rows, &models, &nfe_ops);
    }
    section_zeta(&mut o, rows, &models, &ops);
    section_settings(&mut o, rows, &models, &best);
    if !examples.is_empty() {
        section_examples(&mut o, examples);
    }
    let _ = write!(
        o,
        "<footer>Generated by adps {} — Ambient DPS evaluation report. Self-contained: no scripts, no external resources.</footer>\n</main>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    o
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

fn swatch(color: &str) -> String {
    format!(
        r#"<span class="swatch" style="background:{}"></span>"#,
        escape(color)
    )
}

fn section_models(o: &mut String, rows: &[SettingSummary], models: &Models) {
    o.push_str(r#"<h2 id="models">Models</h2>
<p class="caption">Each model is a diffusion prior; <em>p</em> is the probability with which each pixel was erased in its training images. <em>p</em> = 0 is the clean-trained baseline; <em>p</em> &gt; 0 are Ambient Diffusion models that never saw a complete image. Colours are the same in every plot.</p>
<div class="table-wrap compact"><table><thead><tr><th>Model</th><th class="num">train p</th><th>Training data</th><th class="num">settings</th></tr></thead><tbody>
"#);
    for (m, p) in &models.list {
        let desc = if *p == 0.0 {
            "clean images (baseline)".to_string()
        } else {
            format!("Ambient: {:.0}% of pixels erased", p * 100.0)
        };
        let n = rows.iter().filter(|r| &r.model == m).count();
        let _ = writeln!(
            o,
            r#"<tr><td>{}{}</td><td class="num">{}</td><td>{}</td><td class="num">{n}</td></tr>"#,
            swatch(models.color(m)),
            escape(m),
            fmt_p(*p),
            escape(&desc)
        );
    }
    o.push_str("</tbody></table></div>\n");
}

fn section_headline(
    o: &mut String,
    rows: &[SettingSummary],
    models: &Models,
    ops: &[(String, String, f64)],
    best: &BTreeMap<(String, String), usize>,
) {
    o.push_str(r#"<h2 id="headline">Best MSE per task</h2>
<p class="caption">Mean test MSE ± std of each model’s best step count for each operator (lower is better); the best model per operator is in bold.</p>
<div class="table-wrap"><table><thead><tr><th>Operator</th>"#);
    for (m, p) in &models.list {
        let _ = write!(
            o,
            r#"<th class="num">{}{} <span class="n">p={}</span></th>"#,
            swatch(models.color(m)),
            escape(m),
            fmt_p(*p)
        );
    }
    o.push_str("</tr></thead><tbody>\n");
    for (op, _, _) in ops {
        let cells: Vec<Option<usize>> = models
            .list
            .iter()
            .map(|(m, _)| best.get(&(m.clone(), op.clone())).copied())
            .collect();
        let winner = best_of(rows, cells.iter().flatten().copied())
            .filter(|&i| mse_key(&rows[i]).is_finite());
        let _ = write!(o, "<tr><td><code>{}</code></td>", escape(op));
        for c in cells {
            match c {
                Some(i) => {
                    let cls = if Some(i) == winner { "num win" } else { "num" };
                    let _ = write!(
                        o,
                        r#"<td class="{cls}">{}</td>"#,
                        fmt_stat(rows[i].metrics.get("mse"))
                    );
                }
                None => o.push_str(r#"<td class="num"><span class="pm">—</span></td>"#),
            }
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody></table></div>\n");
}

/// Fig. 2/3 analogue: metrics against the operator level, best step count per point.
fn section_levels(o: &mut String, rows: &[SettingSummary], models: &Models, kind: &str) {
    let (name, x_label, fig) = kind_info(kind);
    let _ = write!(
        o,
        r#"<h2 id="fig-{}">{}{}</h2>"#,
        escape(&anchor(kind)),
        escape(&name),
        fig.map(|f| format!(r#" <span class="pm">— {f} analogue</span>"#))
            .unwrap_or_default()
    );
    // The step counts every operator of this kind was run at: the points of one curve
    // compare equal budgets, even where an operator also has an NFE sweep (Fig. 4).
    let mut common: Option<BTreeSet<u32>> = None;
    for (op, _, _) in operators(rows).iter().filter(|(_, k, _)| k == kind) {
        let these = steps_of(rows, op);
        common = Some(match common {
            Some(c) => c.intersection(&these).copied().collect(),
            None => these,
        });
    }
    let common = common.unwrap_or_default();
    // Per model: level → best setting over those step counts (over operators sharing a
    // level too); with no step count in common, over all of them.
    let mut per_model: Vec<(&str, BTreeMap<u64, usize>)> = Vec::new();
    for (m, _) in &models.list {
        let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            if &r.model == m && r.kind == kind && (common.is_empty() || common.contains(&r.steps)) {
                groups.entry(r.level.to_bits()).or_default().push(i);
            }
        }
        let by_level: BTreeMap<u64, usize> = groups
            .into_iter()
            .filter_map(|(level, idx)| best_of(rows, idx).map(|b| (level, b)))
            .collect();
        if !by_level.is_empty() {
            per_model.push((m, by_level));
        }
    }
    let levels: BTreeSet<u64> = per_model
        .iter()
        .flat_map(|(_, l)| l.keys().copied())
        .collect();
    let levels: Vec<f64> = {
        let mut v: Vec<f64> = levels.into_iter().map(f64::from_bits).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let all_steps: BTreeSet<u32> = rows
        .iter()
        .filter(|r| r.kind == kind)
        .map(|r| r.steps)
        .collect();
    let steps = if common.is_empty() {
        all_steps.clone()
    } else {
        common.clone()
    };
    let _ = write!(
        o,
        r#"<p class="caption">Reconstruction quality against the {x_label} ({}). One line per model; each point is the step count with the lowest mean test MSE for that model and level{}, as in the paper{}; bars show ± 1 std over the test images.</p>"#,
        levels
            .iter()
            .map(|v| fmt_level(*v))
            .collect::<Vec<_>>()
            .join(", "),
        if steps.len() > 1 {
            format!(
                " (searched over N ∈ {{{}}})",
                steps
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        },
        if steps.len() < all_steps.len() {
            " — the step counts every level was run at, so each curve compares equal budgets (the NFE sweep’s extra step counts are in Figure 4 and the tables)"
        } else {
            ""
        }
    );
    let positive = levels.iter().all(|v| *v > 0.0);
    let span = levels.last().copied().unwrap_or(1.0) / levels.first().copied().unwrap_or(1.0);
    let x_scale = if positive && span >= 4.0 {
        Scale::Log2
    } else {
        Scale::Linear
    };
    o.push_str(r#"<div class="plots">"#);
    let mut any = false;
    for metric in ["mse", "ssim", "lpips"] {
        let series: Vec<Series> = per_model
            .iter()
            .map(|(m, by_level)| Series {
                label: m.to_string(),
                color: models.color(m).into(),
                points: by_level
                    .iter()
                    .filter_map(|(&l, &i)| {
                        rows[i].metrics.get(metric).map(|s| Point {
                            x: f64::from_bits(l),
                            y: s.mean,
                            err: s.std,
                        })
                    })
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        any = true;
        let mut plot = LinePlot::new(
            &format!("{} — {}", name, metric_name(metric)),
            &x_label,
            &metric_axis(metric),
        );
        plot.x_scale = x_scale;
        plot.y_scale = auto_y_scale(metric, &series);
        match metric {
            "ssim" => (plot.y_min, plot.y_max) = (None, Some(1.0)),
            _ => plot.y_min = Some(0.0),
        }
        if levels.len() <= 12 {
            plot.x_ticks = Some(levels.clone());
        }
        plot.errors = Errors::Bars;
        plot.series = series;
        let _ = write!(o, r#"<div class="card">{}</div>"#, plot.render());
    }
    o.push_str("</div>\n");
    if !any {
        o.push_str(
            r#"<p class="caption">No MSE, SSIM or LPIPS values for this operator kind.</p>"#,
        );
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

/// Fig. 4 analogue: MSE against NFE per operator with several step counts.
fn section_nfe(
    o: &mut String,
    rows: &[SettingSummary],
    models: &Models,
    ops: &[&(String, String, f64)],
) {
    o.push_str(r#"<h2 id="nfe">Speed vs quality <span class="pm">— Figure 4 analogue</span></h2>
<p class="caption">Mean test MSE against the number of denoiser evaluations per image (NFE), one line per model; bars show ± 1 std over the test images (slightly offset per model so they stay readable). Operators with the most step counts come first; operators run at only two step counts, when others have more, are left to the table of all settings. The paper finds models trained with more corruption reach a given quality with fewer NFEs, while cleaner models win at large NFE.</p>
<div class="plots">"#);
    for (op, _, _) in ops {
        let series: Vec<Series> = models
            .list
            .iter()
            .map(|(m, _)| {
                let mut by_nfe: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
                for (i, r) in rows.iter().enumerate() {
                    if &r.model == m && &r.operator == op {
                        by_nfe.entry(r.nfe).or_default().push(i);
                    }
                }
                Series {
                    label: m.clone(),
                    color: models.color(m).into(),
                    points: by_nfe
                        .into_iter()
                        .filter_map(|(nfe, idx)| {
                            let i = best_of(rows, idx)?;
                            rows[i].metrics.get("mse").map(|s| Point {
                                x: f64::from(nfe),
                                y: s.mean,
                                err: s.std,
                            })
                        })
                        .collect(),
                }
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        let mut plot = LinePlot::new(
            &format!("{op} — MSE vs NFE"),
            "NFE (denoiser evaluations per image)",
            &metric_axis("mse"),
        );
        let nfes: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.x))
            .collect();
        let (lo, hi) = nfes
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        plot.x_scale = if lo > 0.0 && hi / lo >= 4.0 {
            Scale::Log10
        } else {
            Scale::Linear
        };
        // MSE falls steeply over the first NFEs; on a linear axis that hides the
        // cross-over at large NFE, so a wide span goes on a log axis like x.
        plot.y_scale = log_if_wide(&series, 4.0);
        plot.y_min = Some(0.0);
        plot.errors = Errors::Bars;
        plot.series = series;
        let _ = write!(o, r#"<div class="card">{}</div>"#, plot.render());
    }
    o.push_str("</div>\n");
}

/// The ζ search: validation MSE against ζ per (operator, steps) × model.
fn section_zeta(
    o: &mut String,
    rows: &[SettingSummary],
    models: &Models,
    ops: &[(String, String, f64)],
) {
    let searched = rows.iter().filter(|r| r.zeta_grid.len() > 1).count();
    let at_edge = rows.iter().filter(|r| zeta_edge(r).is_some()).count();
    let _ = write!(
        o,
        r#"<h2 id="zeta">ζ search</h2>
<p class="caption">The guidance step size ζ is chosen per setting on the validation images (never the test images). Each cell plots validation MSE against ζ (log scale; y on a log scale when it spans more than 20×) and marks the chosen ζ in <span style="color:{MARK}">●</span>; hover a curve for its values. A choice at the grid edge suggests the grid should be widened. {at_edge} of {searched} searched settings chose a ζ at an edge.</p>
<div class="table-wrap"><table><thead><tr><th>Operator</th><th class="num">steps</th>"#
    );
    for (m, _) in &models.list {
        let _ = write!(o, "<th>{}{}</th>", swatch(models.color(m)), escape(m));
    }
    o.push_str("</tr></thead><tbody>\n");
    for (op, _, _) in ops {
        let steps: BTreeSet<u32> = rows
            .iter()
            .filter(|r| &r.operator == op)
            .map(|r| r.steps)
            .collect();
        for (k, s) in steps.iter().enumerate() {
            let _ = write!(
                o,
                r#"<tr{}><td>{}</td><td class="num">{s}</td>"#,
                if k == 0 { r#" class="grp""# } else { "" },
                if k == 0 {
                    format!("<code>{}</code>", escape(op))
                } else {
                    String::new()
                }
            );
            for (m, _) in &models.list {
                let Some(r) = rows
                    .iter()
                    .find(|r| &r.model == m && &r.operator == op && r.steps == *s)
                else {
                    o.push_str(r#"<td><span class="pm">—</span></td>"#);
                    continue;
                };
                let pts: Vec<(f64, f64)> = r
                    .zeta_grid
                    .iter()
                    .copied()
                    .zip(r.zeta_val_mse.iter().copied())
                    .collect();
                let spark = if pts.len() > 1 {
                    svg::sparkline(
                        &pts,
                        Some(r.zeta),
                        Scale::Log10,
                        120.0,
                        30.0,
                        models.color(m),
                        MARK,
                    )
                } else {
                    String::new()
                };
                let flag = match zeta_edge(r) {
                    Some(e) => format!(r#"<span class="badge">{e} edge</span>"#),
                    None if pts.len() > 1 => r#"<span class="ok">interior</span>"#.into(),
                    None => r#"<span class="ok">not searched</span>"#.into(),
                };
                let _ = write!(
                    o,
                    r#"<td class="zeta">{spark}<span class="zv">ζ = {}</span>{flag}</td>"#,
                    escape(&fmt_short(r.zeta, 3))
                );
            }
            o.push_str("</tr>\n");
        }
    }
    o.push_str("</tbody></table></div>\n");
}

/// Every setting, with the best per (model, operator) marked.
fn section_settings(
    o: &mut String,
    rows: &[SettingSummary],
    models: &Models,
    best: &BTreeMap<(String, String), usize>,
) {
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
    let best_set: BTreeSet<usize> = best.values().copied().collect();
    // Columns that are the same for every setting are stated once in the caption.
    let solvers: BTreeSet<&str> = rows.iter().map(|r| r.solver.as_str()).collect();
    let seeds: BTreeSet<u64> = rows.iter().map(|r| r.seed).collect();
    let (show_solver, show_seed) = (solvers.len() > 1, seeds.len() > 1);
    let mut constant = Vec::new();
    if let (false, Some(s)) = (show_solver, solvers.first()) {
        constant.push(format!("solver <code>{}</code>", escape(s)));
    }
    if let (false, Some(s)) = (show_seed, seeds.first()) {
        constant.push(format!("seed {s}"));
    }
    let _ = write!(
        o,
        r#"<h2 id="settings">All settings</h2>
<p class="caption">Mean ± std (count) over the test images. <span class="star">★</span> and shading mark each model’s best step count per operator (lowest mean MSE), the setting used in the figures above; the lowest MSE per operator is in bold.{}</p>
<div class="table-wrap"><table class="settings"><thead><tr><th></th><th>Model</th><th class="num">train p</th><th>Operator</th><th class="num">steps</th>{}<th class="num">NFE</th>{}<th class="num">ζ</th>"#,
        if constant.is_empty() {
            String::new()
        } else {
            format!(" All settings use {}.", constant.join(" and "))
        },
        if show_solver { "<th>solver</th>" } else { "" },
        if show_seed {
            r#"<th class="num">seed</th>"#
        } else {
            ""
        },
    );
    for m in &metrics {
        let _ = write!(o, r#"<th class="num">{}</th>"#, escape(&metric_axis(m)));
    }
    o.push_str(r#"<th class="num">seconds</th></tr></thead><tbody>"#);
    o.push('\n');
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| setting_order(rows, a, b));
    let mut op_best: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        let cur = op_best.get(r.operator.as_str()).copied();
        if let Some(b) = best_of(rows, cur.into_iter().chain([i])) {
            op_best.insert(&r.operator, b);
        }
    }
    let mut prev_op: Option<&str> = None;
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
        let _ = write!(
            o,
            r#"<tr{}><td>{}</td><td>{}{}</td><td class="num">{}</td><td><code>{}</code></td><td class="num">{}</td>"#,
            if classes.is_empty() {
                String::new()
            } else {
                format!(r#" class="{}""#, classes.join(" "))
            },
            if best_set.contains(&i) {
                r#"<span class="star" title="best step count for this model and operator">★</span>"#
            } else {
                ""
            },
            swatch(models.color(&r.model)),
            escape(&r.model),
            fmt_p(r.train_p),
            escape(&r.operator),
            r.steps,
        );
        if show_solver {
            let _ = write!(o, "<td>{}</td>", escape(&r.solver));
        }
        let _ = write!(o, r#"<td class="num">{}</td>"#, r.nfe);
        if show_seed {
            let _ = write!(o, r#"<td class="num">{}</td>"#, r.seed);
        }
        let _ = write!(
            o,
            r#"<td class="num">{}</td>"#,
            escape(&fmt_short(r.zeta, 3))
        );
        for m in &metrics {
            let win = m == "mse"
                && op_best.get(r.operator.as_str()) == Some(&i)
                && mse_key(r).is_finite();
            let _ = write!(
                o,
                r#"<td class="num{}">{}</td>"#,
                if win { " win" } else { "" },
                fmt_stat(r.metrics.get(m))
            );
        }
        let _ = writeln!(
            o,
            r#"<td class="num">{}</td></tr>"#,
            escape(&fmt_num(r.seconds, 3))
        );
    }
    o.push_str("</tbody></table></div>\n");
}

fn section_examples(o: &mut String, examples: &[ExampleGrid]) {
    o.push_str(r#"<h2 id="examples">Examples</h2>
<p class="caption">Test images (columns) with their measurement and each model’s reconstruction (rows). Small images are enlarged without smoothing.</p>
<div class="examples">"#);
    match super::templates::render_grids(examples) {
        Ok(grids) => o.push_str(&grids),
        Err(e) => {
            let _ = write!(o, r#"<p class="caption">{}</p>"#, escape(&format!("{e:#}")));
        }
    }
    o.push_str("</div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let html = render_report("t", "", &rows, &[]);
        assert!(html.contains("cs:64 — MSE vs NFE"));
        assert!(!html.contains("cs:16 — MSE vs NFE"));
        // With two step counts everywhere, every such operator gets one.
        let html = render_report("t", "", &fixture(), &[]);
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
        let html = render_report("t", "", &rows, &[]);
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
        // The headline table still reports cs:64's best over all its step counts.
        assert!(html.contains("0.00123"), "headline lost the N = 100 run");
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
        let html = render_report("Eval <1>", "<p>Intro.</p>", &rows, &examples());
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
    fn is_self_contained() {
        let html = render_report("t", "<p>x</p>", &fixture(), &examples());
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
        let html = render_report("t", "", &fixture(), &examples());
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
    fn empty_inputs_render() {
        let html = render_report("empty", "", &[], &[]);
        assert!(html.contains("0 settings"));
        assert_eq!(
            html.matches("<table").count(),
            html.matches("</table>").count()
        );
    }
}
