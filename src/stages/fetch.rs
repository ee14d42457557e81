//! Fetch: streams each shard's rows from the object store in chunks of at most
//! `chunk_rows` rows, reading row groups through ranged requests (Parquet's async reader
//! over object_store), so a shard of any size costs the memory of a few chunks, not of
//! the whole file. Footers of the next shards are read ahead, several at a time.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use futures::StreamExt;
use object_store::ObjectStore;
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};

use super::Shard;
use crate::io::parquet_in::{self, ColumnNames, Columns, ObjectReader, RawRecord};

/// Rows of a shard, in order: one chunk, and whether it is the shard's last.
#[derive(Debug)]
pub struct Chunk {
    pub records: Vec<RawRecord>,
    pub last: bool,
    /// On a shard's first chunk: how many rows this run streams of it (from the footer),
    /// so that per-shard state is sized once instead of growing.
    pub rows_planned: Option<usize>,
    /// On a resumed shard's first chunk: the ids of the rows an earlier run committed
    /// (rows 0, 1, … of the shard), which are not streamed again but still take part in
    /// the duplicate-id check, as they would in an uninterrupted run.
    pub earlier_ids: Vec<String>,
}

/// A shard opened for streaming: the row stream from the first row not yet committed,
/// its resolved columns, how many rows it will give, and the committed rows' ids.
struct Opened {
    stream: ParquetRecordBatchStream<ObjectReader>,
    columns: Columns,
    rows_planned: usize,
    earlier_ids: Vec<String>,
}

/// A chunk of a shard's rows, or why the shard cannot be read (after the store's own
/// retries). After an error no more chunks of that shard follow.
pub struct Fetched {
    pub shard: Arc<Shard>,
    pub chunk: Result<Chunk, String>,
}

/// Runs until `shards` closes. The footers of at most `concurrency` shards are read at
/// once; rows are streamed one shard after the other, in list order, and reading stops
/// while the downstream queue is full. Each shard's columns are resolved from `names`
/// and must be `first`'s (the first shard's, resolved by the plan) where there is one.
#[allow(clippy::too_many_arguments)]
pub fn run(
    rt: &tokio::runtime::Handle,
    store: Arc<dyn ObjectStore>,
    names: &ColumnNames,
    first: Option<&Columns>,
    shards: Receiver<Shard>,
    out: Sender<Fetched>,
    concurrency: usize,
    chunk_rows: usize,
) {
    let opened = futures::stream::iter(shards.into_iter().map(Arc::new))
        .map(|shard| {
            let store = store.clone();
            async move {
                let stream = open(store, &shard, names, first, chunk_rows).await;
                (shard, stream)
            }
        })
        .buffered(concurrency.max(1));
    rt.block_on(async move {
        futures::pin_mut!(opened);
        while let Some((shard, stream)) = opened.next().await {
            let Ok(()) = stream_rows(&shard, stream, &out).await else {
                break; // downstream stopped
            };
        }
    });
}

/// Opens a shard: reads its footer (ranged requests) and resolves its columns.
async fn open(
    store: Arc<dyn ObjectStore>,
    shard: &Shard,
    names: &ColumnNames,
    first: Option<&Columns>,
    chunk_rows: usize,
) -> Result<Opened, String> {
    let reader = ObjectReader::open(store.clone(), shard.key.clone())
        .await
        .map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let columns = parquet_in::resolve_columns(builder.schema(), names)
        .map_err(|problems| problems.join("; "))?;
    if let Some(first) = first {
        parquet_in::check_same_columns(first, &columns)?;
    }
    // Rows committed by an earlier run are skipped, not read again.
    let skip = shard.resume.as_ref().map_or(0, |r| r.rows_done);
    let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let rows_planned = shard
        .take
        .map_or(rows, |t| t.min(rows))
        .saturating_sub(skip);
    let mut builder = builder.with_batch_size(chunk_rows.max(1)).with_offset(skip);
    if let Some(take) = shard.take {
        builder = builder.with_limit(take.saturating_sub(skip));
    }
    let stream = builder.build().map_err(|e| e.to_string())?;
    let earlier_ids = earlier_ids(store, shard, &columns, skip).await?;
    Ok(Opened {
        stream,
        columns,
        rows_planned,
        earlier_ids,
    })
}

/// The ids of a shard's first `rows` rows, read from its id column alone (none without
/// one: default ids, `<shard>:<row>`, never repeat).
async fn earlier_ids(
    store: Arc<dyn ObjectStore>,
    shard: &Shard,
    columns: &Columns,
    rows: usize,
) -> Result<Vec<String>, String> {
    let Some(id_column) = columns.id.as_deref().filter(|_| rows > 0) else {
        return Ok(Vec::new());
    };
    let fail = |e: &dyn std::fmt::Display| format!("reading the ids of the committed rows: {e}");
    let reader = ObjectReader::open(store, shard.key.clone())
        .await
        .map_err(|e| fail(&e))?;
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| fail(&e))?;
    let root = builder.schema().index_of(id_column).map_err(|e| fail(&e))?;
    let projection = ProjectionMask::roots(builder.parquet_schema(), [root]);
    let mut stream = builder
        .with_projection(projection)
        .with_limit(rows)
        .build()
        .map_err(|e| fail(&e))?;
    let mut ids = Vec::with_capacity(rows);
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| fail(&e))?;
        parquet_in::ids_of(&batch, columns, &shard.path, ids.len(), &mut ids)
            .map_err(|e| fail(&format!("{e:#}")))?;
    }
    Ok(ids)
}

/// Sends a shard's chunks downstream; `Err` only when downstream has stopped. One chunk
/// is held back so that the last one can be marked.
async fn stream_rows(
    shard: &Arc<Shard>,
    opened: Result<Opened, String>,
    out: &Sender<Fetched>,
) -> Result<(), ()> {
    let send = |chunk: Result<Chunk, String>| {
        out.send(Fetched {
            shard: shard.clone(),
            chunk,
        })
        .map_err(|_| ())
    };
    let Opened {
        mut stream,
        columns,
        rows_planned,
        earlier_ids,
    } = match opened {
        Ok(s) => s,
        Err(reason) => return send(Err(reason)),
    };
    let mut held: Option<Vec<RawRecord>> = None;
    let mut rows_planned = Some(rows_planned);
    let mut earlier_ids = Some(earlier_ids);
    let mut row = shard.resume.as_ref().map_or(0, |r| r.rows_done);
    while let Some(batch) = stream.next().await {
        let records = batch
            .map_err(|e| format!("cannot decode a Parquet row group: {e}"))
            .and_then(|b| {
                parquet_in::records_of(&b, &columns, &shard.path, row).map_err(|e| format!("{e:#}"))
            });
        let records = match records {
            Ok(r) => r,
            Err(reason) => return send(Err(reason)),
        };
        row += records.len();
        if let Some(previous) = held.replace(records) {
            send(Ok(Chunk {
                records: previous,
                last: false,
                rows_planned: rows_planned.take(),
                earlier_ids: earlier_ids.take().unwrap_or_default(),
            }))?;
        }
    }
    send(Ok(Chunk {
        records: held.unwrap_or_default(),
        last: true,
        rows_planned,
        earlier_ids: earlier_ids.unwrap_or_default(),
    }))
}
