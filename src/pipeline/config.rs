//! The run specification: what `pipelines/*.toml` holds and what `adps restore`'s flags
//! build. Unknown keys are rejected, so a typo never silently falls back to a default.
//!
//! `--set key=value` overrides use dotted keys (`sampler.steps=50`) and TOML values
//! (strings may be left unquoted).

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::Device;
use crate::restore::guidance::GradientMode;
use crate::restore::sampler::{Clip, HeunGuidance, MaskMode, SamplerConfig, Solver};

/// A whole run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// Where input shards come from.
    pub input: InputSpec,
    /// Where parts, manifests and errors go.
    pub output: OutputSpec,
    /// The model folder and how to run it.
    pub model: ModelSpec,
    /// The inverse problem to solve.
    pub task: TaskSpec,
    /// Sampler settings (the paper's defaults where omitted).
    #[serde(default)]
    pub sampler: SamplerSpec,
    /// Parallelism, batching and queue sizes.
    #[serde(default)]
    pub workers: WorkerSpec,
    /// Optional metrics beyond MSE/PSNR/SSIM.
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// How the object stores behave (not part of the settings hash).
    #[serde(default)]
    pub store: StoreSpec,
}

/// Input shards: Parquet files under a prefix, taken in lexicographic order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// `file://…`, a local path, `s3://bucket/prefix` or `memory://name/prefix`.
    pub url: String,
    /// Restore only the input's first this-many records (in shard listing order; the same
    /// records on every rerun and across workers).
    #[serde(default)]
    pub limit: Option<usize>,
    /// The clean-image column: an image struct (as Hugging Face `datasets` writes it) or
    /// binary PNG/JPEG/TIFF bytes, or list<float32> C·H·W pixels in [0, 1] beside a `shape`
    /// column. Unset: `image`, else `pixels` (+ `shape`), where the shard has one.
    #[serde(default)]
    pub image_column: Option<String>,
    /// The record-id column (string or integer). Unset: `id` where the shard has one;
    /// rows without an id are named `<shard path>:<row>`.
    #[serde(default)]
    pub id_column: Option<String>,
    /// The measurement column of measured data: list<float32> (y as a vector) or an image
    /// (y as an image, e.g. the low-resolution image for `sr:f`). Unset: `y`, else
    /// `y_image`, where the shard has one.
    #[serde(default)]
    pub y_column: Option<String>,
    /// The per-record mask column (an H×W image): the pixels kept for inpainting (brighter
    /// than mid-grey), the k-space positions measured for `fourier` (non-zero pixels; in
    /// place of the file's mask). Unset: `mask` where the shard has one.
    #[serde(default)]
    pub mask_column: Option<String>,
    /// Input columns copied verbatim (same Arrow type) into every output row, e.g.
    /// `["label"]`.
    #[serde(default)]
    pub keep_columns: Vec<String>,
    /// What to do with a clean image whose height and width differ from the model's.
    #[serde(default)]
    pub fit: Fit,
    /// Channel conversion of images (clean images and `y` images) whose channel count
    /// differs from the model's; without it such a record is an error row.
    #[serde(default)]
    pub convert: Convert,
    /// The value range measured `y` was taken in (simulated measurements are unaffected).
    #[serde(default)]
    pub y_range: YRange,
}

/// How a clean image of another size than the model's is fitted to it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Fit {
    /// The record is an error row naming both sizes.
    #[default]
    Error,
    /// Centred on a black canvas (−1 in the model's range, 0 in the image's); the
    /// reconstruction is cropped back, so outputs and metrics have the input's size.
    /// Images larger than the model in either direction are error rows.
    Pad,
    /// The centre H×W window is restored; outputs and metrics have the model's size.
    /// Images smaller than the model in either direction are error rows.
    CenterCrop,
    /// Resampled to H×W (Catmull-Rom bicubic, aspect ratio not kept); outputs and metrics
    /// have the model's size.
    Resize,
}

/// Channel conversion of input images.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Convert {
    /// An image with another channel count than the model's is an error row (an
    /// RGB image whose three channels are equal counts as grey).
    #[default]
    None,
    /// Colour images to grey, L = 0.299 R + 0.587 G + 0.114 B (ITU-R 601, as Pillow's
    /// `convert("L")` and torchvision), for a grey model.
    Grey,
    /// Grey images to RGB (the grey value in all three channels), for a colour model.
    Rgb,
}

