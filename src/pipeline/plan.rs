//! From a [`RunSpec`] to a runnable [`Plan`]: every entry is checked before any compute,
//! all problems are reported together, then the real objects (stores, model sessions,
//! the operator family) are built.

use std::str::FromStr;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::config::RunSpec;
use crate::io::parquet_out::RowSettings;
use crate::io::store::{self, Location};
use crate::model::{Device, ModelFolder, OnnxDenoiser, SessionConfig};
use crate::restore::operators::OperatorSpec;
use crate::stages::decode::DecodeSpec;
use crate::stages::metrics::Perceptual;
use crate::stages::restore::{AdpsRestorer, RestoreSettings, Restorer};
use crate::stages::{commit, list, Counters, Shard};

/// A validated run, ready to execute.
pub struct Plan {
    pub spec: RunSpec,
    /// Drives object-store I/O for the stages that touch stores.
    pub runtime: tokio::runtime::Runtime,
    pub input: Location,
    pub output: Location,
    /// The model's image shape [C, H, W].
    pub shape: [usize; 3],
    pub decode: DecodeSpec,
    /// Settings written into every output row.
    pub row_settings: RowSettings,
    /// Hash of everything that determines the outputs; manifests carry it.
    pub settings_hash: String,
    pub settings_json: serde_json::Value,
    /// This worker's share of the shards: (index, count).
    pub worker: (usize, usize),
}

/// The compute engines of a run, one per restore worker, each with its own sessions.
pub struct Engines {
    pub restorers: Vec<Box<dyn Restorer>>,
    pub lpips: Option<Box<dyn Perceptual>>,
}

/// Checks a spec without touching the network or loading sessions; every problem found
/// is listed.
pub fn check(spec: &RunSpec) -> Vec<String> {
    let mut problems = Vec::new();
    let s = &spec.sampler;
    if s.steps < 1 {
        problems.push("sampler.steps must be at least 1".into());
    }
    if !["model", "ones"].contains(&s.mask.as_str()) {
        problems.push(format!("sampler.mask `{}`: expected model or ones", s.mask));
    }
    if !["auto", "dense", "vjp"].contains(&s.gradient.as_str()) {
        problems.push(format!(
            "sampler.gradient `{}`: expected auto, dense or vjp",
            s.gradient
        ));
    }
    if !(s.zeta.is_finite() && s.zeta >= 0.0) {
        problems.push(format!("sampler.zeta {} must be finite and ≥ 0", s.zeta));
    }
    if !(spec.task.sigma_y.is_finite() && spec.task.sigma_y >= 0.0) {
        problems.push(format!(
            "task.sigma_y {} must be finite and ≥ 0",
            spec.task.sigma_y
        ));
    }
    if let Err(e) = Device::from_str(&spec.model.device) {
        problems.push(format!("model.device: {e}"));
    }
    let w = &spec.workers;
    if w.batch_size < 1 {
        problems.push("workers.batch_size must be at least 1".into());
    }
    if spec.output.part_rows < 1 {
        problems.push("output.part_rows must be at least 1".into());
    }
    if w.chunk_rows < 1 {
        problems.push("workers.chunk_rows must be at least 1".into());
    }
    if w.restore_workers < 1 {
        problems.push("workers.restore_workers must be at least 1".into());
    }
    match (w.worker_index, w.worker_count) {
        (Some(i), Some(n)) if i >= n => {
            problems.push(format!("worker index {i} is not below the worker count {n}"))
        }
        (Some(_), None) => problems.push("a worker index needs --worker-count".into()),
        (None, Some(n)) if n > 1 => problems.push(format!(
            "--worker-count {n} needs --worker-index (or JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX, SLURM_ARRAY_TASK_ID)"
        )),
        (_, Some(0)) => problems.push("worker count must be at least 1".into()),
        _ => {}
    }
    if let Err(e) = OperatorSpec::from_str(&spec.task.operator) {
        problems.push(format!("task.operator: {e:#}"));
    }
    if spec.store.retry_max_seconds > store::MAX_RETRY_MAX_SECONDS {
        problems.push(format!(
            "store.retry_max_seconds {} is above {} (object_store re-sends a request with \
             its first signature)",
            spec.store.retry_max_seconds,
            store::MAX_RETRY_MAX_SECONDS
        ));
    }
    if spec.input.limit == Some(0) {
        problems.push("input.limit 0 restores nothing".into());
    }
    problems
}

