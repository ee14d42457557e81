//! The DPS guidance gradient g = ∇_x ‖y − A D(x, σ, m)‖, per image (spec §1, §2).
//!
//! Two ways to get it from a [`Denoiser`]:
//! - [`GradientPath::Dense`]: every image shares one dense A; the fused `dps_dense`
//!   graph returns x0, ‖r‖² and ∇‖r‖² in one evaluation, and ∇‖r‖ = ∇‖r‖² / (2‖r‖).
//! - [`GradientPath::Vjp`]: any operator; `denoise` gives x0, Rust forms
//!   c = −Aᵀr/‖r‖ with the operator's adjoint, and `vjp` returns Jᵀc = ∇‖r‖.
//!
//! ‖r‖ is taken per image (the official codes take it over the batch, coupling images).
//! With [`EvalOptions::clip_residual`] x0 is clipped to [-1, 1] before the residual and
//! the gradient flows only through unclipped pixels (the official code's static
//! clipping); the fused dense graph cannot clip, so that always takes the vjp path.

use anyhow::{ensure, Context};
use ndarray::{Array1, Array2, Array4, ArrayView4};

use super::denoiser::Denoiser;
use super::operators::{LinearOperator, OperatorFamily};

/// The most entries (M·C·H·W) a structured shared operator's matrix may have for a run to
/// build it and take the [`GradientPath::Dense`] graph (`OperatorFamily::densified`):
/// 4 Mi f32 = 16 MiB, read by every call of the graph; its two products cost
/// 2·M·C·H·W FLOPs per image (8 M at the limit), little beside the network's convolutions
/// (337 M per image and evaluation for the 32×32 models).
pub const DENSE_MAX_ENTRIES: usize = 1 << 22;

/// How the guidance gradient is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradientPath {
    /// The fused dense graph; needs one dense A shared by the batch.
    Dense,
    /// denoise + vector-Jacobian product; works for every operator.
    Vjp,
}

impl GradientPath {
    /// Dense when the family is one shared operator with a dense matrix (`cs`), else Vjp.
    pub fn auto(family: &OperatorFamily) -> Self {
        if Self::dense_possible(family) {
            Self::Dense
        } else {
            Self::Vjp
        }
    }

    /// Whether the family is one shared operator with a dense matrix.
    fn dense_possible(family: &OperatorFamily) -> bool {
        family
            .shared()
            .is_some_and(|op| op.dense_matrix().is_some())
    }
}

/// Which gradient path a run asks for: one type for the run spec
/// (`sampler.gradient = "auto"`) and the CLI (`--gradient auto`); resolved per run into a
/// [`GradientPath`] by [`GradientMode::resolve`].
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum GradientMode {
    /// `dense` where every image shares one operator with a dense matrix (cs:M, matrix:URL,
    /// and sr, sr-bicubic, blur-gauss, blur-kernel whose matrix has at most
    /// `DENSE_MAX_ENTRIES` entries) and x0 is not clipped before the residual, else `vjp`.
    #[default]
    Auto,
    /// The fused dps_dense.onnx graph: one evaluation per step; needs one operator shared
    /// by every image, with a dense matrix or small enough to build one, and a clip other
    /// than `residual` (the graph takes the unclipped x0).
    Dense,
    /// dps_vjp.onnx with the operator's adjoint in Rust: works for every operator.
    Vjp,
}

impl GradientMode {
    /// The lowercase name used in specs and settings hashes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Dense => "dense",
            Self::Vjp => "vjp",
        }
    }

    /// The path for `family`; None when `dense` is asked for an operator that is not one
    /// shared dense matrix.
    pub fn resolve(self, family: &OperatorFamily) -> Option<GradientPath> {
        match self {
            Self::Auto => Some(GradientPath::auto(family)),
            Self::Dense => GradientPath::dense_possible(family).then_some(GradientPath::Dense),
            Self::Vjp => Some(GradientPath::Vjp),
        }
    }
}

