//! Commit: writes a shard's manifest after its data files, which makes the shard
//! finished. A rerun skips shards whose manifest carries the run's settings hash and
//! whose files are still there; other settings never reuse stale parts. A shard that
//! fails as a whole leaves a failure record (`__adps/failed/<stem>.json`) that names
//! the reason, so a scheduler or a person finds it without the log; committing the
//! shard later removes it.

use std::sync::Arc;

use anyhow::{Context, Result};
use crossbeam_channel::Receiver;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use super::write::{upload, ToCommit};
use super::{Counters, Shard};
use crate::io::layout;
use crate::io::store::Location;

/// The manifest of a committed shard: `__adps/manifests/<stem>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The shard's path relative to the input prefix (its identity).
    pub shard: String,
    /// The shard's URL.
    pub input: String,
    pub settings_hash: String,
    /// How many of the shard's first records were restored (`input.limit` reaching into
    /// it); absent: all of them.
    #[serde(default)]
    pub take: Option<usize>,
    pub rows: usize,
    pub errors: usize,
    /// Files of this shard with their sizes in bytes.
    pub files: Vec<ManifestFile>,
    pub adps_version: String,
    pub settings: serde_json::Value,
    /// The model's image shape [C, H, W] (not in `settings`, which name the model by its
    /// card): what a record was fitted to, for views of the run (`adps report`).
    /// Absent in manifests written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_shape: Option<[usize; 3]>,
    /// The input file it was restored from (size and version tag): a rerun restores a
    /// shard again when its input was replaced since. Absent in older manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_version: Option<crate::stages::InputVersion>,
}

/// One file a manifest vouches for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestFile {
    /// The file's name relative to the output prefix, exactly as stored.
    pub name: String,
    pub size: u64,
}

/// The record a shard that failed as a whole leaves: `__adps/failed/<stem>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureRecord {
    pub shard: String,
    pub input: String,
    pub reason: String,
    pub settings_hash: String,
    pub adps_version: String,
    /// Seconds since the Unix epoch.
    pub failed_at: u64,
    /// The run's settings, as in a manifest (so `adps status` knows the input when
    /// nothing else is there). Absent in older records.
    #[serde(default)]
    pub settings: serde_json::Value,
}

/// What an unfinished shard's committed parts are: `__adps/progress/<stem>.json`,
/// rewritten after each part, removed when the shard commits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgressRecord {
    pub shard: String,
    /// The shard's URL, absolute (the settings hold the input as the run spelled it,
    /// which may be relative). Empty in older records.
    #[serde(default)]
    pub input: String,
    pub settings_hash: String,
    /// The run's settings, as in a manifest (so `adps status` knows the input).
    #[serde(default)]
    pub settings: serde_json::Value,
    #[serde(default)]
    pub take: Option<usize>,
    /// The input file the committed parts come from; see [`Manifest::input_version`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_version: Option<crate::stages::InputVersion>,
    #[serde(flatten)]
    pub progress: crate::stages::Resume,
}

/// The bytes of `name` under `output`, `None` when there is no such object. Any other
/// failure (after the store's own retries) is an error: a shard must never be taken for
/// uncommitted, and its files deleted, because its manifest could not be read just then.
fn get_optional(
    rt: &tokio::runtime::Handle,
    output: &Location,
    name: &str,
) -> Result<Option<bytes::Bytes>> {
    let store = output.store.clone();
    let key = output.child(name);
    rt.block_on(async move {
        match absent_is_none(store.get(&key).await)? {
            Some(got) => got.bytes().await.map(Some),
            None => Ok(None),
        }
    })
    .with_context(|| format!("cannot read {}", output.child_url(name)))
}

