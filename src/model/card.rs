//! The model card (`card.json`, spec §2): what a model was trained on and the signatures
//! and hashes of its three graphs.
//!
//! Strict on what adps uses (shape, σ range, training corruption, graphs); every other
//! field is kept as-is in `extra` so exporters can record more without breaking readers.
//! The format is written by `models/card.py`.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// The three graphs of a model folder, in the order spec §2 lists them.
pub const GRAPHS: [&str; 3] = ["denoiser.onnx", "dps_vjp.onnx", "dps_dense.onnx"];

/// The optional pair that gives the VJP path one network evaluation per step instead of
/// two (denoise, then dps_vjp, which runs the forward again): a forward that returns
/// x0_hat and the values its backward reads ("kept" values), and that backward. Both or
/// neither; see [`check_split_vjp`] for their signatures.
pub const SPLIT_VJP: [&str; 2] = ["dps_vjp_forward.onnx", "dps_vjp_backward.onnx"];

/// The card file of a model folder.
pub const CARD_FILE: &str = "card.json";

/// ONNX metadata key holding the card (less the graph hashes) inside each graph.
pub const CARD_METADATA_KEY: &str = "adps.card";

/// `card.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Card {
    /// Model name, e.g. `fmnist-p0.4`.
    pub name: String,
    /// What the model was trained on (free text).
    pub dataset: String,
    /// Image shape [C, H, W].
    pub shape: [usize; 3],
    /// Pixel range the model works in (spec §1: [-1, 1]).
    pub value_range: [f64; 2],
    /// Smallest σ the model was trained for.
    pub sigma_min: f64,
    /// Largest σ the model was trained for.
    pub sigma_max: f64,
    /// σ_data of the EDM preconditioning.
    pub sigma_data: f64,
    /// Training run, including the corruption the denoiser expects at sampling time.
    pub training: Training,
    /// Tool versions of the export (free form).
    #[serde(default)]
    pub exporter: BTreeMap<String, serde_json::Value>,
    /// Graph file name → signature and sha256.
    pub graphs: BTreeMap<String, GraphEntry>,
    /// Any other field (e.g. `mask_per`, `parameters`), kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// `card.training`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Training {
    /// The corruption of the training data, which is also the sampling-time mask law.
    pub corruption: Corruption,
    #[serde(default)]
    pub steps: Option<u64>,
    #[serde(default)]
    pub batch_size: Option<u64>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub final_loss: Option<f64>,
    #[serde(default)]
    pub hardware: Option<String>,
    #[serde(default)]
    pub seconds: Option<f64>,
    /// Any other field, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// `card.training.corruption`: random inpainting with erasure probability `p` plus the
/// extra erasure `delta` of Ambient Diffusion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Corruption {
    pub kind: CorruptionKind,
    pub p: f64,
    pub delta: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CorruptionKind {
    #[serde(rename = "random-inpainting")]
    RandomInpainting,
}

/// `card.graphs[file]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphEntry {
    /// Hex sha256 of the file.
    pub sha256: String,
    pub inputs: BTreeMap<String, Vec<Dim>>,
    pub outputs: BTreeMap<String, Vec<Dim>>,
}

/// A dimension in a signature: fixed, or a dynamic symbol ("B" batch, "M" measurements).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(usize),
    Dynamic(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Dynamic(s) => f.write_str(s),
        }
    }
}

