//! Write: gathers each shard's rows (they arrive out of order, from several restore
//! workers and batches), and once a shard is complete encodes its part and its errors
//! table as Parquet and uploads them (multipart for large parts). Objects appear
//! atomically in every store, so no reader ever sees a torn file; the manifest the
//! commit stage writes afterwards is what marks the shard finished.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender};
use object_store::buffered::BufWriter;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use super::{Flow, Scored, Shard, Written};
use crate::io::layout;
use crate::io::parquet_out::{self, ErrorRow, OutputRow, RowSettings};
use crate::io::store::Location;

/// What the commit stage receives.
#[derive(Debug)]
pub enum ToCommit {
    Written(Written),
    Failed { shard: Arc<Shard>, reason: String },
}

#[derive(Default)]
struct Pending {
    shard: Option<Arc<Shard>>,
    expected: Option<usize>,
    rows: Vec<(usize, OutputRow)>,
    errors: Vec<ErrorRow>,
    /// Rows accounted for so far (restored or failed after decoding).
    done: usize,
}

/// Runs until `input` closes.
pub fn run(
    rt: &tokio::runtime::Handle,
    output: &Location,
    settings: &RowSettings,
    input: Receiver<Flow<Vec<Scored>>>,
    out: Sender<ToCommit>,
) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    // Shards that failed: rows of theirs still in flight are dropped, not re-gathered.
    let mut failed: std::collections::HashSet<String> = Default::default();
    for msg in input {
        let key = match msg {
            Flow::Failed { shard, reason } => {
                pending.remove(&shard.path);
                failed.insert(shard.path.clone());
                if out.send(ToCommit::Failed { shard, reason }).is_err() {
                    return;
                }
                continue;
            }
            Flow::Opened {
                shard,
                records,
                errors,
            } => {
                if failed.contains(&shard.path) {
                    continue;
                }
                let p = pending.entry(shard.path.clone()).or_default();
                if records.is_some() {
                    p.expected = records;
                }
                p.errors.extend(errors);
                p.shard = Some(shard.clone());
                vec![shard.path.clone()]
            }
            Flow::Data(rows) => {
                let mut keys = Vec::new();
                for s in rows {
                    if failed.contains(&s.shard.path) {
                        continue;
                    }
                    let p = pending.entry(s.shard.path.clone()).or_default();
                    p.shard.get_or_insert_with(|| s.shard.clone());
                    p.done += 1;
                    match s.result {
                        Ok(row) => p.rows.push((s.row, row)),
                        Err(e) => p.errors.push(e),
                    }
                    keys.push(s.shard.path.clone());
                }
                keys.dedup();
                keys
            }
        };
        for k in key {
            let complete = pending
                .get(&k)
                .is_some_and(|p| p.expected.is_some_and(|e| p.done >= e));
            if !complete {
                continue;
            }
            let Some(mut p) = pending.remove(&k) else {
                continue;
            };
            let Some(shard) = p.shard.take() else {
                continue;
            };
            p.rows.sort_by_key(|(row, _)| *row);
            let msg = match write_shard(rt, output, settings, &shard, &p) {
                Ok(files) => ToCommit::Written(Written {
                    shard,
                    rows: p.rows.len(),
                    errors: p.errors.len(),
                    files,
                    restore_seconds: p.rows.iter().map(|(_, r)| r.seconds).sum(),
                    mean_psnr: mean(p.rows.iter().filter_map(|(_, r)| r.psnr)),
                }),
                Err(e) => ToCommit::Failed {
                    reason: format!("cannot write outputs: {e:#}"),
                    shard,
                },
            };
            if out.send(msg).is_err() {
                return;
            }
        }
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (n, sum) = values.fold((0usize, 0.0), |(n, s), v| (n + 1, s + v));
    (n > 0).then(|| sum / n as f64)
}

fn write_shard(
    rt: &tokio::runtime::Handle,
    output: &Location,
    settings: &RowSettings,
    shard: &Shard,
    p: &Pending,
) -> Result<Vec<(String, u64)>> {
    let rows: Vec<OutputRow> = p.rows.iter().map(|(_, r)| r.clone()).collect();
    let part = parquet_out::encode_outputs(&rows, settings)?;
    let mut files = Vec::new();
    let stem = shard.stem();
    let name = layout::part_name(&stem);
    upload(rt, output, &name, part.clone())
        .with_context(|| format!("uploading {}", output.child_url(&name)))?;
    files.push((name, part.len() as u64));
    let errors_key = layout::errors_name(&stem);
    if p.errors.is_empty() {
        // A stale errors table from an earlier run with other settings must not linger.
        let store = output.store.clone();
        let key = output.child(&errors_key);
        let _ = rt.block_on(async move { store.delete(&key).await });
    } else {
        let bytes = parquet_out::encode_errors(&p.errors)?;
        files.push((errors_key.clone(), bytes.len() as u64));
        upload(rt, output, &errors_key, bytes)
            .with_context(|| format!("uploading {}", output.child_url(&errors_key)))?;
    }
    Ok(files)
}

/// Uploads one object: a single PUT when small, multipart above 10 MiB.
pub fn upload(
    rt: &tokio::runtime::Handle,
    output: &Location,
    name: &str,
    bytes: Vec<u8>,
) -> Result<()> {
    let store: Arc<dyn ObjectStore> = output.store.clone();
    let key = output.child(name);
    rt.block_on(async move {
        let mut w = BufWriter::with_capacity(store, key, 10 << 20);
        w.write_all(&bytes).await?;
        w.shutdown().await?;
        Ok::<_, std::io::Error>(())
    })?;
    Ok(())
}
