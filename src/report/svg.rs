//! A small, dependency-free line-plot renderer producing inline SVG.
//!
//! Built for the evaluation report: a handful of series (one per model), a few points
//! each, mean ± std as error bars or a shaded band, linear or logarithmic axes with
//! readable ticks, and a legend laid out *below* the plot area so it never covers data.
//! Also [`sparkline`], a tiny axis-less plot for table cells.
//!
//! The output never contains `NaN`/`inf`: non-finite points (and non-positive values on
//! a log axis) are dropped, degenerate ranges (one point, std 0) are widened, and every
//! coordinate is formatted from finite numbers. No element ids are emitted, so many plots
//! can be inlined into one HTML document.

use std::fmt::Write;

/// Average glyph width as a fraction of the font size (system sans-serif, digits and
/// lowercase); used to lay out labels without measuring text.
const CHAR_W: f64 = 0.58;
const FONT: &str =
    "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif";
const AXIS_COLOR: &str = "#4b5563";
const GRID_COLOR: &str = "#e5e7eb";
const TEXT_COLOR: &str = "#1f2933";
const MUTED_COLOR: &str = "#6b7280";

/// A muted categorical palette (Tableau 10, reordered so the weakest colours come last).
pub const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#9c755f", "#ff9da7",
    "#edc948", "#bab0ac",
];

/// The palette colour for the `i`-th series (wraps around).
pub fn palette_color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Escapes text for XML/HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Formats a number compactly with `sig` significant digits: fixed notation for
/// magnitudes in [1e-3, 1e5), scientific (`1.2e-4`) outside; `–` for non-finite values.
pub fn fmt_num(v: f64, sig: usize) -> String {
    let sig = sig.max(1);
    if !v.is_finite() {
        return "–".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{:.*e}", sig - 1, v);
        // Trim trailing zeros of the mantissa: 1.20e-4 → 1.2e-4.
        return match s.split_once('e') {
            Some((m, e)) if m.contains('.') => {
                format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
            }
            _ => s,
        };
    }
    let decimals = (sig as i32 - 1 - a.log10().floor() as i32).max(0) as usize;
    format!("{v:.decimals$}")
}

/// Like [`fmt_num`] but without trailing zeros (tick labels, parameters: `0.5`, `10`).
pub fn fmt_short(v: f64, sig: usize) -> String {
    let s = fmt_num(v, sig);
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Formats a coordinate (always finite by construction; guarded anyway).
fn c(v: f64) -> String {
    if v.is_finite() {
        let s = format!("{v:.1}");
        s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
    } else {
        "0".into()
    }
}

fn text_width(s: &str, font_px: f64) -> f64 {
    s.chars().count() as f64 * font_px * CHAR_W
}

/// How values map onto an axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log2,
    Log10,
}

impl Scale {
    fn fwd(self, v: f64) -> f64 {
        match self {
            Scale::Linear => v,
            Scale::Log2 => v.log2(),
            Scale::Log10 => v.log10(),
        }
    }

    fn inv(self, t: f64) -> f64 {
        match self {
            Scale::Linear => t,
            Scale::Log2 => t.exp2(),
            Scale::Log10 => 10f64.powf(t),
        }
    }

    fn accepts(self, v: f64) -> bool {
        v.is_finite() && (self == Scale::Linear || v > 0.0)
    }
}

/// How a series' spread (mean ± std) is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errors {
    /// Not drawn.
    None,
    /// A vertical bar with caps at each point (series slightly dodged horizontally).
    Bars,
    /// A translucent band around the line.
    Band,
}

/// One plotted value: `y` ± `err` at `x`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    /// Half-width of the error bar / band (e.g. a standard deviation); 0 for none.
    pub err: f64,
}

/// One line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    /// Any CSS colour; use [`palette_color`] with a stable index for consistency across plots.
    pub color: String,
    pub points: Vec<Point>,
}