/// `[B, 1, 32, 32]`.
pub fn format_dims(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims.iter().map(Dim::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// Inputs and outputs of one graph, in spec order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub inputs: Vec<(&'static str, Vec<Dim>)>,
    pub outputs: Vec<(&'static str, Vec<Dim>)>,
}

/// The signature spec §2 requires of `graph` for images of `shape` [C, H, W].
pub fn spec_signature(graph: &str, shape: [usize; 3]) -> Option<Signature> {
    let [c, h, w] = shape;
    let b = || Dim::Dynamic("B".into());
    let img = || vec![b(), Dim::Fixed(c), Dim::Fixed(h), Dim::Fixed(w)];
    let base = || vec![("x_t", img()), ("sigma", vec![b()]), ("mask", img())];
    let (inputs, outputs) = match graph {
        "denoiser.onnx" => (base(), vec![("x0_hat", img())]),
        "dps_vjp.onnx" => {
            let mut ins = base();
            ins.push(("cotangent", img()));
            (ins, vec![("x0_hat", img()), ("vjp", img())])
        }
        "dps_dense.onnx" => {
            let m = || Dim::Dynamic("M".into());
            let mut ins = base();
            ins.push(("y", vec![b(), m()]));
            ins.push(("A", vec![m(), Dim::Fixed(c * h * w)]));
            (
                ins,
                vec![
                    ("x0_hat", img()),
                    ("residual_sq", vec![b()]),
                    ("grad", img()),
                ],
            )
        }
        _ => return None,
    };
    Some(Signature { inputs, outputs })
}

impl Card {
    /// Parse `card.json` text; the error names the offending field.
    pub fn from_json(text: &str) -> Result<Self> {
        let card: Card = serde_json::from_str(text)?;
        card.validate()?;
        Ok(card)
    }

    /// Probability that the training (and sampling) mask keeps a pixel: (1−p)(1−δ).
    pub fn keep_probability(&self) -> f64 {
        let c = &self.training.corruption;
        (1.0 - c.p) * (1.0 - c.delta)
    }

    /// Training erasure probability p.
    pub fn train_p(&self) -> f64 {
        self.training.corruption.p
    }

    /// Extra erasure δ.
    pub fn delta(&self) -> f64 {
        self.training.corruption.delta
    }

    /// C·H·W.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// "1×32×32".
    pub fn shape_string(&self) -> String {
        let [c, h, w] = self.shape;
        format!("{c}×{h}×{w}")
    }

    /// Range and consistency checks of the fields adps relies on; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            bail!("field `name` is empty");
        }
        if self.shape.contains(&0) {
            bail!("field `shape` {:?} has a zero dimension", self.shape);
        }
        let [lo, hi] = self.value_range;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            bail!("field `value_range` [{lo}, {hi}] is empty");
        }
        if !(self.sigma_min > 0.0 && self.sigma_min < self.sigma_max && self.sigma_max.is_finite())
        {
            bail!(
                "fields `sigma_min` {} / `sigma_max` {} must satisfy 0 < sigma_min < sigma_max < inf",
                self.sigma_min,
                self.sigma_max
            );
        }
        if !(self.sigma_data > 0.0 && self.sigma_data.is_finite()) {
            bail!("field `sigma_data` {} must be positive", self.sigma_data);
        }
        let c = &self.training.corruption;
        if !(0.0..1.0).contains(&c.p) {
            bail!("field `training.corruption.p` {} must be in [0, 1)", c.p);
        }
        if !(0.0..1.0).contains(&c.delta) {
            bail!(
                "field `training.corruption.delta` {} must be in [0, 1)",
                c.delta
            );
        }
        self.check_sampling_mask()?;
        for name in GRAPHS {
            let Some(entry) = self.graphs.get(name) else {
                bail!("field `graphs` has no entry for {name}");
            };
            check_sha(name, entry)?;
            let want = spec_signature(name, self.shape).expect("known graph");
            check_names_and_dims(
                &format!("field `graphs.{name}`"),
                "input",
                &entry.inputs,
                &want.inputs,
            )?;
            check_names_and_dims(
                &format!("field `graphs.{name}`"),
                "output",
                &entry.outputs,
                &want.outputs,
            )?;
        }
        if let Some(other) = self
            .graphs
            .keys()
            .find(|k| !GRAPHS.contains(&k.as_str()) && !SPLIT_VJP.contains(&k.as_str()))
        {
            bail!("field `graphs` has an unknown graph {other}");
        }
        check_split_vjp(&self.graphs, self.shape)
    }

    /// The sampling mask a card describes must be the one adps draws (spec §1): one
    /// Bernoulli((1−p)(1−δ)) draw per pixel, shared by its channels. A card saying
    /// otherwise (ambient-diffusion can train with a mask per channel) would be sampled
    /// with the wrong masks, so it is refused naming the field.
    fn check_sampling_mask(&self) -> Result<()> {
        let per = self.extra.get("mask_per").and_then(|v| v.as_str());
        if let Some(per) = per.filter(|&p| p != "pixel") {
            bail!(
                "field `mask_per` \"{per}\": adps draws one mask per pixel, shared by its \
                 channels; a model trained with masks per {per} is not supported"
            );
        }
        let Some(mask) = self.extra.get("sampling_mask") else {
            return Ok(());
        };
        if mask.get("shared_across_channels") == Some(&serde_json::Value::Bool(false)) {
            bail!(
                "field `sampling_mask.shared_across_channels` false: adps draws one mask per \
                 pixel, shared by its channels; a model trained with a mask per channel is \
                 not supported"
            );
        }
        if let Some(k) = mask.get("keep_prob").and_then(|v| v.as_f64()) {
            let want = self.keep_probability();
            if (k - want).abs() > 1e-9 {
                bail!(
                    "field `sampling_mask.keep_prob` {k} disagrees with training.corruption \
                     ((1 − p)(1 − δ) = {want}): adps draws the mask from p and δ"
                );
            }
        }
        Ok(())
    }

    /// Whether the folder has the optional [`SPLIT_VJP`] pair (validated with the card).
    pub fn has_split_vjp(&self) -> bool {
        self.graphs.contains_key(SPLIT_VJP[0])
    }
}