/// Builds the plan: checks the spec, opens the stores, loads and validates the model,
/// fits the operator to the model's shape and starts one session set per worker.
pub fn build(spec: RunSpec) -> Result<(Plan, Engines)> {
    let mut problems = check(&spec);
    let folder = match ModelFolder::open(&spec.model.dir) {
        Ok(f) => Some(f),
        Err(e) => {
            problems.push(format!("model {}: {e:#}", spec.model.dir));
            None
        }
    };
    let op_spec = OperatorSpec::from_str(&spec.task.operator).ok();
    if let (Some(f), Some(op)) = (&folder, &op_spec) {
        if let Err(e) = op.validate(f.card().shape) {
            problems.push(format!("task.operator `{}`: {e:#}", spec.task.operator));
        }
    }
    if let Some(path) = &spec.metrics.lpips {
        if !std::path::Path::new(path).is_file() {
            problems.push(format!("metrics.lpips: {path} is not a file"));
        }
    }
    if !problems.is_empty() {
        bail!(
            "the run spec has {} problem(s):\n  - {}",
            problems.len(),
            problems.join("\n  - ")
        );
    }
    let (Some(folder), Some(op_spec)) = (folder, op_spec) else {
        bail!("internal: checked spec lacks a model or operator");
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("adps-io")
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")?;
    let retry = spec.store.retry();
    let input = store::open_with_retry(&spec.input.url, retry)
        .with_context(|| format!("input {}", spec.input.url))?;
    let output = store::open_output_with_retry(&spec.output.url, retry)
        .with_context(|| format!("output {}", spec.output.url))?;

    let card = folder.card().clone();
    let shape = card.shape;
    let device = Device::from_str(&spec.model.device)?;
    let session = SessionConfig::new(device, spec.model.threads);
    let settings = RestoreSettings::from_spec(&spec, &card, op_spec.clone())?;
    let mut restorers: Vec<Box<dyn Restorer>> = Vec::new();
    for _ in 0..spec.workers.restore_workers {
        let model = OnnxDenoiser::new(&folder, &session)
            .with_context(|| format!("model {}", spec.model.dir))?;
        restorers.push(Box::new(AdpsRestorer::new(model, settings.clone())));
    }
    let lpips: Option<Box<dyn Perceptual>> = match &spec.metrics.lpips {
        Some(path) => Some(Box::new(
            crate::model::lpips::OnnxLpips::load(std::path::Path::new(path), &session)
                .with_context(|| format!("LPIPS model {path}"))?,
        )),
        None => None,
    };

    let decode = DecodeSpec {
        shape,
        y_len: settings.measurements(),
        y_image_shape: measurement_image_shape(&op_spec, shape),
        takes_mask: settings.family.shared().is_none(),
    };
    let (kind, level) = kind_and_level(&op_spec);
    let nfe = settings.nfe() as i32;
    let row_settings = RowSettings {
        model: card.name.clone(),
        train_p: card.train_p(),
        operator: spec.task.operator.clone(),
        operator_kind: kind,
        level,
        sigma_y: spec.task.sigma_y,
        steps: spec.sampler.steps as i32,
        nfe,
        zeta: spec.sampler.zeta,
        seed: spec.sampler.seed as i64,
        sampler: spec.sampler.solver.to_string(),
    };
    let settings_json = settings_json(&spec, &card);
    let settings_hash = settings_hash(&settings_json);
    let worker = (
        spec.workers.worker_index.unwrap_or(0),
        spec.workers.worker_count.unwrap_or(1),
    );
    let plan = Plan {
        spec,
        runtime,
        input,
        output,
        shape,
        decode,
        row_settings,
        settings_hash,
        settings_json,
        worker,
    };
    Ok((plan, Engines { restorers, lpips }))
}

/// Everything that changes an output row; not paths, devices, threads, worker counts or
/// store retries.
/// Manifests carry its hash: a rerun with other settings redoes the shards.
pub fn settings_json(spec: &RunSpec, card: &crate::model::card::Card) -> serde_json::Value {
    let graph_hashes: Vec<(String, String)> = card
        .graphs
        .iter()
        .map(|(name, g)| (name.clone(), g.sha256.clone()))
        .collect();
    serde_json::json!({
        "model": card.name,
        "graphs": graph_hashes,
        "input": spec.input,
        "write_f32": spec.output.write_f32,
        "task": spec.task,
        "sampler": spec.sampler,
        "lpips": spec.metrics.lpips.as_ref().map(|p| file_sha256(p).unwrap_or_default()),
    })
}

/// The hash manifests carry, of [`settings_json`].
pub fn settings_hash(settings: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(settings.to_string().as_bytes()))
}

