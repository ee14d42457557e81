//! `sr-bicubic:f`: downsampling by an integer factor f as real low-resolution images are
//! made, antialiased bicubic, with its exact adjoint.
//!
//! Definition (must, so that low-resolution data made elsewhere restores): Pillow's
//! `Image.resize((W // f, H // f), Image.BICUBIC)` of a float image (mode `'F'`), each
//! channel on its own. That is Pillow ≥ 7's convolution resampling (`Resample.c`):
//! per axis, output pixel `o` has centre `c = (o + 0.5)·f` in input coordinates; the
//! cubic kernel (Keys, a = −0.5, support 2) is stretched by f, so its support is 2f
//! (the antialiasing); the taps are the input pixels `i` from `⌊c − 2f + 0.5⌋` to
//! `⌊c + 2f + 0.5⌋` (exclusive) clipped to the image, weighted by
//! `cubic((i − c + 0.5) / f)`, and the weights of each output pixel are divided by their
//! sum, so that taps cut off at the border are renormalised over the ones left. The two
//! axes are separable (Pillow resamples rows, then columns). `sr-bicubic:1` is the
//! identity. On 8-bit images Pillow rounds its weights to fixed point and the rows
//! pass to 8 bits, so there it agrees within one grey level.
//!
//! Every output row sums to 1 (A·1 = 1), so resizing commutes with the affine map
//! between [0, 1] pixels and the model's [-1, 1]: `y_range = "unit"` low-resolution
//! images convert as 2·y − 1.
//!
//! The operator is linear: per channel Y = R·X·Cᵀ with R the H/f × H and C the W/f × W
//! sparse weight matrices; the adjoint is X = Rᵀ·Y·C, their exact transpose.

use super::LinearOperator;

/// Keys' cubic convolution kernel with a = −0.5 (Pillow's `bicubic_filter`).
fn cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// The sparse weight matrix of one axis: output pixel `o` is
/// `Σ_k weights[o][k] · input[start[o] + k]`.
#[derive(Debug, Clone)]
struct AxisWeights {
    start: Vec<usize>,
    weights: Vec<Vec<f64>>,
}

impl AxisWeights {
    /// Downsampling `len` input pixels by `f` (`len` divisible by `f`), as Pillow
    /// computes its coefficients for the box (0, len) and `len / f` outputs.
    fn new(len: usize, f: usize) -> Self {
        const SUPPORT: f64 = 2.0;
        let scale = f as f64;
        // Pillow stretches the kernel only when shrinking (scale ≥ 1 here always).
        let filter_scale = scale.max(1.0);
        let support = SUPPORT * filter_scale;
        let inv = 1.0 / filter_scale;
        let outputs = len / f;
        let (mut start, mut weights) = (Vec::with_capacity(outputs), Vec::with_capacity(outputs));
        for o in 0..outputs {
            let centre = (o as f64 + 0.5) * scale;
            // `(int)(v + 0.5)` in C truncates towards zero; the lower bound is clipped
            // at 0 right after, so truncation and floor agree wherever it matters.
            let lo = ((centre - support + 0.5).trunc().max(0.0)) as usize;
            let hi = (((centre + support + 0.5).trunc()) as usize).min(len);
            let mut w: Vec<f64> = (lo..hi)
                .map(|i| cubic((i as f64 - centre + 0.5) * inv))
                .collect();
            let sum: f64 = w.iter().sum();
            if sum != 0.0 {
                w.iter_mut().for_each(|v| *v /= sum);
            }
            start.push(lo);
            weights.push(w);
        }
        Self { start, weights }
    }

    fn outputs(&self) -> usize {
        self.start.len()
    }
}

/// Antialiased bicubic downsampling by `f` per channel; y is C-order `[C, H/f, W/f]`.
#[derive(Debug, Clone)]
pub struct BicubicDown {
    shape: [usize; 3],
    f: usize,
    rows: AxisWeights,
    cols: AxisWeights,
}

impl BicubicDown {
    /// Downsampling by `f` on `[C, H, W]`; H and W must be divisible by f (checked by
    /// the spec).
    pub fn new(shape: [usize; 3], f: usize) -> Self {
        let [_, h, w] = shape;
        assert!(
            f >= 1 && h.is_multiple_of(f) && w.is_multiple_of(f),
            "{shape:?} not divisible by {f}"
        );
        Self {
            shape,
            f,
            rows: AxisWeights::new(h, f),
            cols: AxisWeights::new(w, f),
        }
    }

    /// The downsampling factor.
    pub fn factor(&self) -> usize {
        self.f
    }
}

impl LinearOperator for BicubicDown {
    fn input_len(&self) -> usize {
        self.shape.iter().product()
    }

    fn measurements(&self) -> usize {
        self.shape[0] * self.rows.outputs() * self.cols.outputs()
    }

    /// Horizontal pass, then vertical, each accumulated in f64 as Pillow does for float
    /// images (its intermediate image is float32, as here).
    fn forward(&self, x: &[f32], y: &mut [f32]) {
        let [c, h, w] = self.shape;
        let (ho, wo) = (self.rows.outputs(), self.cols.outputs());
        let mut tmp = vec![0.0f32; h * wo];
        for ch in 0..c {
            let xc = &x[ch * h * w..(ch + 1) * h * w];
            for i in 0..h {
                let row = &xc[i * w..(i + 1) * w];
                for (o, (&s, wts)) in self.cols.start.iter().zip(&self.cols.weights).enumerate() {
                    let acc: f64 = wts
                        .iter()
                        .zip(&row[s..s + wts.len()])
                        .map(|(&k, &v)| k * v as f64)
                        .sum();
                    tmp[i * wo + o] = acc as f32;
                }
            }
            let yc = &mut y[ch * ho * wo..(ch + 1) * ho * wo];
            for (o, (&s, wts)) in self.rows.start.iter().zip(&self.rows.weights).enumerate() {
                for j in 0..wo {
                    let acc: f64 = wts
                        .iter()
                        .enumerate()
                        .map(|(k, &wt)| wt * tmp[(s + k) * wo + j] as f64)
                        .sum();
                    yc[o * wo + j] = acc as f32;
                }
            }
        }
    }

