//! Metrics: scores each reconstruction against its ground truth (when the input had
//! one) and encodes it as PNG, in parallel over the batch. LPIPS runs here when an
//! LPIPS graph is configured; otherwise its column stays null, never a made-up value.

use crossbeam_channel::{Receiver, Sender};
use rayon::prelude::*;

use super::{Counters, Flow, Restored, Scored};
use crate::io::image::encode_png;
use crate::io::parquet_out::{ErrorRow, OutputRow};
use crate::restore::metrics as m;

/// An image-pair perceptual distance (LPIPS), batched; inputs CHW in [-1, 1].
pub trait Perceptual: Send {
    /// Distances for pairs (reconstruction, truth).
    fn distances(
        &mut self,
        pairs: &[(&[f32], &[f32])],
        shape: [usize; 3],
    ) -> anyhow::Result<Vec<f64>>;
}

/// Runs until `input` closes.
pub fn run(
    shape: [usize; 3],
    write_f32: bool,
    mut lpips: Option<Box<dyn Perceptual>>,
    input: Receiver<Flow<Vec<Restored>>>,
    out: Sender<Flow<Vec<Scored>>>,
    counters: &Counters,
) {
    for msg in input {
        if let Flow::Opened { errors, .. } = &msg {
            counters.add_failed(errors.iter().map(|e| e.id.as_str()));
        }
        let msg = msg
            .map_data(|batch| score_batch(shape, write_f32, lpips.as_deref_mut(), batch, counters));
        if out.send(msg).is_err() {
            return;
        }
    }
}

fn score_batch(
    shape: [usize; 3],
    write_f32: bool,
    lpips: Option<&mut (dyn Perceptual + 'static)>,
    batch: Vec<Restored>,
    counters: &Counters,
) -> Vec<Scored> {
    // LPIPS in one batched call for the pairs that have ground truth.
    let lpips_values: Vec<Option<f64>> = match lpips {
        Some(model) => {
            let pairs: Vec<(&[f32], &[f32])> = batch
                .iter()
                .filter_map(|r| match (&r.result, &r.record.truth) {
                    (Ok((x, _, _)), Some(t)) => Some((x.as_slice(), t.as_slice())),
                    _ => None,
                })
                .collect();
            let mut d = match model.distances(&pairs, shape) {
                Ok(d) => d.into_iter().map(Some).collect::<Vec<_>>(),
                Err(e) => {
                    tracing::warn!("LPIPS failed for a batch, column left null: {e:#}");
                    vec![None; pairs.len()]
                }
            }
            .into_iter();
            batch
                .iter()
                .map(|r| match (&r.result, &r.record.truth) {
                    (Ok(_), Some(_)) => d.next().flatten(),
                    _ => None,
                })
                .collect()
        }
        None => vec![None; batch.len()],
    };
    let scored: Vec<Scored> = batch
        .into_par_iter()
        .zip(lpips_values)
        .map(|(r, lpips)| {
            let row = r.record.row;
            let fail = |stage: &str, reason: String| ErrorRow {
                id: r.record.id.clone(),
                row: r.record.row,
                shard: r.shard.path.clone(),
                stage: stage.into(),
                reason,
            };
            let result = match &r.result {
                Err(reason) => Err(fail("restore", reason.clone())),
                Ok((x, residual, seconds)) => match encode_png(shape, x) {
                    Err(e) => Err(fail("metrics", format!("{e:#}"))),
                    Ok(png) => {
                        let truth = r.record.truth.as_deref();
                        Ok(OutputRow {
                            id: r.record.id.clone(),
                            png,
                            f32: write_f32.then(|| x.clone()),
                            mse: truth.map(|t| m::mse(x, t)),
                            psnr: truth.map(|t| m::psnr(x, t)),
                            ssim: truth.and_then(|t| m::ssim(x, t, shape)),
                            lpips,
                            residual: *residual,
                            seconds: *seconds,
                        })
                    }
                },
            };
            Scored {
                shard: r.shard,
                row,
                result,
            }
        })
        .collect();
    if let Ok(mut sums) = counters.metric_sums.lock() {
        for row in scored.iter().filter_map(|s| s.result.as_ref().ok()) {
            if let (Some(mse), Some(psnr)) = (row.mse, row.psnr) {
                sums.scored += 1;
                sums.mse += mse;
                sums.psnr += psnr;
            }
            if let Some(ssim) = row.ssim {
                sums.ssim_scored += 1;
                sums.ssim += ssim;
            }
            if let Some(l) = row.lpips {
                sums.lpips_scored += 1;
                sums.lpips += l;
            }
        }
    }
    let ok = scored.iter().filter(|s| s.result.is_ok()).count() as u64;
    Counters::add(&counters.records_ok, ok);
    counters.add_failed(
        scored
            .iter()
            .filter_map(|s| s.result.as_ref().err().map(|e| e.id.as_str())),
    );
    scored
}