/// A store answer with "not found" as `None`; every other error stays one.
fn absent_is_none<T>(answer: object_store::Result<T>) -> object_store::Result<Option<T>> {
    match answer {
        Ok(value) => Ok(Some(value)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The size of `name` under `output`, `None` when there is no such object; other
/// failures are errors, as in [`get_optional`].
fn size_of(rt: &tokio::runtime::Handle, output: &Location, name: &str) -> Result<Option<u64>> {
    let store = output.store.clone();
    let key = output.child(name);
    rt.block_on(async move { absent_is_none(store.head(&key).await) })
        .map(|meta| meta.map(|m| m.size))
        .with_context(|| format!("cannot read {}", output.child_url(name)))
}

/// A JSON record (manifest, progress record) of `output`, `None` when it is absent. A
/// record that does not parse is taken as absent (with a warning): records are written
/// whole, so it is foreign or damaged, and the shard is restored again.
fn read_record<T: serde::de::DeserializeOwned>(
    rt: &tokio::runtime::Handle,
    output: &Location,
    name: &str,
) -> Result<Option<T>> {
    let Some(bytes) = get_optional(rt, output, name)? else {
        return Ok(None);
    };
    match serde_json::from_slice(&bytes) {
        Ok(record) => Ok(Some(record)),
        Err(e) => {
            tracing::warn!(file = %output.child_url(name), "not a readable adps record, ignored: {e}");
            Ok(None)
        }
    }
}

/// Whether every file of `files` is there with its recorded size.
fn files_intact<'a>(
    rt: &tokio::runtime::Handle,
    output: &Location,
    files: impl Iterator<Item = (&'a str, u64)>,
) -> Result<bool> {
    for (name, size) in files {
        if size_of(rt, output, name)? != Some(size) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Deletes `name` under `output`; an absent object is no error.
fn delete(rt: &tokio::runtime::Handle, output: &Location, name: &str) -> Result<()> {
    let store = output.store.clone();
    let key = output.child(name);
    rt.block_on(async move { absent_is_none(store.delete(&key).await) })
        .map(|_| ())
        .with_context(|| format!("cannot delete {}", output.child_url(name)))
}

/// Where an unfinished shard can go on from: its progress record, if it was written
/// with these settings and every file it names is there with its recorded size. An
/// error only when the store cannot be read (not when the record is absent).
pub fn resume_point(
    rt: &tokio::runtime::Handle,
    output: &Location,
    shard: &Shard,
    settings_hash: &str,
) -> Result<Option<crate::stages::Resume>> {
    let name = layout::progress_name(&shard.stem());
    let Some(record) = read_record::<ProgressRecord>(rt, output, &name)? else {
        return Ok(None);
    };
    if record.settings_hash != settings_hash || record.take != shard.take {
        return Ok(None);
    }
    if !shard.same_version(record.input_version.as_ref()) {
        // Parts of the old file followed by rows of the new one would mix two inputs.
        tracing::warn!(
            shard = %shard.path,
            was = %display_version(record.input_version.as_ref()),
            now = %display_version(shard.version.as_ref()),
            "the input shard changed since an interrupted run restored part of it: restoring it from the start"
        );
        return Ok(None);
    }
    let files = record.progress.files.iter();
    let intact = files_intact(rt, output, files.map(|(n, size)| (n.as_str(), *size)))?;
    Ok(intact.then_some(record.progress))
}

/// What [`remove_superseded`] found of an earlier run of a shard.
#[derive(Debug, Clone)]
pub struct Superseded {
    /// Its manifest's settings hash (the progress record's when it had not committed).
    pub settings_hash: String,
    /// Its settings, to say what changed.
    pub settings: serde_json::Value,
    /// Whether it had committed (a manifest), not only written parts.
    pub committed: bool,
    /// The data files its records named (all removed).
    pub files: usize,
    /// Everything removed: its records and their files.
    pub removed: Vec<String>,
}

/// Removes what an earlier run with other settings left of a shard (its manifest,
/// progress record and the files they name), so that a shard restored again never
/// leaves stale parts beside its new ones. Returns what there was, if anything.
pub fn remove_superseded(
    rt: &tokio::runtime::Handle,
    output: &Location,
    shard: &Shard,
) -> Result<Option<Superseded>> {
    let stem = shard.stem();
    let mut names = vec![layout::manifest_name(&stem), layout::progress_name(&stem)];
    let records = [
        read_record::<serde_json::Value>(rt, output, &names[0])?,
        read_record::<serde_json::Value>(rt, output, &names[1])?,
    ];
    let mut found: Option<Superseded> = None;
    for (k, record) in records.into_iter().enumerate() {
        let Some(record) = record else { continue };
        let before = names.len();
        for f in record["files"].as_array().into_iter().flatten() {
            // Manifests list {name, size}; progress records [name, size].
            if let Some(name) = f["name"].as_str().or_else(|| f[0].as_str()) {
                names.push(name.to_string());
            }
        }
        let files = names.len() - before;
        match &mut found {
            Some(f) => f.files += files,
            None => {
                found = Some(Superseded {
                    settings_hash: record["settings_hash"].as_str().unwrap_or("").to_string(),
                    settings: record["settings"].clone(),
                    committed: k == 0,
                    files,
                    removed: Vec::new(),
                })
            }
        }
    }
    for name in &names {
        delete(rt, output, name)?;
    }
    Ok(found.map(|f| Superseded {
        removed: names,
        ..f
    }))
}

/// The data parts and errors tables an output holds (listed once per run, for
/// [`remove_strays`]), and the half-written files a killed local write left.
pub struct OutputFiles {
    names: Vec<String>,
    staged: Vec<(String, std::path::PathBuf)>,
}

impl OutputFiles {
    pub fn list(rt: &tokio::runtime::Handle, output: &Location) -> Result<Self> {
        let errors_dir = format!("{}/errors", layout::META_DIR);
        let mut names = output.list_top(rt)?;
        names.extend(output.list_names(rt, &errors_dir)?);
        let mut staged = output.staged_leftovers("")?;
        staged.extend(output.staged_leftovers(&errors_dir)?);
        Ok(Self { names, staged })
    }
}

/// Deletes the files of a shard about to be restored that no progress record vouches
/// for (`keep`: the files of its resume point, if any): parts a killed run wrote after
/// its last progress record, or a run with another part size, and half-written local
/// files. Readers of the output folder (pandas, DuckDB) read every part there, so such
/// a file would show stale or repeated rows. Returns how many files went.
pub fn remove_strays(
    rt: &tokio::runtime::Handle,
    output: &Location,
    files: &OutputFiles,
    shard: &Shard,
    keep: &[String],
) -> Result<usize> {
    let stem = shard.stem();
    let mut removed = 0;
    for name in files
        .names
        .iter()
        .filter(|n| layout::belongs_to_shard(&stem, n))
    {
        if !keep.contains(name) {
            delete(rt, output, name)?;
            removed += 1;
        }
    }
    for (_, path) in files
        .staged
        .iter()
        .filter(|(n, _)| layout::belongs_to_shard(&stem, n))
    {
        match std::fs::remove_file(path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot delete {}", path.display())),
        }
    }
    Ok(removed)
}

/// Writes and deletes a small file under the output's `__adps/`, so that an output the
/// run cannot write to (read-only, full, no permission) stops it before any compute
/// rather than after every image was restored.
pub fn check_writable(rt: &tokio::runtime::Handle, output: &Location) -> Result<()> {
    let name = format!(
        "{}/write-check/{}-{}",
        layout::META_DIR,
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    upload(rt, output, &name, b"adps".to_vec())
        .and_then(|()| delete(rt, output, &name))
        .with_context(|| format!("cannot write to the output {}", output.url))
}

/// The manifest's file name for a shard.
pub fn manifest_name(shard: &Shard) -> String {
    layout::manifest_name(&shard.stem())
}

/// Whether a manifest vouches for a shard under a run's settings.
#[derive(Debug, Clone, PartialEq)]
pub enum ManifestCheck {
    /// Committed with these settings, from this version of the input, every file there
    /// with its recorded size: `errors` of its records failed.
    Holds { errors: usize },
    /// Committed with other settings.
    OtherSettings,
    /// Committed for another `input.limit` window.
    OtherWindow,
    /// Committed from another version of the input file (replaced since).
    InputChanged { was: String, now: String },
    /// A file it names is missing or has another size.
    FilesChanged,
}

/// Checks a shard's manifest against the settings of a run. An error only when the
/// store cannot be read.
pub fn check_manifest(
    rt: &tokio::runtime::Handle,
    output: &Location,
    shard: &Shard,
    m: &Manifest,
    settings_hash: &str,
) -> Result<ManifestCheck> {
    if m.settings_hash != settings_hash {
        return Ok(ManifestCheck::OtherSettings);
    }
    if m.take != shard.take {
        return Ok(ManifestCheck::OtherWindow);
    }
    if !shard.same_version(m.input_version.as_ref()) {
        return Ok(ManifestCheck::InputChanged {
            was: display_version(m.input_version.as_ref()),
            now: display_version(shard.version.as_ref()),
        });
    }
    let intact = files_intact(
        rt,
        output,
        m.files.iter().map(|f| (f.name.as_str(), f.size)),
    )?;
    Ok(if intact {
        ManifestCheck::Holds { errors: m.errors }
    } else {
        ManifestCheck::FilesChanged
    })
}

/// The number of failed records of a shard already committed under these settings
/// ([`ManifestCheck::Holds`]); None when it is not. An error only when the store cannot
/// be read.
pub fn committed_errors(
    rt: &tokio::runtime::Handle,
    output: &Location,
    shard: &Shard,
    settings_hash: &str,
) -> Result<Option<usize>> {
    let Some(m) = read_record::<Manifest>(rt, output, &manifest_name(shard))? else {
        return Ok(None);
    };
    match check_manifest(rt, output, shard, &m, settings_hash)? {
        ManifestCheck::Holds { errors } => Ok(Some(errors)),
        ManifestCheck::InputChanged { was, now } => {
            tracing::warn!(
                shard = %shard.path,
                %was,
                %now,
                "the input shard changed since an earlier run committed it: restoring it again"
            );
            Ok(None)
        }
        ManifestCheck::FilesChanged => {
            tracing::warn!(
                shard = %shard.path,
                "a file the shard's manifest names is missing or has another size: restoring it again"
            );
            Ok(None)
        }
        ManifestCheck::OtherSettings | ManifestCheck::OtherWindow => Ok(None),
    }
}

fn display_version(v: Option<&crate::stages::InputVersion>) -> String {
    v.map_or_else(|| "unknown".into(), |v| v.to_string())
}

/// Runs until `input` closes; returns the failed shards with their reasons.
pub fn run(
    rt: &tokio::runtime::Handle,
    output: &Location,
    settings_hash: &str,
    settings: &serde_json::Value,
    model_shape: [usize; 3],
    input: Receiver<ToCommit>,
    counters: &Counters,
) -> Vec<(Arc<Shard>, String)> {
    let mut failed = Vec::new();
    for msg in input {
        match msg {
            ToCommit::Failed { shard, reason } => {
                tracing::error!(shard = %shard.url, "shard failed: {reason}");
                Counters::add(&counters.shards_failed, 1);
                if let Err(e) = write_failure(rt, output, &shard, &reason, settings_hash, settings)
                {
                    tracing::warn!(shard = %shard.url, "cannot record the failure: {e:#}");
                }
                failed.push((shard, reason));
            }
            ToCommit::Progress { shard, progress } => {
                let record = ProgressRecord {
                    shard: shard.path.clone(),
                    input: shard.url.clone(),
                    settings_hash: settings_hash.to_string(),
                    settings: settings.clone(),
                    take: shard.take,
                    input_version: shard.version.clone(),
                    progress,
                };
                let name = layout::progress_name(&shard.stem());
                let written = serde_json::to_vec_pretty(&record)
                    .map_err(anyhow::Error::from)
                    .and_then(|bytes| upload(rt, output, &name, bytes));
                if let Err(e) = written {
                    // The parts stay; a rerun just redoes them.
                    tracing::warn!(shard = %shard.url, "cannot record progress: {e:#}");
                }
            }
            ToCommit::Written(w) => {
                let manifest = Manifest {
                    shard: w.shard.path.clone(),
                    input: w.shard.url.clone(),
                    settings_hash: settings_hash.to_string(),
                    take: w.shard.take,
                    rows: w.rows,
                    errors: w.errors,
                    files: w
                        .files
                        .iter()
                        .map(|(name, size)| ManifestFile {
                            name: name.clone(),
                            size: *size,
                        })
                        .collect(),
                    adps_version: env!("CARGO_PKG_VERSION").to_string(),
                    settings: settings.clone(),
                    model_shape: Some(model_shape),
                    input_version: w.shard.version.clone(),
                };
                // The progress record goes before the manifest comes: a run killed
                // between the two leaves neither, and the rerun restores the shard from
                // the start (its parts are strays then). The other order could leave a
                // stale progress record beside the manifest, and a shard whose manifest
                // is deleted to redo it would resume from that record instead.
                let progress = layout::progress_name(&w.shard.stem());
                if let Err(e) = delete(rt, output, &progress) {
                    tracing::warn!(shard = %w.shard.url, "cannot delete the progress record: {e:#}");
                }
                match write_manifest(rt, output, &w.shard, &manifest) {
                    Ok(()) => {
                        Counters::add(&counters.shards_committed, 1);
                        // Absent in the usual case; stale records must not outlive the commit.
                        let _ = delete(rt, output, &layout::failed_name(&w.shard.stem()));
                        // One info event per shard: a batch job's log shows progress at
                        // the default level, with fields a log system can query. The
                        // seconds are worker-seconds (summed over the workers that took
                        // its images), so the rate is per worker.
                        let images_per_s = w.rows as f64 / w.restore_seconds.max(1e-9);
                        tracing::info!(
                            shard = %w.shard.path,
                            rows = w.rows,
                            errors = w.errors,
                            seconds = w.restore_seconds,
                            images_per_s,
                            mean_psnr = w.mean_psnr,
                            "committed"
                        );
                    }
                    Err(e) => {
                        Counters::add(&counters.shards_failed, 1);
                        let reason = crate::app::describe(&e);
                        tracing::error!(shard = %w.shard.url, "commit failed: {reason}");
                        failed.push((w.shard, reason));
                    }
                }
            }
        }
    }
    failed
}

fn write_failure(
    rt: &tokio::runtime::Handle,
    output: &Location,
    shard: &Shard,
    reason: &str,
    settings_hash: &str,
    settings: &serde_json::Value,
) -> Result<()> {
    let record = FailureRecord {
        settings: settings.clone(),
        shard: shard.path.clone(),
        input: shard.url.clone(),
        reason: reason.to_string(),
        settings_hash: settings_hash.to_string(),
        adps_version: env!("CARGO_PKG_VERSION").to_string(),
        failed_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
    };
    let name = layout::failed_name(&shard.stem());
    let bytes = serde_json::to_vec_pretty(&record)?;
    upload(rt, output, &name, bytes).with_context(|| format!("writing {}", output.child_url(&name)))
}

/// The committed manifests under an output prefix (any settings), by file name.
pub fn read_manifests(
    rt: &tokio::runtime::Handle,
    output: &Location,
) -> Result<Vec<(String, Manifest)>> {
    let mut out = Vec::new();
    for name in output.list_names(rt, &layout::manifests_dir())? {
        if !name.ends_with(".json") {
            continue;
        }
        let bytes = output.read(rt, &name)?;
        let m: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not an adps manifest", output.child_url(&name)))?;
        out.push((name, m));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Ids committed more than once under an output prefix with these settings (in two
/// shards: a repeat inside one shard never gets committed), each with the shards that
/// hold it, sorted by id. Reads only the `id` column of the committed parts.
pub fn duplicate_ids(
    rt: &tokio::runtime::Handle,
    output: &Location,
    settings_hash: &str,
) -> Result<Vec<(String, Vec<String>)>> {
    // Per id only its digest and first shard are kept (sized once from the manifests'
    // row counts); ids seen twice are collected.
    let mut dups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let manifests: Vec<Manifest> = read_manifests(rt, output)?
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| m.settings_hash == settings_hash)
        .collect();
    let mut first: std::collections::HashMap<crate::stages::IdDigest, u32> =
        std::collections::HashMap::with_capacity(manifests.iter().map(|m| m.rows).sum());
    for (k, m) in manifests.iter().enumerate() {
        for f in m.files.iter().filter(|f| f.name.starts_with("part-")) {
            let bytes = output.read(rt, &f.name)?;
            let ids = crate::io::parquet_in::read_string_column(bytes, "id")
                .with_context(|| output.child_url(&f.name))?;
            for id in ids {
                match first.entry(crate::stages::id_digest(&id)) {
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(k as u32);
                    }
                    std::collections::hash_map::Entry::Occupied(e) => {
                        let shards = dups
                            .entry(id)
                            .or_insert_with(|| vec![manifests[*e.get() as usize].shard.clone()]);
                        shards.push(m.shard.clone());
                    }
                }
            }
        }
    }
    Ok(dups.into_iter().collect())
}

fn write_manifest(
    rt: &tokio::runtime::Handle,
    output: &Location,
    shard: &Shard,
    manifest: &Manifest,
) -> Result<()> {
    let name = manifest_name(shard);
    let bytes = serde_json::to_vec_pretty(manifest)?;
    upload(rt, output, &name, bytes).with_context(|| format!("writing {}", output.child_url(&name)))
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
        PutMultipartOptions, PutOptions, PutPayload, PutResult,
    };

    use super::*;

    /// An in-memory store whose reads of keys containing `fail` fail (as a store does
    /// when it is unreachable for longer than its retries), while it still lists and
    /// deletes.
    #[derive(Debug)]
    struct FlakyStore {
        inner: InMemory,
        fail: &'static str,
    }

    impl fmt::Display for FlakyStore {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("FlakyStore")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for FlakyStore {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            if location.as_ref().contains(self.fail) {
                return Err(object_store::Error::Generic {
                    store: "FlakyStore",
                    source: "connection reset".into(),
                });
            }
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    fn shard_at(path: &str) -> Shard {
        Shard {
            index: 0,
            path: path.into(),
            url: format!("memory://in/{path}"),
            key: Path::from(path),
            take: None,
            resume: None,
            version: None,
        }
    }

    #[test]
    fn a_store_that_cannot_be_read_is_an_error_not_an_uncommitted_shard() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = Arc::new(FlakyStore {
            inner: InMemory::new(),
            fail: "manifests/a.json",
        });
        let output = Location {
            store: store.clone(),
            prefix: Path::from("out"),
            url: "memory://flaky/out".into(),
        };
        let shard = shard_at("a.parquet");
        let part = layout::part_name(&shard.stem(), 0);
        let manifest = Manifest {
            shard: shard.path.clone(),
            input: shard.url.clone(),
            settings_hash: "h".into(),
            take: None,
            rows: 1,
            errors: 0,
            files: vec![ManifestFile {
                name: part.clone(),
                size: 4,
            }],
            adps_version: "test".into(),
            settings: serde_json::Value::Null,
            model_shape: None,
            input_version: None,
        };
        upload(rt.handle(), &output, &part, b"PAR1".to_vec()).unwrap();
        let name = manifest_name(&shard);
        upload(
            rt.handle(),
            &output,
            &name,
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();

        let e = committed_errors(rt.handle(), &output, &shard, "h").unwrap_err();
        assert!(format!("{e:#}").contains("manifests/a.json"), "{e:#}");
        assert!(remove_superseded(rt.handle(), &output, &shard).is_err());
        // Nothing was deleted: the part is still there.
        let head = rt.block_on(store.inner.head(&output.child(&part)));
        assert_eq!(head.unwrap().size, 4);

        // Absent records are no error.
        let other = shard_at("b.parquet");
        assert!(committed_errors(rt.handle(), &output, &other, "h")
            .unwrap_or(Some(0))
            .is_none());
    }
}