    /// The exact transpose: each output pixel's value spread back over its taps with
    /// the same weights (vertical, then horizontal).
    fn adjoint(&self, y: &[f32], x: &mut [f32]) {
        let [c, h, w] = self.shape;
        let (ho, wo) = (self.rows.outputs(), self.cols.outputs());
        let mut tmp = vec![0.0f64; h * wo];
        let mut out = vec![0.0f64; w];
        for ch in 0..c {
            let yc = &y[ch * ho * wo..(ch + 1) * ho * wo];
            tmp.fill(0.0);
            for (o, (&s, wts)) in self.rows.start.iter().zip(&self.rows.weights).enumerate() {
                for (k, &wt) in wts.iter().enumerate() {
                    let dst = &mut tmp[(s + k) * wo..(s + k + 1) * wo];
                    for (d, &v) in dst.iter_mut().zip(&yc[o * wo..(o + 1) * wo]) {
                        *d += wt * v as f64;
                    }
                }
            }
            let xc = &mut x[ch * h * w..(ch + 1) * h * w];
            for i in 0..h {
                out.fill(0.0);
                for (o, (&s, wts)) in self.cols.start.iter().zip(&self.cols.weights).enumerate() {
                    let v = tmp[i * wo + o];
                    for (d, &wt) in out[s..s + wts.len()].iter_mut().zip(wts) {
                        *d += wt * v;
                    }
                }
                xc[i * w..(i + 1) * w]
                    .iter_mut()
                    .zip(&out)
                    .for_each(|(d, &v)| *d = v as f32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::operators::apply;
    use crate::restore::operators::test_util::{assert_adjoint, randn};

    #[test]
    fn adjoint_identity_grey_rgb_and_non_square() {
        assert_adjoint(&BicubicDown::new([1, 16, 16], 2));
        assert_adjoint(&BicubicDown::new([1, 12, 20], 4));
        assert_adjoint(&BicubicDown::new([3, 24, 9], 3));
        assert_adjoint(&BicubicDown::new([3, 8, 16], 8));
        assert_adjoint(&BicubicDown::new([3, 5, 7], 1));
    }

    #[test]
    fn known_weights_on_a_small_case() {
        // Four pixels by 2: centre 1, support 4, taps 0..4 at (i − 0.5)/2 =
        // −0.25, 0.25, 0.75, 1.25 → cubic 0.8671875, 0.8671875, 0.2265625, −0.0703125,
        // i.e. (111, 111, 29, −9)/242 after normalising; the second output mirrored.
        let ax = AxisWeights::new(4, 2);
        assert_eq!(ax.start, vec![0, 0]);
        let want = [[111.0, 111.0, 29.0, -9.0], [-9.0, 29.0, 111.0, 111.0]];
        for (got, want) in ax.weights.iter().zip(want) {
            assert!(got
                .iter()
                .zip(want)
                .all(|(g, w)| (g - w / 242.0).abs() < 1e-12));
        }
        // Two rows by 2: taps at ∓0.25, equal weights. Rows 0..3 and 4..7:
        // the row mean is [2, 3, 4, 5], and the columns give (626, 1068)/242.
        let op = BicubicDown::new([1, 2, 4], 2);
        let x: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let y = apply(&op, &x);
        let want = [626.0 / 242.0, 1068.0 / 242.0];
        assert!(
            y.iter()
                .zip(want)
                .all(|(a, b)| (*a as f64 - b).abs() < 1e-6),
            "{y:?}"
        );
    }

    #[test]
    fn taps_are_clipped_at_the_border_and_renormalised() {
        // 16 pixels by 4: support 8, centres 2, 6, 10, 14; unclipped, an output would
        // have 16 taps (⌊c − 7.5⌋..⌊c + 8.5⌋). The first output's taps run from
        // ⌊2 − 7.5⌋ → 0 (clipped) to ⌊10.5⌋ = 10, the second's from 0 to 14, the last
        // two mirror them at the other border.
        let ax = AxisWeights::new(16, 4);
        assert_eq!(ax.start, vec![0, 0, 2, 6]);
        let lens: Vec<usize> = ax.weights.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![10, 14, 14, 10]);
        for w in &ax.weights {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn constant_images_stay_constant_and_factor_one_is_the_identity() {
        // Rows sum to 1: A·1 = 1, so y_range = "unit" converts as 2·y − 1.
        let op = BicubicDown::new([3, 12, 8], 4);
        let y = apply(&op, &vec![0.25; op.input_len()]);
        assert!(y.iter().all(|v| (v - 0.25).abs() < 1e-6), "{y:?}");
        let x = randn(3 * 5 * 7, 4);
        assert_eq!(apply(&BicubicDown::new([3, 5, 7], 1), &x), x);
    }

    #[test]
    fn channels_are_resized_separately() {
        let x = [vec![1.0f32; 16], vec![-1.0; 16]].concat();
        let y = apply(&BicubicDown::new([2, 4, 4], 2), &x);
        assert_eq!(y.len(), 8);
        assert!(y[..4].iter().all(|v| (v - 1.0).abs() < 1e-6));
        assert!(y[4..].iter().all(|v| (v + 1.0).abs() < 1e-6));
    }
}
