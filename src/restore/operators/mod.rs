//! Forward operators `A_inf` of spec §1, each with its adjoint.
//!
//! Images are flat C-order slices of one `[C, H, W]` image, n = C·H·W entries in
//! [-1, 1]; measurements are flat slices of length M. [`spec`] parses and validates an
//! operator string and builds the run's [`OperatorFamily`]; the other modules hold one
//! operator each. Operators whose parameters come from files (`matrix`, `blur-kernel`,
//! `fourier`) receive them decoded ([`file::FileArray`]); fetching and decoding is the
//! plan's. Measurement noise and the residual ‖y − A x‖ live here because every
//! operator shares them.

pub mod blur;
pub mod blur_kernel;
pub mod cs;
pub mod file;
pub mod fourier;
pub mod inpaint;
pub mod matrix;
pub mod spec;
pub mod sr;
pub mod sr_bicubic;

pub use file::{FileArray, FileType};
pub use spec::{OperatorError, OperatorFamily, OperatorSpec, RecordMask};

use ndarray::ArrayView2;
use rand::RngCore;

/// A linear map `A: R^n → R^M` on one image, with its adjoint.
///
/// `Send + Sync` so one operator can be shared by every image and worker of a run.
pub trait LinearOperator: Send + Sync + std::fmt::Debug {
    /// n = C·H·W, the length of `x`.
    fn input_len(&self) -> usize;

    /// M, the length of `y`.
    fn measurements(&self) -> usize;

    /// `y = A x` (overwrites `y`; `x.len() == n`, `y.len() == M`).
    fn forward(&self, x: &[f32], y: &mut [f32]);

    /// `x = Aᵀ y` (overwrites `x`).
    fn adjoint(&self, y: &[f32], x: &mut [f32]);

    /// `A` as a dense `[M, n]` matrix when the operator is one (`cs`, `matrix`), for the fused
    /// `dps_dense` graph; `None` for the structured operators, which use the VJP path.
    fn dense_matrix(&self) -> Option<ArrayView2<'_, f32>> {
        None
    }

    /// Zero the entries of a noise vector that fall on structural zeros of `y`.
    ///
    /// Inpainting stores y full-size with erased pixels 0; noise there would be a
    /// measurement of nothing. The default (every entry is measured) does nothing.
    fn mask_noise(&self, _noise: &mut [f32]) {}
}

/// `A x` as a new vector.
pub fn apply(op: &dyn LinearOperator, x: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; op.measurements()];
    op.forward(x, &mut y);
    y
}

/// The measurement residual ‖y − A x‖ (accumulated in f64).
pub fn residual_norm(op: &dyn LinearOperator, x: &[f32], y: &[f32]) -> f32 {
    let ax = apply(op, x);
    y.iter()
        .zip(&ax)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum::<f64>()
        .sqrt() as f32
}

/// The minimum-norm least-squares solution `x = A⁺ y`, matrix-free (CGLS from zero:
/// conjugate gradients on AᵀA x = Aᵀy stay in the range of Aᵀ, so they converge to the
/// minimum-norm solution), for every operator: the plain baseline a restoration must beat
/// — A⁺y is the pseudo-inverse for `cs`/`matrix`, nearest-neighbour upsampling for box
/// `sr` and the zero-filled image for inpainting; for `fourier` of a real image it is
/// the zero-filled inverse DFT only where the mask is conjugate-symmetric (otherwise
/// Re(Fᴴ·) is no pseudo-inverse, and CGLS finds the true one). Stops after `max_iter`
/// steps or when ‖Aᵀr‖ falls below 1e-6 of its start.
pub fn least_squares(op: &dyn LinearOperator, y: &[f32], max_iter: usize) -> Vec<f32> {
    let n = op.input_len();
    let mut x = vec![0.0f64; n];
    let mut r: Vec<f32> = y.to_vec();
    let mut s = vec![0.0f32; n];
    op.adjoint(&r, &mut s);
    let mut p: Vec<f64> = s.iter().map(|&v| f64::from(v)).collect();
    let norm2 = |v: &[f32]| v.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>();
    let mut gamma = norm2(&s);
    let stop = gamma * 1e-12;
    let mut q = vec![0.0f32; op.measurements()];
    for _ in 0..max_iter {
        if gamma <= stop || gamma == 0.0 {
            break;
        }
        let p32: Vec<f32> = p.iter().map(|&v| v as f32).collect();
        op.forward(&p32, &mut q);
        let qq = norm2(&q);
        if qq == 0.0 {
            break;
        }
        let alpha = gamma / qq;
        x.iter_mut().zip(&p).for_each(|(x, p)| *x += alpha * p);
        r.iter_mut()
            .zip(&q)
            .for_each(|(r, q)| *r = (f64::from(*r) - alpha * f64::from(*q)) as f32);
        op.adjoint(&r, &mut s);
        let next = norm2(&s);
        let beta = next / gamma;
        p.iter_mut()
            .zip(&s)
            .for_each(|(p, s)| *p = f64::from(*s) + beta * *p);
        gamma = next;
    }
    x.into_iter().map(|v| v as f32).collect()
}