impl std::fmt::Display for GradientMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One image's measurement: y (length M) and its operator.
#[derive(Debug, Clone, Copy)]
pub struct Measured<'a> {
    /// The measurements.
    pub y: &'a [f32],
    /// The operator that produced them.
    pub op: &'a dyn LinearOperator,
}

/// One denoiser evaluation with guidance.
#[derive(Debug, Clone)]
pub struct Guided {
    /// x0 = D(x, σ, m), [B, C, H, W].
    pub x0: Array4<f32>,
    /// g = ∇_x ‖y − A x0‖ per image (zeros when not asked for, or when ‖r‖ = 0).
    pub grad: Array4<f32>,
    /// ‖y − A x0‖ per image.
    pub residual: Vec<f32>,
}

/// What an evaluation computes besides x0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EvalOptions {
    /// The guidance gradient (with ζ = 0 it is never used, so only `denoise` runs).
    pub grad: bool,
    /// Clip x0 to [-1, 1] before the residual: r = y − A·clip(x0), ∇‖r‖ through the
    /// unclipped pixels only, and the returned x0 clipped. Takes the vjp path.
    pub clip_residual: bool,
}

/// Evaluate D at (x, σ) for the batch, with the guidance gradient when `opts.grad`.
pub fn evaluate(
    den: &mut dyn Denoiser,
    x: ArrayView4<f32>,
    sigma: f64,
    mask: ArrayView4<f32>,
    meas: &[Measured],
    path: GradientPath,
    opts: EvalOptions,
) -> anyhow::Result<Guided> {
    let b = x.shape()[0];
    let sigma = Array1::from_elem(b, sigma as f32);
    if opts.grad && path == GradientPath::Dense && !opts.clip_residual {
        let a = shared_dense(meas)?;
        let m = a.nrows();
        let y = Array2::from_shape_fn((b, m), |(i, k)| meas[i].y[k]);
        let out = den
            .dense(x, sigma.view(), mask, y.view(), a)
            .context("dps_dense")?;
        let residual: Vec<f32> = out
            .residual_sq
            .iter()
            .map(|&r2| r2.max(0.0).sqrt())
            .collect();
        let mut grad = out.grad;
        for (mut g, &r) in grad.outer_iter_mut().zip(&residual) {
            // ∇‖r‖ = ∇‖r‖² / (2‖r‖); at ‖r‖ = 0 the norm is not differentiable and g = 0.
            let s = if r > 0.0 { 0.5 / r } else { 0.0 };
            g.mapv_inplace(|v| v * s);
        }
        return Ok(Guided {
            x0: out.x0_hat,
            grad,
            residual,
        });
    }

    if !opts.grad {
        let mut x0 = standard(den.denoise(x, sigma.view(), mask).context("denoiser")?);
        if opts.clip_residual {
            x0.mapv_inplace(|v| v.clamp(-1.0, 1.0));
        }
        let (residual, _) = residual_and_cotangent(&x0, meas);
        return Ok(Guided {
            grad: Array4::zeros(x0.raw_dim()),
            x0,
            residual,
        });
    }
    // The cotangent of each model call's rows from their x0 (the model may run the
    // forward and the backward as one evaluation around it, `Denoiser::vjp_of`).
    let mut residual = vec![0.0; b];
    let mut cotangent_of = |first: usize, x0: ArrayView4<f32>| -> anyhow::Result<Array4<f32>> {
        let rows = first..first + x0.dim().0;
        ensure!(
            rows.end <= meas.len(),
            "the model returned rows {rows:?} for a batch of {}",
            meas.len()
        );
        let mut x0 = x0.as_standard_layout().into_owned();
        let inside = opts
            .clip_residual
            .then(|| x0.mapv(|v| if v.abs() <= 1.0 { 1.0f32 } else { 0.0 }));
        if opts.clip_residual {
            x0.mapv_inplace(|v| v.clamp(-1.0, 1.0));
        }
        let (r, mut cotangent) = residual_and_cotangent(&x0, &meas[rows.clone()]);
        residual[rows].copy_from_slice(&r);
        if let Some(inside) = &inside {
            cotangent *= inside;
        }
        Ok(cotangent)
    };
    let (x0, grad) = den
        .vjp_of(x, sigma.view(), mask, &mut cotangent_of)
        .context("dps_vjp")?;
    let mut x0 = standard(x0);
    if opts.clip_residual {
        x0.mapv_inplace(|v| v.clamp(-1.0, 1.0));
    }
    Ok(Guided { x0, grad, residual })
}

