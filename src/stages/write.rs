//! Write: gathers each shard's rows (they arrive out of order, from several restore
//! workers and batches) and writes them in parts of `part_rows` consecutive rows: as
//! soon as every row of the next part is accounted for (restored or failed), that part
//! and its errors table are encoded as Parquet and uploaded (multipart for large parts),
//! and the commit stage records the progress, so a shard's outputs never pile up in
//! memory and a killed run goes on after the last committed part. Objects appear
//! atomically in every store, so no reader ever sees a torn file; the manifest the
//! commit stage writes after the last part is what marks the shard finished.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender};
use object_store::buffered::BufWriter;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use super::{Flow, Resume, Scored, Shard, Written};
use crate::io::layout;
use crate::io::parquet_out::{self, ErrorRow, OutputRow, RowSettings};
use crate::io::store::Location;

/// What the commit stage receives.
#[derive(Debug)]
pub enum ToCommit {
    /// The shard's first parts are written; `progress` says which.
    Progress {
        shard: Arc<Shard>,
        progress: Resume,
    },
    Written(Written),
    Failed {
        shard: Arc<Shard>,
        reason: String,
    },
}

/// A shard being written.
struct Pending {
    shard: Arc<Shard>,
    /// Rows this run streams of the shard, known from its last chunk.
    expected: Option<usize>,
    /// Rows not yet written, by row number.
    rows: BTreeMap<usize, OutputRow>,
    errors: BTreeMap<usize, ErrorRow>,
    /// What is written so far (from an earlier run too).
    written: Resume,
    /// Rows written by this run.
    written_now: usize,
    /// Seconds and PSNR sums of the rows written by this run, for the shard's log line.
    seconds: f64,
    psnr: (usize, f64),
}

impl Pending {
    fn new(shard: Arc<Shard>) -> Self {
        let written = shard.resume.clone().unwrap_or_default();
        Pending {
            shard,
            expected: None,
            rows: BTreeMap::new(),
            errors: BTreeMap::new(),
            written,
            written_now: 0,
            seconds: 0.0,
            psnr: (0, 0.0),
        }
    }

    /// Whether every row of [next, next + n) is accounted for.
    fn has_rows(&self, n: usize) -> bool {
        let (from, to) = (self.written.rows_done, self.written.rows_done + n);
        self.rows.range(from..to).count() + self.errors.range(from..to).count() == n
    }

    fn complete(&self) -> bool {
        self.expected == Some(self.written_now + self.rows.len() + self.errors.len())
    }
}

/// Runs until `input` closes.
pub fn run(
    rt: &tokio::runtime::Handle,
    output: &Location,
    settings: &RowSettings,
    part_rows: usize,
    input: Receiver<Flow<Vec<Scored>>>,
    out: Sender<ToCommit>,
) {
    let part_rows = part_rows.max(1);
    let mut pending: HashMap<String, Pending> = HashMap::new();
    // Shards that failed: rows of theirs still in flight are dropped, not re-gathered.
    let mut failed: HashSet<String> = HashSet::new();
    for msg in input {
        let touched: Vec<Arc<Shard>> = match msg {
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
                let p = pending
                    .entry(shard.path.clone())
                    .or_insert_with(|| Pending::new(shard.clone()));
                if records.is_some() {
                    p.expected = records;
                }
                p.errors.extend(errors.into_iter().map(|e| (e.row, e)));
                vec![shard]
            }
            Flow::Data(rows) => {
                let mut touched: Vec<Arc<Shard>> = Vec::new();
                for s in rows {
                    if failed.contains(&s.shard.path) {
                        continue;
                    }
                    let p = pending
                        .entry(s.shard.path.clone())
                        .or_insert_with(|| Pending::new(s.shard.clone()));
                    match s.result {
                        Ok(row) => {
                            p.rows.insert(s.row, row);
                        }
                        Err(e) => {
                            p.errors.insert(s.row, e);
                        }
                    }
                    if !touched.iter().any(|t| t.path == s.shard.path) {
                        touched.push(s.shard);
                    }
                }
                touched
            }
        };
        for shard in touched {
            let Some(p) = pending.get_mut(&shard.path) else {
                continue;
            };
            let msgs = match flush(rt, output, settings, part_rows, p) {
                Ok(msgs) => msgs,
                Err(e) => {
                    pending.remove(&shard.path);
                    failed.insert(shard.path.clone());
                    let reason = format!("cannot write outputs: {}", crate::app::describe(&e));
                    vec![ToCommit::Failed {
                        shard: shard.clone(),
                        reason,
                    }]
                }
            };
            let done = msgs.iter().any(|m| !matches!(m, ToCommit::Progress { .. }));
            for m in msgs {
                if out.send(m).is_err() {
                    return;
                }
            }
            if done {
                pending.remove(&shard.path);
            }
        }
    }
}

