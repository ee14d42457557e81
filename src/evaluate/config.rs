//! The sweep specification (`pipelines/sweep-*.toml`): models × operators × step counts ×
//! seeds, the ζ grid searched on validation images, and the test images reported on.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::Device;
use crate::restore::sampler::{Clip, MaskMode, SamplerConfig, Solver};

/// A whole evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Report title.
    #[serde(default = "default_title")]
    pub title: String,
    /// A paragraph shown under the report's title: what the sweep is for and why its
    /// settings were chosen (plain text; blank lines start new paragraphs).
    #[serde(default)]
    pub description: Option<String>,
    /// Where `summary.parquet` and `report.html` are written (a local directory).
    pub report: String,
    /// Where every setting's pipeline runs write their parts (local path or URL). Each
    /// run is resumable on its own: rerunning the sweep skips finished work.
    pub runs: String,
    /// The image sets.
    pub images: ImageSets,
    /// Settings shared by every sweep entry (an entry may override the ζ grid).
    #[serde(default)]
    pub defaults: Defaults,
    /// The settings: each entry is a cross product models × operators × steps × seeds.
    #[serde(rename = "sweep")]
    pub entries: Vec<SweepEntry>,
}

fn default_title() -> String {
    "adps evaluation".into()
}

/// Validation images pick ζ; test images are reported. They must be disjoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSets {
    pub validation: ImageSet,
    pub test: ImageSet,
}

/// Parquet shards under a prefix, optionally only the first `limit` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSet {
    pub url: String,
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Settings shared by all entries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// `euler` or `heun` (default: the sampler's, [`SamplerConfig::default`]).
    pub solver: Solver,
    /// Where x0 is clipped: `none`, `direction` or `residual` (default: the sampler's).
    pub clip: Clip,
    /// Measurement noise σ_y.
    pub sigma_y: f64,
    /// Run seeds; each is its own setting.
    pub seeds: Vec<u64>,
    /// `model` (Ambient DPS) or `ones` (plain DPS).
    pub mask: MaskMode,
    /// ζ candidates, searched on the validation images (log-spaced is what works).
    pub zeta_grid: Vec<f64>,
    /// How many times the grid may be extended when the best ζ lies on its edge.
    pub widen: usize,
    pub batch_size: usize,
    /// `cpu`, `cuda` or `auto` (CUDA where it registers, otherwise CPU).
    pub device: Device,
    pub threads: usize,
    /// LPIPS graph for the `lpips` metric (e.g. models/lpips/lpips-alex.onnx).
    pub lpips: Option<String>,
    /// Images per task shown in the report's example grids.
    pub examples: usize,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            solver: SamplerConfig::default().solver,
            clip: SamplerConfig::default().clip,
            sigma_y: 0.0,
            seeds: vec![0],
            mask: MaskMode::default(),
            zeta_grid: vec![0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0],
            widen: 3,
            batch_size: 16,
            device: Device::default(),
            threads: 0,
            lpips: None,
            examples: 6,
        }
    }
}

/// One block of settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepEntry {
    /// A name for messages, e.g. `fig2-cs`.
    pub name: String,
    /// Model folders.
    pub models: Vec<String>,
    /// Operator strings.
    pub operators: Vec<String>,
    /// Sampler step counts N.
    pub steps: Vec<usize>,
    /// Overrides the default ζ grid for this entry.
    #[serde(default)]
    pub zeta_grid: Option<Vec<f64>>,
}

impl SweepSpec {
    /// Reads a sweep file and applies `--set key=value` overrides.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read sweep spec {}", path.display()))?;
        let mut table: toml::Table =
            toml::from_str(&text).with_context(|| format!("sweep spec {}", path.display()))?;
        // The two spec kinds share the .toml suffix: say which command reads this one.
        let hint = if !table.contains_key("sweep")
            && ["model", "task", "input"]
                .iter()
                .any(|k| table.contains_key(*k))
        {
            " (a pipeline spec, with [model]/[task]/[input]: `adps run` runs it)"
        } else {
            ""
        };
        for o in overrides {
            crate::pipeline::config::apply_override(&mut table, o)?;
        }
        toml::Value::Table(table)
            .try_into()
            .with_context(|| format!("sweep spec {}{hint}", path.display()))
    }
}
