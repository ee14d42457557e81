//! A model folder (spec §2) checked against its card before anything runs it: every file
//! present, hashes equal to the card's, graph signatures equal to the card's and the
//! spec's, and the card embedded in each graph equal to `card.json`.
//!
//! Errors name the file (and the input or field) that disagrees.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::card::{self, Card, Dim, CARD_FILE, CARD_METADATA_KEY, GRAPHS, SPLIT_VJP};
use super::onnx_proto::{self, OnnxInfo, ProtoDim, ValueInfo, ELEM_FLOAT};

/// Lowest opset of the default domain a graph may use (spec §2).
const MIN_OPSET: i64 = 17;

/// A validated model folder.
#[derive(Debug, Clone)]
pub struct ModelFolder {
    dir: PathBuf,
    card: Card,
    graphs: Vec<GraphFile>,
}

/// One validated graph file.
#[derive(Debug, Clone)]
pub struct GraphFile {
    /// File name, e.g. `denoiser.onnx`.
    pub name: &'static str,
    pub path: PathBuf,
    /// File size in bytes.
    pub size_bytes: u64,
    pub sha256: String,
    pub ir_version: i64,
    /// Opset of the default domain.
    pub opset: i64,
    pub producer: String,
    /// Inputs and outputs as the file declares them, in file order.
    pub inputs: Vec<(String, Vec<Dim>)>,
    pub outputs: Vec<(String, Vec<Dim>)>,
}