fn residual_and_cotangent(x0: &Array4<f32>, meas: &[Measured]) -> (Vec<f32>, Array4<f32>) {
    let mut cotangent = Array4::zeros(x0.raw_dim());
    let mut residual = Vec::with_capacity(meas.len());
    for ((x0, mut c), m) in x0.outer_iter().zip(cotangent.outer_iter_mut()).zip(meas) {
        let mut r = vec![0.0; m.op.measurements()];
        m.op.forward(x0.as_slice().expect("standard layout"), &mut r);
        r.iter_mut().zip(m.y).for_each(|(r, &y)| *r = y - *r);
        let norm = r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt() as f32;
        if norm > 0.0 {
            let c = c.as_slice_mut().expect("fresh array");
            m.op.adjoint(&r, c);
            c.iter_mut().for_each(|v| *v *= -1.0 / norm);
        }
        residual.push(norm);
    }
    (residual, cotangent)
}

/// The dense matrix every image shares, or an error saying why the Dense path cannot run.
fn shared_dense<'a>(meas: &[Measured<'a>]) -> anyhow::Result<ndarray::ArrayView2<'a, f32>> {
    ensure!(!meas.is_empty(), "empty batch");
    let first = meas[0].op;
    ensure!(
        meas.iter()
            .all(|m| std::ptr::addr_eq(m.op as *const dyn LinearOperator, first as *const _)),
        "the dense gradient path needs one operator shared by the whole batch"
    );
    first
        .dense_matrix()
        .context("the dense gradient path needs an operator with a dense matrix (cs:M)")
}

