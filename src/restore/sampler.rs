//! The Ambient DPS sampler (spec §1): EDM's Euler/Heun solver with DPS guidance,
//! over a batch whose images never influence each other.
//!
//! Loading, batching and saving live in the pipeline; this file only integrates. The
//! update is exactly the spec's (a Python reference in `models/reference/` matches it):
//! x̂ = x + √(σ̂²−σ_i²)·S_noise·ε_i, d = (x̂ − x0)/σ̂, x' = x̂ + (σ_{i+1}−σ̂)·d − ζ·∇‖r‖,
//! the Heun correction averaging both d and ∇‖r‖ (as the official Ambient DPS code does).
//!
//! [`HeunGuidance`] chooses how the Heun correction applies the guidance, and
//! [`Clip`] where x0 is clipped to [-1, 1]: nowhere (the spec's update),
//! in the direction d only, or also before the residual (the official code's static
//! clipping). Which solver and clipping restore best at a fixed number of denoiser
//! evaluations was measured (README, "Choosing the sampler";
//! `models/reference/sampler_study.py`); the defaults here are that measurement's.

use anyhow::{ensure, Context};
use ndarray::{Array3, Array4, ArrayView3, Zip};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::denoiser::Denoiser;
use super::guidance::{evaluate, EvalOptions, GradientPath, Guided, Measured};
use super::operators::{residual_norm, LinearOperator};
use super::rng::NoiseSource;
use super::schedule::{clamp_to_model, edm_sigmas};

/// ODE solver: one type for the sampler, the run spec (`sampler.solver = "euler"`), the
/// sweep spec and the CLI (`--sampler euler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Solver {
    /// First order: N denoiser evaluations, N guidance steps.
    #[default]
    Euler,
    /// Second order (EDM Algorithm 1/2): 2N − 1 evaluations. The natural-image Ambient
    /// DPS code's default; at equal NFE it restores worse with DPS guidance here.
    Heun,
}

impl Solver {
    /// The lowercase name used in specs, paths and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Euler => "euler",
            Self::Heun => "heun",
        }
    }
}

impl std::fmt::Display for Solver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the model is fed as its mask while sampling: one type for the run spec
/// (`sampler.mask = "model"`), the sweep spec and the CLI (`--mask model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MaskMode {
    /// Ambient DPS: the model sees its own training-style sampling mask (pixels kept with
    /// the model card's probability).
    #[default]
    Model,
    /// Plain DPS: the model sees an all-ones mask.
    Ones,
}

impl MaskMode {
    /// The lowercase name used in specs, reports and settings hashes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Ones => "ones",
        }
    }

    /// Probability that the sampling mask keeps a pixel, for a model whose own is
    /// `model_keep` (1 for `ones`, which then draws nothing).
    pub fn keep_probability(self, model_keep: f64) -> f64 {
        match self {
            Self::Model => model_keep,
            Self::Ones => 1.0,
        }
    }
}

impl std::fmt::Display for MaskMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the Heun correction applies the DPS guidance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HeunGuidance {
    /// The predictor is guided and the corrector averages ∇‖r‖ at both points:
    /// x' = x̂ + Δσ·(d + d')/2 − ζ·(g + g')/2 (the spec's update and the official code's).
    #[default]
    Averaged,
    /// The predictor and corrector are the unguided Heun step, and −ζ·∇‖r‖(x̂) is applied
    /// once after it: x' = x̂ + Δσ·(d + d')/2 − ζ·g. One gradient per step instead of two.
    Once,
}

/// Where the denoiser's x0 is clipped to the image range [-1, 1]. In specs a name
/// (`clip = "residual"`); the booleans of older specs still read (`true` = `direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Clip {
    /// Nowhere: the spec's update.
    #[default]
    None,
    /// In the direction d = (x − clip(x0))/σ only; the residual and its gradient use x0.
    Direction,
    /// Also before the residual: r = y − A·clip(x0), and ∇‖r‖ is 0 through clipped
    /// pixels (the official Ambient DPS code's static clipping). The gradient then always
    /// takes the vjp path (the fused dense graph does not clip).
    Residual,
}

impl<'de> Deserialize<'de> for Clip {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Bool(bool),
            Name(String),
        }
        match Repr::deserialize(d)? {
            Repr::Bool(true) => Ok(Self::Direction),
            Repr::Bool(false) => Ok(Self::None),
            Repr::Name(name) => <Self as clap::ValueEnum>::from_str(&name, false).map_err(|_| {
                serde::de::Error::custom(format!(
                    "clip `{name}`: expected none, direction or residual"
                ))
            }),
        }
    }
}

impl Clip {
    /// The lowercase name used in specs and paths.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Direction => "direction",
            Self::Residual => "residual",
        }
    }

    /// Whether x0 is clipped in the direction term.
    pub fn in_direction(self) -> bool {
        self != Self::None
    }

    /// Whether x0 is clipped before the residual.
    pub fn in_residual(self) -> bool {
        self == Self::Residual
    }
}

