//! `fourier:URL`: the subsampled orthonormal 2-D DFT of every channel (single-coil MRI),
//! with a k-space sampling mask `[H, W]` read from a file.
//!
//! Convention (must, so that data made elsewhere restores): with F = `numpy.fft.fft2(·,
//! norm="ortho")` and K the mask's kept positions in row-major order,
//! y = concat over channels c of [Re(F x_c)[K], Im(F x_c)[K]], so M = 2·C·|K|.
//! The adjoint of x ↦ (Re, Im)(S F x) on real images is u, v ↦ Re(Fᴴ Sᵀ (u + i·v)), with
//! Fᴴ = `ifft2(·, norm="ortho")`. Both are O(n log n) through rustfft; no dense matrix,
//! so the guidance takes the VJP path.
//!
//! A record may bring its own mask (the input's `mask` column, single-coil MRI where
//! every scan has its own sampling pattern): [`SubsampledFourier::with_mask`] makes its
//! operator from the file's, sharing the FFT plans; its y then has 2·C·|kept| values of
//! its own mask.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use super::file::{FileArray, FileType};
use super::LinearOperator;

/// Subsampled orthonormal 2-D DFT per channel.
pub struct SubsampledFourier {
    shape: [usize; 3],
    /// Kept k-space positions, row-major indices into H·W, increasing.
    kept: Vec<usize>,
    rows: (Arc<dyn Fft<f32>>, Arc<dyn Fft<f32>>),
    cols: (Arc<dyn Fft<f32>>, Arc<dyn Fft<f32>>),
}

impl std::fmt::Debug for SubsampledFourier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SubsampledFourier({:?}, {} of {} kept)",
            self.shape,
            self.kept.len(),
            self.shape[1] * self.shape[2]
        )
    }
}

impl SubsampledFourier {
    /// `[C, H, W]` images measured at the positions where `mask` (`H·W`, row-major) is
    /// true. The mask must keep at least one position.
    pub fn new(shape: [usize; 3], mask: &[bool]) -> Self {
        let [_, h, w] = shape;
        assert_eq!(mask.len(), h * w, "the mask must be H×W");
        let kept: Vec<usize> = (0..h * w).filter(|&i| mask[i]).collect();
        assert!(!kept.is_empty(), "the mask keeps nothing");
        let mut planner = FftPlanner::new();
        Self {
            shape,
            kept,
            rows: (planner.plan_fft_forward(w), planner.plan_fft_inverse(w)),
            cols: (planner.plan_fft_forward(h), planner.plan_fft_inverse(h)),
        }
    }

    /// The operator of a `fourier:` mask file for `[C, H, W]` images: a 2-D `[H, W]`
    /// `.npy` of 0/1 values (bool, integer or float), or a grey PNG whose non-zero
    /// pixels are kept; at least one position kept. Every problem is listed, each naming
    /// the file.
    pub fn from_file(file: &FileArray, shape: [usize; 3]) -> Result<Self, Vec<String>> {
        let [_, h, w] = shape;
        let png = matches!(file.file_type, FileType::GreyPng(_));
        file.check(
            &format!("an H×W = {h}×{w} mask (.npy of 0/1, bool, integer or float; or a grey PNG)"),
            file.dims2() == Some([h, w]),
            true,
        )?;
        let not_binary = file
            .values
            .iter()
            .filter(|&&v| v != 0.0 && v != 1.0)
            .count();
        if !png && not_binary > 0 {
            return Err(vec![format!(
                "{}: a .npy mask holds 0 (dropped) and 1 (kept) only; {not_binary} of {} values \
                 are neither",
                file.url,
                file.values.len()
            )]);
        }
        let mask: Vec<bool> = file.values.iter().map(|&v| v != 0.0).collect();
        if !mask.contains(&true) {
            return Err(vec![format!(
                "{}: the mask keeps no k-space position",
                file.url
            )]);
        }
        Ok(Self::new(shape, &mask))
    }

    /// Kept positions per channel.
    pub fn kept(&self) -> usize {
        self.kept.len()
    }