fn standard(a: Array4<f32>) -> Array4<f32> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::gaussian::GaussianDenoiser;
    use crate::restore::operators::test_util::randn;
    use crate::restore::operators::{residual_norm, OperatorSpec};
    use crate::restore::rng::ImageRngs;

    const SHAPE: [usize; 3] = [1, 6, 6];
    const GRAD: EvalOptions = EvalOptions {
        grad: true,
        clip_residual: false,
    };

    #[test]
    fn auto_picks_dense_only_for_a_shared_dense_matrix() {
        let path =
            |s: &str| GradientPath::auto(&OperatorSpec::parse(s).unwrap().build(SHAPE, 0).unwrap());
        assert_eq!(path("cs:10"), GradientPath::Dense);
        assert_eq!(path("sr:2"), GradientPath::Vjp);
        assert_eq!(path("blur-gauss:1"), GradientPath::Vjp);
        assert_eq!(path("inpaint-random:0.5"), GradientPath::Vjp);
    }

    #[test]
    fn gradient_modes_resolve_and_keep_their_names() {
        use clap::ValueEnum;
        let family = |s: &str| OperatorSpec::parse(s).unwrap().build(SHAPE, 0).unwrap();
        let (cs, sr) = (family("cs:10"), family("sr:2"));
        assert_eq!(GradientMode::default(), GradientMode::Auto);
        assert_eq!(GradientMode::Auto.resolve(&cs), Some(GradientPath::Dense));
        assert_eq!(GradientMode::Auto.resolve(&sr), Some(GradientPath::Vjp));
        assert_eq!(GradientMode::Dense.resolve(&cs), Some(GradientPath::Dense));
        assert_eq!(GradientMode::Dense.resolve(&sr), None);
        assert_eq!(GradientMode::Vjp.resolve(&cs), Some(GradientPath::Vjp));
        // These names are in every run's settings hash: they must never change.
        for (mode, name) in [
            (GradientMode::Auto, "auto"),
            (GradientMode::Dense, "dense"),
            (GradientMode::Vjp, "vjp"),
        ] {
            assert_eq!((mode.as_str(), mode.to_string()), (name, name.to_string()));
            assert_eq!(GradientMode::from_str(name, false), Ok(mode));
            assert_eq!(serde_json::to_value(mode).unwrap(), serde_json::json!(name));
            assert_eq!(
                serde_json::from_value::<GradientMode>(serde_json::json!(name)).unwrap(),
                mode
            );
        }
    }

    #[test]
    fn vjp_gradient_matches_finite_differences_of_the_residual_norm() {
        for spec in ["blur-gauss:1", "sr:2", "inpaint-box:2x3", "cs:12"] {
            let fam = OperatorSpec::parse(spec).unwrap().build(SHAPE, 0).unwrap();
            let op = fam.for_image(&mut ImageRngs::new(0, "a").operator);
            let y: Vec<f32> = randn(op.measurements(), 1);
            let x = Array4::from_shape_vec((1, 1, 6, 6), randn(36, 2)).unwrap();
            let mask =
                Array4::from_shape_fn(
                    (1, 1, 6, 6),
                    |(_, _, i, j)| if (i + j) % 5 == 0 { 0.0 } else { 1.0 },
                );
            let mut den = GaussianDenoiser::new([1, 6, 6], 0.1, 0.6);
            let sigma = 0.7;
            let meas = [Measured {
                y: &y,
                op: op.as_ref(),
            }];
            let g = evaluate(
                &mut den,
                x.view(),
                sigma,
                mask.view(),
                &meas,
                GradientPath::Vjp,
                GRAD,
            )
            .unwrap();
            // Central differences of ‖y − A D(x)‖ in f64-ish precision (h small vs curvature).
            let norm_at = |x: &Array4<f32>, den: &mut GaussianDenoiser| {
                let s = ndarray::Array1::from_elem(1, sigma as f32);
                let x0 = den.denoise(x.view(), s.view(), mask.view()).unwrap();
                residual_norm(op.as_ref(), x0.as_slice().unwrap(), &y) as f64
            };
            let h = 1e-2;
            for k in [0, 7, 20, 35] {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp.as_slice_mut().unwrap()[k] += h;
                xm.as_slice_mut().unwrap()[k] -= h;
                let fd = (norm_at(&xp, &mut den) - norm_at(&xm, &mut den)) / (2.0 * h as f64);
                let an = g.grad.as_slice().unwrap()[k] as f64;
                assert!(
                    (fd - an).abs() < 1e-3 * (1.0 + fd.abs()),
                    "{spec} pixel {k}: fd {fd} vs vjp {an}"
                );
            }
        }
    }

    #[test]
    fn zero_residual_gives_zero_gradient_on_both_paths() {
        // m = 0 makes x0 = μ = 0 exactly, so r = y − A·0 = 0 exactly; ∇‖r‖ is undefined
        // there and both paths must return 0, not NaN.
        let fam = OperatorSpec::parse("cs:8")
            .unwrap()
            .build(SHAPE, 0)
            .unwrap();
        let op = fam.shared().unwrap().as_ref();
        let x = Array4::from_shape_vec((1, 1, 6, 6), randn(36, 3)).unwrap();
        let mask = Array4::zeros((1, 1, 6, 6));
        let mut den = GaussianDenoiser::new([1, 6, 6], 0.0, 1.0);
        let y = vec![0.0; 8];
        let meas = [Measured { y: &y, op }];
        for path in [GradientPath::Dense, GradientPath::Vjp] {
            let g = evaluate(&mut den, x.view(), 0.5, mask.view(), &meas, path, GRAD).unwrap();
            assert_eq!(g.residual[0], 0.0, "{path:?}");
            assert!(g.grad.iter().all(|&v| v == 0.0), "{path:?}");
        }
    }
}
