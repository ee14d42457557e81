//! Per-image quality metrics on the [0, 1] scale (spec §1): MSE, PSNR, SSIM, and the
//! measurement residual.
//!
//! Images arrive in the model's [-1, 1] and are mapped by (x + 1)/2 and clipped to
//! [0, 1], the values a stored PNG holds, so a metric never credits an out-of-range
//! pixel the file cannot show. Sums are in f64.

use super::operators::{residual_norm, LinearOperator};

/// SSIM window: Gaussian σ = 1.5 truncated at 3.5σ, i.e. 11 taps (skimage/scipy's choice).
const SSIM_SIGMA: f64 = 1.5;
const SSIM_RADIUS: usize = 5;
/// SSIM stabilisers K1, K2 of Wang et al. 2004, with data range L = 1.
const SSIM_C1: f64 = 0.01 * 0.01;
const SSIM_C2: f64 = 0.03 * 0.03;

/// A [-1, 1] value on the [0, 1] scale, clipped.
pub fn to_unit(x: f32) -> f64 {
    ((x as f64 + 1.0) / 2.0).clamp(0.0, 1.0)
}

/// Mean squared error on the [0, 1] scale of two [-1, 1] images of equal length.
pub fn mse(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "images of different sizes");
    a.iter()
        .zip(b)
        .map(|(&a, &b)| (to_unit(a) - to_unit(b)).powi(2))
        .sum::<f64>()
        / a.len() as f64
}

/// PSNR in dB with peak 1: 10·log10(1/MSE). Identical images give `f64::INFINITY`
/// (the true value; callers aggregating PSNR should count or drop infinities); a NaN MSE
/// (a restoration that diverged) gives NaN, never a perfect score.
pub fn psnr_from_mse(mse: f64) -> f64 {
    if mse.is_nan() {
        f64::NAN
    } else if mse > 0.0 {
        -10.0 * mse.log10()
    } else {
        f64::INFINITY
    }
}

/// PSNR of two [-1, 1] images (see [`psnr_from_mse`]).
pub fn psnr(a: &[f32], b: &[f32]) -> f64 {
    psnr_from_mse(mse(a, b))
}

/// SSIM (Wang et al. 2004) of two [-1, 1] images of shape `[C, H, W]`, mean over channels.
///
/// Matches `skimage.metrics.structural_similarity(a, b, data_range=1,
/// gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=0)`:
/// an 11×11 Gaussian window, K1 = 0.01, K2 = 0.03, the SSIM map averaged over the
/// "valid" windows only (skimage filters then crops 5 pixels per side, which leaves
/// exactly the windows inside the image). `None` when H or W is below 11.
pub fn ssim(a: &[f32], b: &[f32], shape: [usize; 3]) -> Option<f64> {
    let [c, h, w] = shape;
    assert!(
        a.len() == c * h * w && b.len() == a.len(),
        "images do not have shape {shape:?}"
    );
    if h < 2 * SSIM_RADIUS + 1 || w < 2 * SSIM_RADIUS + 1 {
        return None;
    }
    let g = window();
    let total: f64 = (0..c)
        .map(|ci| {
            let px = |img: &[f32]| {
                img[ci * h * w..(ci + 1) * h * w]
                    .iter()
                    .map(|&v| to_unit(v))
                    .collect::<Vec<f64>>()
            };
            ssim_channel(&px(a), &px(b), h, w, &g)
        })
        .sum();
    Some(total / c as f64)
}

fn window() -> Vec<f64> {
    let r = SSIM_RADIUS as i64;
    let w: Vec<f64> = (-r..=r)
        .map(|t| (-0.5 * (t * t) as f64 / (SSIM_SIGMA * SSIM_SIGMA)).exp())
        .collect();
    let s: f64 = w.iter().sum();
    w.iter().map(|v| v / s).collect()
}

/// Gaussian-weighted mean over every valid window: [(h−10) × (w−10)].
fn filter_valid(x: &[f64], h: usize, w: usize, g: &[f64]) -> Vec<f64> {
    let (oh, ow) = (h + 1 - g.len(), w + 1 - g.len());
    let mut rows = vec![0.0; h * ow];
    for i in 0..h {
        for j in 0..ow {
            rows[i * ow + j] = g
                .iter()
                .enumerate()
                .map(|(t, gt)| gt * x[i * w + j + t])
                .sum();
        }
    }
    let mut out = vec![0.0; oh * ow];
    for i in 0..oh {
        for j in 0..ow {
            out[i * ow + j] = g
                .iter()
                .enumerate()
                .map(|(t, gt)| gt * rows[(i + t) * ow + j])
                .sum();
        }
    }
    out
}

fn ssim_channel(x: &[f64], y: &[f64], h: usize, w: usize, g: &[f64]) -> f64 {
    let prod = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).collect::<Vec<f64>>();
    let (ux, uy) = (filter_valid(x, h, w, g), filter_valid(y, h, w, g));
    let (uxx, uyy, uxy) = (
        filter_valid(&prod(x, x), h, w, g),
        filter_valid(&prod(y, y), h, w, g),
        filter_valid(&prod(x, y), h, w, g),
    );
    let len = ux.len();
    (0..len)
        .map(|k| {
            let (mx, my) = (ux[k], uy[k]);
            // Population (co)variances: use_sample_covariance=False.
            let (vx, vy, vxy) = (uxx[k] - mx * mx, uyy[k] - my * my, uxy[k] - mx * my);
            ((2.0 * mx * my + SSIM_C1) * (2.0 * vxy + SSIM_C2))
                / ((mx * mx + my * my + SSIM_C1) * (vx + vy + SSIM_C2))
        })
        .sum::<f64>()
        / len as f64
}

