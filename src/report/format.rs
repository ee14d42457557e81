//! How numbers, metrics and models are written in every report (HTML, Markdown, plots):
//! one place, so a table and the plot beside it never disagree on a digit or a name.

/// A muted categorical palette (Tableau 10, reordered so the weakest colours come last).
pub const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#9c755f", "#ff9da7",
    "#edc948", "#bab0ac",
];

/// The palette colour for the `i`-th series (wraps around).
pub fn palette_color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Escapes text for XML/HTML content and attribute values (for the few strings placed
/// into SVG outside a template; templates escape by themselves).
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

/// A difference with its sign always shown, two significant digits (`+0.0012`, `−0.0030`).
pub fn fmt_signed(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v == f64::INFINITY {
        "+∞".into()
    } else if v == f64::NEG_INFINITY {
        "−∞".into()
    } else if v > 0.0 {
        format!("+{}", fmt_num(v, 2))
    } else if v < 0.0 {
        format!("−{}", fmt_num(-v, 2))
    } else {
        "0".into()
    }
}

/// A training erasure probability: `0.4`, `0.0`; `–` when unknown.
pub fn fmt_p(p: f64) -> String {
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

/// An operator level: integers as integers (`256`), others with four digits.
pub fn fmt_level(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        fmt_num(v, 4)
    }
}

/// A metric's display name.
pub fn metric_name(m: &str) -> String {
    match m {
        "mse" => "MSE".into(),
        "psnr" => "PSNR".into(),
        "ssim" => "SSIM".into(),
        "lpips" => "LPIPS".into(),
        "residual" => "residual".into(),
        m => m.to_string(),
    }
}

/// A metric's axis or column label, with the direction of "better".
pub fn metric_axis(m: &str) -> String {
    match m {
        "mse" | "lpips" | "residual" => format!("{} ↓", metric_name(m)),
        "psnr" => "PSNR (dB) ↑".into(),
        "ssim" => "SSIM ↑".into(),
        m => m.to_string(),
    }
}

/// Whether lower values of a metric are better.
pub fn lower_is_better(m: &str) -> bool {
    !matches!(m, "psnr" | "ssim")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_compactly() {
        assert_eq!(fmt_num(0.012345, 3), "0.0123");
        assert_eq!(fmt_num(25.314, 3), "25.3");
        assert_eq!(fmt_num(0.00012, 3), "1.2e-4");
        assert_eq!(fmt_num(0.0, 3), "0");
        assert_eq!(fmt_num(f64::NAN, 3), "–");
        assert_eq!(fmt_short(0.5, 3), "0.5");
        assert_eq!(fmt_short(200.0, 3), "200");
        assert_eq!(fmt_p(0.4), "0.4");
        assert_eq!(fmt_p(0.0), "0.0");
        assert_eq!(fmt_level(256.0), "256");
        assert_eq!(fmt_level(0.125), "0.1250");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"a "q" <t> & 'm'"#),
            "a &quot;q&quot; &lt;t&gt; &amp; &#39;m&#39;"
        );
    }

    #[test]
    fn names_metrics_with_their_direction() {
        assert_eq!(metric_axis("mse"), "MSE ↓");
        assert_eq!(metric_axis("ssim"), "SSIM ↑");
        assert!(lower_is_better("lpips") && !lower_is_better("psnr"));
    }
}
