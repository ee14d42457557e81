//! From a [`RunSpec`] to a runnable [`Plan`]: every entry is checked before any compute,
//! all problems are reported together, then the real objects (stores, model sessions,
//! the operator family) are built.

use std::str::FromStr;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::config::{Fit, RunSpec};
use crate::io::operator_file;
use crate::io::parquet_in::{self, ColumnNames, Columns, PayloadColumn};
use crate::io::parquet_out::{RowSettings, OUTPUT_COLUMNS};
use crate::io::store::{self, Location};
use crate::model::{ModelFolder, OnnxDenoiser, SessionConfig};
use crate::restore::denoiser::{CallRows, Chunked};
use crate::restore::operators::{OperatorFamily, OperatorSpec, RecordMask};
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
    /// The input columns asked for, resolved per shard by the fetch stage.
    pub columns: ColumnNames,
    /// The first shard's resolved columns (none when no shard's footer could be read
    /// before the run): every later shard must have the same.
    pub first_columns: Option<Columns>,
    /// Settings written into every output row.
    pub row_settings: RowSettings,
    /// Hash of everything that determines the outputs (operator files' contents
    /// included); manifests carry it.
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
    if !(s.zeta.is_finite() && s.zeta >= 0.0) {
        problems.push(format!("sampler.zeta {} must be finite and ≥ 0", s.zeta));
    }
    if !(spec.task.sigma_y.is_finite() && spec.task.sigma_y >= 0.0) {
        problems.push(format!(
            "task.sigma_y {} must be finite and ≥ 0",
            spec.task.sigma_y
        ));
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
    let i = &spec.input;
    for (setting, name) in [
        ("input.image_column", &i.image_column),
        ("input.id_column", &i.id_column),
        ("input.y_column", &i.y_column),
        ("input.mask_column", &i.mask_column),
    ] {
        if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            problems.push(format!("{setting} is empty"));
        }
    }
    for name in &i.keep_columns {
        if OUTPUT_COLUMNS.contains(&name.as_str()) {
            problems.push(format!(
                "input.keep_columns `{name}`: the outputs have a column of that name"
            ));
        }
    }
    problems
}

/// The column names a spec's input asks for, for an operator whose records take
/// `record_mask` (none: no mask column is read).
pub fn column_names(spec: &RunSpec, record_mask: Option<RecordMask>) -> ColumnNames {
    let i = &spec.input;
    ColumnNames {
        image: i.image_column.clone(),
        id: i.id_column.clone(),
        y: i.y_column.clone(),
        mask: i.mask_column.clone(),
        no_mask: record_mask.is_none(),
        keep: i.keep_columns.clone(),
    }
}

