//! The reports' plots, drawn with plotters' SVG backend (no fonts needed: text goes out
//! as SVG `<text>`, laid out from plotters' size estimate):
//!
//! - [`LinePlot`]: a few series (one per model), mean ± spread as error bars, linear or
//!   logarithmic axes, explicit ticks where the measured levels should be the ticks, and
//!   the legend *below* the plot area, so it never covers data;
//! - [`sparkline`]: a tiny axis-less curve for a table cell (the ζ search);
//! - [`histogram`]: counts of per-image values (the run report).
//!
//! Hand-written here, and why: plotters puts a series legend inside the plot area only,
//! so the legend below is drawn from plotters' own elements in a split-off area; its log
//! axis ticks start at the first power of the base inside the range (an MSE from 0.02 to
//! 0.4 gets none below 0.1), so log ticks are the 1-2-5 steps chosen in [`log_ticks`].
//! Every value is
//! filtered before it reaches plotters: non-finite points and non-positive values on a
//! log axis are dropped and degenerate ranges widened, so no SVG ever contains `NaN`.
//! A `<title>` with every plotted value is added to each plot (the hover text).

use std::ops::Range;

use anyhow::{Context, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::format::{escape, fmt_num, fmt_short};

const FONT: &str = "sans-serif";
const AXIS: RGBColor = RGBColor(75, 85, 99);
const GRID: RGBColor = RGBColor(229, 231, 235);
const TEXT: RGBColor = RGBColor(31, 41, 51);
const MUTED: RGBColor = RGBColor(107, 114, 128);

/// How values map onto an axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log2,
    Log10,
}

impl Scale {
    fn accepts(self, v: f64) -> bool {
        v.is_finite() && (self == Scale::Linear || v > 0.0)
    }

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

    fn base(self) -> f64 {
        match self {
            Scale::Log2 => 2.0,
            _ => 10.0,
        }
    }
}

/// One plotted value: `y` at `x`, with an error bar from `lo` to `hi` (a confidence
/// interval; no bar when `lo == hi`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Point {
    /// `y ± half` (a symmetric interval).
    pub fn sym(x: f64, y: f64, half: f64) -> Self {
        Point {
            x,
            y,
            lo: y - half,
            hi: y + half,
        }
    }

    fn has_bar(&self) -> bool {
        self.hi > self.lo
    }
}

/// One line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    /// `#rrggbb`; use [`super::format::palette_color`] with a stable index.
    pub color: String,
    pub points: Vec<Point>,
}

/// A line plot; build with [`LinePlot::new`], adjust the public fields, then render.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_scale: Scale,
    pub y_scale: Scale,
    /// Explicit x ticks (e.g. the measured levels); automatic when `None`.
    pub x_ticks: Option<Vec<f64>>,
    pub width: u32,
    pub height: u32,
    /// Hard limits for a linear y axis (e.g. 1 for SSIM): the axis never extends past
    /// them when all means lie within; bars beyond are cut at the frame.
    pub y_min: Option<f64>,
    pub y_max: Option<f64>,
    pub series: Vec<Series>,
}

