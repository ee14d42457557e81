//! Command-line interface: flags are validated here, with no I/O; `adps restore`'s flags
//! build the same [`RunSpec`] a pipeline file holds, so both run one code path.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::Device;
use crate::pipeline::config::{
    Convert, Fit, InputSpec, MetricsSpec, ModelSpec, OutputSpec, RunSpec, SamplerSpec, TaskSpec,
    WorkerSpec, YRange,
};
use crate::restore::guidance::GradientMode;
pub use crate::restore::sampler::{Clip, HeunGuidance, Solver};
use crate::restore::sampler::{MaskMode, SamplerConfig};

/// Restore whole datasets of measured images with Ambient Diffusion models (Ambient DPS).
///
/// Models are folders of ONNX graphs (see `adps inspect`); inputs and outputs are Parquet
/// shards under a local path, file://, s3:// or memory:// prefix.
#[derive(Debug, Parser)]
#[command(name = "adps", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format: human-readable text, or one JSON object per line for batch systems.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Progress on stderr: `auto` draws a bar on a terminal with text logs; `always` also
    /// with JSON logs, and without a terminal (a batch job's log file) writes a
    /// `progress` log line every 10 s instead.
    #[arg(long, global = true, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// When to draw a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Restore (or, for clean input, simulate measurements, restore and score) every image
    /// under --input, writing part-<shard>.parquet files under --output (manifests, errors
    /// and failure records under its __adps/ folder).
    ///
    /// Example: adps restore --model models/fmnist-p0.4 --input models/data/demo
    ///          --output out/demo --operator cs:256 --steps 50 --zeta 3
    Restore(Box<RestoreArgs>),
    /// Run a pipeline spec (pipelines/*.toml); `--set key=value` overrides any entry,
    /// e.g. `--set sampler.steps=20 --set task.operator=sr:4`.
    Run(RunArgs),
    /// Run a sweep (pipelines/sweep-*.toml): every model × operator × step count × seed,
    /// ζ searched on validation images, test images run once with the chosen ζ; writes
    /// summary.parquet and report.html. Resumable: rerunning skips finished runs.
    ///
    /// Example: adps evaluate pipelines/sweep-ci.toml --set images.test.limit=8
    Evaluate(EvaluateArgs),
    /// Where a run stands: shards committed, pending and failed (with reasons), records
    /// ok and failed, ids committed twice. Exit code 0 only when the run is complete.
    ///
    /// Example: adps status pipelines/s3-example.toml --worker-count 16
    ///          (prints the array indices to resubmit); adps status out/demo --json
    Status(StatusArgs),
    /// Write one self-contained HTML page about one run (`adps restore`/`run`, or one of
    /// a sweep's runs under its `runs` folder; a sweep's own report is written by `adps
    /// evaluate`): its settings and provenance, counts (ok, failed, pending, duplicates), restore time
    /// per shard, the distribution of the measurement residual ‖y − A x̂‖ (the check a
    /// restoration without ground truth has), metric distributions where ground truth
    /// exists, the first errors, and an example grid (measurement, reconstruction,
    /// ground truth when present).
    ///
    /// Example: adps report out/demo (writes out/demo/__adps/report.html)
    ///
    /// Example: adps report s3://bucket/restored --html report.html
    Report(ReportArgs),
    /// Print a model folder's card and each graph's inputs and outputs.
    Inspect {
        /// The model folder (denoiser.onnx, dps_vjp.onnx, dps_dense.onnx, card.json).
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A run spec (pipelines/*.toml) or an output prefix (path, file://, s3://).
    pub target: String,
    /// Override a spec entry, as for `adps run` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The array job's worker count: also print which worker indices to resubmit.
    #[arg(long)]
    pub worker_count: Option<usize>,
    /// Print the status as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// An output prefix (path, file://, s3://) or the run spec that writes it.
    pub target: String,
    /// Override a spec entry as the run did (`--set` of `adps run`; repeatable): the
    /// settings pick which committed shards the page is about.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Write the page to this local file instead of `__adps/report.html` under the
    /// output prefix.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// How many restored images the example grid shows.
    #[arg(long, default_value_t = 8)]
    pub examples: usize,
}

/// Which share of the input this process restores, for array jobs on several machines.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// This worker's index (0-based). Defaults to JOB_COMPLETION_INDEX (Kubernetes),
    /// AWS_BATCH_JOB_ARRAY_INDEX or SLURM_ARRAY_TASK_ID when --worker-count is given.
    #[arg(long)]
    pub worker_index: Option<usize>,
    /// Number of workers sharing the input; each takes shards i, i+n, i+2n, …
    #[arg(long)]
    pub worker_count: Option<usize>,
}

/// `adps evaluate`'s arguments: a sweep runs its settings itself, one after another.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// The sweep spec (TOML with [images], [defaults] and [[sweep]] tables;
    /// pipelines/sweep-*.toml).
    pub spec: PathBuf,
    /// Override a sweep spec entry: --set defaults.batch_size=4, --set
    /// images.test.limit=20 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline spec (TOML with [model], [input], [task], …; pipelines/demo.toml).
    pub spec: PathBuf,
    /// Override a spec entry: --set sampler.zeta=3 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[command(flatten)]
    pub workers: WorkerArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Model folder (docs/spec.md §2).
    #[arg(long)]
    pub model: String,
    /// Input prefix: a local path, file://…, s3://bucket/prefix or memory://name/prefix.
    #[arg(long)]
    pub input: String,
    /// Output prefix (same schemes as --input).
    #[arg(long)]
    pub output: String,
    /// Forward operator: cs:M, sr:f (f×f average pooling), sr-bicubic:f, inpaint-random:p,
    /// inpaint-box:HxW, blur-gauss:σ, or from a file (a local path, file://, s3://; checked before any compute, its SHA-256
    /// in the settings hash):
    ///
    /// matrix:URL — y = A·vec(x), A an M×(C·H·W) float32/float64 .npy, vec(x) in C,H,W
    /// row-major order; takes the fused dense path.
    ///
    /// blur-kernel:URL[:reflect] — convolution (scipy.ndimage.convolve) of every channel
    /// with a 2-D kernel of odd sides (.npy used as given, or a grey PNG divided by its
    /// sum); zero padding, or scipy's `reflect` with the suffix.
    ///
    /// fourier:URL — y = concat over channels of [Re(F x)[kept], Im(F x)[kept]], F =
    /// numpy.fft.fft2(·, norm="ortho"), kept = the non-zero positions of an H×W mask
    /// (.npy of 0/1 or a grey PNG) in row-major order. A record with a mask (--mask-column)
    /// is measured at its own mask's positions instead.
    ///
    /// sr-bicubic:f — downsampling by f as Pillow's Image.resize((W/f, H/f), BICUBIC) on
    /// a float ('F') image makes it, per channel: antialiased bicubic (a = −0.5, support
    /// 2f, weights normalised per output pixel); H and W divisible by f. y_image is the
    /// low-resolution image.
    #[arg(long)]
    pub operator: String,
    /// Sampling steps N (NFE = 2N−1 with heun, N with euler).
    #[arg(long, default_value_t = SamplerConfig::default().steps)]
    pub steps: usize,
    /// Guidance step ζ. It scales with the operator's norm: ~2–3 for cs:256, ~40 for sr:4 on
    /// 32×32 images; `adps evaluate` searches it.
    #[arg(long, default_value_t = SamplerConfig::default().zeta)]
    pub zeta: f64,
    /// Run seed; with each image's id it keys every random draw for that image.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// ODE solver (at equal NFE euler restored better than heun; README).
    #[arg(long, value_enum, default_value_t = SamplerConfig::default().solver)]
    pub sampler: Solver,
    /// Where x0 is clipped to [-1, 1]: none, direction, or residual (also before the
    /// measurement residual, as the official Ambient DPS code does).
    #[arg(long, value_enum, default_value_t = SamplerConfig::default().clip)]
    pub clip: Clip,
    /// Heun only: how the correction applies the guidance: averaged (over predictor and
    /// corrector) or once (unguided Heun step, then one guidance step).
    #[arg(long, value_enum, default_value_t = SamplerConfig::default().heun_guidance)]
    pub heun_guidance: HeunGuidance,
    /// Measurement noise σ_y (in the model's [-1, 1] units) added when y is simulated from
    /// clean images; measured inputs carry their own noise, and this value is then only
    /// recorded.
    #[arg(long, default_value_t = 0.0)]
    pub sigma_y: f64,
    /// Images restored together (one sampler batch). On a CPU the model runs them in
    /// calls of exactly min(batch size, 4), a shorter one padded, so an image restores
    /// to the same pixels in any batch of the run (and of any run with 4 or more); on a
    /// GPU in one call.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Where ONNX Runtime runs (CUDA under `auto` where it registers, otherwise CPU with a
    /// notice).
    #[arg(long, value_enum, ignore_case = true, default_value_t = Device::default())]
    pub device: Device,
    /// Restore only the input's first N images (in shard order: the same ones on every rerun
    /// and across workers). The window is placed from the shards' Parquet footers: a shard
    /// whose footer cannot be read before N is covered stops the run (exit 1, naming it).
    #[arg(long)]
    pub limit: Option<usize>,
    /// The clean-image column (image struct, PNG/JPEG/TIFF bytes, or list<float32> pixels in
    /// [0, 1] beside `shape`). Default: `image`, else `pixels`.
    #[arg(long, value_name = "COLUMN", help_heading = "Input layout")]
    pub image_column: Option<String>,
    /// The id column (string or integer). Default: `id` where the shard has one; rows
    /// without an id are named <shard path>:<row>.
    #[arg(long, value_name = "COLUMN", help_heading = "Input layout")]
    pub id_column: Option<String>,
    /// The measurement column of measured data: list<float32> (y as a vector) or an image
    /// (e.g. the low-resolution image for sr:f). Default: `y`, else `y_image`.
    #[arg(long, value_name = "COLUMN", help_heading = "Input layout")]
    pub y_column: Option<String>,
    /// The per-record mask column (an H×W image). Inpainting: the pixels kept (brighter
    /// than mid-grey). fourier: the k-space positions measured (non-zero pixels, as in a
    /// fourier: PNG), in place of the file's mask for that record, whose y then has
    /// 2·C·|kept| values. Default: `mask` where the shard has one.
    #[arg(long, value_name = "COLUMN", help_heading = "Input layout")]
    pub mask_column: Option<String>,
    /// Copy an input column verbatim (same type) into every output row, e.g. --keep label
    /// (repeatable, or comma-separated).
    #[arg(
        long = "keep",
        value_name = "COLUMN",
        value_delimiter = ',',
        help_heading = "Input layout"
    )]
    pub keep_columns: Vec<String>,
    /// Clean images of another height×width than the model's: refuse them (error rows),
    /// pad them (centred on black; outputs cropped back to the input's size), crop their
    /// centre, or resize them (bicubic).
    #[arg(long, value_enum, default_value_t = Fit::Error, help_heading = "Input layout")]
    pub fit: Fit,
    /// Convert images whose channel count differs from the model's: `grey` turns colour
    /// into grey (ITU-R 601 weights), `rgb` grey into RGB. Without it such a record is an
    /// error row naming it.
    #[arg(long, value_enum, default_value_t = Convert::None, help_heading = "Input layout")]
    pub convert: Convert,
    /// The range measured y was taken in: `unit` (images in [0, 1], as instruments and
    /// image files give it; converted exactly, y_model = 2·y − A·1) or `model` (images in
    /// the model's [-1, 1]; used as is). Simulated measurements are unaffected.
    #[arg(long, value_enum, default_value_t = YRange::Unit, help_heading = "Input layout")]
    pub y_range: YRange,
    /// ONNX Runtime intra-op threads per session (0: one with automatic workers, otherwise
    /// ONNX Runtime's default of one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Restore workers, each with its own ONNX Runtime sessions (0: one per CPU core with
    /// one thread each, measured fastest; one on a GPU).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// The mask the model is fed while sampling.
    #[arg(long, value_enum, default_value_t = MaskMode::default())]
    pub mask: MaskMode,
    /// How the DPS guidance gradient is computed.
    #[arg(long, value_enum, default_value_t = GradientMode::default())]
    pub gradient: GradientMode,
    /// Also write reconstructions as float32 (`reconstruction_f32`).
    #[arg(long)]
    pub write_f32: bool,
    /// Rows per output part: a shard is written and committed in parts of this many
    /// rows, so its outputs never pile up in memory and a killed run goes on after the
    /// last committed part.
    #[arg(long, default_value_t = crate::pipeline::config::default_part_rows())]
    pub part_rows: usize,
    /// LPIPS ONNX graph for the `lpips` column.
    #[arg(long)]
    pub lpips: Option<String>,
    #[command(flatten)]
    pub workers_share: WorkerArgs,
}

impl RestoreArgs {
    /// The pipeline spec these flags describe.
    pub fn to_spec(&self) -> RunSpec {
        RunSpec {
            input: InputSpec {
                url: self.input.clone(),
                limit: self.limit,
                image_column: self.image_column.clone(),
                id_column: self.id_column.clone(),
                y_column: self.y_column.clone(),
                mask_column: self.mask_column.clone(),
                keep_columns: self.keep_columns.clone(),
                fit: self.fit,
                convert: self.convert,
                y_range: self.y_range,
            },
            output: OutputSpec {
                url: self.output.clone(),
                write_f32: self.write_f32,
                part_rows: self.part_rows,
            },
            model: ModelSpec {
                dir: self.model.clone(),
                device: self.device,
                threads: self.threads,
            },
            task: TaskSpec {
                operator: self.operator.clone(),
                sigma_y: self.sigma_y,
            },
            sampler: SamplerSpec {
                steps: self.steps,
                solver: self.sampler,
                zeta: self.zeta,
                clip: self.clip,
                heun_guidance: self.heun_guidance,
                seed: self.seed,
                mask: self.mask,
                gradient: self.gradient,
                ..SamplerSpec::default()
            },
            workers: WorkerSpec {
                batch_size: self.batch_size,
                restore_workers: self.workers,
                ..WorkerSpec::default()
            },
            metrics: MetricsSpec {
                lpips: self.lpips.clone(),
            },
            store: Default::default(),
        }
    }
}

impl WorkerArgs {
    /// Applies the worker share: `--worker-index` first, else the batch system's array
    /// index (`JOB_COMPLETION_INDEX`, `AWS_BATCH_JOB_ARRAY_INDEX`, `SLURM_ARRAY_TASK_ID`),
    /// else the spec's `workers.worker_index`. A spec index that an array index
    /// contradicts is refused: every task of the array would take the same shards.
    pub fn apply(&self, spec: &mut RunSpec) -> anyhow::Result<()> {
        if let Some(n) = self.worker_count {
            spec.workers.worker_count = Some(n);
        }
        if let Some(i) = self.worker_index {
            spec.workers.worker_index = Some(i);
            return Ok(());
        }
        if spec.workers.worker_count.is_none() {
            return Ok(());
        }
        let Some((var, v)) = [
            "JOB_COMPLETION_INDEX",
            "AWS_BATCH_JOB_ARRAY_INDEX",
            "SLURM_ARRAY_TASK_ID",
        ]
        .into_iter()
        .find_map(|var| std::env::var(var).ok().map(|v| (var, v))) else {
            return Ok(());
        };
        let i: usize = v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{var}=`{v}` is not a worker index"))?;
        match spec.workers.worker_index {
            Some(set) if set != i => anyhow::bail!(
                "the spec sets workers.worker_index = {set}, but {var}={i}: in an array job \
                 leave worker_index out of the spec (each task takes the array's index) or \
                 pass --worker-index"
            ),
            _ => spec.workers.worker_index = Some(i),
        }
        if let Some(n) = spec.workers.worker_count.filter(|&n| i >= n) {
            anyhow::bail!(
                "{var}={i} is not below --worker-count {n}: worker indices run from 0 to {} \
                 (a Slurm array is --array=0-{}, not 1-{n})",
                n - 1,
                n - 1
            );
        }
        tracing::info!(
            worker_index = i,
            from = var,
            "worker index from the batch system"
        );
        Ok(())
    }
}