/// The metrics of one restored image against its reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageMetrics {
    /// MSE on [0, 1].
    pub mse: f64,
    /// PSNR in dB, peak 1 (∞ for a perfect restoration).
    pub psnr: f64,
    /// SSIM, `None` for images smaller than the 11×11 window.
    pub ssim: Option<f64>,
}

/// MSE, PSNR and SSIM of a restoration `x_hat` against `reference`, both [-1, 1], `[C, H, W]`.
pub fn image_metrics(x_hat: &[f32], reference: &[f32], shape: [usize; 3]) -> ImageMetrics {
    let mse = mse(x_hat, reference);
    ImageMetrics {
        mse,
        psnr: psnr_from_mse(mse),
        ssim: ssim(x_hat, reference, shape),
    }
}

/// The measurement residual ‖y − A x̂‖ (on the model's [-1, 1] scale, where y lives).
pub fn measurement_residual(op: &dyn LinearOperator, x_hat: &[f32], y: &[f32]) -> f32 {
    residual_norm(op, x_hat, y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::operators::test_util::randn;
    use approx::assert_relative_eq;

    const SHAPE: [usize; 3] = [3, 16, 16];

    fn image(seed: u64) -> Vec<f32> {
        // A smooth-ish image in [-1, 1].
        randn(768, seed)
            .iter()
            .map(|v| (0.4 * v).clamp(-1.0, 1.0))
            .collect()
    }

    #[test]
    fn identical_images() {
        let x = image(1);
        let m = image_metrics(&x, &x, SHAPE);
        assert_eq!(m.mse, 0.0);
        assert_eq!(m.psnr, f64::INFINITY);
        assert_relative_eq!(m.ssim.unwrap(), 1.0, epsilon = 1e-12);
    }

    #[test]
    fn a_nan_image_scores_nan_never_a_perfect_psnr() {
        let mut x = image(1);
        x[3] = f32::NAN;
        let m = image_metrics(&x, &image(1), SHAPE);
        assert!(m.mse.is_nan() && m.psnr.is_nan(), "{m:?}");
        assert_eq!(psnr_from_mse(0.0), f64::INFINITY);
    }

    #[test]
    fn constant_offset_known_values() {
        // 0 ↦ 0.5 and 0.2 ↦ 0.6 on [0, 1]: MSE 0.01, PSNR 20 dB; flat images have no
        // variance, so SSIM is the luminance term (2·0.5·0.6 + C1)/(0.5² + 0.6² + C1).
        let (a, b) = (vec![0.0f32; 768], vec![0.2f32; 768]);
        let m = image_metrics(&a, &b, SHAPE);
        assert_relative_eq!(m.mse, 0.01, max_relative = 1e-6);
        assert_relative_eq!(m.psnr, 20.0, max_relative = 1e-5);
        assert_relative_eq!(
            m.ssim.unwrap(),
            (0.6 + 1e-4) / (0.61 + 1e-4),
            max_relative = 1e-6
        );
    }

    #[test]
    fn values_are_clipped_to_the_storable_range() {
        assert_eq!(mse(&[1.5], &[1.0]), 0.0);
        assert_eq!(to_unit(-3.0), 0.0);
    }

    #[test]
    fn ssim_decreases_with_noise_and_is_symmetric() {
        let x = image(2);
        let noisy = |level: f32| -> Vec<f32> {
            x.iter()
                .zip(randn(768, 9))
                .map(|(a, n)| a + level * n)
                .collect()
        };
        let s: Vec<f64> = [0.0, 0.05, 0.2, 0.5]
            .iter()
            .map(|&l| ssim(&x, &noisy(l), SHAPE).unwrap())
            .collect();
        assert!(s.windows(2).all(|w| w[0] > w[1]), "{s:?}");
        let y = noisy(0.3);
        assert_relative_eq!(
            ssim(&x, &y, SHAPE).unwrap(),
            ssim(&y, &x, SHAPE).unwrap(),
            epsilon = 1e-12
        );
    }

    #[test]
    fn ssim_window_is_the_11_tap_gaussian() {
        let g = window();
        assert_eq!(g.len(), 11);
        assert_relative_eq!(g.iter().sum::<f64>(), 1.0, epsilon = 1e-12);
        assert_relative_eq!(g[5] / g[6], (0.5f64 / 2.25).exp(), max_relative = 1e-12);
        assert!(ssim(&[0.0; 100], &[0.0; 100], [1, 10, 10]).is_none());
    }

    #[test]
    fn ssim_only_uses_windows_inside_the_image() {
        // A change in the outermost row is seen by the top row of valid windows only;
        // on an 11×11 image there is a single window, so a corner change shows.
        let a = vec![0.0f32; 121];
        let mut b = a.clone();
        b[0] = 1.0;
        assert!(ssim(&a, &b, [1, 11, 11]).unwrap() < 1.0);
    }

    #[test]
    fn ssim_matches_skimage() {
        // skimage 0.26: structural_similarity((a+1)/2, (b+1)/2, data_range=1,
        // gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=0).
        let (c, h, w) = (3, 16, 20);
        let idx = |k: usize| ((k / (h * w)) as f64, ((k / w) % h) as f64, (k % w) as f64);
        let a: Vec<f32> = (0..c * h * w)
            .map(|k| {
                let (c, i, j) = idx(k);
                (0.3 * i + 0.7 * j + c).sin() as f32
            })
            .collect();
        let b: Vec<f32> = (0..c * h * w)
            .map(|k| {
                let (c, i, j) = idx(k);
                (a[k] as f64 + 0.3 * (1.1 * i * j + c).cos()).clamp(-1.0, 1.0) as f32
            })
            .collect();
        assert_relative_eq!(
            ssim(&a, &b, [c, h, w]).unwrap(),
            0.9474080333836344,
            max_relative = 1e-6
        );
    }
}
