//! Restore: runs the Ambient DPS sampler on each batch with this worker's own model
//! sessions. A batch that fails (model error) fails its records, not the run.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender};

use super::{Batch, Counters, Flow, Record, Restored, Shard};
use crate::model::Card;
use crate::pipeline::config::{RunSpec, YRange};
use crate::restore::denoiser::Denoiser;
use crate::restore::guidance::{GradientMode, GradientPath, DENSE_MAX_ENTRIES};
use crate::restore::operators::{OperatorFamily, OperatorSpec};
use crate::restore::protocol::{image_problem, Given, Protocol};
use crate::restore::sampler::{ambient_dps, ImageTask, SamplerConfig};

/// Restores batches of records: one per worker, owning its model sessions.
pub trait Restorer: Send {
    /// Reconstructions (CHW in [-1, 1]) and final measurement residuals, in batch order.
    fn restore(&mut self, batch: &[(Arc<Shard>, Record)]) -> anyhow::Result<Vec<(Vec<f32>, f64)>>;
    /// Denoiser evaluations per image of one restoration.
    fn nfe(&self) -> usize;
    /// Why a record cannot be restored (y or mask of the wrong size, non-finite values),
    /// checked before its batch runs, so that one bad record fails alone.
    fn check(&self, _record: &Record) -> Result<(), String> {
        Ok(())
    }
}

/// Runs until `input` closes. Bookkeeping messages pass through unchanged.
pub fn run(
    restorer: &mut dyn Restorer,
    input: Receiver<Flow<Batch>>,
    out: Sender<Flow<Vec<Restored>>>,
    counters: &Counters,
) {
    for msg in input {
        let msg = msg.map_data(|batch| restore_batch(restorer, batch, counters));
        if out.send(msg).is_err() {
            return;
        }
    }
}