/// The optional [`SPLIT_VJP`] pair in a card's `graphs`: both or neither; each with a hex
/// sha256; the forward takes dps_vjp's x_t, sigma, mask and returns x0_hat plus any number
/// of kept values, each with the batch `B` as its first dimension; the backward returns
/// `vjp` and takes `cotangent` and, besides it, only values of the forward (its inputs or
/// kept outputs) under the same name and with the same dimensions.
pub fn check_split_vjp(graphs: &BTreeMap<String, GraphEntry>, shape: [usize; 3]) -> Result<()> {
    let [forward_name, backward_name] = SPLIT_VJP;
    let (forward, backward) = match (graphs.get(forward_name), graphs.get(backward_name)) {
        (None, None) => return Ok(()),
        (Some(f), Some(b)) => (f, b),
        (Some(_), None) => bail!("field `graphs` has {forward_name} but not {backward_name}"),
        (None, Some(_)) => bail!("field `graphs` has {backward_name} but not {forward_name}"),
    };
    check_sha(forward_name, forward)?;
    check_sha(backward_name, backward)?;
    let vjp = spec_signature("dps_vjp.onnx", shape).expect("known graph");
    let (inputs, img) = (&vjp.inputs[..3], &vjp.inputs[3].1);
    let what = format!("field `graphs.{forward_name}`");
    check_names_and_dims(&what, "input", &forward.inputs, inputs)?;
    require(&what, "output", &forward.outputs, "x0_hat", img)?;
    let batch = Dim::Dynamic("B".into());
    if let Some((name, dims)) = forward
        .outputs
        .iter()
        .find(|(_, d)| d.first() != Some(&batch))
    {
        bail!(
            "{what}: output `{name}` is {}; a kept value's first dimension is the batch B",
            format_dims(dims)
        );
    }
    let what = format!("field `graphs.{backward_name}`");
    check_names_and_dims(&what, "output", &backward.outputs, &[("vjp", img.clone())])?;
    require(&what, "input", &backward.inputs, "cotangent", img)?;
    for (name, dims) in backward.inputs.iter().filter(|(n, _)| *n != "cotangent") {
        let from_forward = forward
            .inputs
            .get(name)
            .or_else(|| forward.outputs.get(name).filter(|_| name != "x0_hat"));
        match from_forward {
            Some(d) if d == dims => {}
            Some(d) => bail!(
                "{what}: input `{name}` is {}, but {forward_name} has it as {}",
                format_dims(dims),
                format_dims(d)
            ),
            None => bail!(
                "{what}: input `{name}` is neither the cotangent nor an input or kept output of {forward_name}"
            ),
        }
    }
    Ok(())
}

fn check_sha(name: &str, entry: &GraphEntry) -> Result<()> {
    let sha_ok = entry.sha256.len() == 64 && entry.sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if !sha_ok {
        bail!(
            "field `graphs.{name}.sha256` {:?} is not a hex sha256",
            entry.sha256
        );
    }
    Ok(())
}

/// `name` among a card entry's values with dims `want` (others may be there too).
fn require(
    what: &str,
    kind: &str,
    values: &BTreeMap<String, Vec<Dim>>,
    name: &str,
    want: &[Dim],
) -> Result<()> {
    match values.get(name) {
        Some(d) if d == want => Ok(()),
        Some(d) => bail!(
            "{what}: {kind} `{name}` is {}, want {}",
            format_dims(d),
            format_dims(want)
        ),
        None => bail!("{what}: no {kind} `{name}`"),
    }
}

/// Compare a card's {name: dims} with the spec's; `what` names the place in errors.
fn check_names_and_dims(
    what: &str,
    kind: &str,
    have: &BTreeMap<String, Vec<Dim>>,
    want: &[(&str, Vec<Dim>)],
) -> Result<()> {
    for (name, dims) in want {
        match have.get(*name) {
            None => bail!("{what}: no {kind} `{name}` (spec §2 wants {})", names(want)),
            Some(d) if d != dims => bail!(
                "{what}: {kind} `{name}` is {}, spec §2 wants {}",
                format_dims(d),
                format_dims(dims)
            ),
            Some(_) => {}
        }
    }
    if let Some(extra) = have.keys().find(|k| !want.iter().any(|(n, _)| n == k)) {
        bail!(
            "{what}: unexpected {kind} `{extra}` (spec §2 wants {})",
            names(want)
        );
    }
    Ok(())
}