/// Writes every part of `p` that is complete; the last part once the shard is.
fn flush(
    rt: &tokio::runtime::Handle,
    output: &Location,
    settings: &RowSettings,
    part_rows: usize,
    p: &mut Pending,
) -> Result<Vec<ToCommit>> {
    let mut msgs = Vec::new();
    while p.has_rows(part_rows) && !(p.complete() && p.rows.len() + p.errors.len() == part_rows) {
        write_part(rt, output, settings, p, part_rows)?;
        msgs.push(ToCommit::Progress {
            shard: p.shard.clone(),
            progress: p.written.clone(),
        });
    }
    if p.complete() {
        // The last part: whatever is left, and an (empty) part for an empty shard.
        let left = p.rows.len() + p.errors.len();
        if left > 0 || p.written.parts == 0 {
            write_part(rt, output, settings, p, left)?;
        }
        let mean_psnr = (p.psnr.0 > 0).then(|| p.psnr.1 / p.psnr.0 as f64);
        msgs.push(ToCommit::Written(Written {
            shard: p.shard.clone(),
            rows: p.written.rows_ok,
            errors: p.written.rows_failed,
            files: p.written.files.clone(),
            restore_seconds: p.seconds,
            mean_psnr,
        }));
    }
    Ok(msgs)
}

/// Writes the next `n` rows of `p` as its next part.
fn write_part(
    rt: &tokio::runtime::Handle,
    output: &Location,
    settings: &RowSettings,
    p: &mut Pending,
    n: usize,
) -> Result<()> {
    let (from, to) = (p.written.rows_done, p.written.rows_done + n);
    let rest_rows = p.rows.split_off(&to);
    let rows: Vec<OutputRow> = std::mem::replace(&mut p.rows, rest_rows)
        .into_values()
        .collect();
    let rest_errors = p.errors.split_off(&to);
    let errors: Vec<ErrorRow> = std::mem::replace(&mut p.errors, rest_errors)
        .into_values()
        .collect();
    let stem = p.shard.stem();
    let k = p.written.parts;
    let part = parquet_out::encode_outputs(&rows, settings)?;
    let name = layout::part_name(&stem, k);
    let size = part.len() as u64;
    upload(rt, output, &name, part)
        .with_context(|| format!("uploading {}", output.child_url(&name)))?;
    p.written.files.push((name, size));
    let errors_key = layout::errors_name(&stem, k);
    if errors.is_empty() {
        // A stale errors table from an earlier run with other settings must not linger.
        let store = output.store.clone();
        let key = output.child(&errors_key);
        let _ = rt.block_on(async move { store.delete(&key).await });
    } else {
        let bytes = parquet_out::encode_errors(&errors, settings)?;
        p.written
            .files
            .push((errors_key.clone(), bytes.len() as u64));
        upload(rt, output, &errors_key, bytes)
            .with_context(|| format!("uploading {}", output.child_url(&errors_key)))?;
    }
    debug_assert!(from <= to);
    p.seconds += rows.iter().map(|r| r.seconds).sum::<f64>();
    for psnr in rows.iter().filter_map(|r| r.psnr) {
        p.psnr = (p.psnr.0 + 1, p.psnr.1 + psnr);
    }
    p.written.rows_done = to;
    p.written.parts += 1;
    p.written.rows_ok += rows.len();
    p.written.rows_failed += errors.len();
    p.written_now += n;
    Ok(())
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
        if let Err(e) = w.write_all(&bytes).await {
            // A multipart upload left open keeps its parts (billed on S3) until a
            // lifecycle rule removes them. (A failed shutdown aborts on its own, and
            // abort after shutdown would panic.)
            let _ = w.abort().await;
            return Err(e);
        }
        w.shutdown().await
    })?;
    Ok(())
}