/// Simulated measurements `y = A x0 + σ_y·n`, n ~ N(0, I) from the image's measurement
/// stream (`ImageRngs::measurement`). Nothing is drawn when `σ_y = 0`.
pub fn simulate_measurement<R: RngCore + ?Sized>(
    op: &dyn LinearOperator,
    x0: &[f32],
    sigma_y: f32,
    rng: &mut R,
) -> Vec<f32> {
    let mut y = apply(op, x0);
    if sigma_y > 0.0 {
        let mut n = vec![0.0; y.len()];
        crate::restore::rng::fill_standard_normal(rng, &mut n);
        op.mask_noise(&mut n);
        y.iter_mut().zip(&n).for_each(|(y, n)| *y += sigma_y * n);
    }
    y
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::LinearOperator;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    pub fn randn(len: usize, seed: u64) -> Vec<f32> {
        let mut v = vec![0.0; len];
        crate::restore::rng::fill_standard_normal(&mut ChaCha20Rng::seed_from_u64(seed), &mut v);
        v
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&a, &b)| a as f64 * b as f64).sum()
    }

    /// `<A x, y> = <x, Aᵀ y>` on random x, y, to 1e-5 relative.
    pub fn assert_adjoint(op: &dyn LinearOperator) {
        for seed in 0..3 {
            let x = randn(op.input_len(), 100 + seed);
            let y = randn(op.measurements(), 200 + seed);
            let mut ax = vec![0.0; op.measurements()];
            op.forward(&x, &mut ax);
            let mut aty = vec![0.0; op.input_len()];
            op.adjoint(&y, &mut aty);
            let (lhs, rhs) = (dot(&ax, &y), dot(&x, &aty));
            let scale = lhs.abs().max(rhs.abs()).max(1e-12);
            assert!(
                (lhs - rhs).abs() / scale < 1e-5,
                "{op:?}: <Ax,y> = {lhs}, <x,Aᵀy> = {rhs}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::rng::{ImageRngs, RunStream};

    #[test]
    fn simulated_noise_is_deterministic_and_masked() {
        let op = inpaint::PixelMask::new([1, 2, 2], vec![true, false, true, true]);
        let x0 = [0.5, 0.5, -0.5, 0.0];
        let y0 = simulate_measurement(&op, &x0, 0.0, &mut ImageRngs::new(1, "a").measurement);
        assert_eq!(y0, vec![0.5, 0.0, -0.5, 0.0]);
        let y1 = simulate_measurement(&op, &x0, 0.1, &mut ImageRngs::new(1, "a").measurement);
        let y2 = simulate_measurement(&op, &x0, 0.1, &mut ImageRngs::new(1, "a").measurement);
        assert_eq!(y1, y2);
        assert_eq!(
            y1[1], 0.0,
            "an erased pixel measures nothing, noise included"
        );
        assert!(y1.iter().zip(&y0).any(|(a, b)| a != b));
    }

    #[test]
    fn residual_norm_of_exact_measurement_is_zero() {
        let op = cs::gaussian(
            8,
            32,
            &mut crate::restore::rng::run_rng(1, RunStream::CsMatrix),
        );
        let x = test_util::randn(32, 5);
        let y = apply(&op, &x);
        assert_eq!(residual_norm(&op, &x, &y), 0.0);
        let shifted: Vec<f32> = y.iter().map(|v| v + 1.0).collect();
        assert!((residual_norm(&op, &x, &shifted) - 8f32.sqrt()).abs() < 1e-5);
    }

    #[test]
    fn least_squares_is_the_pseudo_inverse_and_each_operators_plain_baseline() {
        // cs: the minimum-norm solution of the Cholesky solver.
        let a = cs::gaussian(
            12,
            48,
            &mut crate::restore::rng::run_rng(3, RunStream::CsMatrix),
        );
        let y = apply(&a, &test_util::randn(48, 7));
        let exact = cs::MinNormSolver::new(a.dense_matrix().unwrap())
            .unwrap()
            .solve(&y);
        let cgls = least_squares(&a, &y, 200);
        let err = exact
            .iter()
            .zip(&cgls)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-4, "max |Δ| {err}");
        // Box super-resolution: nearest-neighbour upsampling of the low-resolution image.
        let pool = sr::AvgPool::new([1, 8, 8], 2);
        let low = apply(&pool, &test_util::randn(64, 9));
        let up = least_squares(&pool, &low, 50);
        let nearest = sr::nearest_upsample(&low, [1, 8, 8], 2);
        let err = up
            .iter()
            .zip(&nearest)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-5, "max |Δ| {err}");
        // Inpainting: the zero-filled image.
        let mask = inpaint::PixelMask::new([1, 2, 2], vec![true, false, true, true]);
        let y = apply(&mask, &[0.5, 0.5, -0.5, 0.25]);
        let x = least_squares(&mask, &y, 10);
        assert!(x
            .iter()
            .zip([0.5, 0.0, -0.5, 0.25])
            .all(|(a, b)| (a - b).abs() < 1e-6));
    }
}