/// Sampler settings; see [`SamplerConfig::default`] for where the defaults come from.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// N, the number of noise levels (EDM's default 18; DPS usually wants more).
    pub steps: usize,
    /// σ_min of the schedule (clamp with [`SamplerConfig::clamped_to_model`]).
    pub sigma_min: f64,
    /// σ_max of the schedule.
    pub sigma_max: f64,
    /// ρ, the schedule's curvature.
    pub rho: f64,
    /// Euler or Heun.
    pub solver: Solver,
    /// S_churn: total stochasticity added along the trajectory (0 = deterministic).
    pub s_churn: f64,
    /// Churn only where S_min ≤ σ_i ≤ S_max.
    pub s_min: f64,
    /// Upper end of the churn range.
    pub s_max: f64,
    /// S_noise: scale of the churn noise.
    pub s_noise: f64,
    /// ζ, the DPS guidance step on ∇‖y − A x0‖ (operator-dependent; search it log-spaced).
    pub zeta: f64,
    /// Where x0 is clipped to [-1, 1].
    pub clip: Clip,
    /// How the Heun correction applies the guidance (Heun only).
    pub heun_guidance: HeunGuidance,
}

impl Default for SamplerConfig {
    /// The one source of sampler defaults (run spec, sweep spec and CLI take theirs from
    /// here): EDM's schedule, no churn, and the solver, steps, ζ and clipping that restored
    /// best in the measurement (README, "Choosing the sampler").
    fn default() -> Self {
        Self {
            steps: 49,
            sigma_min: 0.002,
            sigma_max: 80.0,
            rho: 7.0,
            solver: Solver::Euler,
            s_churn: 0.0,
            s_min: 0.0,
            s_max: f64::INFINITY,
            s_noise: 1.0,
            zeta: 2.0,
            clip: Clip::Residual,
            heun_guidance: HeunGuidance::Averaged,
        }
    }
}

impl SamplerConfig {
    /// The same settings with σ_min/σ_max clamped to the model card's range.
    pub fn clamped_to_model(mut self, model_sigma_min: f64, model_sigma_max: f64) -> Self {
        (self.sigma_min, self.sigma_max) = clamp_to_model(
            self.sigma_min,
            self.sigma_max,
            model_sigma_min,
            model_sigma_max,
        );
        self
    }

    /// Denoiser evaluations per image: 2N − 1 (Heun) or N (Euler).
    pub fn nfe(&self) -> usize {
        match self.solver {
            Solver::Euler => self.steps,
            Solver::Heun => 2 * self.steps - 1,
        }
    }

