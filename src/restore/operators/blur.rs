//! `blur-gauss:σ`: separable Gaussian blur with zero padding, output the same size (M = n).
//!
//! Kernel: size 2·⌈3σ⌉+1, weights exp(−t²/2σ²) normalised to sum 1. Zero padding makes
//! the border darker but keeps A an honest linear map whose adjoint is correlation with
//! the flipped kernel (reflect padding would fold the kernel back and break symmetry).

use super::LinearOperator;

/// The 1-D Gaussian kernel of `blur-gauss:σ`, length 2·⌈3σ⌉+1, summing to 1.
pub fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    let r = (3.0 * sigma).ceil() as i64;
    let w: Vec<f64> = (-r..=r)
        .map(|t| (-((t * t) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = w.iter().sum();
    w.iter().map(|v| (v / s) as f32).collect()
}

/// Correlate each length-`len` line (stride `stride` between taps, lines starting at
/// `starts`) with `k`, zero outside the line: `dst[i] = Σ_t k[t]·src[i + t − r]`.
fn correlate_lines(
    src: &[f32],
    dst: &mut [f32],
    starts: impl Iterator<Item = usize>,
    len: usize,
    stride: usize,
    k: &[f32],
) {
    let r = (k.len() / 2) as isize;
    for s in starts {
        for i in 0..len as isize {
            let mut acc = 0.0f32;
            for (t, &kt) in k.iter().enumerate() {
                let j = i + t as isize - r;
                if 0 <= j && j < len as isize {
                    acc += kt * src[s + j as usize * stride];
                }
            }
            dst[s + i as usize * stride] = acc;
        }
    }
}

/// Separable Gaussian blur of every channel.
#[derive(Debug, Clone)]
pub struct GaussianBlur {
    shape: [usize; 3],
    kernel: Vec<f32>,
}

impl GaussianBlur {
    /// Blur `[C, H, W]` images with standard deviation `sigma` pixels (σ > 0).
    pub fn new(shape: [usize; 3], sigma: f64) -> Self {
        assert!(sigma > 0.0, "σ must be positive");
        Self {
            shape,
            kernel: gaussian_kernel(sigma),
        }
    }

    /// Rows then columns, correlating with `k`.
    fn separable(&self, src: &[f32], dst: &mut [f32], k: &[f32]) {
        let [c, h, w] = self.shape;
        let mut tmp = vec![0.0; src.len()];
        correlate_lines(src, &mut tmp, (0..c * h).map(|row| row * w), w, 1, k);
        correlate_lines(
            &tmp,
            dst,
            (0..c).flat_map(|ci| (0..w).map(move |j| ci * h * w + j)),
            h,
            w,
            k,
        );
    }
}

impl LinearOperator for GaussianBlur {
    fn input_len(&self) -> usize {
        self.shape.iter().product()
    }

    fn measurements(&self) -> usize {
        self.input_len()
    }

    fn forward(&self, x: &[f32], y: &mut [f32]) {
        self.separable(x, y, &self.kernel);
    }

    /// Correlation with the flipped kernel (the kernel is symmetric, so only the
    /// zero-padded boundary makes this a separate statement; the adjoint test checks it).
    fn adjoint(&self, y: &[f32], x: &mut [f32]) {
        let flipped: Vec<f32> = self.kernel.iter().rev().copied().collect();
        self.separable(y, x, &flipped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::operators::apply;
    use crate::restore::operators::test_util::assert_adjoint;

    #[test]
    fn kernel_size_and_normalisation() {
        let k = gaussian_kernel(1.0);
        assert_eq!(k.len(), 7);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(gaussian_kernel(1.5).len(), 11);
        assert_eq!(gaussian_kernel(0.2).len(), 3);
        assert!((k[3] / k[4] - (0.5f32).exp()).abs() < 1e-5);
    }

    #[test]
    fn adjoint_identity() {
        assert_adjoint(&GaussianBlur::new([3, 9, 7], 1.0));
        assert_adjoint(&GaussianBlur::new([1, 5, 5], 2.5)); // kernel wider than the image
    }

    #[test]
    fn blur_of_a_delta_is_the_kernel() {
        let (s, sigma) = (15, 1.2);
        let mut x = vec![0.0f32; s * s];
        x[7 * s + 7] = 1.0;
        let y = apply(&GaussianBlur::new([1, s, s], sigma), &x);
        let k = gaussian_kernel(sigma);
        let r = k.len() / 2;
        for i in 0..s {
            for j in 0..s {
                let expect = if i.abs_diff(7) <= r && j.abs_diff(7) <= r {
                    k[i + r - 7] * k[j + r - 7]
                } else {
                    0.0
                };
                assert!((y[i * s + j] - expect).abs() < 1e-7, "({i},{j})");
            }
        }
    }

    #[test]
    fn zero_padding_darkens_the_border_only() {
        let y = apply(&GaussianBlur::new([1, 16, 16], 1.0), &vec![1.0f32; 256]);
        assert!((y[8 * 16 + 8] - 1.0).abs() < 1e-6);
        assert!(y[0] < 0.9);
    }
}