/// The shape of y when it is given as an image (`y_image`): the low-resolution image for
/// `sr:f`, the full image for the operators that keep the image grid; none for `cs`.
fn measurement_image_shape(op: &OperatorSpec, [c, h, w]: [usize; 3]) -> Option<[usize; 3]> {
    match op {
        OperatorSpec::Cs { .. } => None,
        OperatorSpec::Sr { f } => Some([c, h / f, w / f]),
        _ => Some([c, h, w]),
    }
}

/// The operator's kind and its level (M, f, p, box area, σ) for the output columns.
pub fn kind_and_level(op: &OperatorSpec) -> (String, f64) {
    let level = match *op {
        OperatorSpec::Cs { m } => m as f64,
        OperatorSpec::Sr { f } => f as f64,
        OperatorSpec::InpaintRandom { p } => p,
        OperatorSpec::InpaintBox { h, w } => (h * w) as f64,
        OperatorSpec::BlurGauss { sigma } => sigma,
    };
    (op.kind().to_string(), level)
}

/// Outputs written by adps ≤ 0.1 keep manifests and errors tables beside the parts;
/// resuming over them would redo every shard and mix two layouts, so the run stops and
/// says what to do.
fn refuse_legacy_layout(rt: &tokio::runtime::Handle, output: &Location) -> Result<()> {
    let names = output.list_top(rt)?;
    if let Some(old) = names.iter().find(|n| crate::io::layout::is_legacy_name(n)) {
        bail!(
            "{output} holds outputs in the layout of adps 0.1 ({old}): this version keeps \
             manifests and errors under {}/ and would restore every shard again. \
             Write to a new output prefix, or delete the old outputs (part-*, errors-*) first",
            crate::io::layout::META_DIR
        );
    }
    Ok(())
}

fn file_sha256(path: &str) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

impl Plan {
    /// This worker's shards that are not yet committed with these settings.
    pub fn shards_to_run(&self, counters: &Counters) -> Result<Vec<Shard>> {
        let rt = self.runtime.handle();
        refuse_legacy_layout(rt, &self.output)?;
        let all = list::list_shards(rt, &self.input)?;
        if all.is_empty() {
            bail!("no .parquet shards under {}", self.input);
        }
        let all = match self.spec.input.limit {
            Some(limit) => list::apply_limit(rt, &self.input, all, limit)?,
            None => all,
        };
        let mine = list::select_for_worker(all, self.worker.0, self.worker.1);
        let mut todo = Vec::new();
        for s in mine {
            if commit::is_committed(rt, &self.output, &s, &self.settings_hash) {
                tracing::info!(shard = %s.url, "already committed with these settings, skipped");
                Counters::add(&counters.shards_skipped, 1);
            } else {
                let mut s = s;
                s.resume = commit::resume_point(rt, &self.output, &s, &self.settings_hash);
                if s.resume.is_none() {
                    commit::remove_superseded(rt, &self.output, &s);
                }
                if let Some(r) = &s.resume {
                    tracing::info!(
                        shard = %s.url,
                        rows_done = r.rows_done,
                        parts = r.parts,
                        "going on after the parts an earlier run committed"
                    );
                }
                todo.push(s);
            }
        }
        Ok(todo)
    }
}
