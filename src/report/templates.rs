//! The reports' HTML templates (minijinja, auto-escaped because their names end in
//! `.html`): the evaluation report (`report.html`), the run page (`run.html`) and the
//! example grids (`examples.html`) that both show, with the grid's view.

use anyhow::{Context, Result};
use serde::Serialize;

use super::html::{base64, png_size};
use super::ExampleGrid;

/// Every template, loaded once per render (they are compiled in).
pub fn environment() -> Result<minijinja::Environment<'static>> {
    let mut env = minijinja::Environment::new();
    for (name, text) in [
        ("report.html", include_str!("templates/report.html")),
        ("run.html", include_str!("templates/run.html")),
        ("examples.html", include_str!("templates/examples.html")),
    ] {
        env.add_template(name, text)
            .with_context(|| format!("the report template {name}"))?;
    }
    Ok(env)
}

/// One image of a grid: base64 PNG (empty: a missing image, shown as —), its display
/// width, and whether it is small enough to be enlarged without smoothing.
#[derive(Serialize)]
pub struct Img {
    base64: minijinja::Value,
    width: u32,
    pixelated: bool,
}

#[derive(Serialize)]
pub struct GridRow {
    label: String,
    images: Vec<Img>,
}

/// An example grid as the templates show it.
#[derive(Serialize)]
pub struct Grid {
    operator: String,
    ids: Vec<String>,
    rows: Vec<GridRow>,
}

impl From<&ExampleGrid> for Grid {
    fn from(g: &ExampleGrid) -> Self {
        let img = |png: &Vec<u8>| {
            let (width, pixelated) = match png_size(png) {
                Some((w, _)) if w < 64 => (64, true),
                Some((w, _)) => (w.min(128), false),
                None => (64, false),
            };
            Img {
                // The base64 alphabet needs no escaping.
                base64: minijinja::Value::from_safe_string(if png.is_empty() {
                    String::new()
                } else {
                    base64(png)
                }),
                width,
                pixelated,
            }
        };
        Grid {
            operator: g.operator.clone(),
            ids: g.ids.clone(),
            rows: g
                .rows
                .iter()
                .map(|(label, pngs)| GridRow {
                    label: label.clone(),
                    images: pngs.iter().map(img).collect(),
                })
                .collect(),
        }
    }
}

/// The `<figure>` of each grid.
pub fn render_grids(examples: &[ExampleGrid]) -> Result<String> {
    let grids: Vec<Grid> = examples.iter().map(Grid::from).collect();
    environment()?
        .get_template("examples.html")?
        .render(minijinja::context! { grids => grids })
        .context("rendering the example grids")
}
