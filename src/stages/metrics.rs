//! Metrics: scores each reconstruction against its ground truth (when the input had
//! one) and encodes it as PNG, in parallel over the batch; a padded input's
//! reconstruction is first cropped back to the input's size, so outputs and metrics
//! have that size. LPIPS runs here when an
//! LPIPS graph is configured; otherwise its column stays null, never a made-up value.

use crossbeam_channel::{Receiver, Sender};
use rayon::prelude::*;

use super::{Counters, Flow, Frame, Restored, Scored};
use crate::io::image::{encode_png, Pixels};
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

/// A reconstruction and its truth, at the input's size.
struct InputSized {
    x: Vec<f32>,
    truth: Option<Vec<f32>>,
    shape: [usize; 3],
}

/// A reconstruction and its truth at the input's size: cropped back to the frame of a
/// padded input, as they are otherwise.
fn at_input_size(
    shape: [usize; 3],
    x: &[f32],
    truth: Option<&[f32]>,
    frame: Option<Frame>,
) -> Result<InputSized, String> {
    let Some(f) = frame else {
        return Ok(InputSized {
            x: x.to_vec(),
            truth: truth.map(<[f32]>::to_vec),
            shape,
        });
    };
    let crop = |v: &[f32]| {
        let px = Pixels {
            shape,
            data: v.to_vec(),
        };
        px.crop([f.top, f.left], [f.height, f.width])
            .map(|p| p.data)
            .map_err(|e| format!("cropping the reconstruction back: {e:#}"))
    };
    Ok(InputSized {
        x: crop(x)?,
        truth: truth.map(crop).transpose()?,
        shape: [shape[0], f.height, f.width],
    })
}

/// A (reconstruction, truth) pair for LPIPS.
type Pair<'a> = (&'a [f32], &'a [f32]);

fn score_batch(
    shape: [usize; 3],
    write_f32: bool,
    lpips: Option<&mut (dyn Perceptual + 'static)>,
    batch: Vec<Restored>,
    counters: &Counters,
) -> Vec<Scored> {
    // Reconstructions and truths at the input's size.
    let sized: Vec<Option<Result<InputSized, String>>> = batch
        .par_iter()
        .map(|r| match &r.result {
            Ok((x, _, _)) => Some(at_input_size(
                shape,
                x,
                r.record.truth.as_deref(),
                r.record.frame,
            )),
            Err(_) => None,
        })
        .collect();
    // LPIPS in one batched call per image size for the pairs that have ground truth.
    let mut lpips_values: Vec<Option<f64>> = vec![None; batch.len()];
    if let Some(model) = lpips {
        let ok = || {
            sized
                .iter()
                .enumerate()
                .filter_map(|(i, s)| Some((i, s.as_ref()?.as_ref().ok()?)))
        };
        let mut shapes: Vec<[usize; 3]> = ok().map(|(_, s)| s.shape).collect();
        shapes.sort();
        shapes.dedup();
        for each in shapes {
            let (at, pairs): (Vec<usize>, Vec<Pair>) = ok()
                .filter(|(_, s)| s.shape == each)
                .filter_map(|(i, s)| Some((i, (s.x.as_slice(), s.truth.as_deref()?))))
                .unzip();
            if pairs.is_empty() {
                continue;
            }
            match model.distances(&pairs, each) {
                Ok(d) => at
                    .into_iter()
                    .zip(d)
                    .for_each(|(i, d)| lpips_values[i] = Some(d)),
                Err(e) => tracing::warn!("LPIPS failed for a batch, column left null: {e:#}"),
            }
        }
    }
    let scored: Vec<Scored> = batch
        .into_par_iter()
        .zip(sized)
        .zip(lpips_values)
        .map(|((r, sized), lpips)| {
            let row = r.record.row;
            let fail = |stage: &str, reason: String| ErrorRow {
                id: r.record.id.clone(),
                row: r.record.row,
                shard: r.shard.path.clone(),
                stage: stage.into(),
                reason,
                keep: r.record.keep.clone(),
            };
            let result = match (&r.result, sized) {
                (Err(reason), _) => Err(fail("restore", reason.clone())),
                (Ok(_), None) => Err(fail("metrics", "internal: no reconstruction".into())),
                (Ok(_), Some(Err(reason))) => Err(fail("metrics", reason)),
                (Ok((_, residual, seconds)), Some(Ok(InputSized { x, truth, shape }))) => {
                    match encode_png(shape, &x) {
                        Err(e) => Err(fail("metrics", format!("{e:#}"))),
                        Ok(png) => {
                            let truth = truth.as_deref();
                            Ok(OutputRow {
                                id: r.record.id.clone(),
                                png,
                                mse: truth.map(|t| m::mse(&x, t)),
                                psnr: truth.map(|t| m::psnr(&x, t)),
                                ssim: truth.and_then(|t| m::ssim(&x, t, shape)),
                                f32: write_f32.then_some(x),
                                lpips,
                                residual: *residual,
                                seconds: *seconds,
                                measured: r.record.y.is_some(),
                                keep: r.record.keep.clone(),
                            })
                        }
                    }
                }
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
