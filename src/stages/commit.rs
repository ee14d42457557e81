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
}

/// What an unfinished shard's committed parts are: `__adps/progress/<stem>.json`,
/// rewritten after each part, removed when the shard commits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgressRecord {
    pub shard: String,
    pub settings_hash: String,
    /// The run's settings, as in a manifest (so `adps status` knows the input).
    #[serde(default)]
    pub settings: serde_json::Value,
    #[serde(default)]
    pub take: Option<usize>,
    #[serde(flatten)]
    pub progress: crate::stages::Resume,
}

/// Where an unfinished shard can go on from: its progress record, if it was written
/// with these settings and every file it names is there with its recorded size.
pub fn resume_point(
    rt: &tokio::runtime::Handle,
    output: &Location,
    shard: &Shard,
    settings_hash: &str,
) -> Option<crate::stages::Resume> {
    let store = output.store.clone();
    let key = output.child(&layout::progress_name(&shard.stem()));
    let record: ProgressRecord = rt.block_on(async {
        let bytes = store.get(&key).await.ok()?.bytes().await.ok()?;
        serde_json::from_slice(&bytes).ok()
    })?;
    if record.settings_hash != settings_hash || record.take != shard.take {
        return None;
    }
    let intact = record.progress.files.iter().all(|(name, size)| {
        let key = output.child(name);
        let store = output.store.clone();
        rt.block_on(async move { store.head(&key).await })
            .is_ok_and(|meta| meta.size == *size)
    });
    intact.then_some(record.progress)
}

/// Removes what an earlier run with other settings left of a shard (its manifest,
/// progress record and the files they name), so that a shard restored again never
/// leaves stale parts beside its new ones.
pub fn remove_superseded(rt: &tokio::runtime::Handle, output: &Location, shard: &Shard) {
    let stem = shard.stem();
    let read = |name: String| -> Option<serde_json::Value> {
        let store = output.store.clone();
        let key = output.child(&name);
        rt.block_on(async move {
            let bytes = store.get(&key).await.ok()?.bytes().await.ok()?;
            serde_json::from_slice(&bytes).ok()
        })
    };
    let mut names = vec![layout::manifest_name(&stem), layout::progress_name(&stem)];
    for record in [read(names[0].clone()), read(names[1].clone())]
        .into_iter()
        .flatten()
    {
        for f in record["files"].as_array().into_iter().flatten() {
            // Manifests list {name, size}; progress records [name, size].
            if let Some(name) = f["name"].as_str().or_else(|| f[0].as_str()) {
                names.push(name.to_string());
            }
        }
    }
    for name in names {
        let store = output.store.clone();
        let key = output.child(&name);
        let _ = rt.block_on(async move { store.delete(&key).await });
    }
}

/// The manifest's file name for a shard.
pub fn manifest_name(shard: &Shard) -> String {
    layout::manifest_name(&shard.stem())
}

/// Whether a shard is already committed under these settings (manifest present, hash
/// equal, every file present with its recorded size).
pub fn is_committed(
    rt: &tokio::runtime::Handle,
    output: &Location,
    shard: &Shard,
    settings_hash: &str,
) -> bool {
    let store = output.store.clone();
    let key = output.child(&manifest_name(shard));
    let manifest: Option<Manifest> = rt.block_on(async {
        let bytes = store.get(&key).await.ok()?.bytes().await.ok()?;
        serde_json::from_slice(&bytes).ok()
    });
    let Some(m) = manifest else { return false };
    if m.settings_hash != settings_hash || m.take != shard.take {
        return false;
    }
    m.files.iter().all(|f| {
        let key = output.child(&f.name);
        let store = output.store.clone();
        rt.block_on(async move { store.head(&key).await })
            .is_ok_and(|meta| meta.size == f.size)
    })
}

/// Runs until `input` closes; returns the failed shards with their reasons.
pub fn run(
    rt: &tokio::runtime::Handle,
    output: &Location,
    settings_hash: &str,
    settings: &serde_json::Value,
    input: Receiver<ToCommit>,
    counters: &Counters,
) -> Vec<(Arc<Shard>, String)> {
    let mut failed = Vec::new();
    for msg in input {
        match msg {
            ToCommit::Failed { shard, reason } => {
                tracing::error!(shard = %shard.url, "shard failed: {reason}");
                Counters::add(&counters.shards_failed, 1);
                if let Err(e) = write_failure(rt, output, &shard, &reason, settings_hash) {
                    tracing::warn!(shard = %shard.url, "cannot record the failure: {e:#}");
                }
                failed.push((shard, reason));
            }
            ToCommit::Progress { shard, progress } => {
                let record = ProgressRecord {
                    shard: shard.path.clone(),
                    settings_hash: settings_hash.to_string(),
                    settings: settings.clone(),
                    take: shard.take,
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
                };
                match write_manifest(rt, output, &w.shard, &manifest) {
                    Ok(()) => {
                        Counters::add(&counters.shards_committed, 1);
                        // Absent in the usual case; stale records must not outlive the commit.
                        for name in [
                            layout::failed_name(&w.shard.stem()),
                            layout::progress_name(&w.shard.stem()),
                        ] {
                            let store = output.store.clone();
                            let key = output.child(&name);
                            let _ = rt.block_on(async move { store.delete(&key).await });
                        }
                        // One info event per shard: a batch job's log shows progress at
                        // the default level, with fields a log system can query.
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
) -> Result<()> {
    let record = FailureRecord {
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
        let store = output.store.clone();
        let key = output.child(&name);
        let bytes = rt
            .block_on(async move { store.get(&key).await?.bytes().await })
            .with_context(|| format!("reading {}", output.child_url(&name)))?;
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
            let store = output.store.clone();
            let key = output.child(&f.name);
            let bytes = rt
                .block_on(async move { store.get(&key).await?.bytes().await })
                .with_context(|| format!("reading {}", output.child_url(&f.name)))?;
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
