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

/// A reconstruction clipped to [−1, 1] beside its truth.
type ClippedPair<'a> = (Vec<f32>, &'a [f32]);

fn score_batch(
    shape: [usize; 3],
    write_f32: bool,
    lpips: Option<&mut (dyn Perceptual + 'static)>,
    mut batch: Vec<Restored>,
    counters: &Counters,
) -> Vec<Scored> {
    // A restoration that diverged (NaN/∞, e.g. ζ far too large) is no image: its PNG
    // would be black and its PSNR meaningless, so it is the record's error row.
    for r in &mut batch {
        if let Ok((x, _, _)) = &r.result {
            if let Some(bad) = x.iter().find(|v| !v.is_finite()) {
                r.result = Err(format!(
                    "the restoration diverged (it holds {bad}): lower ζ, or check the \
                     measurement's scale (input.y_range, --y-range)"
                ));
            }
        }
    }
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
            // Scored as stored (the PNG and the other metrics clip to [−1, 1]): values
            // past the range that no image file shows must not count against it.
            let (at, clipped): (Vec<usize>, Vec<ClippedPair>) = ok()
                .filter(|(_, s)| s.shape == each)
                .filter_map(|(i, s)| {
                    let x = s.x.iter().map(|v| v.clamp(-1.0, 1.0)).collect();
                    Some((i, (x, s.truth.as_deref()?)))
                })
                .unzip();
            let pairs: Vec<Pair> = clipped.iter().map(|(x, t)| (x.as_slice(), *t)).collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::{Record, Shard};
    use std::sync::{Arc, Mutex};

    /// Records the reconstructions it is given; distance 0.5 each.
    struct Spy(Arc<Mutex<Vec<Vec<f32>>>>);

    impl Perceptual for Spy {
        fn distances(
            &mut self,
            pairs: &[(&[f32], &[f32])],
            _shape: [usize; 3],
        ) -> anyhow::Result<Vec<f64>> {
            let mut seen = self.0.lock().unwrap();
            seen.extend(pairs.iter().map(|(x, _)| x.to_vec()));
            Ok(vec![0.5; pairs.len()])
        }
    }

    fn restored(id: &str, row: usize, x: Vec<f32>) -> Restored {
        Restored {
            shard: Arc::new(Shard::new(
                0,
                "s.parquet".into(),
                String::new(),
                object_store::path::Path::from("s.parquet"),
            )),
            record: Record {
                id: id.into(),
                row,
                truth: Some(vec![0.0; 4]),
                ..Record::default()
            },
            result: Ok((x, 0.1, 0.01)),
        }
    }

    #[test]
    fn a_diverged_restoration_is_an_error_row_and_lpips_scores_what_is_stored() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut spy = Spy(seen.clone());
        let batch = vec![
            restored("ok", 0, vec![1.3, -1.2, 0.5, 0.0]),
            restored("nan", 1, vec![0.0, f32::NAN, 0.0, 0.0]),
        ];
        let counters = Counters::default();
        let scored = score_batch([1, 2, 2], false, Some(&mut spy), batch, &counters);
        let ok = scored[0].result.as_ref().unwrap();
        assert_eq!(ok.lpips, Some(0.5));
        // LPIPS saw the reconstruction clipped to [−1, 1], as its PNG stores it.
        assert_eq!(*seen.lock().unwrap(), vec![vec![1.0, -1.0, 0.5, 0.0]]);
        let err = scored[1].result.as_ref().unwrap_err();
        assert_eq!((err.id.as_str(), err.stage.as_str()), ("nan", "restore"));
        assert!(err.reason.contains("diverged"), "{}", err.reason);
    }
}