impl LinePlot {
    /// A 440×320 plot with linear axes.
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        LinePlot {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            x_ticks: None,
            width: 440,
            height: 320,
            y_min: None,
            y_max: None,
            series: Vec::new(),
        }
    }

    /// The points both axes can show, per series (bars made finite, around `y`).
    fn visible(&self) -> Vec<(&Series, Vec<Point>)> {
        self.series
            .iter()
            .map(|s| {
                let mut pts: Vec<Point> = s
                    .points
                    .iter()
                    .filter(|p| self.x_scale.accepts(p.x) && self.y_scale.accepts(p.y))
                    .map(|p| {
                        let finite = p.lo.is_finite() && p.hi.is_finite();
                        let (lo, hi) = if finite { (p.lo, p.hi) } else { (p.y, p.y) };
                        Point {
                            lo: lo.min(p.y),
                            hi: hi.max(p.y),
                            ..*p
                        }
                    })
                    .collect();
                pts.sort_by(|a, b| a.x.total_cmp(&b.x));
                (s, pts)
            })
            .collect()
    }

    /// The y range: every mean and bar, within `y_min`/`y_max` where the means are.
    fn y_range(&self, pts: &[Point]) -> Range<f64> {
        let lows = pts.iter().map(|p| {
            if self.y_scale.accepts(p.lo) {
                p.lo
            } else {
                p.y
            }
        });
        let highs = pts.iter().map(|p| p.hi);
        let (mut lo, mut hi) = (
            lows.fold(f64::INFINITY, f64::min),
            highs.fold(f64::NEG_INFINITY, f64::max),
        );
        if self.y_scale == Scale::Linear {
            let (ymin, ymax) = pts
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                    (a.min(p.y), b.max(p.y))
                });
            if let Some(m) = self.y_max.filter(|m| m.is_finite() && *m >= ymax) {
                hi = hi.min(m);
            }
            if let Some(m) = self.y_min.filter(|m| m.is_finite() && *m <= ymin) {
                lo = lo.max(m);
            }
        }
        padded(
            self.y_scale,
            lo,
            hi,
            self.y_scale == Scale::Linear && lo >= 0.0,
        )
    }

    /// Renders the plot as an `<svg>` element.
    pub fn render(&self) -> Result<String> {
        let series = self.visible();
        let all: Vec<Point> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
        let (w, h) = (self.width.max(160), self.height.max(120));
        let mut svg = String::new();
        let drawn = (|| -> Result<()> {
            let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
            root.fill(&WHITE).map_err(io_kind)?;
            let legend: Vec<(&str, RGBColor)> = series
                .iter()
                .filter(|(s, _)| !s.label.is_empty())
                .map(|(s, _)| (s.label.as_str(), rgb(&s.color)))
                .collect();
            let legend_rows = legend_layout(&root, &legend, w);
            let legend_h = if legend_rows.is_empty() {
                0
            } else {
                legend_rows.len() as u32 * 16 + 8
            };
            let (area, legend_area) = root.split_vertically(h - legend_h);
            let area = area
                .titled(
                    &self.title,
                    (FONT, 17).into_font().style(FontStyle::Bold).color(&TEXT),
                )
                .map_err(io_kind)?;
            if all.is_empty() {
                area.draw(&Text::new(
                    "no data",
                    ((w / 2) as i32 - 20, ((h - legend_h) / 2) as i32 - 20),
                    (FONT, 13).into_font().color(&MUTED),
                ))
                .map_err(io_kind)?;
            } else {
                let xs = all.iter().map(|p| p.x);
                let (xlo, xhi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                    (a.min(x), b.max(x))
                });
                let x = padded(self.x_scale, xlo, xhi, false);
                let y = self.y_range(&all);
                let x_ticks = self.x_ticks.as_ref().map(|t| {
                    t.iter()
                        .copied()
                        .filter(|v| self.x_scale.accepts(*v) && x.contains(v))
                        .collect::<Vec<_>>()
                });
                match (self.x_scale, self.y_scale) {
                    (Scale::Linear, Scale::Linear) => {
                        self.draw(&area, linear(x, x_ticks), linear(y, None), &series)
                    }
                    (Scale::Linear, ys) => {
                        self.draw(&area, linear(x, x_ticks), log(y, ys, None), &series)
                    }
                    (xs, Scale::Linear) => {
                        self.draw(&area, log(x, xs, x_ticks), linear(y, None), &series)
                    }
                    (xs, ys) => self.draw(&area, log(x, xs, x_ticks), log(y, ys, None), &series),
                }
                .map_err(io_kind)?;
            }
            draw_legend(&legend_area, &legend_rows, w).map_err(io_kind)?;
            root.present().map_err(io_kind)?;
            Ok(())
        })();
        drawn.with_context(|| format!("drawing the plot {:?}", self.title))?;
        Ok(with_title(svg, &self.hover_text(&series)))
    }

    /// The plot's values as text: `label: x → y [lo, hi]` per point.
    fn hover_text(&self, series: &[(&Series, Vec<Point>)]) -> String {
        let mut lines = vec![self.title.clone()];
        for (s, pts) in series {
            for p in pts {
                let bar = if p.has_bar() {
                    format!(" [{}, {}]", fmt_num(p.lo, 3), fmt_num(p.hi, 3))
                } else {
                    String::new()
                };
                lines.push(format!(
                    "{}: {} → {}{bar}",
                    s.label,
                    fmt_short(p.x, 4),
                    fmt_num(p.y, 3),
                ));
            }
        }
        lines.join("\n")
    }

    fn draw<X, Y>(
        &self,
        area: &DrawingArea<SVGBackend, Shift>,
        x: X,
        y: Y,
        series: &[(&Series, Vec<Point>)],
    ) -> Result<()>
    where
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let x_span = self.x_scale.fwd(x.range().end) - self.x_scale.fwd(x.range().start);
        let y_range = y.range();
        let mut chart = ChartBuilder::on(area)
            .margin_right(14)
            .margin_top(4)
            .x_label_area_size(if self.x_label.is_empty() { 22 } else { 40 })
            .y_label_area_size(if self.y_label.is_empty() { 46 } else { 66 })
            .build_cartesian_2d(x, y)
            .map_err(io_kind)?;
        chart
            .configure_mesh()
            .bold_line_style(GRID)
            .axis_style(AXIS)
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .label_style((FONT, 15).into_font().color(&MUTED))
            .axis_desc_style((FONT, 16).into_font().color(&TEXT))
            .x_label_formatter(&|v| fmt_short(*v, 3))
            .y_label_formatter(&|v| fmt_short(*v, 3))
            .draw()
            .map_err(io_kind)?;
        // Error bars of overlapping series are dodged sideways (in axis units) so each
        // stays readable.
        let n = series.len() as f64;
        let dodge = if n > 1.0 { x_span / 100.0 } else { 0.0 };
        let clamp = |v: f64| v.clamp(y_range.start, y_range.end);
        for (i, (s, pts)) in series.iter().enumerate() {
            let color = rgb(&s.color);
            let off = (i as f64 - (n - 1.0) / 2.0) * dodge;
            let at = |x: f64| self.x_scale.inv(self.x_scale.fwd(x) + off);
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (at(p.x), p.y)),
                    color.stroke_width(2),
                ))
                .map_err(io_kind)?;
            chart
                .draw_series(pts.iter().filter(|p| p.has_bar()).map(|p| {
                    let low = if self.y_scale.accepts(p.lo) {
                        p.lo
                    } else {
                        y_range.start
                    };
                    ErrorBar::new_vertical(
                        at(p.x),
                        clamp(low),
                        p.y,
                        clamp(p.hi),
                        color.mix(0.75).stroke_width(1),
                        6,
                    )
                }))
                .map_err(io_kind)?;
            chart
                .draw_series(pts.iter().map(|p| {
                    EmptyElement::at((at(p.x), p.y))
                        + Circle::new((0, 0), 4, color.filled())
                        + Circle::new((0, 0), 4, WHITE.stroke_width(1))
                }))
                .map_err(io_kind)?;
        }
        Ok(())
    }
}