/// The range measured `y` values were taken in.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum YRange {
    /// y = A·x with x in [0, 1], as instruments and image files give it; adps converts
    /// it exactly to the model's range: y_model = 2·y − A·1.
    #[default]
    Unit,
    /// y = A·x with x in the model's [-1, 1] range; used as it is. A `y` image then
    /// holds (y + 1)/2, the usual image encoding of [-1, 1].
    Model,
}

impl YRange {
    /// The name written into output rows.
    pub fn as_str(&self) -> &'static str {
        match self {
            YRange::Unit => "unit",
            YRange::Model => "model",
        }
    }
}

impl InputSpec {
    /// An input at `url` with every layout setting at its default.
    pub fn at(url: impl Into<String>) -> Self {
        InputSpec {
            url: url.into(),
            limit: None,
            image_column: None,
            id_column: None,
            y_column: None,
            mask_column: None,
            keep_columns: Vec::new(),
            fit: Fit::default(),
            convert: Convert::default(),
            y_range: YRange::default(),
        }
    }
}

/// Output location.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// `file://…`, a local path, `s3://bucket/prefix` or `memory://name/prefix`.
    pub url: String,
    /// Also write each reconstruction as float32 (`reconstruction_f32`), lossless.
    #[serde(default)]
    pub write_f32: bool,
    /// Rows per output part: a shard's rows are written (and committed, so a killed run
    /// resumes after them) in parts of this many rows, which bounds the memory a shard's
    /// outputs take.
    #[serde(default = "default_part_rows")]
    pub part_rows: usize,
}

pub fn default_part_rows() -> usize {
    1000
}

/// The model folder (spec §2) and its runtime.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Path of the model folder (denoiser.onnx, dps_vjp.onnx, dps_dense.onnx, card.json).
    pub dir: String,
    /// `cpu`, `cuda` or `auto` (CUDA where it registers, otherwise CPU).
    #[serde(default)]
    pub device: Device,
    /// Intra-op threads per ONNX Runtime session; 0: one when the restore workers are
    /// automatic (one per core), otherwise ONNX Runtime's default (one per core).
    #[serde(default)]
    pub threads: usize,
}

/// The inverse problem.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Forward operator: `cs:M`, `sr:f`, `sr-bicubic:f`, `inpaint-random:p`,
    /// `inpaint-box:HxW`, `blur-gauss:σ`, or one read from a file: `matrix:URL`, `blur-kernel:URL[:reflect]`, `fourier:URL`
    /// (see `adps restore --help` and the README).
    pub operator: String,
    /// Measurement noise σ_y (y = A x0 + σ_y·n); also used when simulating y from clean images.
    #[serde(default)]
    pub sigma_y: f64,
}

/// Sampler settings; defaults come from [`SamplerConfig::default`] (EDM schedule, no
/// churn, and the solver, steps, ζ and clipping that restored best when measured).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SamplerSpec {
    /// Number of noise levels N (NFE = 2N−1 for Heun, N for Euler).
    pub steps: usize,
    /// `euler` or `heun`.
    pub solver: Solver,
    /// Guidance step ζ (constant over the trajectory).
    pub zeta: f64,
    /// Run seed: with an image's id it keys every random draw for that image.
    pub seed: u64,
    /// `model` (Ambient DPS: the model's own sampling mask) or `ones` (plain DPS, mask = 1).
    pub mask: MaskMode,
    /// `auto`, `dense` (fused dps_dense.onnx) or `vjp` (dps_vjp.onnx + Rust adjoint).
    pub gradient: GradientMode,
    /// Where x0 is clipped to [-1, 1]: `none`, `direction` or `residual` (see [`Clip`]).
    pub clip: Clip,
    /// Heun only: `averaged` (guidance averaged over predictor and corrector) or `once`
    /// (unguided Heun step, then one guidance step); see [`HeunGuidance`].
    pub heun_guidance: HeunGuidance,
    /// Stochasticity (EDM S_churn, S_min, S_max, S_noise); churn 0 is deterministic.
    pub churn: f64,
    pub s_min: f64,
    pub s_max: f64,
    pub s_noise: f64,
    /// Noise range; clamped to the model card's.
    pub sigma_min: f64,
    pub sigma_max: f64,
}

impl Default for SamplerSpec {
    fn default() -> Self {
        let c = SamplerConfig::default();
        Self {
            steps: c.steps,
            solver: c.solver,
            zeta: c.zeta,
            seed: 0,
            mask: MaskMode::default(),
            gradient: GradientMode::default(),
            clip: c.clip,
            heun_guidance: c.heun_guidance,
            churn: c.s_churn,
            s_min: c.s_min,
            s_max: c.s_max,
            s_noise: c.s_noise,
            sigma_min: c.sigma_min,
            sigma_max: c.sigma_max,
        }
    }
}