    /// The image shape `[C, H, W]`.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// The same transform with another k-space mask (`H·W` flags, row-major, true =
    /// kept), e.g. a record's own; the FFT plans are shared. Refused, saying why, when
    /// the mask has the wrong size or keeps nothing.
    pub fn with_mask(&self, mask: &[bool]) -> Result<Self, String> {
        let [_, h, w] = self.shape;
        if mask.len() != h * w {
            return Err(format!(
                "the k-space mask has {} values, a {h}×{w} image needs {}",
                mask.len(),
                h * w
            ));
        }
        let kept: Vec<usize> = (0..h * w).filter(|&i| mask[i]).collect();
        if kept.is_empty() {
            return Err("the k-space mask keeps no position".into());
        }
        Ok(Self {
            shape: self.shape,
            kept,
            rows: self.rows.clone(),
            cols: self.cols.clone(),
        })
    }

    /// F (or Fᴴ when `inverse`) with the orthonormal scaling 1/√(H·W), in place on one
    /// `[H, W]` plane: rows, then columns through a transposed copy.
    fn fft2(&self, plane: &mut [Complex<f32>], inverse: bool) {
        let [_, h, w] = self.shape;
        let (row, col) = if inverse {
            (&self.rows.1, &self.cols.1)
        } else {
            (&self.rows.0, &self.cols.0)
        };
        row.process(plane);
        let mut t = vec![Complex::default(); h * w];
        transpose(plane, &mut t, h, w);
        col.process(&mut t);
        transpose(&t, plane, w, h);
        let scale = 1.0 / ((h * w) as f32).sqrt();
        plane.iter_mut().for_each(|z| *z *= scale);
    }
}

/// `dst[j·rows + i] = src[i·cols + j]` for a rows×cols `src`.
fn transpose(src: &[Complex<f32>], dst: &mut [Complex<f32>], rows: usize, cols: usize) {
    for i in 0..rows {
        for j in 0..cols {
            dst[j * rows + i] = src[i * cols + j];
        }
    }
}

impl LinearOperator for SubsampledFourier {
    fn input_len(&self) -> usize {
        self.shape.iter().product()
    }

    fn measurements(&self) -> usize {
        2 * self.shape[0] * self.kept.len()
    }

    fn forward(&self, x: &[f32], y: &mut [f32]) {
        let plane = self.shape[1] * self.shape[2];
        let k = self.kept.len();
        let mut buf = vec![Complex::default(); plane];
        for (xc, yc) in x.chunks_exact(plane).zip(y.chunks_exact_mut(2 * k)) {
            buf.iter_mut()
                .zip(xc)
                .for_each(|(z, &v)| *z = Complex::new(v, 0.0));
            self.fft2(&mut buf, false);
            let (re, im) = yc.split_at_mut(k);
            for ((&i, re), im) in self.kept.iter().zip(re).zip(im) {
                *re = buf[i].re;
                *im = buf[i].im;
            }
        }
    }

