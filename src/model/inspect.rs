//! `adps inspect DIR`: a validated model folder, summarised for people.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::card::format_dims;
use super::folder::ModelFolder;

/// Validate `dir` and describe its card and graphs.
pub fn inspect(dir: impl AsRef<Path>) -> Result<String> {
    let folder = ModelFolder::open(dir)?;
    Ok(describe(&folder))
}

/// Human-readable summary of an opened folder.
pub fn describe(folder: &ModelFolder) -> String {
    let card = folder.card();
    let t = &card.training;
    let c = &t.corruption;
    let mut s = String::new();
    let opt = |v: Option<String>| v.unwrap_or_else(|| "—".into());
    let _ = writeln!(s, "model      {}  ({})", card.name, folder.dir().display());
    let _ = writeln!(s, "dataset    {}", card.dataset);
    let _ = writeln!(
        s,
        "shape      {} (C×H×W), values in [{}, {}]",
        card.shape_string(),
        card.value_range[0],
        card.value_range[1]
    );
    let _ = writeln!(
        s,
        "sigma      [{}, {}], sigma_data {}",
        card.sigma_min, card.sigma_max, card.sigma_data
    );
    let _ = writeln!(
        s,
        "corruption random-inpainting p = {}, delta = {} → keep probability {:.4}",
        c.p,
        c.delta,
        card.keep_probability()
    );
    let _ = writeln!(
        s,
        "training   steps {}, batch {}, seed {}, final loss {}, {} s on {}",
        opt(t.steps.map(|v| v.to_string())),
        opt(t.batch_size.map(|v| v.to_string())),
        opt(t.seed.map(|v| v.to_string())),
        opt(t.final_loss.map(|v| format!("{v:.6}"))),
        opt(t.seconds.map(|v| format!("{v:.0}"))),
        opt(t.hardware.clone())
    );
    if !card.exporter.is_empty() {
        let parts: Vec<String> = card
            .exporter
            .iter()
            .map(|(k, v)| format!("{k} {}", plain(v)))
            .collect();
        let _ = writeln!(s, "exporter   {}", parts.join(", "));
    }
    let scalar_extras: Vec<String> = card
        .extra
        .iter()
        .filter(|(_, v)| !v.is_array() && !v.is_object())
        .map(|(k, v)| format!("{k} = {}", plain(v)))
        .collect();
    if !scalar_extras.is_empty() {
        let _ = writeln!(s, "other      {}", scalar_extras.join("; "));
    }
    for g in folder.graphs() {
        let _ = writeln!(
            s,
            "\n{}  {} bytes, sha256 {}, opset {}, IR {}{}",
            g.name,
            g.size_bytes,
            g.sha256,
            g.opset,
            g.ir_version,
            if g.producer.is_empty() {
                String::new()
            } else {
                format!(", by {}", g.producer)
            }
        );
        for (name, dims) in &g.inputs {
            let _ = writeln!(s, "  in   {name:<12} {} f32", format_dims(dims));
        }
        for (name, dims) in &g.outputs {
            let _ = writeln!(s, "  out  {name:<12} {} f32", format_dims(dims));
        }
    }
    s
}

fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
