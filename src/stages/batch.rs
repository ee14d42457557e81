//! Batch: groups decoded records into model batches of a fixed size. Batches may span
//! shards — results never depend on batching — so the model always gets full batches
//! except the very last one.

use crossbeam_channel::{Receiver, Sender};

use super::decode::Decoded;
use super::{Batch, Flow};

/// Runs until `input` closes, then flushes the last partial batch.
pub fn run(batch_size: usize, input: Receiver<Flow<Decoded>>, out: Sender<Flow<Batch>>) {
    let batch_size = batch_size.max(1);
    let mut current: Batch = Vec::with_capacity(batch_size);
    for msg in input {
        let forwarded = match msg {
            Flow::Data((shard, records, errors, total)) => {
                let opened = Flow::Opened {
                    shard: shard.clone(),
                    records: total,
                    errors,
                };
                if out.send(opened).is_err() {
                    return;
                }
                for r in records {
                    current.push((shard.clone(), r));
                    if current.len() == batch_size {
                        let full = std::mem::replace(&mut current, Vec::with_capacity(batch_size));
                        if out.send(Flow::Data(full)).is_err() {
                            return;
                        }
                    }
                }
                continue;
            }
            other => other.map_data(|_| unreachable!("data handled above")),
        };
        if out.send(forwarded).is_err() {
            return;
        }
    }
    if !current.is_empty() {
        let _ = out.send(Flow::Data(current));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::stages::{Record, Shard};

    fn shard(name: &str, n: usize) -> Decoded {
        let s = Arc::new(Shard::new(0, name.into(), String::new(), name.into()));
        let recs = (0..n)
            .map(|row| Record {
                id: format!("{name}-{row}"),
                row,
                truth: None,
                y: None,
                mask: None,
                ..Default::default()
            })
            .collect();
        (s, recs, vec![], Some(n))
    }

    #[test]
    fn batches_are_full_across_shards_and_nothing_is_lost() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (otx, orx) = crossbeam_channel::unbounded();
        tx.send(Flow::Data(shard("a", 5))).unwrap();
        tx.send(Flow::Data(shard("b", 6))).unwrap();
        drop(tx);
        run(4, rx, otx);
        let sizes: Vec<usize> = orx
            .iter()
            .filter_map(|m| match m {
                Flow::Data(b) => Some(b.len()),
                _ => None,
            })
            .collect();
        assert_eq!(sizes, vec![4, 4, 3]);
    }
}