/// A plotters failure (of any of its error types) as an error; the caller names the plot.
fn io_kind<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

/// `[lo, hi]` widened a little (and when degenerate) on `scale`, never below zero for
/// non-negative data on a linear axis.
fn padded(scale: Scale, lo: f64, hi: f64, floor_at_zero: bool) -> Range<f64> {
    let (lo, hi) = if lo.is_finite() && hi.is_finite() && scale.accepts(lo) {
        (lo, hi.max(lo))
    } else if scale == Scale::Linear {
        (0.0, 1.0)
    } else {
        (1.0, 10.0)
    };
    let (mut a, mut b) = (scale.fwd(lo), scale.fwd(hi));
    if b - a <= 1e-9 * a.abs().max(b.abs()).max(1e-300) {
        let d = match scale {
            Scale::Linear if a == 0.0 => 1.0,
            Scale::Linear => a.abs() * 0.1,
            _ => 0.5,
        };
        a -= d;
        b += d;
    } else {
        let pad = (b - a) * if scale == Scale::Linear { 0.06 } else { 0.08 };
        a -= pad;
        b += pad;
    }
    let (mut a, b) = (scale.inv(a), scale.inv(b));
    if floor_at_zero && a < 0.0 {
        a = 0.0;
    }
    a..b
}

/// An axis with fixed ticks: plotters' own axis `R` for the mapping, the ticks chosen
/// here (the measured levels, or plotters' own with a fallback). plotters' key-point
/// wrapper would do the same but cannot be formatted with a custom label formatter.
struct Ticked<R> {
    axis: R,
    ticks: Vec<f64>,
}