    fn adjoint(&self, y: &[f32], x: &mut [f32]) {
        let plane = self.shape[1] * self.shape[2];
        let k = self.kept.len();
        let mut buf = vec![Complex::default(); plane];
        for (yc, xc) in y.chunks_exact(2 * k).zip(x.chunks_exact_mut(plane)) {
            buf.fill(Complex::default());
            let (re, im) = yc.split_at(k);
            for ((&i, &re), &im) in self.kept.iter().zip(re).zip(im) {
                buf[i] = Complex::new(re, im);
            }
            self.fft2(&mut buf, true);
            xc.iter_mut().zip(&buf).for_each(|(v, z)| *v = z.re);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::operators::apply;
    use crate::restore::operators::test_util::{assert_adjoint, randn};

    fn random_mask(h: usize, w: usize, seed: u64) -> Vec<bool> {
        randn(h * w, seed).iter().map(|&v| v > 0.3).collect()
    }

    #[test]
    fn adjoint_identity() {
        assert_adjoint(&SubsampledFourier::new([3, 8, 6], &random_mask(8, 6, 1)));
        assert_adjoint(&SubsampledFourier::new([1, 7, 5], &random_mask(7, 5, 2)));
        assert_adjoint(&SubsampledFourier::new([2, 16, 16], &[true; 256]));
    }

    #[test]
    fn full_mask_is_an_isometry() {
        // Parseval: with every position kept, ‖y‖ = ‖x‖ (y holds Re and Im).
        let op = SubsampledFourier::new([2, 8, 4], &[true; 32]);
        let x = randn(64, 3);
        let y = apply(&op, &x);
        let norm = |v: &[f32]| v.iter().map(|a| (*a as f64).powi(2)).sum::<f64>();
        assert!((norm(&x) - norm(&y)).abs() < 1e-4 * norm(&x));
        // Fᴴ F = I: the adjoint inverts it.
        let mut back = vec![0.0; 64];
        op.adjoint(&y, &mut back);
        assert!(back.iter().zip(&x).all(|(a, b)| (a - b).abs() < 1e-5));
    }

    #[test]
    fn known_values_on_a_small_case() {
        // x = [[1, 2], [3, 4]]: fft2 = [[10, -2], [-4, 0]], ortho divides by 2.
        // Mask keeps (0,0), (0,1), (1,0) in row-major order; all imaginary parts are 0.
        let op = SubsampledFourier::new([1, 2, 2], &[true, true, true, false]);
        assert_eq!(op.measurements(), 6);
        let y = apply(&op, &[1.0, 2.0, 3.0, 4.0]);
        let want = [5.0, -1.0, -2.0, 0.0, 0.0, 0.0];
        assert!(
            y.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{y:?}"
        );
        // A 1×4 row: fft of [0, 1, 0, 0] is [1, -i, -1, i], ortho /2; keep 1 and 3.
        let op = SubsampledFourier::new([1, 1, 4], &[false, true, false, true]);
        let y = apply(&op, &[0.0, 1.0, 0.0, 0.0]);
        let want = [0.0, 0.0, -0.5, 0.5];
        assert!(
            y.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{y:?}"
        );
    }

    #[test]
    fn a_record_mask_replaces_the_files() {
        let file = SubsampledFourier::new([2, 4, 4], &[true; 16]);
        let mask: Vec<bool> = (0..16).map(|k| k % 3 == 0).collect();
        let rec = file.with_mask(&mask).unwrap();
        assert_eq!((rec.kept(), rec.measurements()), (6, 2 * 2 * 6));
        assert_adjoint(&rec);
        // The same as an operator built from that mask alone.
        let x = randn(32, 7);
        assert_eq!(
            apply(&rec, &x),
            apply(&SubsampledFourier::new([2, 4, 4], &mask), &x)
        );
        assert!(file
            .with_mask(&[true; 15])
            .unwrap_err()
            .contains("15 values"));
        assert!(file
            .with_mask(&[false; 16])
            .unwrap_err()
            .contains("keeps no"));
    }

    #[test]
    fn mask_files_are_checked() {
        let shape = [1, 4, 4];
        let ok = FileArray::npy_f32("m.npy", &[4, 4], vec![1.0; 16]);
        assert_eq!(SubsampledFourier::from_file(&ok, shape).unwrap().kept(), 16);
        let err = |f: FileArray| {
            SubsampledFourier::from_file(&f, shape)
                .unwrap_err()
                .join("\n")
        };
        let wrong = err(FileArray::npy_f32("s3://b/m.npy", &[4, 5], vec![1.0; 20]));
        assert!(
            wrong.contains("s3://b/m.npy: expected an H×W = 4×4 mask")
                && wrong.contains("found (4, 5) float32"),
            "{wrong}"
        );
        let half = err(FileArray::npy_f32("m.npy", &[4, 4], vec![0.5; 16]));
        assert!(half.contains("16 of 16 values are neither"), "{half}");
        let empty = err(FileArray::npy_f32("m.npy", &[4, 4], vec![0.0; 16]));
        assert!(empty.contains("keeps no k-space position"), "{empty}");
        let mut values = vec![1.0; 16];
        values[2] = f32::NAN;
        assert!(err(FileArray::npy_f32("m.npy", &[4, 4], values)).contains("not finite"));
        // A PNG keeps its non-zero pixels, whatever their grey level.
        let png = FileArray {
            file_type: FileType::GreyPng(8),
            ..FileArray::npy_f32("m.png", &[4, 4], [0.0, 255.0, 128.0, 0.0].repeat(4))
        };
        assert_eq!(SubsampledFourier::from_file(&png, shape).unwrap().kept(), 8);
    }
}
