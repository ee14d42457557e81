//! `inpaint-random:p` and `inpaint-box:h×w`: per-image pixel masks.
//!
//! y is the kept pixels as a full-size masked vector: M = n, erased entries are 0. A
//! pixel is erased in every channel at once. Masks are drawn from the image's operator
//! stream, or come with a measured record.

use rand::Rng;

use super::LinearOperator;

/// `y = m ⊙ x` with a per-pixel mask m shared across channels (self-adjoint).
#[derive(Debug, Clone)]
pub struct PixelMask {
    shape: [usize; 3],
    /// H·W flags, row-major; true = kept.
    kept: Vec<bool>,
}

impl PixelMask {
    /// A mask for `[C, H, W]` from H·W row-major flags (true = kept), e.g. a record's mask image.
    pub fn new(shape: [usize; 3], kept: Vec<bool>) -> Self {
        assert_eq!(
            kept.len(),
            shape[1] * shape[2],
            "a mask has one flag per pixel"
        );
        Self { shape, kept }
    }

    /// Erase each pixel independently with probability `p` (`p ∈ [0, 1)`).
    pub fn random<R: Rng + ?Sized>(shape: [usize; 3], p: f64, rng: &mut R) -> Self {
        let kept = (0..shape[1] * shape[2])
            .map(|_| rng.random::<f64>() >= p)
            .collect();
        Self::new(shape, kept)
    }

    /// Erase an h×w box whose top-left corner is uniform over every position where the
    /// box fits. Random rather than centred, so a dataset's boxes cover every region.
    pub fn random_box<R: Rng + ?Sized>(shape: [usize; 3], h: usize, w: usize, rng: &mut R) -> Self {
        let (hh, ww) = (shape[1], shape[2]);
        assert!(h <= hh && w <= ww, "box {h}×{w} does not fit {hh}×{ww}");
        let top = rng.random_range(0..=hh - h);
        let left = rng.random_range(0..=ww - w);
        Self::boxed(shape, top, left, h, w)
    }

    /// Erase the h×w box with top-left corner (top, left).
    pub fn boxed(shape: [usize; 3], top: usize, left: usize, h: usize, w: usize) -> Self {
        let ww = shape[2];
        let kept = (0..shape[1] * ww)
            .map(|k| {
                let (i, j) = (k / ww, k % ww);
                !(top <= i && i < top + h && left <= j && j < left + w)
            })
            .collect();
        Self::new(shape, kept)
    }

    /// The H·W flags (true = kept).
    pub fn kept(&self) -> &[bool] {
        &self.kept
    }
}

impl LinearOperator for PixelMask {
    fn input_len(&self) -> usize {
        self.shape.iter().product()
    }

    fn measurements(&self) -> usize {
        self.input_len()
    }

    fn forward(&self, x: &[f32], y: &mut [f32]) {
        let hw = self.kept.len();
        for (k, (y, &x)) in y.iter_mut().zip(x).enumerate() {
            *y = if self.kept[k % hw] { x } else { 0.0 };
        }
    }

    fn adjoint(&self, y: &[f32], x: &mut [f32]) {
        self.forward(y, x);
    }

    fn mask_noise(&self, noise: &mut [f32]) {
        let hw = self.kept.len();
        for (k, v) in noise.iter_mut().enumerate() {
            if !self.kept[k % hw] {
                *v = 0.0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::operators::apply;
    use crate::restore::operators::test_util::assert_adjoint;
    use crate::restore::rng::ImageRngs;

    #[test]
    fn adjoint_identity() {
        let mut rng = ImageRngs::new(0, "a").operator;
        assert_adjoint(&PixelMask::random([3, 8, 8], 0.5, &mut rng));
        assert_adjoint(&PixelMask::random_box([3, 8, 8], 3, 5, &mut rng));
    }

    #[test]
    fn box_mask_known_values() {
        let m = PixelMask::boxed([2, 3, 4], 1, 1, 2, 2);
        let x = vec![1.0f32; 24];
        let y = apply(&m, &x);
        #[rustfmt::skip]
        let channel = [1.0, 1.0, 1.0, 1.0,
                       1.0, 0.0, 0.0, 1.0,
                       1.0, 0.0, 0.0, 1.0];
        assert_eq!(y, [channel, channel].concat());
    }

    #[test]
    fn random_box_fits_and_has_the_right_area() {
        for id in ["a", "b", "c", "d"] {
            let m = PixelMask::random_box([1, 8, 8], 3, 5, &mut ImageRngs::new(0, id).operator);
            assert_eq!(m.kept().iter().filter(|&&k| !k).count(), 15);
        }
    }

    #[test]
    fn random_mask_erases_about_p_and_is_shared_across_channels() {
        let m = PixelMask::random([3, 64, 64], 0.3, &mut ImageRngs::new(0, "a").operator);
        let erased = m.kept().iter().filter(|&&k| !k).count() as f64 / 4096.0;
        assert!((erased - 0.3).abs() < 0.03, "erased fraction {erased}");
        let y = apply(&m, &vec![1.0; 3 * 4096]);
        assert_eq!(&y[..4096], &y[4096..8192]);
        let none = PixelMask::random([1, 8, 8], 0.0, &mut ImageRngs::new(0, "a").operator);
        assert!(none.kept().iter().all(|&k| k));
    }
}
