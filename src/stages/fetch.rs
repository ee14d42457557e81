//! Fetch: reads whole shards from the object store, several at a time, in list order.

use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

use super::Shard;

/// A shard's bytes, or why they could not be read (after the store's own retries).
pub struct Fetched {
    pub shard: Arc<Shard>,
    pub bytes: Result<Bytes, String>,
}

/// Runs until `shards` closes. At most `concurrency` reads are in flight; when the
/// downstream queue is full the stage stops reading.
pub fn run(
    rt: &tokio::runtime::Handle,
    store: Arc<dyn ObjectStore>,
    shards: Receiver<Shard>,
    out: Sender<Fetched>,
    concurrency: usize,
) {
    let reads = futures::stream::iter(shards.into_iter().map(Arc::new))
        .map(|shard| {
            let store = store.clone();
            async move {
                if let Some(reason) = &shard.unreadable {
                    let bytes = Err(reason.clone());
                    return Fetched { shard, bytes };
                }
                let bytes = match store.get(&shard.key).await {
                    Ok(r) => r.bytes().await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                Fetched { shard, bytes }
            }
        })
        .buffered(concurrency.max(1));
    rt.block_on(async move {
        futures::pin_mut!(reads);
        while let Some(f) = reads.next().await {
            if out.send(f).is_err() {
                break; // downstream stopped
            }
        }
    });
}