impl<R: Ranged<ValueType = f64>> Ranged for Ticked<R> {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.axis.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Light grid lines are not drawn; the bold ones are these ticks.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.axis.range()
    }
}

/// A linear axis with `ticks`, or plotters' own.
fn linear(r: Range<f64>, ticks: Option<Vec<f64>>) -> Ticked<RangedCoordf64> {
    let span = r.end - r.start;
    let axis: RangedCoordf64 = r.into();
    // plotters' steps accumulate rounding: a tick at zero comes out as 3e-18.
    let ticks = ticks.unwrap_or_else(|| {
        axis.key_points(6)
            .into_iter()
            .map(|t| if t.abs() < 1e-9 * span { 0.0 } else { t })
            .collect()
    });
    Ticked { axis, ticks }
}

/// A logarithmic axis with `ticks`, or [`log_ticks`].
fn log(r: Range<f64>, scale: Scale, ticks: Option<Vec<f64>>) -> Ticked<LogCoord<f64>> {
    let axis: LogCoord<f64> = r.clone().log_scale().base(scale.base()).into();
    let ticks = ticks.unwrap_or_else(|| log_ticks(scale, r));
    Ticked { axis, ticks }
}

/// Ticks for a log axis over `r`: powers of two (every other one past eight), or for
/// base 10 the 1-2-5 steps of each decade, densified until there are three; under that,
/// the linear axis's ticks. (plotters' own start at the first power of the base inside
/// the range, which leaves a range like 0.02–0.4 with its lower half bare.)
fn log_ticks(scale: Scale, r: Range<f64>) -> Vec<f64> {
    let (lo, hi) = (r.start, r.end);
    let within = |v: &f64| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9);
    if scale == Scale::Log2 {
        let all: Vec<f64> = (lo.log2().ceil() as i32..=hi.log2().floor() as i32)
            .map(|k| 2f64.powi(k))
            .collect();
        let stride = all.len().div_ceil(8).max(1);
        return all.into_iter().step_by(stride).collect();
    }
    let decades = lo.log10().floor() as i32..=hi.log10().ceil() as i32;
    for steps in [&[1.0][..], &[1.0, 2.0, 5.0], &[1.0, 2.0, 3.0, 5.0, 7.0]] {
        let t: Vec<f64> = decades
            .clone()
            .flat_map(|k| steps.iter().map(move |m| m * 10f64.powi(k)))
            .filter(within)
            .collect();
        if t.len() >= 3 {
            return t;
        }
    }
    let linear: RangedCoordf64 = r.into();
    linear
        .key_points(4)
        .into_iter()
        .filter(|v| *v > 0.0)
        .collect()
}

/// Legend entries in rows that fit the width: (label, colour, x offset) per entry.
fn legend_layout<'a>(
    root: &DrawingArea<SVGBackend, Shift>,
    items: &[(&'a str, RGBColor)],
    width: u32,
) -> Vec<Vec<(&'a str, RGBColor, i32)>> {
    let font = (FONT, 15).into_font();
    let mut rows: Vec<Vec<(&str, RGBColor, i32)>> = Vec::new();
    let mut x = 0i32;
    for &(label, color) in items {
        let text_w = root
            .estimate_text_size(label, &font.clone().into())
            .map(|(w, _)| w as i32)
            .unwrap_or(8 * label.chars().count() as i32);
        let item_w = 26 + text_w + 14;
        if rows.is_empty() || x + item_w > width as i32 - 20 {
            rows.push(Vec::new());
            x = 0;
        }
        rows.last_mut()
            .expect("a row was pushed above")
            .push((label, color, x));
        x += item_w;
    }
    rows
}

fn draw_legend(
    area: &DrawingArea<SVGBackend, Shift>,
    rows: &[Vec<(&str, RGBColor, i32)>],
    width: u32,
) -> Result<()> {
    let font = (FONT, 15).into_font().color(&TEXT);
    for (r, row) in rows.iter().enumerate() {
        let row_w = row
            .last()
            .map(|(label, _, x)| {
                x + 26
                    + area
                        .estimate_text_size(label, &font)
                        .map(|(w, _)| w as i32)
                        .unwrap_or(0)
            })
            .unwrap_or(0);
        let left = (width as i32 - row_w) / 2;
        let y = 8 + r as i32 * 16;
        for &(label, color, x) in row {
            let x = left + x;
            area.draw(&PathElement::new(
                vec![(x, y), (x + 20, y)],
                color.stroke_width(2),
            ))
            .map_err(io_kind)?;
            area.draw(&Circle::new((x + 10, y), 3, color.filled()))
                .map_err(io_kind)?;
            area.draw(&Text::new(
                label,
                (x + 25, y),
                font.pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Left,
                    plotters::style::text_anchor::VPos::Center,
                )),
            ))
            .map_err(io_kind)?;
        }
    }
    Ok(())
}