    /// Every setting problem, reported together.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = vec![];
        let mut check = |ok: bool, msg: String| {
            if !ok {
                errors.push(msg)
            }
        };
        check(
            self.steps >= 1,
            format!("steps = {} must be at least 1", self.steps),
        );
        check(
            0.0 < self.sigma_min && self.sigma_min <= self.sigma_max && self.sigma_max.is_finite(),
            format!(
                "need 0 < σ_min ≤ σ_max < ∞, got {} and {}",
                self.sigma_min, self.sigma_max
            ),
        );
        check(self.rho > 0.0, format!("ρ = {} must be positive", self.rho));
        check(
            self.s_churn >= 0.0,
            format!("S_churn = {} must be ≥ 0", self.s_churn),
        );
        check(
            self.s_noise >= 0.0,
            format!("S_noise = {} must be ≥ 0", self.s_noise),
        );
        check(
            self.zeta.is_finite() && self.zeta >= 0.0,
            format!("ζ = {} must be finite and ≥ 0", self.zeta),
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// The keep probability (1 − p)(1 − δ) of a model trained with erasure p and extra erasure δ.
pub fn keep_probability(p: f64, delta: f64) -> f64 {
    (1.0 - p) * (1.0 - delta)
}

/// The model's sampling mask m, [C, H, W]: each pixel kept (1) with probability
/// `keep_prob`, in every channel at once, as in training. All ones, drawing nothing,
/// when `keep_prob ≥ 1` (p = δ = 0). `rng` is the image's `ImageRngs::sampling_mask`.
pub fn sampling_mask<R: Rng + ?Sized>(
    shape: [usize; 3],
    keep_prob: f64,
    rng: &mut R,
) -> Array3<f32> {
    let [c, h, w] = shape;
    if keep_prob >= 1.0 {
        return Array3::ones((c, h, w));
    }
    let pixel: Vec<f32> = (0..h * w)
        .map(|_| {
            if rng.random::<f64>() < keep_prob {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    Array3::from_shape_fn((c, h, w), |(_, i, j)| pixel[i * w + j])
}

/// One image of a batch: what it measured and its own randomness.
pub struct ImageTask<'a> {
    /// y, length M.
    pub y: &'a [f32],
    /// Its operator (shared by the run, or its own).
    pub operator: &'a dyn LinearOperator,
    /// Its sampling mask m, [C, H, W].
    pub mask: ArrayView3<'a, f32>,
    /// Its sampler noise (ε_0, then ε_i), e.g. `ImageRngs::noise`.
    pub noise: &'a mut dyn NoiseSource,
}

/// What one step reports to a progress hook.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo<'a> {
    /// i, from 0.
    pub step: usize,
    /// N.
    pub steps: usize,
    /// σ̂_i of this step.
    pub sigma_hat: f64,
    /// ‖y − A x0‖ per image at (x̂_i, σ̂_i).
    pub residual: &'a [f32],
}

/// The restored batch.
#[derive(Debug, Clone)]
pub struct Sampled {
    /// x at σ_N = 0, [B, C, H, W].
    pub x: Array4<f32>,
    /// ‖y − A x‖ per image.
    pub residual: Vec<f32>,
    /// Denoiser evaluations per image.
    pub nfe: usize,
}

/// Restore a batch with Ambient DPS; `on_step` is called after every step (cheap).
pub fn ambient_dps(
    den: &mut dyn Denoiser,
    images: &mut [ImageTask],
    cfg: &SamplerConfig,
    path: GradientPath,
    mut on_step: impl FnMut(StepInfo),
) -> anyhow::Result<Sampled> {
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("sampler settings: {}", e.join("; ")))?;
    let shape = den.shape();
    check_batch(images, shape)?;
    let [c, h, w] = shape;
    let (n, zeta) = (cfg.steps, cfg.zeta as f32);
    let t_steps = edm_sigmas(n, cfg.sigma_min, cfg.sigma_max, cfg.rho);
    let meas: Vec<Measured> = images
        .iter()
        .map(|t| Measured {
            y: t.y,
            op: t.operator,
        })
        .collect();
    let mut mask = Array4::zeros((images.len(), c, h, w));
    mask.outer_iter_mut()
        .zip(images.iter())
        .for_each(|(mut m, t)| m.assign(&t.mask));
    let opts = EvalOptions {
        grad: zeta != 0.0,
        clip_residual: cfg.clip.in_residual(),
    };
    let mut eval = |x: &Array4<f32>, t: f64, opts: EvalOptions| {
        evaluate(den, x.view(), t, mask.view(), &meas, path, opts)
    };
    let mut nfe = 0;

    // Main sampling loop (EDM Algorithm 2, plus the DPS step −ζ·∇‖r‖).
    let mut x = noise_like(images, (c, h, w), t_steps[0]);
    for i in 0..n {
        let (t_cur, t_next) = (t_steps[i], t_steps[i + 1]);

        // Increase noise temporarily.
        let in_range = cfg.s_min <= t_cur && t_cur <= cfg.s_max;
        let gamma = if in_range {
            (cfg.s_churn / n as f64).min(2f64.sqrt() - 1.0)
        } else {
            0.0
        };
        let t_hat = t_cur * (1.0 + gamma);
        let x_hat = if gamma > 0.0 {
            x + noise_like(
                images,
                (c, h, w),
                (t_hat * t_hat - t_cur * t_cur).sqrt() * cfg.s_noise,
            )
        } else {
            x
        };

        // Euler step, guided.
        let cur = eval(&x_hat, t_hat, opts)?;
        nfe += 1;
        let d_cur = direction(&x_hat, &cur, t_hat, cfg.clip.in_direction());
        let euler = &x_hat + &(&d_cur * (t_next - t_hat) as f32);
        let mut x_next = &euler - &(&cur.grad * zeta);

        // Apply 2nd order correction, except at σ_N = 0.
        if cfg.solver == Solver::Heun && i < n - 1 {
            let half = (0.5 * (t_next - t_hat)) as f32;
            x_next = match cfg.heun_guidance {
                HeunGuidance::Averaged => {
                    let next = eval(&x_next, t_next, opts)?;
                    let d_prime = direction(&x_next, &next, t_next, cfg.clip.in_direction());
                    &x_hat + &((&d_cur + &d_prime) * half)
                        - &((&cur.grad + &next.grad) * (0.5 * zeta))
                }
                HeunGuidance::Once => {
                    // The corrector sees the unguided predictor and needs no gradient.
                    let plain = EvalOptions {
                        grad: false,
                        ..opts
                    };
                    let next = eval(&euler, t_next, plain)?;
                    let d_prime = direction(&euler, &next, t_next, cfg.clip.in_direction());
                    &x_hat + &((&d_cur + &d_prime) * half) - &(&cur.grad * zeta)
                }
            };
            nfe += 1;
        }
        on_step(StepInfo {
            step: i,
            steps: n,
            sigma_hat: t_hat,
            residual: &cur.residual,
        });
        x = x_next;
    }

    let residual = x
        .outer_iter()
        .zip(&meas)
        .map(|(x, m)| {
            residual_norm(
                m.op,
                x.as_standard_layout().as_slice().expect("standard"),
                m.y,
            )
        })
        .collect();
    Ok(Sampled { x, residual, nfe })
}

/// d = (x − x0)/σ, with x0 clipped to [-1, 1] when asked (with [`Clip::Residual`] x0
/// already arrives clipped).
fn direction(x: &Array4<f32>, e: &Guided, t: f64, clip: bool) -> Array4<f32> {
    let inv = (1.0 / t) as f32;
    let mut d = Array4::zeros(x.raw_dim());
    Zip::from(&mut d).and(x).and(&e.x0).for_each(|d, &x, &x0| {
        let x0 = if clip { x0.clamp(-1.0, 1.0) } else { x0 };
        *d = (x - x0) * inv;
    });
    d
}

/// scale·ε for the batch, each image's ε from its own noise source.
fn noise_like(
    images: &mut [ImageTask],
    (c, h, w): (usize, usize, usize),
    scale: f64,
) -> Array4<f32> {
    let mut eps = Array4::zeros((images.len(), c, h, w));
    for (mut e, t) in eps.outer_iter_mut().zip(images.iter_mut()) {
        t.noise.fill_normal(e.as_slice_mut().expect("fresh array"));
    }
    eps * scale as f32
}

fn check_batch(images: &[ImageTask], shape: [usize; 3]) -> anyhow::Result<()> {
    ensure!(!images.is_empty(), "empty batch");
    for (b, t) in images.iter().enumerate() {
        check_image(t, shape).with_context(|| format!("image {b} of the batch"))?;
    }
    Ok(())
}

fn check_image(t: &ImageTask, [c, h, w]: [usize; 3]) -> anyhow::Result<()> {
    let n = c * h * w;
    ensure!(
        t.mask.shape() == [c, h, w],
        "mask shape {:?} is not the model's [{c}, {h}, {w}]",
        t.mask.shape()
    );
    ensure!(
        t.operator.input_len() == n,
        "the operator takes {} values, the model's images have {n}",
        t.operator.input_len()
    );
    ensure!(
        t.y.len() == t.operator.measurements(),
        "y has {} values, the operator measures {}",
        t.y.len(),
        t.operator.measurements()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::gaussian::GaussianDenoiser;
    use crate::restore::operators::{simulate_measurement, OperatorFamily, OperatorSpec};
    use crate::restore::rng::{fill_standard_normal, FixedNoise, ImageRngs};
    use std::sync::Arc;

    const SEED: u64 = 11;
    const MU: f32 = 0.2;
    const S: f32 = 0.5;

    /// A simulated dataset: per image its operator, y (from x ~ N(μ, s²)) and mask.
    struct Data {
        shape: [usize; 3],
        ids: Vec<String>,
        ops: Vec<Arc<dyn LinearOperator>>,
        ys: Vec<Vec<f32>>,
        masks: Vec<Array3<f32>>,
    }

    fn data(spec: &str, shape: [usize; 3], keep: f64, count: usize) -> Data {
        let fam: OperatorFamily = OperatorSpec::parse(spec)
            .unwrap()
            .build(shape, SEED)
            .unwrap();
        let n = shape.iter().product();
        let ids: Vec<String> = (0..count).map(|i| format!("shard-0:{i}")).collect();
        let (mut ops, mut ys, mut masks) = (vec![], vec![], vec![]);
        for id in &ids {
            let mut rngs = ImageRngs::new(SEED, id);
            let mut x = vec![0.0; n];
            fill_standard_normal(&mut rngs.measurement, &mut x);
            x.iter_mut().for_each(|v| *v = MU + S * *v);
            let op = fam.for_image(&mut rngs.operator);
            ys.push(simulate_measurement(
                op.as_ref(),
                &x,
                0.0,
                &mut rngs.measurement,
            ));
            masks.push(sampling_mask(shape, keep, &mut rngs.sampling_mask));
            ops.push(op);
        }
        Data {
            shape,
            ids,
            ops,
            ys,
            masks,
        }
    }

    /// Restore the images `which` of `d` as one batch, each with its own noise stream.
    fn run(
        d: &Data,
        which: &[usize],
        cfg: &SamplerConfig,
        path: GradientPath,
    ) -> (Sampled, GaussianDenoiser) {
        let mut noises: Vec<_> = which
            .iter()
            .map(|&i| ImageRngs::new(SEED, &d.ids[i]).noise)
            .collect();
        let mut tasks: Vec<ImageTask> = which
            .iter()
            .zip(noises.iter_mut())
            .map(|(&i, noise)| ImageTask {
                y: &d.ys[i],
                operator: d.ops[i].as_ref(),
                mask: d.masks[i].view(),
                noise,
            })
            .collect();
        let mut den = GaussianDenoiser::new(d.shape, MU, S);
        let out = ambient_dps(&mut den, &mut tasks, cfg, path, |_| {}).unwrap();
        (out, den)
    }

    fn max_diff(a: ndarray::ArrayView3<f32>, b: ndarray::ArrayView3<f32>) -> f32 {
        a.iter()
            .zip(b.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    /// The spec's update (no clipping) with these settings.
    fn cfg(steps: usize, solver: Solver, zeta: f64, s_churn: f64) -> SamplerConfig {
        SamplerConfig {
            steps,
            solver,
            zeta,
            s_churn,
            clip: Clip::None,
            ..Default::default()
        }
    }

    #[test]
    fn dense_and_vjp_paths_give_the_same_trajectory() {
        let d = data("cs:16", [1, 8, 8], 0.8, 3);
        let c = cfg(10, Solver::Heun, 0.5, 5.0);
        let (dense, _) = run(&d, &[0, 1, 2], &c, GradientPath::Dense);
        let (vjp, _) = run(&d, &[0, 1, 2], &c, GradientPath::Vjp);
        for b in 0..3 {
            let diff = max_diff(
                dense.x.index_axis(ndarray::Axis(0), b),
                vjp.x.index_axis(ndarray::Axis(0), b),
            );
            assert!(diff <= 1e-5, "image {b}: paths differ by {diff}");
        }
        assert!(dense
            .residual
            .iter()
            .zip(&vjp.residual)
            .all(|(a, b)| (a - b).abs() <= 1e-5));
    }

    #[test]
    fn an_image_does_not_depend_on_its_batch() {
        for (spec, path) in [
            ("cs:16", GradientPath::Dense),
            ("inpaint-random:0.3", GradientPath::Vjp),
        ] {
            let d = data(spec, [1, 8, 8], 0.7, 8);
            let c = cfg(8, Solver::Heun, 0.7, 10.0);
            let (alone, _) = run(&d, &[3], &c, path);
            let (batch, _) = run(&d, &[0, 1, 2, 3, 4, 5, 6, 7], &c, path);
            let (reversed, _) = run(&d, &[7, 6, 5, 4, 3, 2, 1, 0], &c, path);
            let img = |s: &Sampled, k: usize| s.x.index_axis(ndarray::Axis(0), k).to_owned();
            assert!(
                max_diff(img(&alone, 0).view(), img(&batch, 3).view()) <= 1e-5,
                "{spec}: alone vs batch"
            );
            assert!(
                max_diff(img(&alone, 0).view(), img(&reversed, 4).view()) <= 1e-5,
                "{spec}: alone vs reversed"
            );
            assert!((alone.residual[0] - batch.residual[3]).abs() <= 1e-5);
        }
    }

    #[test]
    fn unguided_ode_lands_on_the_gaussian_flow_solution() {
        // With m = 1 the probability-flow ODE of N(μ, s²) is x(σ) − μ ∝ √(s² + σ²), so
        // x(0) = μ + (σ_max·ε_0 − μ)·s/√(s² + σ_max²) pixel by pixel; where m = 0 the
        // denoiser returns μ and the flow ends exactly at μ.
        let (shape, count) = ([1, 16, 16], 16);
        let d = data("sr:1", shape, 0.75, count);
        let c = SamplerConfig {
            steps: 256,
            solver: Solver::Heun,
            zeta: 0.0,
            clip: Clip::None,
            ..Default::default()
        };
        let (out, _) = run(&d, &(0..count).collect::<Vec<_>>(), &c, GradientPath::Vjp);
        let scale = S / (S * S + 80.0f32 * 80.0).sqrt();
        let mut kept_values = vec![];
        for (b, x) in out.x.outer_iter().enumerate() {
            let mut eps = vec![0.0; 256];
            ImageRngs::new(SEED, &d.ids[b]).noise.fill_normal(&mut eps);
            for (k, (&xk, &e)) in x.iter().zip(&eps).enumerate() {
                let expect = if d.masks[b][[0, k / 16, k % 16]] == 1.0 {
                    MU + (80.0 * e - MU) * scale
                } else {
                    MU
                };
                assert!(
                    (xk - expect).abs() < 1e-3,
                    "image {b} pixel {k}: {xk} vs {expect}"
                );
                if d.masks[b][[0, k / 16, k % 16]] == 1.0 {
                    kept_values.push(xk as f64);
                }
            }
        }
        // And the samples are N(μ, s²): mean within 4 standard errors, std within 5%.
        let len = kept_values.len() as f64;
        let mean = kept_values.iter().sum::<f64>() / len;
        let std = (kept_values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / len).sqrt();
        assert!(
            (mean - MU as f64).abs() < 4.0 * S as f64 / len.sqrt(),
            "mean {mean}"
        );
        assert!((std / S as f64 - 1.0).abs() < 0.05, "std {std}");
    }

    #[test]
    fn guidance_reduces_the_measurement_residual() {
        let d = data("cs:16", [1, 8, 8], 1.0, 6);
        let all: Vec<usize> = (0..6).collect();
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        let (free, _) = run(
            &d,
            &all,
            &cfg(30, Solver::Heun, 0.0, 0.0),
            GradientPath::Dense,
        );
        let (guided, _) = run(
            &d,
            &all,
            &cfg(30, Solver::Heun, 0.3, 0.0),
            GradientPath::Dense,
        );
        let (r0, r1) = (mean(&free.residual), mean(&guided.residual));
        assert!(r1 < 0.5 * r0, "guided residual {r1} vs unguided {r0}");
    }

    #[test]
    fn nfe_and_evaluation_counts() {
        let d = data("cs:8", [1, 4, 4], 1.0, 2);
        let (out, den) = run(
            &d,
            &[0, 1],
            &cfg(7, Solver::Euler, 0.0, 0.0),
            GradientPath::Vjp,
        );
        assert_eq!((out.nfe, den.denoise_calls, den.vjp_calls), (7, 7, 0));
        let (out, den) = run(
            &d,
            &[0, 1],
            &cfg(7, Solver::Heun, 0.0, 0.0),
            GradientPath::Vjp,
        );
        assert_eq!((out.nfe, den.denoise_calls, den.vjp_calls), (13, 13, 0));
        let (out, den) = run(
            &d,
            &[0, 1],
            &cfg(7, Solver::Heun, 1.0, 0.0),
            GradientPath::Vjp,
        );
        assert_eq!((out.nfe, den.denoise_calls, den.vjp_calls), (13, 13, 13));
        let (out, den) = run(
            &d,
            &[0, 1],
            &cfg(7, Solver::Heun, 1.0, 0.0),
            GradientPath::Dense,
        );
        assert_eq!((out.nfe, den.denoise_calls, den.dense_calls), (13, 0, 13));
        let once = SamplerConfig {
            heun_guidance: HeunGuidance::Once,
            ..cfg(7, Solver::Heun, 1.0, 0.0)
        };
        let (out, den) = run(&d, &[0, 1], &once, GradientPath::Vjp);
        // 13 denoiser evaluations, of which only the 7 at x̂_i take a gradient.
        assert_eq!((out.nfe, den.denoise_calls, den.vjp_calls), (13, 13, 7));
        assert_eq!(cfg(7, Solver::Heun, 1.0, 0.0).nfe(), 13);
        assert_eq!(cfg(7, Solver::Euler, 1.0, 0.0).nfe(), 7);
    }

    #[test]
    fn recorded_noise_replays_the_same_trajectory() {
        // ε_0, then one ε_i per step with γ_i > 0 (all 6 here): Python parity tests
        // record exactly this sequence.
        let d = data("inpaint-box:2x3", [2, 4, 4], 0.9, 1);
        let c = cfg(6, Solver::Heun, 0.5, 3.0);
        let (live, _) = run(&d, &[0], &c, GradientPath::Vjp);
        let mut recorded = vec![0.0; 32 * 7];
        ImageRngs::new(SEED, &d.ids[0])
            .noise
            .fill_normal(&mut recorded);
        let mut fixed = FixedNoise::new(recorded);
        let mut tasks = [ImageTask {
            y: &d.ys[0],
            operator: d.ops[0].as_ref(),
            mask: d.masks[0].view(),
            noise: &mut fixed,
        }];
        let mut steps = vec![];
        let replay = ambient_dps(
            &mut GaussianDenoiser::new(d.shape, MU, S),
            &mut tasks,
            &c,
            GradientPath::Vjp,
            |s| steps.push(s.step),
        )
        .unwrap();
        assert_eq!(live.x, replay.x);
        assert_eq!(fixed.remaining(), 0);
        assert_eq!(steps, (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn churn_range_limits_noise_draws() {
        let d = data("sr:2", [1, 4, 4], 1.0, 1);
        // Churn only for σ ≤ 1: count how many ε_i the sampler asks for.
        let c = SamplerConfig {
            s_churn: 4.0,
            s_max: 1.0,
            steps: 10,
            ..Default::default()
        };
        let expected = 1 + edm_sigmas(10, 0.002, 80.0, 7.0)[..10]
            .iter()
            .filter(|&&s| s <= 1.0)
            .count();
        let mut fixed = FixedNoise::new(vec![0.1; 16 * expected]);
        let mut tasks = [ImageTask {
            y: &d.ys[0],
            operator: d.ops[0].as_ref(),
            mask: d.masks[0].view(),
            noise: &mut fixed,
        }];
        ambient_dps(
            &mut GaussianDenoiser::new(d.shape, MU, S),
            &mut tasks,
            &c,
            GradientPath::Vjp,
            |_| {},
        )
        .unwrap();
        assert_eq!(fixed.remaining(), 0);
    }

    /// Restores image 0 of `d` with the N(mu, 0.01²) model and the given clipping and ζ.
    fn clipped(d: &Data, mu: f32, clip: Clip, zeta: f64, path: GradientPath) -> Array4<f32> {
        let c = SamplerConfig {
            steps: 20,
            solver: Solver::Heun,
            zeta,
            clip,
            ..Default::default()
        };
        let mut noise = ImageRngs::new(SEED, "z").noise;
        let mut tasks = [ImageTask {
            y: &d.ys[0],
            operator: d.ops[0].as_ref(),
            mask: d.masks[0].view(),
            noise: &mut noise,
        }];
        let mut den = GaussianDenoiser::new(d.shape, mu, 0.01);
        ambient_dps(&mut den, &mut tasks, &c, path, |_| {})
            .unwrap()
            .x
    }

    #[test]
    fn clipping_acts_on_the_direction_only() {
        // μ = 3 lies outside [-1, 1]: unclipped the flow ends near 3, clipped near 1.
        let d = data("sr:1", [1, 4, 4], 1.0, 1);
        let go = |clip| clipped(&d, 3.0, clip, 0.0, GradientPath::Vjp);
        assert!(go(Clip::None).iter().all(|&v| (v - 3.0).abs() < 0.05));
        assert!(go(Clip::Direction).iter().all(|&v| (v - 1.0).abs() < 0.05));
        assert!(go(Clip::Residual).iter().all(|&v| (v - 1.0).abs() < 0.05));
    }

    #[test]
    fn residual_clipping_stops_the_gradient_at_clipped_pixels() {
        // x0 ≈ 3 everywhere, so every pixel is clipped: with Clip::Residual the guidance
        // is exactly 0 and ζ changes nothing; clipped in the direction only, it moves x.
        let d = data("cs:8", [1, 4, 4], 1.0, 1);
        for path in [GradientPath::Dense, GradientPath::Vjp] {
            let free = clipped(&d, 3.0, Clip::Residual, 0.0, path);
            assert_eq!(
                clipped(&d, 3.0, Clip::Residual, 5.0, path),
                free,
                "{path:?}"
            );
            let moved = max_diff(
                clipped(&d, 3.0, Clip::Direction, 5.0, path).index_axis(ndarray::Axis(0), 0),
                free.index_axis(ndarray::Axis(0), 0),
            );
            assert!(moved > 1e-3, "{path:?}: guidance moved x by {moved}");
        }
        // Inside [-1, 1] nothing is clipped: Residual and Direction give one trajectory.
        let inside = |clip| clipped(&d, 0.2, clip, 0.5, GradientPath::Dense);
        let diff = max_diff(
            inside(Clip::Residual).index_axis(ndarray::Axis(0), 0),
            inside(Clip::Direction).index_axis(ndarray::Axis(0), 0),
        );
        assert!(diff <= 1e-5, "unclipped trajectories differ by {diff}");
    }

    #[test]
    fn residual_clipping_keeps_images_independent() {
        let d = data("cs:16", [1, 8, 8], 0.7, 6);
        let c = SamplerConfig {
            clip: Clip::Residual,
            ..cfg(8, Solver::Heun, 0.7, 10.0)
        };
        let (alone, _) = run(&d, &[4], &c, GradientPath::Dense);
        let (batch, _) = run(&d, &[0, 1, 2, 3, 4, 5], &c, GradientPath::Dense);
        let diff = max_diff(
            alone.x.index_axis(ndarray::Axis(0), 0),
            batch.x.index_axis(ndarray::Axis(0), 4),
        );
        assert!(diff <= 1e-5, "alone vs batch: {diff}");
    }

    #[test]
    fn heun_guidance_once_is_the_unguided_heun_step_minus_one_guidance_step() {
        // With ζ = 0 both conventions are the plain Heun step; with ζ > 0 they differ,
        // both reduce the residual, and each keeps images independent of their batch.
        let d = data("cs:16", [1, 8, 8], 1.0, 4);
        let all = [0, 1, 2, 3];
        let with = |g, zeta| SamplerConfig {
            heun_guidance: g,
            ..cfg(12, Solver::Heun, zeta, 0.0)
        };
        let (a, _) = run(
            &d,
            &all,
            &with(HeunGuidance::Averaged, 0.0),
            GradientPath::Dense,
        );
        let (o, _) = run(
            &d,
            &all,
            &with(HeunGuidance::Once, 0.0),
            GradientPath::Dense,
        );
        assert_eq!(a.x, o.x);
        let (a, _) = run(
            &d,
            &all,
            &with(HeunGuidance::Averaged, 0.3),
            GradientPath::Dense,
        );
        let (o, _) = run(
            &d,
            &all,
            &with(HeunGuidance::Once, 0.3),
            GradientPath::Dense,
        );
        let diff = max_diff(
            a.x.index_axis(ndarray::Axis(0), 0),
            o.x.index_axis(ndarray::Axis(0), 0),
        );
        assert!(diff > 1e-4, "the conventions agree to {diff}");
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        assert!(mean(&o.residual) < 0.5 * mean(&free_residual(&d, &all)));
        let (alone, _) = run(&d, &[2], &with(HeunGuidance::Once, 0.3), GradientPath::Vjp);
        let (batch, _) = run(&d, &all, &with(HeunGuidance::Once, 0.3), GradientPath::Vjp);
        let diff = max_diff(
            alone.x.index_axis(ndarray::Axis(0), 0),
            batch.x.index_axis(ndarray::Axis(0), 2),
        );
        assert!(diff <= 1e-5, "alone vs batch: {diff}");
    }

    fn free_residual(d: &Data, which: &[usize]) -> Vec<f32> {
        run(
            d,
            which,
            &cfg(12, Solver::Heun, 0.0, 0.0),
            GradientPath::Dense,
        )
        .0
        .residual
    }

    #[test]
    fn names_are_lowercase_everywhere() {
        use clap::ValueEnum;
        for (solver, name) in [(Solver::Euler, "euler"), (Solver::Heun, "heun")] {
            assert_eq!(solver.to_string(), name);
            assert_eq!(Solver::from_str(name, false), Ok(solver));
            assert_eq!(
                serde_json::to_string(&solver).unwrap(),
                format!("\"{name}\"")
            );
        }
        for (g, name) in [
            (HeunGuidance::Averaged, "averaged"),
            (HeunGuidance::Once, "once"),
        ] {
            assert_eq!(HeunGuidance::from_str(name, false), Ok(g));
            assert_eq!(serde_json::to_string(&g).unwrap(), format!("\"{name}\""));
        }
        for (clip, name) in [
            (Clip::None, "none"),
            (Clip::Direction, "direction"),
            (Clip::Residual, "residual"),
        ] {
            assert_eq!(Clip::from_str(name, false), Ok(clip));
            assert_eq!(clip.as_str(), name);
            assert_eq!(
                serde_json::from_str::<Clip>(&format!("\"{name}\"")).unwrap(),
                clip
            );
        }
        assert_eq!(
            serde_json::from_str::<Clip>("true").unwrap(),
            Clip::Direction
        );
        assert_eq!(serde_json::from_str::<Clip>("false").unwrap(), Clip::None);
        let err = serde_json::from_str::<Clip>("\"static\"").unwrap_err();
        assert!(err.to_string().contains("expected none"), "{err}");
        // In every run's settings hash: these names must never change.
        assert_eq!(MaskMode::default(), MaskMode::Model);
        for (mask, name) in [(MaskMode::Model, "model"), (MaskMode::Ones, "ones")] {
            assert_eq!((mask.as_str(), mask.to_string()), (name, name.to_string()));
            assert_eq!(MaskMode::from_str(name, false), Ok(mask));
            assert_eq!(serde_json::to_value(mask).unwrap(), serde_json::json!(name));
            assert_eq!(
                serde_json::from_value::<MaskMode>(serde_json::json!(name)).unwrap(),
                mask
            );
        }
        assert_eq!(MaskMode::Model.keep_probability(0.4), 0.4);
        assert_eq!(MaskMode::Ones.keep_probability(0.4), 1.0);
    }

    #[test]
    fn refuses_inconsistent_batches_and_settings() {
        let d = data("inpaint-random:0.5", [1, 4, 4], 1.0, 2);
        let err = |which: &[usize], c: &SamplerConfig, path| {
            let mut noises: Vec<_> = which
                .iter()
                .map(|&i| ImageRngs::new(SEED, &d.ids[i]).noise)
                .collect();
            let mut tasks: Vec<ImageTask> = which
                .iter()
                .zip(noises.iter_mut())
                .map(|(&i, noise)| ImageTask {
                    y: &d.ys[i][1..],
                    operator: d.ops[i].as_ref(),
                    mask: d.masks[i].view(),
                    noise,
                })
                .collect();
            if which.len() == 2 {
                tasks[1].y = &d.ys[1]; // only image 0 is malformed
                tasks[0].y = &d.ys[0];
            }
            let mut den = GaussianDenoiser::new(d.shape, MU, S);
            format!(
                "{:#}",
                ambient_dps(&mut den, &mut tasks, c, path, |_| {}).unwrap_err()
            )
        };
        assert!(
            err(&[0], &cfg(3, Solver::Heun, 1.0, 0.0), GradientPath::Vjp)
                .contains("image 0 of the batch: y has 15 values")
        );
        assert!(err(
            &[0, 1],
            &cfg(3, Solver::Heun, 1.0, 0.0),
            GradientPath::Dense
        )
        .contains("one operator shared"));
        let bad = SamplerConfig {
            steps: 0,
            zeta: -1.0,
            ..Default::default()
        };
        let msg = err(&[0, 1], &bad, GradientPath::Vjp);
        assert!(msg.contains("steps = 0") && msg.contains("ζ = -1"), "{msg}");
    }

    #[test]
    fn sampling_masks() {
        let mut rng = ImageRngs::new(0, "m").sampling_mask;
        assert!(sampling_mask([3, 8, 8], 1.0, &mut rng)
            .iter()
            .all(|&v| v == 1.0));
        let keep = keep_probability(0.4, 0.1);
        assert!((keep - 0.54).abs() < 1e-12);
        let m = sampling_mask([3, 64, 64], keep, &mut rng);
        let frac = m.iter().sum::<f32>() as f64 / m.len() as f64;
        assert!((frac - keep).abs() < 0.03, "kept fraction {frac}");
        assert_eq!(
            m.index_axis(ndarray::Axis(0), 0),
            m.index_axis(ndarray::Axis(0), 2)
        );
        let again = sampling_mask([3, 64, 64], keep, &mut ImageRngs::new(0, "m").sampling_mask);
        let first = sampling_mask([3, 64, 64], keep, &mut ImageRngs::new(0, "m").sampling_mask);
        assert_eq!(again, first);
    }

    #[test]
    fn clamping_to_the_model_range() {
        let c = SamplerConfig::default().clamped_to_model(0.01, 40.0);
        assert_eq!((c.sigma_min, c.sigma_max), (0.01, 40.0));
    }
}