/// A line plot; build with [`LinePlot::new`], adjust the public fields, then [`LinePlot::render`].
#[derive(Debug, Clone, PartialEq)]
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_scale: Scale,
    pub y_scale: Scale,
    /// Explicit x ticks (e.g. the measured levels); automatic when `None`.
    pub x_ticks: Option<Vec<f64>>,
    pub errors: Errors,
    pub width: f64,
    pub height: f64,
    /// Draw the legend (below the plot area).
    pub legend: bool,
    /// Hard limits for a linear y axis (e.g. 1 for SSIM): the axis never extends past
    /// them when all means lie within; bars beyond are cut at the frame.
    pub y_min: Option<f64>,
    pub y_max: Option<f64>,
    pub series: Vec<Series>,
}

impl LinePlot {
    /// A 420×300 plot with linear axes, error bars and a legend.
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        LinePlot {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            x_ticks: None,
            errors: Errors::Bars,
            width: 420.0,
            height: 300.0,
            legend: true,
            y_min: None,
            y_max: None,
            series: Vec::new(),
        }
    }

    /// Renders the plot as an `<svg>` element (with `xmlns`, so it also works standalone).
    pub fn render(&self) -> String {
        let (w, h) = (self.width.max(120.0), self.height.max(90.0));
        // Keep only points both axes can show.
        let series: Vec<(&Series, Vec<Point>)> = self
            .series
            .iter()
            .map(|s| {
                let pts: Vec<Point> = s
                    .points
                    .iter()
                    .filter(|p| self.x_scale.accepts(p.x) && self.y_scale.accepts(p.y))
                    .map(|p| Point {
                        err: if p.err.is_finite() { p.err.abs() } else { 0.0 },
                        ..*p
                    })
                    .collect();
                (s, pts)
            })
            .collect();
        let all: Vec<Point> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();

        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{}" height="{}" viewBox="0 0 {} {}" font-family="{}" role="img">"#,
            c(w),
            c(h),
            c(w),
            c(h),
            FONT
        );
        let _ = write!(out, "<title>{}</title>", escape(&self.title));
        let title_h = if self.title.is_empty() { 10.0 } else { 28.0 };
        if !self.title.is_empty() {
            let _ = write!(
                out,
                r#"<text x="{}" y="18" text-anchor="middle" font-size="13" font-weight="600" fill="{TEXT_COLOR}">{}</text>"#,
                c(w / 2.0),
                escape(&self.title)
            );
        }
        if all.is_empty() {
            let _ = write!(
                out,
                r#"<rect x="8" y="{}" width="{}" height="{}" fill="none" stroke="{GRID_COLOR}"/><text x="{}" y="{}" text-anchor="middle" font-size="12" fill="{MUTED_COLOR}">no data</text></svg>"#,
                c(title_h),
                c(w - 16.0),
                c(h - title_h - 8.0),
                c(w / 2.0),
                c((h + title_h) / 2.0)
            );
            return out;
        }

        // Axes (in transformed space).
        let xs: Vec<f64> = all.iter().map(|p| p.x).collect();
        let x_axis = Axis::new(self.x_scale, &xs, &xs, self.x_ticks.as_deref(), false);
        let lows: Vec<f64> = all
            .iter()
            .map(|p| {
                let lo = p.y - p.err;
                if self.y_scale.accepts(lo) {
                    lo
                } else {
                    p.y
                }
            })
            .collect();
        let highs: Vec<f64> = all.iter().map(|p| p.y + p.err).collect();
        let mut y_axis = Axis::new(self.y_scale, &lows, &highs, None, true);
        if self.y_scale == Scale::Linear {
            let (ymin, ymax) = all
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                    (a.min(p.y), b.max(p.y))
                });
            if let Some(m) = self
                .y_max
                .filter(|m| m.is_finite() && *m >= ymax && *m > y_axis.lo)
            {
                y_axis.hi = y_axis.hi.min(m);
            }
            if let Some(m) = self
                .y_min
                .filter(|m| m.is_finite() && *m <= ymin && *m < y_axis.hi)
            {
                y_axis.lo = y_axis.lo.max(m);
            }
            let (lo, hi, eps) = (y_axis.lo, y_axis.hi, (y_axis.hi - y_axis.lo) * 1e-9);
            y_axis.ticks.retain(|t| *t >= lo - eps && *t <= hi + eps);
        }

        // Layout.
        let y_tick_labels: Vec<String> = y_axis.ticks.iter().map(|&t| y_axis.label(t)).collect();
        let ytw = y_tick_labels
            .iter()
            .map(|s| text_width(s, 11.0))
            .fold(0.0, f64::max);
        let left = 8.0 + if self.y_label.is_empty() { 0.0 } else { 18.0 } + ytw + 8.0;
        let right = 16.0;
        let legend_items: Vec<(&str, &str, f64)> = if self.legend {
            series
                .iter()
                .filter(|(s, _)| !s.label.is_empty())
                .map(|(s, _)| {
                    (
                        s.label.as_str(),
                        s.color.as_str(),
                        26.0 + text_width(&s.label, 11.0) + 14.0,
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        let legend_width = w - 2.0 * 10.0;
        let mut legend_rows: Vec<Vec<(&str, &str, f64)>> = Vec::new();
        let mut row_w = 0.0;
        for item in legend_items {
            if legend_rows.is_empty() || row_w + item.2 > legend_width {
                legend_rows.push(Vec::new());
                row_w = 0.0;
            }
            row_w += item.2;
            legend_rows.last_mut().expect("pushed above").push(item);
        }
        let legend_h = if legend_rows.is_empty() {
            0.0
        } else {
            legend_rows.len() as f64 * 16.0 + 6.0
        };
        let x_label_h = if self.x_label.is_empty() { 0.0 } else { 18.0 };
        let bottom = 6.0 + 16.0 + x_label_h + legend_h + 4.0;
        let (x0, x1) = (left, w - right);
        let (y0, y1) = (title_h, (h - bottom).max(title_h + 20.0));
        let px = |v: f64| x_axis.map(v, x0, x1);
        let py = |v: f64| y_axis.map(v, y1, y0);

        // Grid and ticks.
        out.push_str(r#"<g class="grid" stroke-width="1">"#);
        for &t in &y_axis.ticks {
            let y = py(t);
            let _ = write!(
                out,
                r#"<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{GRID_COLOR}"/>"#,
                c(x0),
                c(x1),
                c(y),
                c(y)
            );
        }
        for &t in &x_axis.ticks {
            let x = px(t);
            let _ = write!(
                out,
                r#"<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{GRID_COLOR}" stroke-dasharray="2 3"/>"#,
                c(x),
                c(x),
                c(y0),
                c(y1)
            );
        }
        out.push_str("</g>");
        let _ = write!(
            out,
            r#"<path class="axes" d="M{} {}V{}H{}" fill="none" stroke="{AXIS_COLOR}" stroke-width="1"/>"#,
            c(x0),
            c(y0),
            c(y1),
            c(x1)
        );
        out.push_str(&format!(
            r#"<g class="ticks" font-size="11" fill="{MUTED_COLOR}">"#
        ));
        for (&t, label) in y_axis.ticks.iter().zip(&y_tick_labels) {
            let y = py(t);
            let _ = write!(
                out,
                r#"<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{AXIS_COLOR}"/><text x="{}" y="{}" text-anchor="end" dominant-baseline="middle">{}</text>"#,
                c(x0 - 4.0),
                c(x0),
                c(y),
                c(y),
                c(x0 - 6.0),
                c(y),
                escape(label)
            );
        }
        let mut last_right = f64::NEG_INFINITY;
        for &t in &x_axis.ticks {
            let x = px(t);
            let label = x_axis.label(t);
            let half = text_width(&label, 11.0) / 2.0;
            let _ = write!(
                out,
                r#"<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{AXIS_COLOR}"/>"#,
                c(x),
                c(x),
                c(y1),
                c(y1 + 4.0)
            );
            // Skip labels that would collide with the previous one.
            if x - half >= last_right + 4.0 {
                let _ = write!(
                    out,
                    r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
                    c(x),
                    c(y1 + 16.0),
                    escape(&label)
                );
                last_right = x + half;
            }
        }
        out.push_str("</g>");
        if !self.x_label.is_empty() {
            let _ = write!(
                out,
                r#"<text x="{}" y="{}" text-anchor="middle" font-size="12" fill="{TEXT_COLOR}">{}</text>"#,
                c((x0 + x1) / 2.0),
                c(y1 + 22.0 + 12.0),
                escape(&self.x_label)
            );
        }
        if !self.y_label.is_empty() {
            let (lx, ly) = (14.0, (y0 + y1) / 2.0);
            let _ = write!(
                out,
                r#"<text transform="translate({} {}) rotate(-90)" text-anchor="middle" font-size="12" fill="{TEXT_COLOR}">{}</text>"#,
                c(lx),
                c(ly),
                escape(&self.y_label)
            );
        }

        // Series: dodge error bars horizontally so overlapping ones stay readable.
        let n = series.len();
        let dodge = if self.errors == Errors::Bars && n > 1 {
            (x1 - x0) / 100.0
        } else {
            0.0
        };
        for (i, (s, pts)) in series.iter().enumerate() {
            let off = (i as f64 - (n as f64 - 1.0) / 2.0) * dodge.min(5.0);
            let mut pts = pts.clone();
            pts.sort_by(|a, b| a.x.total_cmp(&b.x));
            let color = escape(&s.color);
            let label = escape(&s.label);
            let _ = write!(out, r#"<g class="series-group">"#);
            let clamp_y = |v: f64| {
                if y_axis.scale.accepts(v) {
                    py(v).clamp(y0, y1)
                } else {
                    y1
                }
            };
            if self.errors == Errors::Band && pts.iter().any(|p| p.err > 0.0) {
                let mut d = String::new();
                for (k, p) in pts.iter().enumerate() {
                    let _ = write!(
                        d,
                        "{}{} {}",
                        if k == 0 { "M" } else { "L" },
                        c(px(p.x) + off),
                        c(clamp_y(p.y + p.err))
                    );
                }
                for p in pts.iter().rev() {
                    let _ = write!(d, "L{} {}", c(px(p.x) + off), c(clamp_y(p.y - p.err)));
                }
                d.push('Z');
                let _ = write!(
                    out,
                    r#"<path class="band" d="{d}" fill="{color}" fill-opacity="0.12" stroke="none"/>"#
                );
            }
            let mut d = String::new();
            for (k, p) in pts.iter().enumerate() {
                let _ = write!(
                    d,
                    "{}{} {}",
                    if k == 0 { "M" } else { "L" },
                    c(px(p.x) + off),
                    c(py(p.y))
                );
            }
            let _ = write!(
                out,
                r#"<path class="series" d="{d}" fill="none" stroke="{color}" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"/>"#
            );
            if self.errors == Errors::Bars && pts.iter().any(|p| p.err > 0.0) {
                let mut d = String::new();
                for p in pts.iter().filter(|p| p.err > 0.0) {
                    let x = px(p.x) + off;
                    let (ya, yb) = (clamp_y(p.y + p.err), clamp_y(p.y - p.err));
                    let _ = write!(
                        d,
                        "M{} {}V{}M{} {}H{}M{} {}H{}",
                        c(x),
                        c(ya),
                        c(yb),
                        c(x - 3.0),
                        c(ya),
                        c(x + 3.0),
                        c(x - 3.0),
                        c(yb),
                        c(x + 3.0)
                    );
                }
                let _ = write!(
                    out,
                    r#"<path class="err" d="{d}" fill="none" stroke="{color}" stroke-width="1.2" stroke-opacity="0.75"/>"#
                );
            }
            for p in &pts {
                let _ = write!(
                    out,
                    r##"<circle cx="{}" cy="{}" r="3.2" fill="{color}" stroke="#fff" stroke-width="1"><title>{label}: {} → {} ± {}</title></circle>"##,
                    c(px(p.x) + off),
                    c(py(p.y)),
                    escape(&fmt_short(p.x, 4)),
                    escape(&fmt_num(p.y, 3)),
                    escape(&fmt_num(p.err, 2))
                );
            }
            out.push_str("</g>");
        }

        // Legend, below the x-axis label: never over the data.
        if !legend_rows.is_empty() {
            let top = h - legend_h + 2.0;
            out.push_str(r#"<g class="legend" font-size="11">"#);
            for (r, row) in legend_rows.iter().enumerate() {
                let total: f64 = row.iter().map(|i| i.2).sum::<f64>() - 14.0;
                let mut x = (w - total) / 2.0;
                let y = top + r as f64 * 16.0 + 8.0;
                for (label, color, iw) in row {
                    let color = escape(color);
                    let _ = write!(
                        out,
                        r#"<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{color}" stroke-width="2"/><circle cx="{}" cy="{}" r="3" fill="{color}"/><text x="{}" y="{}" dominant-baseline="middle" fill="{TEXT_COLOR}">{}</text>"#,
                        c(x),
                        c(x + 20.0),
                        c(y),
                        c(y),
                        c(x + 10.0),
                        c(y),
                        c(x + 25.0),
                        c(y),
                        escape(label)
                    );
                    x += iw;
                }
            }
            out.push_str("</g>");
        }
        out.push_str("</svg>");
        out
    }
}

/// One axis: its range in transformed space and its ticks (data space).
struct Axis {
    scale: Scale,
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    /// Linear tick step (for label precision); 0 for log axes.
    step: f64,
}

impl Axis {
    /// An axis covering `[min(lows), max(highs)]` (all accepted by `scale`, non-empty).
    /// `pad_nice`: extend a linear range to nice tick bounds (y axes).
    fn new(
        scale: Scale,
        lows: &[f64],
        highs: &[f64],
        explicit: Option<&[f64]>,
        pad_nice: bool,
    ) -> Axis {
        let min = lows.iter().copied().fold(f64::INFINITY, f64::min);
        let max = highs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (min, max) = if min.is_finite() && max.is_finite() {
            (min, max)
        } else {
            (0.0, 1.0)
        };
        match scale {
            Scale::Linear => {
                let (mut a, mut b) = (min, max);
                if b - a <= f64::EPSILON * a.abs().max(b.abs()).max(1e-300) {
                    let d = if a == 0.0 { 1.0 } else { a.abs() * 0.1 };
                    a -= d;
                    b += d;
                }
                let pad = (b - a) * 0.05;
                let data_nonneg = min >= 0.0;
                a -= pad;
                b += pad;
                if data_nonneg && a < 0.0 {
                    a = 0.0;
                }
                let step = nice_step(b - a, 5.0);
                let first = (a / step).ceil() as i64;
                let last = (b / step).floor() as i64;
                let (a, b) = if pad_nice {
                    ((a / step).floor() * step, (b / step).ceil() * step)
                } else {
                    (a, b)
                };
                let mut ticks: Vec<f64> = if pad_nice {
                    let k0 = (a / step).round() as i64;
                    let k1 = (b / step).round() as i64;
                    (k0..=k1).map(|k| k as f64 * step).collect()
                } else {
                    (first..=last).map(|k| k as f64 * step).collect()
                };
                if let Some(e) = explicit {
                    ticks = e
                        .iter()
                        .copied()
                        .filter(|v| v.is_finite() && *v >= a && *v <= b)
                        .collect();
                }
                Axis {
                    scale,
                    lo: a,
                    hi: b,
                    ticks,
                    step,
                }
            }
            Scale::Log2 | Scale::Log10 => {
                let (mut a, mut b) = (scale.fwd(min), scale.fwd(max));
                if b - a < 1e-9 {
                    a -= 0.5;
                    b += 0.5;
                } else {
                    let pad = ((b - a) * 0.06).max(0.05);
                    a -= pad;
                    b += pad;
                }
                let (lo_v, hi_v) = (scale.inv(a), scale.inv(b));
                let ticks: Vec<f64> = match explicit {
                    Some(e) => e
                        .iter()
                        .copied()
                        .filter(|v| scale.accepts(*v) && *v >= lo_v && *v <= hi_v)
                        .collect(),
                    None => log_ticks(scale, lo_v, hi_v),
                };
                Axis {
                    scale,
                    lo: a,
                    hi: b,
                    ticks,
                    step: 0.0,
                }
            }
        }
    }

    fn map(&self, v: f64, p0: f64, p1: f64) -> f64 {
        let t = (self.scale.fwd(v) - self.lo) / (self.hi - self.lo);
        let t = if t.is_finite() { t } else { 0.5 };
        p0 + t * (p1 - p0)
    }

    fn label(&self, v: f64) -> String {
        if self.scale == Scale::Linear && self.step > 0.0 {
            let v = if v.abs() < self.step * 1e-9 { 0.0 } else { v };
            let decimals = (-self.step.log10()).ceil().max(0.0) as usize;
            if v != 0.0 && (v.abs() >= 1e5 || decimals > 4) {
                fmt_short(v, 3)
            } else {
                format!("{v:.decimals$}")
            }
        } else {
            fmt_short(v, 3)
        }
    }
}

/// A step of 1, 2 or 5 × 10^k giving about `target` intervals over `range`.
fn nice_step(range: f64, target: f64) -> f64 {
    let raw = (range / target).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Ticks for a log axis over `[lo, hi]` (data space): powers of the base, densified
/// (1-2-5 for log10, every power for log2) until there are at least three.
fn log_ticks(scale: Scale, lo: f64, hi: f64) -> Vec<f64> {
    let within = |v: &f64| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9);
    match scale {
        Scale::Log2 => {
            let (a, b) = (lo.log2().ceil() as i32, hi.log2().floor() as i32);
            let all: Vec<f64> = (a..=b).map(|k| 2f64.powi(k)).collect();
            // Thin out to at most ~8 labels.
            let stride = all.len().div_ceil(8).max(1);
            all.into_iter().step_by(stride).collect()
        }
        _ => {
            let (a, b) = (lo.log10().floor() as i32 - 1, hi.log10().ceil() as i32 + 1);
            for mults in [&[1.0][..], &[1.0, 2.0, 5.0], &[1.0, 2.0, 3.0, 5.0, 7.0]] {
                let t: Vec<f64> = (a..=b)
                    .flat_map(|k| mults.iter().map(move |m| m * 10f64.powi(k)))
                    .filter(within)
                    .collect();
                if t.len() >= 3 {
                    return t;
                }
            }
            // Under one decade: linear nice ticks inside the range.
            let step = nice_step(hi - lo, 4.0);
            let (k0, k1) = ((lo / step).ceil() as i64, (hi / step).floor() as i64);
            (k0..=k1)
                .map(|k| k as f64 * step)
                .filter(|v| *v > 0.0)
                .collect()
        }
    }
}

/// A tiny axis-less line for a table cell, made for a ζ search (tooltips name x "ζ"):
/// `points` as (x, y), the point at `chosen_x` (if any) marked in `mark_color` with a
/// dashed vertical rule. The x extent covers every point; points with a non-finite y
/// (a diverged run) are drawn as small red crosses along the top edge. y is shown on a
/// log scale when it spans more than 20×.
pub fn sparkline(
    points: &[(f64, f64)],
    chosen_x: Option<f64>,
    x_scale: Scale,
    width: f64,
    height: f64,
    color: &str,
    mark_color: &str,
) -> String {
    let mut all: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(x, _)| x_scale.accepts(x))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pts: Vec<(f64, f64)> = all.iter().copied().filter(|p| p.1.is_finite()).collect();
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="spark" width="{}" height="{}" viewBox="0 0 {} {}" role="img">"#,
        c(width),
        c(height),
        c(width),
        c(height)
    );
    let tip: Vec<String> = all
        .iter()
        .map(|(x, y)| {
            let y = if y.is_finite() {
                fmt_num(*y, 3)
            } else {
                "diverged".into()
            };
            format!("ζ={} → {y}", fmt_short(*x, 3))
        })
        .collect();
    let _ = write!(out, "<title>{}</title>", escape(&tip.join("\n")));
    if all.is_empty() {
        out.push_str("</svg>");
        return out;
    }
    let (ymin, ymax) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let y_scale = if ymin > 0.0 && ymax / ymin > 20.0 {
        Scale::Log10
    } else {
        Scale::Linear
    };
    let (pad_x, pad_y) = (4.0, 4.0);
    let tx = |x: f64| x_scale.fwd(x);
    let (xa, xb) = (tx(all[0].0), tx(all[all.len() - 1].0));
    let (ya, yb) = (y_scale.fwd(ymin), y_scale.fwd(ymax));
    let map = |v: f64, a: f64, b: f64, p0: f64, p1: f64| {
        if b - a > 1e-12 {
            p0 + (v - a) / (b - a) * (p1 - p0)
        } else {
            (p0 + p1) / 2.0
        }
    };
    let px = |x: f64| map(tx(x), xa, xb, pad_x, width - pad_x);
    let py = |y: f64| map(y_scale.fwd(y), ya, yb, height - pad_y, pad_y);
    let mut d = String::new();
    for (k, &(x, y)) in pts.iter().enumerate() {
        let _ = write!(
            d,
            "{}{} {}",
            if k == 0 { "M" } else { "L" },
            c(px(x)),
            c(py(y))
        );
    }
    let color = escape(color);
    let mark = escape(mark_color);
    if let Some(cx) = chosen_x.filter(|v| x_scale.accepts(*v)) {
        let x = px(cx).clamp(0.0, width);
        let _ = write!(
            out,
            r#"<line x1="{}" x2="{}" y1="0" y2="{}" stroke="{mark}" stroke-opacity="0.5" stroke-dasharray="2 2"/>"#,
            c(x),
            c(x),
            c(height)
        );
    }
    let _ = write!(
        out,
        r#"<path class="series" d="{d}" fill="none" stroke="{color}" stroke-width="1.5" stroke-linejoin="round"/>"#
    );
    for &(x, y) in &pts {
        let is_chosen = chosen_x.is_some_and(|cx| (cx - x).abs() <= 1e-9 * cx.abs().max(x.abs()));
        if is_chosen {
            let _ = write!(
                out,
                r##"<circle cx="{}" cy="{}" r="3.2" fill="{mark}" stroke="#fff" stroke-width="1"/>"##,
                c(px(x)),
                c(py(y))
            );
        } else {
            let _ = write!(
                out,
                r#"<circle cx="{}" cy="{}" r="1.6" fill="{color}"/>"#,
                c(px(x)),
                c(py(y))
            );
        }
    }
    // Diverged values (non-finite): a small cross along the top edge.
    let mut d = String::new();
    for &(x, _) in all.iter().filter(|p| !p.1.is_finite()) {
        let (x, y) = (px(x), pad_y);
        let _ = write!(
            d,
            "M{} {}L{} {}M{} {}L{} {}",
            c(x - 2.5),
            c(y - 2.5),
            c(x + 2.5),
            c(y + 2.5),
            c(x - 2.5),
            c(y + 2.5),
            c(x + 2.5),
            c(y - 2.5)
        );
    }
    if !d.is_empty() {
        let _ = write!(
            out,
            r##"<path class="diverged" d="{d}" stroke="#b91c1c" stroke-width="1.3" fill="none"/>"##
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot(series: Vec<Series>) -> LinePlot {
        let mut p = LinePlot::new("MSE vs M", "measurements M", "MSE");
        p.x_scale = Scale::Log2;
        p.series = series;
        p
    }

    fn series(label: &str, pts: &[(f64, f64, f64)]) -> Series {
        Series {
            label: label.into(),
            color: palette_color(0).into(),
            points: pts.iter().map(|&(x, y, err)| Point { x, y, err }).collect(),
        }
    }

    #[test]
    fn one_series_path_per_series() {
        let svg = plot(vec![
            series(
                "a",
                &[(16.0, 0.1, 0.01), (32.0, 0.05, 0.01), (64.0, 0.02, 0.0)],
            ),
            series("b", &[(16.0, 0.12, 0.02), (64.0, 0.01, 0.005)]),
            series("c", &[(32.0, 0.07, 0.0)]),
        ])
        .render();
        assert_eq!(svg.matches(r#"class="series""#).count(), 3);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<svg").count(), svg.matches("</svg>").count());
        // Legend entries for each series.
        for l in ["a", "b", "c"] {
            assert!(svg.contains(&format!(">{l}</text>")), "{l}");
        }
    }

    #[test]
    fn escapes_text() {
        let mut p = plot(vec![series("<p&q>", &[(16.0, 1.0, 0.1)])]);
        p.title = r#"a "quoted" <title> & 'more'"#.into();
        let svg = p.render();
        assert!(svg.contains("&lt;p&amp;q&gt;"));
        assert!(svg.contains("&quot;quoted&quot; &lt;title&gt; &amp; &#39;more&#39;"));
        assert!(!svg.contains("<p&q>"));
        assert!(!svg.contains("<title> &"));
    }

    #[test]
    fn single_point_and_zero_std_are_finite() {
        for scale in [Scale::Linear, Scale::Log2, Scale::Log10] {
            for errors in [Errors::Bars, Errors::Band, Errors::None] {
                let mut p = plot(vec![series("only", &[(8.0, 0.5, 0.0)])]);
                p.x_scale = scale;
                p.y_scale = scale;
                p.errors = errors;
                let svg = p.render();
                assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
                assert_eq!(svg.matches(r#"class="series""#).count(), 1);
                assert!(svg.contains("<circle"));
            }
        }
        // A zero value with zero spread on a linear axis, and all-equal values.
        let svg = plot(vec![series("z", &[(16.0, 0.0, 0.0), (32.0, 0.0, 0.0)])]).render();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn drops_non_finite_and_non_positive_log_points() {
        let mut p = plot(vec![series(
            "x",
            &[
                (16.0, f64::NAN, 0.0),
                (0.0, 1.0, 0.0),
                (32.0, 1.0, f64::INFINITY),
                (64.0, 2.0, 0.5),
            ],
        )]);
        p.y_scale = Scale::Log10;
        let svg = p.render();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 2 + 1); // two points + legend marker
        let empty = plot(vec![series("e", &[(f64::NAN, 1.0, 0.0)])]).render();
        assert!(empty.contains("no data"));
    }

    #[test]
    fn ticks_are_nice_and_cover_the_data() {
        let a = Axis::new(Scale::Linear, &[0.013], &[0.087], None, true);
        assert!(a.ticks.len() >= 3 && a.ticks.len() <= 11, "{:?}", a.ticks);
        assert!(a.ticks[0] <= 0.013 && *a.ticks.last().unwrap() >= 0.087);
        assert_eq!(a.label(0.02), "0.02");
        let l = Axis::new(Scale::Log2, &[16.0], &[512.0], None, false);
        assert_eq!(l.ticks, vec![16.0, 32.0, 64.0, 128.0, 256.0, 512.0]);
        let n = Axis::new(Scale::Log10, &[10.0], &[200.0], None, false);
        assert_eq!(n.ticks, vec![10.0, 20.0, 50.0, 100.0, 200.0]);
        assert_eq!(n.label(200.0), "200");
    }

    #[test]
    fn formats_numbers_compactly() {
        assert_eq!(fmt_num(0.012345, 3), "0.0123");
        assert_eq!(fmt_num(25.314, 3), "25.3");
        assert_eq!(fmt_num(0.00012, 3), "1.2e-4");
        assert_eq!(fmt_num(0.0, 3), "0");
        assert_eq!(fmt_num(f64::NAN, 3), "–");
        assert_eq!(fmt_short(0.5, 3), "0.5");
    }

    #[test]
    fn sparkline_marks_the_chosen_point() {
        let pts = [
            (0.1, 0.5),
            (0.3, 0.2),
            (1.0, 0.1),
            (3.0, f64::NAN),
            (10.0, 4.0),
        ];
        let s = sparkline(
            &pts,
            Some(1.0),
            Scale::Log10,
            120.0,
            32.0,
            "#4e79a7",
            "#d62728",
        );
        assert!(!s.contains("NaN") && !s.contains("inf"));
        assert_eq!(s.matches(r##"fill="#d62728""##).count(), 1);
        assert_eq!(s.matches("<circle").count(), 4);
        assert_eq!(s.matches(r#"class="diverged""#).count(), 1);
        assert!(s.contains("ζ=3 → diverged"));
        let single = sparkline(
            &[(1.0, 0.1)],
            Some(1.0),
            Scale::Log10,
            120.0,
            32.0,
            "#000",
            "#f00",
        );
        assert!(!single.contains("NaN"));
    }
}