/// Parallelism and memory bounds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSpec {
    /// Images restored together (one sampler batch). On a CPU the model runs them in
    /// calls of exactly min(batch size, 4), a shorter one padded, so an image restores
    /// to the same pixels in any batch of the run (and of any run with 4 or more); on a
    /// GPU in one call.
    pub batch_size: usize,
    /// Restore workers, one ONNX Runtime session set each; 0 (the default): one per CPU
    /// core with one intra-op thread each (measured faster than one worker using every
    /// core), or one on a GPU.
    pub restore_workers: usize,
    /// Shards whose footers are read ahead concurrently (rows stream one shard at a time).
    pub fetch_concurrency: usize,
    /// Rows read from a shard at a time: the input side holds a few such chunks, however
    /// large the shard.
    pub chunk_rows: usize,
    /// Capacity, in messages, of every queue between stages (a message is a chunk of a
    /// shard's rows before `batch` and a batch after it). Small: the restore stage is the bottleneck, and a
    /// few batches ahead are enough to keep it busy while holding memory flat.
    pub queue_capacity: usize,
    /// This machine's index among `worker_count` machines sharing the input (shards i::n).
    pub worker_index: Option<usize>,
    /// Number of machines sharing the input.
    pub worker_count: Option<usize>,
}

impl Default for WorkerSpec {
    fn default() -> Self {
        Self {
            batch_size: 8,
            restore_workers: 0,
            fetch_concurrency: 4,
            chunk_rows: 256,
            queue_capacity: 4,
            worker_index: None,
            worker_count: None,
        }
    }
}

/// Optional metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSpec {
    /// Path of an LPIPS ONNX graph (see `models/lpips/`); without it the `lpips` column is null.
    pub lpips: Option<String>,
}

/// Object-store behaviour; it never changes an output, so it is not in the settings hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSpec {
    /// How long a failing S3 request (5xx, refused connection, timeout) is retried, in
    /// seconds from its first try; 0 turns retries off. At most 300.
    pub retry_max_seconds: u64,
}

impl Default for StoreSpec {
    fn default() -> Self {
        Self {
            retry_max_seconds: crate::io::store::DEFAULT_RETRY_MAX_SECONDS,
        }
    }
}

impl StoreSpec {
    /// The stores' retry budget.
    pub fn retry(&self) -> crate::io::store::Retry {
        crate::io::store::Retry::seconds(self.retry_max_seconds)
    }
}

impl RunSpec {
    /// Reads a spec file and applies `--set key=value` overrides.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read pipeline spec {}", path.display()))?;
        Self::parse(&text, overrides).with_context(|| {
            let table = toml::from_str::<toml::Table>(&text).unwrap_or_default();
            // The two spec kinds share the .toml suffix: say which command reads this one.
            let hint = if table.contains_key("sweep") || table.contains_key("defaults") {
                " (a sweep spec, with [[sweep]]: `adps evaluate` runs it; `adps run`, `status` \
                 and `report` take a pipeline spec or one run's output folder)"
            } else {
                ""
            };
            format!("pipeline spec {}{hint}", path.display())
        })
    }

    /// Parses a spec from TOML text and applies overrides.
    pub fn parse(text: &str, overrides: &[String]) -> Result<Self> {
        let mut table: toml::Table = toml::from_str(text)?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let spec: RunSpec = toml::Value::Table(table).try_into()?;
        Ok(spec)
    }
}