impl ModelFolder {
    /// Open and validate `dir`; see the module doc for what is checked.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            bail!(
                "model folder {} does not exist or is not a directory",
                dir.display()
            );
        }
        for file in std::iter::once(CARD_FILE).chain(GRAPHS) {
            if !dir.join(file).is_file() {
                bail!("model folder {}: missing {file}", dir.display());
            }
        }
        let card_path = dir.join(CARD_FILE);
        let text = std::fs::read_to_string(&card_path)
            .with_context(|| format!("reading {}", card_path.display()))?;
        let card = Card::from_json(&text)
            .with_context(|| format!("{}: invalid card", card_path.display()))?;
        let card_value: serde_json::Value = serde_json::from_str(&text).expect("parsed above");

        let optional = SPLIT_VJP
            .iter()
            .filter(|name| card.graphs.contains_key(**name));
        for name in optional.clone() {
            if !dir.join(name).is_file() {
                bail!(
                    "model folder {}: card.json lists {name} but the file is missing",
                    dir.display()
                );
            }
        }
        let graphs = GRAPHS
            .iter()
            .chain(optional)
            .map(|name| {
                let path = dir.join(name);
                check_graph(name, &path, &card, &card_value)
                    .with_context(|| format!("{}", path.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { dir, card, graphs })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn card(&self) -> &Card {
        &self.card
    }

    /// The three graphs, in spec order (denoiser, dps_vjp, dps_dense), then the optional
    /// split VJP pair when the card lists it.
    pub fn graphs(&self) -> &[GraphFile] {
        &self.graphs
    }

    /// Path of one graph file (`denoiser.onnx`, …).
    pub fn graph_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn check_graph(
    name: &'static str,
    path: &Path,
    card: &Card,
    card_value: &serde_json::Value,
) -> Result<GraphFile> {
    let bytes = std::fs::read(path).context("reading")?;
    let entry = &card.graphs[name];
    let sha = hex::encode(Sha256::digest(&bytes));
    if !sha.eq_ignore_ascii_case(&entry.sha256) {
        bail!(
            "sha256 {sha} differs from card.json's {} (file changed or card out of date)",
            entry.sha256
        );
    }
    let info = onnx_proto::parse_model(&bytes).context("not a readable ONNX model")?;

    // Self-contained, opset >= 17 (spec §2); default domain only, except for ops the file
    // itself defines as functions of standard ops (adps's exports: `adps.GroupNormSiLU`,
    // `adps.Conv3x3`, …, run by a fused kernel where adps registers one, inlined by any
    // other runtime), so
    // that every ONNX Runtime build still runs the graph.
    if !info.external_initializers.is_empty() {
        bail!(
            "initializers {:?} use external data; graphs must be self-contained",
            info.external_initializers
        );
    }
    let opset = default_opset(&info)?;
    if opset < MIN_OPSET {
        bail!("opset {opset} is below the minimum {MIN_OPSET}");
    }

    // Signatures: the file against spec §2 (the card was checked against it when parsed);
    // the split VJP pair, whose kept values the exporter names, against the card's entry.
    let (want_inputs, want_outputs) = match card::spec_signature(name, card.shape) {
        Some(sig) => (sig.inputs, sig.outputs),
        None => (listed(&entry.inputs), listed(&entry.outputs)),
    };
    check_values("input", &info.inputs, &want_inputs)?;
    check_values("output", &info.outputs, &want_outputs)?;

    check_embedded_card(&info, card_value)?;

    let dims = |v: &ValueInfo| -> (String, Vec<Dim>) {
        let d = v.shape.iter().flatten().map(proto_dim).collect();
        (v.name.clone(), d)
    };
    Ok(GraphFile {
        name,
        path: path.to_path_buf(),
        size_bytes: bytes.len() as u64,
        sha256: sha,
        ir_version: info.ir_version,
        opset,
        producer: info.producer.clone(),
        inputs: info.inputs.iter().map(dims).collect(),
        outputs: info.outputs.iter().map(dims).collect(),
    })
}

/// A card entry's {name: dims} as the list `check_values` takes.
fn listed(values: &std::collections::BTreeMap<String, Vec<Dim>>) -> Vec<(&str, Vec<Dim>)> {
    values
        .iter()
        .map(|(n, d)| (n.as_str(), d.clone()))
        .collect()
}

fn proto_dim(d: &ProtoDim) -> Dim {
    match d {
        ProtoDim::Fixed(n) => Dim::Fixed(*n as usize),
        ProtoDim::Symbol(s) if s.is_empty() => Dim::Dynamic("?".into()),
        ProtoDim::Symbol(s) => Dim::Dynamic(s.clone()),
    }
}

/// A graph's inputs or outputs against the spec: names, f32, rank, fixed dims, and
/// dynamic dims dynamic (any symbol name).
fn check_values(kind: &str, have: &[ValueInfo], want: &[(&str, Vec<Dim>)]) -> Result<()> {
    for (name, dims) in want.iter() {
        let Some(v) = have.iter().find(|v| v.name == *name) else {
            bail!(
                "no {kind} `{name}`: the graph's {kind}s are [{}], spec §2 wants [{}]",
                have.iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                card::names(want)
            );
        };
        if v.elem_type != ELEM_FLOAT {
            bail!(
                "{kind} `{name}` has element type {}, want float32 (1)",
                v.elem_type
            );
        }
        let Some(shape) = &v.shape else {
            bail!(
                "{kind} `{name}` has no shape, want {}",
                card::format_dims(dims)
            );
        };
        let got: Vec<Dim> = shape.iter().map(proto_dim).collect();
        let ok = shape.len() == dims.len()
            && shape.iter().zip(dims.iter()).all(|(s, d)| match (s, d) {
                (ProtoDim::Fixed(a), Dim::Fixed(b)) => *a >= 0 && *a as usize == *b,
                (ProtoDim::Symbol(_), Dim::Dynamic(_)) => true,
                _ => false,
            });
        if !ok {
            bail!(
                "{kind} `{name}` has shape {}, spec §2 and the card want {}",
                card::format_dims(&got),
                card::format_dims(dims)
            );
        }
    }
    if let Some(extra) = have
        .iter()
        .find(|v| !want.iter().any(|(n, _)| *n == v.name))
    {
        bail!(
            "unexpected {kind} `{}` (spec §2 wants [{}])",
            extra.name,
            card::names(want)
        );
    }
    Ok(())
}

/// The graph's `adps.card` must equal card.json less the graph hashes.
fn check_embedded_card(info: &OnnxInfo, card_value: &serde_json::Value) -> Result<()> {
    let Some(text) = info.metadata.get(CARD_METADATA_KEY) else {
        bail!("has no `{CARD_METADATA_KEY}` metadata (not exported by models/card.py?)");
    };
    let embedded: serde_json::Value = serde_json::from_str(text)
        .with_context(|| format!("metadata `{CARD_METADATA_KEY}` is not JSON"))?;
    let mut expected = card_value.clone();
    if let Some(graphs) = expected.get_mut("graphs").and_then(|g| g.as_object_mut()) {
        for g in graphs.values_mut() {
            if let Some(o) = g.as_object_mut() {
                o.remove("sha256");
            }
        }
    }
    if embedded == expected {
        return Ok(());
    }
    let (e, x) = (embedded.as_object(), expected.as_object());
    let mut fields: Vec<String> = Vec::new();
    if let (Some(e), Some(x)) = (e, x) {
        for key in e.keys().chain(x.keys()) {
            if e.get(key) != x.get(key) && !fields.contains(key) {
                fields.push(key.clone());
            }
        }
    }
    let mut msg = format!("metadata `{CARD_METADATA_KEY}` disagrees with card.json");
    if !fields.is_empty() {
        let _ = write!(msg, " on field(s) {}", fields.join(", "));
        for key in ["name", "shape"] {
            if fields.iter().any(|f| f == key) {
                let _ = write!(
                    msg,
                    "; {key}: graph has {}, card.json has {}",
                    e.and_then(|e| e.get(key))
                        .unwrap_or(&serde_json::Value::Null),
                    x.and_then(|x| x.get(key))
                        .unwrap_or(&serde_json::Value::Null)
                );
            }
        }
    }
    bail!(msg)
}

/// The graph's opset of the default domain, after checking that every op outside it is one
/// the file defines as a function (so that any ONNX Runtime build runs the graph).
fn default_opset(info: &onnx_proto::OnnxInfo) -> Result<i64> {
    let undefined: Vec<String> = info
        .custom_ops
        .iter()
        .filter(|op| !info.functions.contains(op))
        .map(|(domain, op)| format!("{domain}.{op}"))
        .collect();
    if !undefined.is_empty() {
        bail!(
            "calls {} outside the default domain without defining them as functions in the file; only the default domain, or ops the file defines, are allowed",
            undefined.join(", ")
        );
    }
    let mut opset = None;
    for (domain, version) in &info.opsets {
        match domain.as_str() {
            "" | "ai.onnx" => opset = Some(*version),
            other if info.functions.iter().any(|(d, _)| d == other) => {}
            other => bail!("uses operator domain {other:?}; only the default domain is allowed"),
        }
    }
    opset.context("declares no opset of the default domain")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(
        opsets: &[(&str, i64)],
        ops: &[(&str, &str)],
        functions: &[(&str, &str)],
    ) -> onnx_proto::OnnxInfo {
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        onnx_proto::OnnxInfo {
            ir_version: 10,
            opsets: opsets.iter().map(|(d, v)| (d.to_string(), *v)).collect(),
            custom_ops: pairs(ops),
            functions: pairs(functions),
            ..Default::default()
        }
    }

    #[test]
    fn ops_outside_the_default_domain_need_a_function_in_the_file() {
        let fused = [
            ("adps", "Conv3x3"),
            ("adps", "GroupNormSiLU"),
            ("adps", "GroupNormSiLUGrad"),
        ];
        // adps's own exports: the nodes and their functions.
        let ok = info(&[("", 18), ("adps", 1)], &fused, &fused);
        assert_eq!(default_opset(&ok).unwrap(), 18);
        // A node with no function is refused by name.
        let err = default_opset(&info(&[("", 18), ("adps", 1)], &fused, &fused[..2]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("calls adps.GroupNormSiLUGrad outside the default domain"),
            "{err}"
        );
        // A bare foreign domain, as before.
        let err = default_opset(&info(&[("", 18), ("com.microsoft", 1)], &[], &[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("uses operator domain \"com.microsoft\""),
            "{err}"
        );
        assert!(
            default_opset(&info(&[("adps", 1)], &fused, &fused)).is_err(),
            "no default opset"
        );
    }
}