/// `#rrggbb` (or `#rgb`) as a colour; grey for anything else.
fn rgb(hex: &str) -> RGBColor {
    let h = hex.trim_start_matches('#');
    let byte = |s: &str| u8::from_str_radix(s, 16).ok();
    let parsed = match h.len() {
        6 => byte(&h[0..2]).zip(byte(&h[2..4])).zip(byte(&h[4..6])),
        3 => byte(&h[0..1].repeat(2))
            .zip(byte(&h[1..2].repeat(2)))
            .zip(byte(&h[2..3].repeat(2))),
        _ => None,
    };
    match parsed {
        Some(((r, g), b)) => RGBColor(r, g, b),
        None => RGBColor(107, 114, 128),
    }
}

/// `svg` with a `<title>` (the hover text) as its first child.
fn with_title(svg: String, title: &str) -> String {
    match svg
        .find("<svg")
        .and_then(|s| svg[s..].find('>').map(|e| s + e + 1))
    {
        Some(end) => format!(
            "{}<title>{}</title>{}",
            &svg[..end],
            escape(title),
            &svg[end..]
        ),
        None => svg,
    }
}

/// A tiny axis-less curve for a table cell, made for a ζ search (the hover text names x
/// "ζ"): `points` as (x, y), the point at `chosen_x` (if any) marked in `mark` with a
/// dashed vertical rule. The x extent covers every point; points with a non-finite y (a
/// diverged run) are drawn as small red crosses along the top edge. y is shown on a log
/// scale when it spans more than 20×.
pub fn sparkline(
    points: &[(f64, f64)],
    chosen_x: Option<f64>,
    x_scale: Scale,
    (width, height): (u32, u32),
    color: &str,
    mark: &str,
) -> Result<String> {
    let mut all: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(x, _)| x_scale.accepts(x))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pts: Vec<(f64, f64)> = all.iter().copied().filter(|p| p.1.is_finite()).collect();
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
    let mut svg = String::new();
    let drawn = (|| -> Result<()> {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        if let (Some(first), Some(last)) = (all.first(), all.last()) {
            let (ymin, ymax) = pts
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                    (a.min(p.1), b.max(p.1))
                });
            let y_log = ymin > 0.0 && ymax / ymin > 20.0;
            // In transformed coordinates, so one chart type serves every scale.
            let fx = |x: f64| x_scale.fwd(x);
            let fy = |y: f64| if y_log { y.log10() } else { y };
            let widen = |a: f64, b: f64| {
                if b - a > 1e-12 {
                    a..b
                } else {
                    a - 0.5..b + 0.5
                }
            };
            let x = widen(fx(first.0), fx(last.0));
            let y = if pts.is_empty() {
                0.0..1.0
            } else {
                widen(fy(ymin), fy(ymax))
            };
            let top = y.end;
            let mut chart = ChartBuilder::on(&root)
                .margin(4)
                .build_cartesian_2d(x, y)
                .map_err(io_kind)?;
            let mark = rgb(mark);
            let color = rgb(color);
            if let Some(cx) = chosen_x.filter(|v| x_scale.accepts(*v)) {
                let cx = fx(cx);
                let (y0, y1) = (chart.y_range().start, chart.y_range().end);
                chart
                    .draw_series(std::iter::once(DashedPathElement::new(
                        vec![(cx, y0), (cx, y1)],
                        2,
                        2,
                        mark.mix(0.5).stroke_width(1),
                    )))
                    .map_err(io_kind)?;
            }
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|&(x, y)| (fx(x), fy(y))),
                    color.stroke_width(2),
                ))
                .map_err(io_kind)?;
            let is_chosen =
                |x: f64| chosen_x.is_some_and(|c| (c - x).abs() <= 1e-9 * c.abs().max(x.abs()));
            chart
                .draw_series(pts.iter().map(|&(x, y)| {
                    if is_chosen(x) {
                        Circle::new((fx(x), fy(y)), 3, mark.filled())
                    } else {
                        Circle::new((fx(x), fy(y)), 2, color.filled())
                    }
                }))
                .map_err(io_kind)?;
            chart
                .draw_series(
                    all.iter()
                        .filter(|p| !p.1.is_finite())
                        .map(|&(x, _)| Cross::new((fx(x), top), 3, RGBColor(185, 28, 28))),
                )
                .map_err(io_kind)?;
        }
        root.present().map_err(io_kind)?;
        Ok(())
    })();
    drawn.with_context(|| "drawing a ζ sparkline".to_string())?;
    Ok(with_title(svg, &tip.join("\n")))
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

