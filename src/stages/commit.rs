//! Commit: writes a shard's manifest after its data files, which makes the shard
//! finished. A rerun skips shards whose manifest carries the run's settings hash and
//! whose files are still there; other settings never reuse stale parts.

use std::sync::Arc;

use anyhow::{Context, Result};
use crossbeam_channel::Receiver;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use super::write::{upload, ToCommit};
use super::{Counters, Shard};
use crate::io::store::Location;

/// The manifest of a committed shard: `part-<shard>.manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub shard: String,
    pub input: String,
    pub settings_hash: String,
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
    pub name: String,
    pub size: u64,
}

/// The manifest's file name for a shard.
pub fn manifest_name(shard: &Shard) -> String {
    format!("part-{}.manifest.json", shard.stem())
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
    if m.settings_hash != settings_hash {
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
                failed.push((shard, reason));
            }
            ToCommit::Written(w) => {
                let manifest = Manifest {
                    shard: w.shard.name.clone(),
                    input: w.shard.url.clone(),
                    settings_hash: settings_hash.to_string(),
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
                        tracing::debug!(
                            shard = %w.shard.url,
                            rows = w.rows,
                            errors = w.errors,
                            "committed"
                        );
                    }
                    Err(e) => {
                        Counters::add(&counters.shards_failed, 1);
                        let reason = format!("{e:#}");
                        tracing::error!(shard = %w.shard.url, "commit failed: {reason}");
                        failed.push((w.shard, reason));
                    }
                }
            }
        }
    }
    failed
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
