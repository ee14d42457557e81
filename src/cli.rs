//! Command-line interface: flags are validated here, with no I/O; `adps restore`'s flags
//! build the same [`RunSpec`] a pipeline file holds, so both run one code path.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::pipeline::config::{
    InputSpec, MetricsSpec, ModelSpec, OutputSpec, RunSpec, SamplerSpec, TaskSpec, WorkerSpec,
};
use crate::restore::sampler::SamplerConfig;
pub use crate::restore::sampler::{Clip, HeunGuidance, Solver};

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
    /// Progress bar on stderr: `auto` shows it on a terminal with text logs.
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
    Evaluate(RunArgs),
    /// Where a run stands: shards committed, pending and failed (with reasons), records
    /// ok and failed, ids committed twice. Exit code 0 only when the run is complete.
    ///
    /// Example: adps status pipelines/s3-example.toml --worker-count 16
    ///          (prints the array indices to resubmit); adps status out/demo --json
    Status(StatusArgs),
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

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline spec (TOML).
    pub spec: PathBuf,
    /// Override a spec entry: --set sampler.zeta=3 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[command(flatten)]
    pub workers: WorkerArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Model folder (spec §2).
    #[arg(long)]
    pub model: String,
    /// Input prefix: a local path, file://…, s3://bucket/prefix or memory://name/prefix.
    #[arg(long)]
    pub input: String,
    /// Output prefix (same schemes as --input).
    #[arg(long)]
    pub output: String,
    /// Forward operator: cs:M, sr:f, inpaint-random:p, inpaint-box:HxW, blur-gauss:σ.
    #[arg(long)]
    pub operator: String,
    /// Sampling steps N (NFE = 2N−1 with heun, N with euler).
    #[arg(long, default_value_t = SamplerConfig::default().steps)]
    pub steps: usize,
    /// Guidance step ζ. It scales with the operator's norm: ~3 for cs:256, ~40 for sr:4 on
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
    /// Measurement noise σ_y.
    #[arg(long, default_value_t = 0.0)]
    pub sigma_y: f64,
    /// Images per model call.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// cpu, cuda or auto (CUDA where it registers, otherwise CPU with a notice).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Restore only the input's first N images (in shard order: the same ones on every rerun
    /// and across workers). A shard whose row count cannot be read fails alone (exit 3)
    /// and counts as no images; the window goes on over the next shards.
    #[arg(long)]
    pub limit: Option<usize>,
    /// ONNX Runtime intra-op threads per session (0: its default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Restore workers, each with its own ONNX Runtime sessions.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// `model`: Ambient DPS, the model sees its own sampling mask; `ones`: plain DPS.
    #[arg(long, default_value = "model")]
    pub mask: String,
    /// Gradient path: auto, dense (fused graph, dense operators) or vjp.
    #[arg(long, default_value = "auto")]
    pub gradient: String,
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
            },
            output: OutputSpec {
                url: self.output.clone(),
                write_f32: self.write_f32,
                part_rows: self.part_rows,
            },
            model: ModelSpec {
                dir: self.model.clone(),
                device: self.device.clone(),
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
                mask: self.mask.clone(),
                gradient: self.gradient.clone(),
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
    /// Applies the worker share (flags first, then the batch system's array index).
    pub fn apply(&self, spec: &mut RunSpec) -> anyhow::Result<()> {
        if let Some(n) = self.worker_count {
            spec.workers.worker_count = Some(n);
        }
        if let Some(i) = self.worker_index {
            spec.workers.worker_index = Some(i);
        }
        if spec.workers.worker_count.is_some() && spec.workers.worker_index.is_none() {
            for var in [
                "JOB_COMPLETION_INDEX",
                "AWS_BATCH_JOB_ARRAY_INDEX",
                "SLURM_ARRAY_TASK_ID",
            ] {
                if let Ok(v) = std::env::var(var) {
                    let i: usize = v
                        .trim()
                        .parse()
                        .map_err(|_| anyhow::anyhow!("{var}=`{v}` is not a worker index"))?;
                    spec.workers.worker_index = Some(i);
                    break;
                }
            }
        }
        Ok(())
    }
}