/// Histogram bars: about √n of them, at least 5 and at most this many.
const MAX_BINS: usize = 40;

/// A histogram of the finite values of `v` as an SVG element (empty when there are none).
pub fn histogram(v: &[f64], x_label: &str) -> Result<String> {
    let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let Some(lo) = v.iter().copied().reduce(f64::min) else {
        return Ok(String::new());
    };
    let mut hi = v.iter().copied().fold(lo, f64::max);
    let mut lo = lo;
    if hi - lo < 1e-12 * lo.abs().max(1.0) {
        let pad = 0.05 * lo.abs().max(1e-6);
        (lo, hi) = (lo - pad, hi + pad);
    }
    let bins = ((v.len() as f64).sqrt().ceil() as usize).clamp(5, MAX_BINS);
    let counts = bin_counts(&v, lo, hi, bins);
    let top = counts.iter().copied().max().unwrap_or(1).max(1);
    let width = (hi - lo) / bins as f64;
    let mut svg = String::new();
    let drawn = (|| -> Result<()> {
        let root = SVGBackend::with_string(&mut svg, (480, 260)).into_drawing_area();
        root.fill(&WHITE).map_err(io_kind)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d(lo..hi, 0u32..top + top / 10 + 1)
            .map_err(io_kind)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(GRID)
            .x_desc(x_label)
            .y_desc("images")
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&|x| fmt_short(*x, 3))
            .draw()
            .map_err(io_kind)?;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let x0 = lo + i as f64 * width;
                Rectangle::new(
                    [(x0, 0), (x0 + width, c)],
                    RGBColor(29, 78, 216).mix(0.7).filled(),
                )
            }))
            .map_err(io_kind)?;
        root.present().map_err(io_kind)?;
        Ok(())
    })();
    drawn.with_context(|| format!("drawing the histogram of {x_label}"))?;
    Ok(svg)
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
            color: super::super::format::palette_color(0).into(),
            points: pts
                .iter()
                .map(|&(x, y, err)| Point::sym(x, y, err))
                .collect(),
        }
    }

    /// Plotters writes each series' line, and its legend sample, as a 2-px `<polyline>`
    /// (axes and ticks are 1 px).
    fn lines(svg: &str) -> usize {
        svg.matches(r#"stroke-width="2" points="#).count()
    }

    /// Plotted points: filled discs of radius 4 (error bars mark the mean with an
    /// unfilled ring, the legend with a radius-3 disc).
    fn points(svg: &str) -> usize {
        svg.matches(r##"r="4" opacity="1" fill="#"##).count()
    }

    #[test]
    fn one_line_and_one_legend_entry_per_series() {
        let svg = plot(vec![
            series(
                "a",
                &[(16.0, 0.1, 0.01), (32.0, 0.05, 0.01), (64.0, 0.02, 0.0)],
            ),
            series("b", &[(16.0, 0.12, 0.02), (64.0, 0.01, 0.005)]),
            series("c", &[(32.0, 0.07, 0.0)]),
        ])
        .render()
        .unwrap();
        assert_eq!(lines(&svg), 2 * 3, "{svg}");
        assert_eq!(points(&svg), 6, "{svg}");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for l in ["a", "b", "c"] {
            assert!(svg.contains(&format!(">\n{l}\n</text>")), "{l}: {svg}");
        }
        // Hover text with every point.
        assert!(
            svg.contains("<title>MSE vs M\na: 16 → 0.100 [0.0900, 0.110]"),
            "{svg}"
        );
    }

    #[test]
    fn escapes_text() {
        let mut p = plot(vec![series("<p&q>", &[(16.0, 1.0, 0.1)])]);
        p.title = r#"a "quoted" <title> & 'more'"#.into();
        let svg = p.render().unwrap();
        assert!(svg.contains("&lt;p&amp;q&gt;"));
        assert!(!svg.contains("<p&q>"));
        assert!(!svg.contains("<title> &"));
    }

    #[test]
    fn single_point_and_zero_std_are_finite() {
        for scale in [Scale::Linear, Scale::Log2, Scale::Log10] {
            let mut p = plot(vec![series("only", &[(8.0, 0.5, 0.0)])]);
            p.x_scale = scale;
            p.y_scale = scale;
            let svg = p.render().unwrap();
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
            assert!(svg.contains("<circle"));
        }
        let svg = plot(vec![series("z", &[(16.0, 0.0, 0.0), (32.0, 0.0, 0.0)])])
            .render()
            .unwrap();
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
        let svg = p.render().unwrap();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        // Two points are left (16: NaN, 0: not on a log axis).
        assert_eq!(points(&svg), 2, "{svg}");
        let empty = plot(vec![series("e", &[(f64::NAN, 1.0, 0.0)])])
            .render()
            .unwrap();
        assert!(empty.contains("no data"));
    }

    #[test]
    fn a_linear_axis_through_zero_has_a_zero_tick() {
        let axis = linear(-0.027..0.004, None);
        assert!(axis.ticks.contains(&0.0), "{:?}", axis.ticks);
    }

    #[test]
    fn explicit_ticks_label_the_levels() {
        let mut p = plot(vec![series(
            "a",
            &[(16.0, 0.1, 0.0), (64.0, 0.05, 0.0), (512.0, 0.01, 0.0)],
        )]);
        p.x_ticks = Some(vec![16.0, 64.0, 512.0]);
        let svg = p.render().unwrap();
        for t in ["16", "64", "512"] {
            assert!(svg.contains(&format!(">\n{t}\n</text>")), "{t}");
        }
        assert!(!svg.contains(">\n128\n</text>"));
    }

    #[test]
    fn a_log_axis_within_one_decade_still_has_ticks() {
        let axis = log(0.012..0.05, Scale::Log10, None);
        assert!(axis.ticks.len() >= 2, "{:?}", axis.ticks);
        assert!(axis.ticks.iter().all(|t| (0.012..=0.05).contains(t)));
        let axis = log(16.0..512.0, Scale::Log2, None);
        assert_eq!(axis.ticks, vec![16.0, 32.0, 64.0, 128.0, 256.0, 512.0]);
        // The decade below the first power of ten is labelled too.
        assert_eq!(
            log_ticks(Scale::Log10, 0.02..0.45),
            vec![0.02, 0.05, 0.1, 0.2]
        );
        assert_eq!(
            log_ticks(Scale::Log10, 4.0..120.0),
            vec![5.0, 10.0, 20.0, 50.0, 100.0]
        );
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
            (120, 32),
            "#4e79a7",
            "#d62728",
        )
        .unwrap();
        assert!(!s.contains("NaN") && !s.contains("inf"));
        assert_eq!(s.matches(r##"fill="#D62728""##).count(), 1, "{s}");
        assert_eq!(s.matches("<circle").count(), 4);
        assert!(s.contains("ζ=3 → diverged"));
        let single = sparkline(
            &[(1.0, 0.1)],
            Some(1.0),
            Scale::Log10,
            (120, 32),
            "#000",
            "#f00",
        )
        .unwrap();
        assert!(!single.contains("NaN"));
    }

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
        let svg = histogram(&v, "x").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        // 10 bins (√100), each drawn as a filled rectangle, plus the background.
        assert!(svg.matches("<rect").count() >= 10, "{svg}");
        // Constant values still draw (the range is widened), nothing is NaN.
        let flat = histogram(&[2.5; 7], "x").unwrap();
        assert!(flat.contains("<rect") && !flat.contains("NaN"));
        assert_eq!(histogram(&[f64::NAN], "x").unwrap(), "");
    }
}