pub(crate) fn names(list: &[(&str, Vec<Dim>)]) -> String {
    let n: Vec<&str> = list.iter().map(|(n, _)| *n).collect();
    n.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card_json() -> serde_json::Value {
        let sig = |g: &str| {
            let s = spec_signature(g, [1, 8, 8]).unwrap();
            let map = |l: Vec<(&str, Vec<Dim>)>| -> serde_json::Value {
                l.into_iter()
                    .map(|(n, d)| (n.to_string(), serde_json::to_value(d).unwrap()))
                    .collect()
            };
            serde_json::json!({"inputs": map(s.inputs), "outputs": map(s.outputs), "sha256": "ab".repeat(32)})
        };
        serde_json::json!({
            "name": "m", "dataset": "d", "shape": [1, 8, 8], "value_range": [-1.0, 1.0],
            "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5,
            "training": {"corruption": {"kind": "random-inpainting", "p": 0.4, "delta": 0.1},
                         "steps": 10, "anything": [1, 2]},
            "mask_per": "pixel",
            "graphs": {"denoiser.onnx": sig("denoiser.onnx"), "dps_vjp.onnx": sig("dps_vjp.onnx"),
                       "dps_dense.onnx": sig("dps_dense.onnx")}
        })
    }

    #[test]
    fn parses_and_keeps_extra_fields() {
        let card = Card::from_json(&card_json().to_string()).unwrap();
        assert_eq!(card.shape, [1, 8, 8]);
        assert!((card.keep_probability() - 0.6 * 0.9).abs() < 1e-12);
        assert_eq!(card.extra["mask_per"], "pixel");
        assert_eq!(card.training.extra["anything"], serde_json::json!([1, 2]));
        assert_eq!(card.shape_string(), "1×8×8");
    }

    #[test]
    fn a_sampling_mask_adps_does_not_draw_is_refused() {
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut j = card_json();
            f(&mut j);
            Card::from_json(&j.to_string()).map_err(|e| format!("{e:#}"))
        };
        let ok = |j: &mut serde_json::Value| {
            j["sampling_mask"] =
                serde_json::json!({"keep_prob": 0.54, "shared_across_channels": true})
        };
        assert!(with(&ok).is_ok());
        let err = with(&|j| j["mask_per"] = "channel".into()).unwrap_err();
        assert!(err.contains("field `mask_per` \"channel\""), "{err}");
        let err =
            with(&|j| j["sampling_mask"] = serde_json::json!({"shared_across_channels": false}))
                .unwrap_err();
        assert!(
            err.contains("sampling_mask.shared_across_channels"),
            "{err}"
        );
        let err =
            with(&|j| j["sampling_mask"] = serde_json::json!({"keep_prob": 0.9})).unwrap_err();
        assert!(err.contains("sampling_mask.keep_prob` 0.9"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let mut j = card_json();
        j.as_object_mut().unwrap().remove("sigma_data");
        let e = Card::from_json(&j.to_string()).unwrap_err().to_string();
        assert!(e.contains("sigma_data"), "{e}");

        let mut j = card_json();
        j["training"]["corruption"]["kind"] = "box".into();
        let e = Card::from_json(&j.to_string()).unwrap_err().to_string();
        assert!(e.contains("box") && e.contains("random-inpainting"), "{e}");

        let mut j = card_json();
        j["training"]["corruption"]["p"] = 1.5.into();
        let e = Card::from_json(&j.to_string()).unwrap_err().to_string();
        assert!(e.contains("training.corruption.p"), "{e}");

        let mut j = card_json();
        j["graphs"]["dps_dense.onnx"]["inputs"]["A"] = serde_json::json!(["M", 63]);
        let e = Card::from_json(&j.to_string()).unwrap_err().to_string();
        assert!(
            e.contains("dps_dense.onnx") && e.contains("`A`") && e.contains("[M, 64]"),
            "{e}"
        );

        let mut j = card_json();
        let ins = j["graphs"]["dps_vjp.onnx"]["inputs"]
            .as_object_mut()
            .unwrap();
        let v = ins.remove("cotangent").unwrap();
        ins.insert("cot".into(), v);
        let e = Card::from_json(&j.to_string()).unwrap_err().to_string();
        assert!(e.contains("dps_vjp.onnx") && e.contains("cotangent"), "{e}");
    }
}