/// Applies one `a.b.c=value` override to a TOML table.
pub fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .with_context(|| format!("--set `{assignment}`: expected key=value"))?;
    let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("--set `{assignment}`: empty key segment");
    }
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        cur = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("--set `{assignment}`: `{p}` is not a section"))?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [input]
        url = "in/"
        [output]
        url = "out/"
        [model]
        dir = "models/m"
        [task]
        operator = "cs:256"
    "#;

    #[test]
    fn sampler_defaults_are_the_samplers() {
        let s = RunSpec::parse(MINIMAL, &[]).unwrap();
        let c = SamplerConfig::default();
        assert_eq!(
            (
                s.sampler.solver,
                s.sampler.steps,
                s.sampler.zeta,
                s.sampler.clip
            ),
            (c.solver, c.steps, c.zeta, c.clip)
        );
        assert_eq!(s.sampler.churn, 0.0);
        assert_eq!(s.workers.batch_size, 8);
        assert_eq!(s.store.retry_max_seconds, 120);
    }

    #[test]
    fn store_retry_budget_is_set_by_name() {
        let s = RunSpec::parse(MINIMAL, &["store.retry_max_seconds=30".into()]).unwrap();
        assert_eq!(s.store.retry().max, std::time::Duration::from_secs(30));
        let err = RunSpec::parse(MINIMAL, &["store.retry_max_tries=3".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("retry_max_tries"), "{err:#}");
    }

    #[test]
    fn overrides_take_toml_values_and_bare_strings() {
        let s = RunSpec::parse(
            MINIMAL,
            &[
                "sampler.steps=7".into(),
                "task.operator=sr:4".into(),
                "sampler.zeta=2.5".into(),
            ],
        )
        .unwrap();
        assert_eq!(s.sampler.steps, 7);
        assert_eq!(s.task.operator, "sr:4");
        assert_eq!(s.sampler.zeta, 2.5);
    }

    #[test]
    fn input_layout_settings_are_typed() {
        let s = RunSpec::parse(MINIMAL, &[]).unwrap();
        assert_eq!(s.input, InputSpec::at("in/"));
        assert_eq!(
            (s.input.fit, s.input.convert, s.input.y_range),
            (Fit::Error, Convert::None, YRange::Unit)
        );
        let s = RunSpec::parse(
            MINIMAL,
            &[
                "input.fit=center-crop".into(),
                "input.convert=grey".into(),
                "input.y_range=model".into(),
                r#"input.keep_columns=["label", "split"]"#.into(),
                "input.id_column=name".into(),
            ],
        )
        .unwrap();
        assert_eq!(s.input.fit, Fit::CenterCrop);
        assert_eq!(s.input.convert, Convert::Grey);
        assert_eq!(s.input.y_range, YRange::Model);
        assert_eq!(s.input.keep_columns, ["label", "split"]);
        assert_eq!(s.input.id_column.as_deref(), Some("name"));
        let err = RunSpec::parse(MINIMAL, &["input.fit=stretch".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("stretch"), "{err:#}");
        let err = RunSpec::parse(MINIMAL, &["input.image_col=img".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("image_col"), "{err:#}");
    }

    #[test]
    fn solver_and_clip_are_typed_names() {
        let s = RunSpec::parse(
            MINIMAL,
            &["sampler.solver=heun".into(), "sampler.clip=residual".into()],
        )
        .unwrap();
        assert_eq!(
            (s.sampler.solver, s.sampler.clip),
            (Solver::Heun, Clip::Residual)
        );
        let old = RunSpec::parse(MINIMAL, &["sampler.clip=true".into()]).unwrap();
        assert_eq!(old.sampler.clip, Clip::Direction);
        let err = RunSpec::parse(MINIMAL, &["sampler.solver=rk4".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("rk4"), "{err:#}");
    }

    #[test]
    fn mask_gradient_and_device_are_typed_names() {
        let s = RunSpec::parse(MINIMAL, &[]).unwrap();
        assert_eq!(
            (s.sampler.mask, s.sampler.gradient, s.model.device),
            (MaskMode::Model, GradientMode::Auto, Device::Auto)
        );
        let set = |o: &[&str]| {
            RunSpec::parse(
                MINIMAL,
                &o.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        let s = set(&[
            "sampler.mask=ones",
            "sampler.gradient=vjp",
            "model.device=gpu",
        ])
        .unwrap();
        assert_eq!(
            (s.sampler.mask, s.sampler.gradient, s.model.device),
            (MaskMode::Ones, GradientMode::Vjp, Device::Cuda)
        );
        assert_eq!(
            set(&["model.device=CPU"]).unwrap().model.device,
            Device::Cpu
        );
        // A bad value names the field and every allowed value.
        for (o, field, allowed) in [
            ("sampler.mask=none", "sampler.mask", &["model", "ones"][..]),
            (
                "sampler.gradient=sparse",
                "sampler.gradient",
                &["auto", "dense", "vjp"][..],
            ),
            (
                "model.device=tpu",
                "model.device",
                &["cpu", "cuda", "auto"][..],
            ),
        ] {
            let err = format!("{:#}", set(&[o]).unwrap_err());
            let bad = o.split_once('=').unwrap().1;
            assert!(err.contains(field) && err.contains(bad), "{o}: {err}");
            for a in allowed {
                assert!(err.contains(a), "{o}: {err}");
            }
        }
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = RunSpec::parse(MINIMAL, &["sampler.stpes=7".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("stpes"), "{err:#}");
    }
}
