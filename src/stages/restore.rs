//! Restore: runs the Ambient DPS sampler on each batch with this worker's own model
//! sessions. A batch that fails (model error) fails its records, not the run.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::{Batch, Counters, Flow, Record, Restored, Shard};

/// Restores batches of records: one per worker, owning its model sessions.
pub trait Restorer: Send {
    /// Reconstructions (CHW in [-1, 1]) and final measurement residuals, in batch order.
    fn restore(&mut self, batch: &[(Arc<Shard>, Record)]) -> anyhow::Result<Vec<(Vec<f32>, f64)>>;
    /// Denoiser evaluations per image of one restoration.
    fn nfe(&self) -> usize;
}

/// Runs until `input` closes. Bookkeeping messages pass through unchanged.
pub fn run(
    restorer: &mut dyn Restorer,
    input: Receiver<Flow<Batch>>,
    out: Sender<Flow<Vec<Restored>>>,
    counters: &Counters,
) {
    for msg in input {
        let msg = msg.map_data(|batch| {
            let started = Instant::now();
            let result = restorer.restore(&batch);
            let per_image = started.elapsed().as_secs_f64() / batch.len().max(1) as f64;
            match result {
                Ok(xs) => {
                    Counters::add(&counters.nfe_images, (restorer.nfe() * xs.len()) as u64);
                    batch
                        .into_iter()
                        .zip(xs)
                        .map(|((shard, record), (x, residual))| Restored {
                            shard,
                            record,
                            result: Ok((x, residual, per_image)),
                        })
                        .collect()
                }
                Err(e) => {
                    let reason = format!("{e:#}");
                    tracing::error!("a batch of {} failed: {reason}", batch.len());
                    batch
                        .into_iter()
                        .map(|(shard, record)| Restored {
                            shard,
                            record,
                            result: Err(reason.clone()),
                        })
                        .collect()
                }
            }
        });
        if out.send(msg).is_err() {
            return;
        }
    }
}