/// Restores the records of a batch that pass the restorer's check; the others, and all
/// of them if the model call fails, come back as errors.
fn restore_batch(restorer: &mut dyn Restorer, batch: Batch, counters: &Counters) -> Vec<Restored> {
    let checks: Vec<Result<(), String>> = batch.iter().map(|(_, r)| restorer.check(r)).collect();
    let (good, bad): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .zip(checks)
        .enumerate()
        .partition(|(_, (_, check))| check.is_ok());
    let (good_at, items): (Vec<usize>, Vec<(Arc<Shard>, Record)>) =
        good.into_iter().map(|(i, (item, _))| (i, item)).unzip();
    let mut out: Vec<(usize, Restored)> = bad
        .into_iter()
        .map(|(i, ((shard, record), check))| {
            let reason = check.err().unwrap_or_default();
            (
                i,
                Restored {
                    shard,
                    record,
                    result: Err(reason),
                },
            )
        })
        .collect();
    if !items.is_empty() {
        let started = Instant::now();
        let result = restorer.restore(&items);
        let per_image = started.elapsed().as_secs_f64() / items.len() as f64;
        match result {
            Ok(xs) => {
                Counters::add(&counters.nfe_images, (restorer.nfe() * xs.len()) as u64);
                for ((i, (shard, record)), (x, residual)) in good_at.into_iter().zip(items).zip(xs)
                {
                    let result = Ok((x, residual, per_image));
                    out.push((
                        i,
                        Restored {
                            shard,
                            record,
                            result,
                        },
                    ));
                }
            }
            Err(e) => {
                let reason = format!("{e:#}");
                tracing::error!("a batch of {} failed: {reason}", items.len());
                for (i, (shard, record)) in good_at.into_iter().zip(items) {
                    let result = Err(reason.clone());
                    out.push((
                        i,
                        Restored {
                            shard,
                            record,
                            result,
                        },
                    ));
                }
            }
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Everything a restore worker needs besides its model; shared by all workers of a run.
#[derive(Clone)]
pub struct RestoreSettings {
    /// The model's image shape [C, H, W].
    pub shape: [usize; 3],
    /// The operator family: one operator for the run, or one per image (inpainting).
    pub family: Arc<OperatorFamily>,
    pub sampler: SamplerConfig,
    pub path: GradientPath,
    /// Probability that the model's sampling mask keeps a pixel (1 for plain DPS).
    pub keep_prob: f64,
    pub seed: u64,
    pub sigma_y: f32,
    /// The range of measured y (`unit`: converted with [`unit_to_model`]).
    pub y_range: YRange,
}

impl RestoreSettings {
    /// Settings from a run spec, the model's card and the run's operator family (built by
    /// the plan from `op`, its files checked).
    pub fn from_spec(
        spec: &RunSpec,
        card: &Card,
        op: &OperatorSpec,
        family: OperatorFamily,
    ) -> anyhow::Result<Self> {
        let s = &spec.sampler;
        // The fused dense graph takes the unclipped x0: clipping before the residual always
        // runs denoise + VJP, so `dense` asked for with it would be silently ignored.
        let clip_in_residual = s.clip.in_residual();
        if s.gradient == GradientMode::Dense && clip_in_residual {
            anyhow::bail!(
                "sampler.gradient = \"dense\" cannot clip x0 before the residual (sampler.clip = \"residual\", the default): the fused graph takes the unclipped x0. Set sampler.clip = \"none\" or \"direction\" (--clip none), or leave the gradient on \"auto\""
            );
        }
        // A small structured operator takes the fused dense graph too (one evaluation per
        // step instead of two); `vjp` asked for explicitly keeps the operator as it is.
        let family = match s.gradient {
            GradientMode::Auto if clip_in_residual => family,
            GradientMode::Vjp => family,
            GradientMode::Auto | GradientMode::Dense => family.densified(DENSE_MAX_ENTRIES),
        };
        let path = if clip_in_residual {
            GradientPath::Vjp
        } else {
            s.gradient.resolve(&family).with_context(|| {
                format!(
                    "sampler.gradient = \"{}\" needs one operator shared by every image with at most {DENSE_MAX_ENTRIES} matrix entries (M·C·H·W); `{op}` is not one",
                    s.gradient
                )
            })?
        };
        let sampler = SamplerConfig {
            steps: s.steps,
            sigma_min: s.sigma_min,
            sigma_max: s.sigma_max,
            rho: 7.0,
            solver: s.solver,
            s_churn: s.churn,
            s_min: s.s_min,
            s_max: s.s_max,
            s_noise: s.s_noise,
            zeta: s.zeta,
            clip: s.clip,
            heun_guidance: s.heun_guidance,
        }
        .clamped_to_model(card.sigma_min, card.sigma_max);
        sampler
            .validate()
            .map_err(|e| anyhow::anyhow!("sampler settings: {}", e.join("; ")))?;
        Ok(Self {
            shape: card.shape,
            family: Arc::new(family),
            sampler,
            path,
            keep_prob: s.mask.keep_probability(card.keep_probability()),
            seed: s.seed,
            sigma_y: spec.task.sigma_y as f32,
            y_range: spec.input.y_range,
        })
    }

    /// M, the length of a measurement vector (of a record without its own mask).
    pub fn measurements(&self) -> usize {
        self.family
            .measurements_for(None)
            .unwrap_or_else(|_| self.shape.iter().product())
    }

    /// Denoiser evaluations per image.
    pub fn nfe(&self) -> usize {
        self.sampler.nfe()
    }

    /// The per-image protocol of these settings ([`image_problem`]).
    pub fn protocol(&self) -> Protocol<'_> {
        Protocol {
            family: &self.family,
            shape: self.shape,
            seed: self.seed,
            sigma_y: self.sigma_y,
            keep_prob: self.keep_prob,
        }
    }
}

/// The restore worker: Ambient DPS with one model's sessions.
pub struct AdpsRestorer<D: Denoiser + Send> {
    model: D,
    settings: RestoreSettings,
}

impl<D: Denoiser + Send> AdpsRestorer<D> {
    pub fn new(model: D, settings: RestoreSettings) -> Self {
        Self { model, settings }
    }

    /// The model, e.g. to read its ONNX Runtime counters.
    pub fn model_mut(&mut self) -> &mut D {
        &mut self.model
    }
}

impl<D: Denoiser + Send> Restorer for AdpsRestorer<D> {
    fn restore(&mut self, batch: &[(Arc<Shard>, Record)]) -> anyhow::Result<Vec<(Vec<f32>, f64)>> {
        let s = &self.settings;
        // Everything random about an image comes from its id, never its batch position.
        let protocol = s.protocol();
        let mut problems = Vec::with_capacity(batch.len());
        for (_, record) in batch {
            let given = match (&record.y, &record.truth, s.y_range) {
                (Some(y), _, YRange::Unit) => Given::MeasuredUnit(y),
                (Some(y), _, YRange::Model) => Given::MeasuredModel(y),
                (None, Some(x0), _) => Given::Clean(x0),
                (None, None, _) => anyhow::bail!("record {} has neither y nor an image", record.id),
            };
            let problem = image_problem(&protocol, &record.id, record.mask.as_deref(), given)
                .map_err(|e| anyhow::anyhow!("record {}: {e}", record.id))?;
            problems.push(problem);
        }
        let mut tasks: Vec<ImageTask> = problems
            .iter_mut()
            .map(|p| ImageTask {
                y: &p.y,
                operator: p.operator.as_ref(),
                mask: p.sampling_mask.view(),
                noise: &mut p.noise,
            })
            .collect();
        let out = ambient_dps(&mut self.model, &mut tasks, &s.sampler, s.path, |_| {})?;
        Ok(out
            .x
            .outer_iter()
            .zip(out.residual)
            .map(|(x, r)| (x.iter().copied().collect(), r as f64))
            .collect())
    }

    fn nfe(&self) -> usize {
        self.settings.nfe()
    }

    fn check(&self, record: &Record) -> Result<(), String> {
        let [c, h, w] = self.settings.shape;
        // The record's own mask decides M for fourier (2·C·|kept|); inpainting measures
        // the full image.
        let want = self
            .settings
            .family
            .measurements_for(record.mask.as_deref())?;
        let values = match (&record.y, &record.truth) {
            (Some(y), _) => {
                if y.len() != want {
                    return Err(format!(
                        "y has {} values, the operator measures {want}",
                        y.len()
                    ));
                }
                y
            }
            (None, Some(x0)) => {
                if x0.len() != c * h * w {
                    return Err(format!(
                        "the image has {} values, the model expects {c}×{h}×{w}",
                        x0.len()
                    ));
                }
                x0
            }
            (None, None) => return Err("the record has neither y nor an image".into()),
        };
        match values.iter().find(|v| !v.is_finite()) {
            Some(bad) => Err(format!("holds a non-finite value ({bad})")),
            None => Ok(()),
        }
    }
}