/// Why an input has no shard, saying what it does hold: files of other formats get a
/// hint on converting them (adps reads Parquet shards only).
fn no_shards_message(rt: &tokio::runtime::Handle, input: &Location) -> String {
    let names: Vec<String> = input
        .list(rt)
        .unwrap_or_default()
        .into_iter()
        .map(|m| input.relative(&m.location))
        .collect();
    if names.is_empty() {
        return format!("no .parquet shards under {input}: it holds no files");
    }
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    let more = if names.len() > shown.len() {
        format!(" and {} more", names.len() - shown.len())
    } else {
        String::new()
    };
    format!(
        "no .parquet shards under {input}: it holds {}{more}. adps reads Parquet files \
         ending in `.parquet` (any case; names starting with `_` or `.` are skipped): rename \
         Parquet files with another ending (`.pq`), and convert other formats first, e.g. \
         pandas `df.to_parquet(\"x.parquet\")` for a CSV table of y vectors, or \
         `datasets.Dataset.from_dict(...).to_parquet(...)` for images (README, \"Input \
         layout\")",
        shown
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Resolves the input's columns against its first readable shard, before any compute:
/// its columns and the kept columns' Hugging Face features, or every problem found
/// (including a measured archive for a per-record-mask operator without a mask column).
/// An input with no shard yet, or none whose footer reads, is not checked here (listing
/// and fetching report it); an input that cannot be listed stops the run here, naming it
/// (before, the output's listing spent a second retry budget and named only the output).
fn check_input_columns(
    rt: &tokio::runtime::Handle,
    input: &Location,
    names: &ColumnNames,
    record_mask: Option<RecordMask>,
    op: &OperatorSpec,
    fit: Fit,
) -> Result<(Option<Columns>, serde_json::Map<String, serde_json::Value>)> {
    let shards = list::list_shards(rt, input).with_context(|| format!("input {input}"))?;
    for shard in shards {
        let Ok(schema) = parquet_in::read_schema(rt, &input.store, &shard.key) else {
            continue;
        };
        let resolved = parquet_in::resolve_columns(&schema, names).and_then(|columns| {
            // Measured inpainting data is only meaningful with the mask it was measured
            // with: a drawn one would pair y with the wrong pixels.
            match record_mask {
                Some(RecordMask::Pixels)
                    if columns.payload.is_measured() && columns.mask.is_none() =>
                {
                    Err(vec![format!(
                        "{} are measured by an inpainting operator but the shard has no mask \
                         column (which pixels were measured): add a `mask` image column or \
                         name it with input.mask_column",
                        columns.payload.describe()
                    )])
                }
                _ => Ok(columns),
            }
            .and_then(|columns| {
                let mut problems = Vec::new();
                // `cs`, `matrix` and `fourier` measure a vector: an image's pixels would be
                // read as one on the model's grid, which they are not.
                if let PayloadColumn::YImage(c) = &columns.payload {
                    if op.y_image_shape([1, 1, 1]).is_none() {
                        problems.push(format!(
                            "column `{c}` holds images, but `{op}` measures a vector: store \
                             each record's y as list<float32> (row-major, the operator's \
                             order) and name it with input.y_column"
                        ));
                    }
                }
                // `fit` reshapes clean images; a measurement has the operator's size.
                if columns.payload.is_measured() && fit != Fit::Error {
                    problems.push(format!(
                        "input.fit = \"{}\" (--fit) applies to clean images, and the input \
                         holds {}: measurements must have the operator's size (drop --fit, \
                         or restore the clean images)",
                        serde_json::to_value(fit)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        columns.payload.describe()
                    ));
                }
                if problems.is_empty() {
                    Ok(columns)
                } else {
                    Err(problems)
                }
            })
        });
        return match resolved {
            Ok(columns) => Ok((Some(columns), parquet_in::hf_features(&schema, &names.keep))),
            Err(problems) => bail!(
                "the input's columns do not fit the run ({} problem(s), seen in its first \
                 shard {}):\n  - {}",
                problems.len(),
                shard.url,
                problems.join("\n  - ")
            ),
        };
    }
    Ok(Default::default())
}

/// The operator family of a run and the SHA-256 of each file it read, as `(url, hash)`.
pub struct OperatorSetup {
    pub family: OperatorFamily,
    pub file_hashes: Vec<(String, String)>,
}

/// Fetches and checks the operator's files (if any) and builds the run's operator family
/// for `shape`; every problem is listed ("task.operator: …"), each naming its file.
pub fn operator_setup(
    rt: &tokio::runtime::Handle,
    op: &OperatorSpec,
    shape: [usize; 3],
    run_seed: u64,
    retry: store::Retry,
) -> Result<OperatorSetup, Vec<String>> {
    let in_spec = |p: String| format!("task.operator `{op}`: {p}");
    let loaded = operator_file::load_all(rt, &op.files(), retry)
        .map_err(|problems| problems.into_iter().map(in_spec).collect::<Vec<_>>())?;
    let arrays: Vec<_> = loaded.iter().map(|f| f.array.clone()).collect();
    let family = op
        .build_with(shape, run_seed, &arrays)
        .map_err(|e| vec![format!("task.{e}")])?;
    Ok(OperatorSetup {
        family,
        file_hashes: loaded
            .into_iter()
            .map(|f| (f.array.url, f.sha256))
            .collect(),
    })
}

/// Builds the plan: checks the spec, opens the stores, loads and validates the model,
/// fetches and checks the operator's files and fits the operator to the model's shape,
/// then starts one session set per worker.
pub fn build(spec: RunSpec) -> Result<(Plan, Engines)> {
    let mut problems = check(&spec);
    let runtime = crate::io::store::io_runtime()?;
    let folder = match ModelFolder::open(&spec.model.dir) {
        Ok(f) => Some(f),
        Err(e) => {
            problems.push(format!("model {}: {e:#}", spec.model.dir));
            None
        }
    };
    let op_spec = OperatorSpec::from_str(&spec.task.operator).ok();
    let mut operator = None;
    if let (Some(f), Some(op)) = (&folder, &op_spec) {
        if let Err(e) = op.validate(f.card().shape) {
            problems.push(format!("task.operator `{}`: {e:#}", spec.task.operator));
        } else {
            match operator_setup(
                runtime.handle(),
                op,
                f.card().shape,
                spec.sampler.seed,
                spec.store.retry(),
            ) {
                Ok(setup) => operator = Some(setup),
                Err(p) => problems.extend(p),
            }
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
    let (Some(folder), Some(op_spec), Some(operator)) = (folder, op_spec, operator) else {
        bail!("internal: checked spec lacks a model or operator");
    };

    let retry = spec.store.retry();
    let input = store::open_with_retry(&spec.input.url, retry)
        .with_context(|| format!("input {}", spec.input.url))?;
    let output = store::open_output_with_retry(&spec.output.url, retry)
        .with_context(|| format!("output {}", spec.output.url))?;
    if output.contains(&input) && !input.contains(&output) {
        bail!(
            "the input {input} is inside the output {output}: a reader of the output as one \
             dataset would read the input's shards with it. Write to a prefix beside the input"
        );
    }
    if input.contains(&output) {
        bail!(
            "the output {output} is inside the input {input}: its parts would be listed as \
             input shards (by a rerun, or by a worker that starts later). Write to a prefix \
             outside the input"
        );
    }
    let record_mask = operator.family.record_mask();
    let columns = column_names(&spec, record_mask);
    let (first_columns, keep_features) = check_input_columns(
        runtime.handle(),
        &input,
        &columns,
        record_mask,
        &op_spec,
        spec.input.fit,
    )?;
    let keep = first_columns
        .as_ref()
        .map(|c| c.keep.clone())
        .unwrap_or_default();

    let card = folder.card().clone();
    let shape = card.shape;
    let settings = RestoreSettings::from_spec(&spec, &card, &op_spec, operator.family)?;
    // The first worker's sessions tell where they run (`auto` resolves there); the layout
    // of the rest follows.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (workers, threads) =
        WorkerLayout::cpu(spec.workers.restore_workers, spec.model.threads, cores);
    let session = SessionConfig::new(spec.model.device, threads);
    let first = OnnxDenoiser::new(&folder, &session)
        .with_context(|| format!("model {}", spec.model.dir))?;
    let workers = if first.device() == crate::model::Device::Cuda {
        spec.workers.restore_workers.max(1)
    } else {
        workers
    };
    let call_rows = WorkerLayout::call_rows(first.device(), spec.workers.batch_size);
    tracing::debug!(workers, threads, %call_rows, device = %first.device(), "restore worker layout");
    let mut restorers: Vec<Box<dyn Restorer>> = vec![Box::new(AdpsRestorer::new(
        Chunked::new(first, call_rows),
        settings.clone(),
    ))];
    for _ in 1..workers {
        let model = OnnxDenoiser::new(&folder, &session)
            .with_context(|| format!("model {}", spec.model.dir))?;
        restorers.push(Box::new(AdpsRestorer::new(
            Chunked::new(model, call_rows),
            settings.clone(),
        )));
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
        y_image_shape: op_spec.y_image_shape(shape),
        record_mask,
        fit: spec.input.fit,
        convert: spec.input.convert,
        y_range: spec.input.y_range,
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
        y_range: spec.input.y_range.as_str().into(),
        write_f32: spec.output.write_f32,
        keep: keep.clone(),
        keep_features,
    };
    let settings_json = settings_json(&spec, &card, &operator.file_hashes);
    let settings_hash = settings_hash(&settings_json);
    let worker = (
        spec.workers.worker_index.unwrap_or(0),
        spec.workers.worker_count.unwrap_or(1),
    );
    if worker.1 > 1 {
        tracing::info!(
            worker_index = worker.0,
            worker_count = worker.1,
            "this worker restores shards {0}, {0}+{1}, {0}+2·{1}, … of the input",
            worker.0,
            worker.1
        );
    }
    let plan = Plan {
        spec,
        runtime,
        input,
        output,
        shape,
        decode,
        columns,
        first_columns,
        row_settings,
        settings_hash,
        settings_json,
        worker,
    };
    Ok((plan, Engines { restorers, lpips }))
}

/// Everything that changes an output row; not paths, devices, threads, worker counts or
/// store retries. `operator_files` are the `(url, SHA-256)` of the operator's files
/// ([`OperatorSetup::file_hashes`]; empty for the simulated operators, whose settings
/// then hash as before).
/// Manifests carry its hash: a rerun with other settings, or with a changed operator
/// file, redoes the shards.
pub fn settings_json(
    spec: &RunSpec,
    card: &crate::model::card::Card,
    operator_files: &[(String, String)],
) -> serde_json::Value {
    let graph_hashes: Vec<(String, String)> = card
        .graphs
        .iter()
        .map(|(name, g)| (name.clone(), g.sha256.clone()))
        .collect();
    let mut json = serde_json::json!({
        "model": card.name,
        "graphs": graph_hashes,
        "input": spec.input,
        "write_f32": spec.output.write_f32,
        "task": spec.task,
        "sampler": spec.sampler,
        // What LPIPS scores is part of its setting: outputs from before it scored the
        // reconstruction as stored (clipped) must not be reused beside newer ones.
        "lpips": spec.metrics.lpips.as_ref().map(|p| serde_json::json!({
            "sha256": file_sha256(p).unwrap_or_default(),
            "scores": "reconstruction clipped to [-1, 1]",
        })),
    });
    if !operator_files.is_empty() {
        json["operator_files"] = serde_json::json!(operator_files);
    }
    json
}

/// What differs between two [`settings_json`] values, as `key.path: old → new` (values
/// longer than a few words are only named), for the log line of a shard restored again.
pub fn settings_changes(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    fn short(v: Option<&serde_json::Value>) -> String {
        match v {
            None | Some(serde_json::Value::Null) => "—".into(),
            Some(v) => {
                let s = v.to_string();
                if s.chars().count() <= 48 {
                    s
                } else {
                    "(…)".into()
                }
            }
        }
    }
    fn walk(
        path: &str,
        old: Option<&serde_json::Value>,
        new: Option<&serde_json::Value>,
        out: &mut Vec<String>,
    ) {
        if old == new {
            return;
        }
        if let (Some(serde_json::Value::Object(a)), Some(serde_json::Value::Object(b))) = (old, new)
        {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(&p, a.get(k.as_str()), b.get(k.as_str()), out);
            }
            return;
        }
        out.push(format!("{path}: {} → {}", short(old), short(new)));
    }
    let mut out = Vec::new();
    walk("", Some(old), Some(new), &mut out);
    if out.is_empty() {
        // Same settings under another hash: a manifest from another adps version.
        out.push("the settings hash (same settings: another adps version?)".into());
    }
    out
}

/// The hash manifests carry, of [`settings_json`].
pub fn settings_hash(settings: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(settings.to_string().as_bytes()))
}

/// The operator's kind and its level ([`OperatorSpec::level`]) for the output columns.
pub fn kind_and_level(op: &OperatorSpec) -> (String, f64) {
    (op.kind().to_string(), op.level())
}

/// How many restore workers, and intra-op threads per session, a run uses on CPU.
pub struct WorkerLayout;

impl WorkerLayout {
    /// `workers` 0 (the default) means one per core with one intra-op thread each: on 2
    /// cores, 32 images × 49 steps took 9.0 s against 13.1 s with one worker of two
    /// threads (dense and VJP paths alike; README, performance). `threads` 0 means one
    /// with automatic workers, ONNX Runtime's default (one per core) with a given worker
    /// count. On a GPU a run uses one worker unless told otherwise (see `build`).
    fn cpu(workers: usize, threads: usize, cores: usize) -> (usize, usize) {
        match (workers, threads) {
            (0, 0) => (cores.max(1), 1),
            (0, t) => ((cores / t).max(1), t),
            (w, t) => (w, t),
        }
    }

    /// How many images one model call takes (exactly: rows are independent). On a CPU,
    /// exactly `min(batch_size, 4)`: the gradient graphs cost more per image as a call
    /// grows past a few images (activations leave the core's cache): one worker of one
    /// thread ran `cs:256` dense at 3.8 ms per image and NFE in calls of 4 against 4.4–4.5
    /// in calls of 8 or 32 (`cargo bench --bench restore`, `ADPS_BENCH_CALL_ROWS`; README,
    /// performance); and one call shape per run makes an image's restoration the same bits
    /// in any batch of the run, and in any run whose batch size is 4 or more
    /// ([`Chunked`]). A batch size under 4 keeps its own call size rather than paying for
    /// padding. A GPU wants its batch whole.
    pub fn call_rows(device: crate::model::Device, batch_size: usize) -> CallRows {
        match device {
            crate::model::Device::Cuda => CallRows::AtMost(usize::MAX),
            _ => CallRows::Exactly(batch_size.clamp(1, 4)),
        }
    }
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
            bail!("{}", no_shards_message(rt, &self.input));
        }
        let all = match self.spec.input.limit {
            Some(limit) => list::apply_limit(rt, &self.input, all, limit)?,
            None => all,
        };
        let mine = list::select_for_worker(all, self.worker.0, self.worker.1);
        let files = commit::OutputFiles::list(rt, &self.output)?;
        let mut todo = Vec::new();
        let mut probed = false;
        for s in mine {
            // A store that cannot be read stops the run here: taking a committed shard
            // for unfinished would delete its parts and restore it again.
            let context = format!("checking what {} holds of shard {}", self.output, s.url);
            let context = || context.clone();
            if let Some(errors) =
                commit::committed_errors(rt, &self.output, &s, &self.settings_hash)
                    .with_context(context)?
            {
                tracing::info!(
                    shard = %s.path,
                    failed_records = errors,
                    "already committed with these settings, skipped"
                );
                Counters::add(&counters.shards_skipped, 1);
                // Its failed records are final (a rerun would fail them again): they
                // still make this worker's share partial, so a retried job says so.
                Counters::add(&counters.records_failed_before, errors as u64);
                continue;
            }
            // The first shard with work: an output the run cannot write stops it here,
            // before any compute and before anything of an earlier run is deleted.
            if !probed {
                commit::check_writable(rt, &self.output)?;
                probed = true;
            }
            let mut s = s;
            s.resume = commit::resume_point(rt, &self.output, &s, &self.settings_hash)
                .with_context(context)?;
            let mut removed = Vec::new();
            if s.resume.is_none() {
                let old = commit::remove_superseded(rt, &self.output, &s).with_context(context)?;
                if let Some(old) = &old {
                    removed.clone_from(&old.removed);
                }
                if let Some(old) = old.filter(|o| o.settings_hash != self.settings_hash) {
                    // Committed work is redone here: say why, so a respelled input or a
                    // changed limit is not taken for a crash.
                    let changed = settings_changes(&old.settings, &self.settings_json);
                    tracing::warn!(
                        shard = %s.path,
                        files = old.files,
                        changed = %changed.join("; "),
                        "restoring again: an earlier run {} it with other settings; its files were removed",
                        if old.committed { "committed" } else { "had partly restored" },
                    );
                }
            }
            // What the resume point names stays; what was just removed is not counted twice.
            let keep: Vec<String> = s
                .resume
                .iter()
                .flat_map(|r| r.files.iter().map(|f| f.0.clone()))
                .chain(removed)
                .collect();
            let strays =
                commit::remove_strays(rt, &self.output, &files, &s, &keep).with_context(context)?;
            if strays > 0 {
                tracing::info!(
                    shard = %s.path,
                    files = strays,
                    "removed files of the shard that no record names (left by an interrupted run)"
                );
            }
            if let Some(r) = &s.resume {
                tracing::info!(
                    shard = %s.path,
                    rows_done = r.rows_done,
                    parts = r.parts,
                    failed_records = r.rows_failed,
                    "going on after the parts an earlier run committed"
                );
                // The failed records in those parts are as final as a skipped shard's:
                // this run does not restore them again, so a retry must not report the
                // shard complete.
                Counters::add(&counters.records_failed_before, r.rows_failed as u64);
            }
            todo.push(s);
        }
        Ok(todo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(overrides: &[&str]) -> RunSpec {
        let text = r#"
            [input]
            url = "in/"
            [output]
            url = "out/"
            [model]
            dir = "m"
            [task]
            operator = "cs:8"
        "#;
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        RunSpec::parse(text, &o).unwrap()
    }

    #[test]
    fn settings_changes_name_the_keys_that_differ() {
        let card = gaussian_card();
        let a = settings_json(&spec(&[]), &card, &[]);
        let b = settings_json(&spec(&["input.url=./in/", "sampler.zeta=3.0"]), &card, &[]);
        let changed = settings_changes(&a, &b);
        assert!(
            changed.contains(&"input.url: \"in/\" → \"./in/\"".to_string()),
            "{changed:?}"
        );
        assert!(
            changed.iter().any(|c| c.starts_with("sampler.zeta: ")),
            "{changed:?}"
        );
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert_eq!(settings_changes(&a, &a).len(), 1, "same settings: said so");
    }

    #[test]
    fn kept_columns_may_not_shadow_output_columns() {
        let problems = check(&spec(&[r#"input.keep_columns=["label", "psnr", "id"]"#]));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("`psnr`"), "{problems:?}");
        assert!(problems[1].contains("`id`"), "{problems:?}");
    }

    #[test]
    fn automatic_workers_take_one_core_each() {
        assert_eq!(WorkerLayout::cpu(0, 0, 2), (2, 1));
        assert_eq!(WorkerLayout::cpu(0, 0, 16), (16, 1));
        assert_eq!(WorkerLayout::cpu(0, 4, 16), (4, 4));
        assert_eq!(WorkerLayout::cpu(0, 4, 2), (1, 4));
        // Given counts are kept; threads 0 stays ONNX Runtime's default.
        assert_eq!(WorkerLayout::cpu(1, 0, 2), (1, 0));
        assert_eq!(WorkerLayout::cpu(3, 2, 2), (3, 2));
    }

    /// The card of the Gaussian test model folder.
    fn gaussian_card() -> crate::model::card::Card {
        serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/gaussian-model/card.json"
            ))
            .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn cpu_calls_take_one_shape_per_run() {
        use crate::model::Device;
        // Batch sizes of 4 or more share calls of 4, so their images restore alike; a
        // smaller batch keeps its own size instead of paying for padding.
        for (device, batch, want) in [
            (Device::Cpu, 8, CallRows::Exactly(4)),
            (Device::Cpu, 33, CallRows::Exactly(4)),
            (Device::Cpu, 4, CallRows::Exactly(4)),
            (Device::Cpu, 2, CallRows::Exactly(2)),
            (Device::Cpu, 1, CallRows::Exactly(1)),
            (Device::Cuda, 8, CallRows::AtMost(usize::MAX)),
        ] {
            assert_eq!(
                WorkerLayout::call_rows(device, batch),
                want,
                "{device} {batch}"
            );
        }
    }

    #[test]
    fn the_input_layout_is_in_the_settings_hash() {
        let card = gaussian_card();
        let hash = |o: &[&str]| settings_hash(&settings_json(&spec(o), &card, &[]));
        let base = hash(&[]);
        for o in [
            "input.y_range=model",
            "input.fit=pad",
            "input.convert=grey",
            r#"input.keep_columns=["label"]"#,
            "input.image_column=img",
        ] {
            assert_ne!(hash(&[o]), base, "{o}");
        }
        assert_eq!(hash(&["input.y_range=unit"]), base, "unit is the default");
    }

    /// The sampler's mask and gradient path are written into the settings hash under the
    /// names specs use; typed, they must hash exactly as the strings did (these hashes are
    /// from manifests written before `MaskMode`/`GradientMode`), or every existing run
    /// would be redone.
    #[test]
    fn typed_sampler_settings_hash_as_their_names_did() {
        let card = gaussian_card();
        for (mask, gradient, device, hash) in [
            (
                "model",
                "auto",
                "cpu",
                "bf048f6180ef6994091e708c9b62b786ab5289082448f9e3c7aa2e25ba39e7d4",
            ),
            (
                "model",
                "dense",
                "gpu",
                "dd27349f041317eb604a04d58a2bd1619c73ffb901000df498f4de9acc4d2298",
            ),
            (
                "ones",
                "vjp",
                "auto",
                "5833dbca4aa7ed0b91602b55a02c700f37e9e0451aeccf2b1cb0f9ab049bed36",
            ),
        ] {
            let spec = RunSpec::parse(
                &format!(
                    "[input]\nurl = \"models/data/demo\"\nlimit = 1\nfit = \"resize\"\n\
                     [output]\nurl = \"out/\"\n\
                     [model]\ndir = \"tests/fixtures/gaussian-model\"\ndevice = \"{device}\"\n\
                     [task]\noperator = \"cs:16\"\n\
                     [sampler]\nsteps = 2\nmask = \"{mask}\"\ngradient = \"{gradient}\"\n"
                ),
                &[],
            )
            .unwrap();
            let json = settings_json(&spec, &card, &[]);
            assert_eq!(json["sampler"]["mask"], mask);
            assert_eq!(json["sampler"]["gradient"], gradient);
            assert_eq!(settings_hash(&json), hash, "{mask} {gradient}");
            // The device is not in the hash, and serializes under its own name.
            assert!(json.get("model").is_some_and(|m| m.is_string()));
            let device_name = if device == "gpu" { "cuda" } else { device };
            assert_eq!(
                serde_json::to_value(&spec.model).unwrap()["device"],
                device_name
            );
        }
    }

    use ndarray_npy::WriteNpyExt;

    fn write_npy(path: &std::path::Path, a: &ndarray::Array2<f32>) {
        let mut bytes = Vec::new();
        a.write_npy(&mut bytes).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn spec_op(operator: &str) -> RunSpec {
        RunSpec::parse(
            &format!(
                "[input]\nurl = \"in/\"\n[output]\nurl = \"out/\"\n[model]\n\
                 dir = \"tests/fixtures/gaussian-model\"\n[task]\noperator = \"{operator}\"\n"
            ),
            &[],
        )
        .unwrap()
    }

    #[test]
    fn a_changed_operator_file_changes_the_settings_hash() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let folder = ModelFolder::open("tests/fixtures/gaussian-model").unwrap();
        let card = folder.card();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("A.npy");
        let run = spec_op(&format!("matrix:{}", path.display()));
        let op = OperatorSpec::parse(&run.task.operator).unwrap();
        let hash = || {
            let setup =
                operator_setup(rt.handle(), &op, card.shape, 0, store::Retry::seconds(0)).unwrap();
            settings_hash(&settings_json(&run, card, &setup.file_hashes))
        };
        write_npy(&path, &ndarray::Array2::from_elem((3, 64), 0.5));
        let first = hash();
        assert_eq!(first, hash(), "the same file, the same hash");
        write_npy(&path, &ndarray::Array2::from_elem((3, 64), 0.25));
        assert_ne!(first, hash(), "a changed matrix redoes the shards");

        // The simulated operators hash as they did before operator files existed.
        let cs = spec_op("cs:24");
        assert!(settings_json(&cs, card, &[])
            .get("operator_files")
            .is_none());
    }

    #[test]
    fn operator_file_problems_name_the_file() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.npy");
        let op = OperatorSpec::parse(&format!("fourier:{}", missing.display())).unwrap();
        let problems = operator_setup(rt.handle(), &op, [1, 8, 8], 0, store::Retry::seconds(0))
            .err()
            .unwrap();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains(&format!("{}: cannot read", missing.display())),
            "{problems:?}"
        );
        let wrong = dir.path().join("mask.npy");
        write_npy(&wrong, &ndarray::Array2::from_elem((4, 8), 1.0));
        let op = OperatorSpec::parse(&format!("fourier:{}", wrong.display())).unwrap();
        let problems = operator_setup(rt.handle(), &op, [1, 8, 8], 0, store::Retry::seconds(0))
            .err()
            .unwrap();
        assert!(
            problems[0].contains("expected an H×W = 8×8 mask")
                && problems[0].contains("found (4, 8) float32"),
            "{problems:?}"
        );
    }
}
