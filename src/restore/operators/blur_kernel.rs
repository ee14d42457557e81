//! `blur-kernel:URL[:reflect]`: blur with a given point-spread function, every channel
//! alike, output the same size (M = n).
//!
//! Convention (must): true convolution, as `scipy.ndimage.convolve(x_c, k, mode=…)` with
//! the kernel centred (odd sides kh×kw, r = side/2):
//! y[i, j] = Σ_{a,b} k[a, b] · x̃[i + r_h − a, j + r_w − b],
//! x̃ the image padded with zeros (default, scipy `mode="constant", cval=0`) or reflected
//! about its edge with the edge pixel repeated (`:reflect`, scipy `mode="reflect"`,
//! numpy `pad(mode="symmetric")`: d c b a | a b c d | d c b a, periodic for kernels
//! wider than the image). The adjoint scatters each y[i, j]·k[a, b] back onto the pixel
//! x̃ took there, so it is exact for both paddings.
//!
//! Kernel files: a 2-D `.npy` (float32 or float64), used as given; or a grey PNG, whose
//! grey levels are divided by their sum (an image has no absolute scale).

use super::file::{FileArray, FileType};
use super::LinearOperator;

/// How the image is extended past its border.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Zeros outside the image.
    Zero,
    /// Mirrored about the edge, edge pixel repeated (scipy `reflect`).
    Reflect,
}

impl Padding {
    /// The source index of padded index `t` on a line of `len`, if any.
    fn source(self, t: isize, len: usize) -> Option<usize> {
        let n = len as isize;
        match self {
            _ if (0..n).contains(&t) => Some(t as usize),
            Self::Zero => None,
            Self::Reflect => {
                let m = t.rem_euclid(2 * n);
                let s = if m < n { m } else { 2 * n - 1 - m };
                Some(s as usize)
            }
        }
    }
}

/// Convolution of every channel with one 2-D kernel.
#[derive(Debug, Clone)]
pub struct KernelBlur {
    shape: [usize; 3],
    kernel: Vec<f32>,
    ksize: [usize; 2],
    /// For output row i and kernel row a, the source row of x̃[i + r_h − a] (`[H·kh]`).
    src_rows: Vec<Option<usize>>,
    /// The same for columns (`[W·kw]`).
    src_cols: Vec<Option<usize>>,
}

impl KernelBlur {
    /// Convolve `[C, H, W]` images with the row-major `kh×kw` kernel (odd sides).
    pub fn new(
        shape: [usize; 3],
        kernel: Vec<f32>,
        [kh, kw]: [usize; 2],
        padding: Padding,
    ) -> Self {
        assert!(kh % 2 == 1 && kw % 2 == 1, "kernel sides must be odd");
        assert_eq!(kernel.len(), kh * kw, "kernel must hold kh·kw values");
        let [_, h, w] = shape;
        let table = |len: usize, k: usize| -> Vec<Option<usize>> {
            let r = (k / 2) as isize;
            (0..len as isize)
                .flat_map(|i| (0..k as isize).map(move |a| (i, a)))
                .map(|(i, a)| padding.source(i + r - a, len))
                .collect()
        };
        Self {
            shape,
            src_rows: table(h, kh),
            src_cols: table(w, kw),
            kernel,
            ksize: [kh, kw],
        }
    }

    /// The operator of a `blur-kernel:` file: a 2-D float32/float64 `.npy` or grey PNG
    /// with odd sides, every value finite, a PNG not all black. Every problem is listed,
    /// each naming the file.
    pub fn from_file(
        file: &FileArray,
        shape: [usize; 3],
        padding: Padding,
    ) -> Result<Self, Vec<String>> {
        let png = matches!(file.file_type, FileType::GreyPng(_));
        let dims = file.dims2().filter(|d| d.iter().all(|s| s % 2 == 1));
        file.check(
            "a 2-D kernel with odd sides (float32 or float64 .npy, or a grey PNG)",
            dims.is_some(),
            png || file.file_type.is_float(),
        )?;
        let [kh, kw] = dims.unwrap_or([1, 1]);
        let mut kernel = file.values.clone();
        if png {
            let sum: f64 = kernel.iter().map(|&v| v as f64).sum();
            if sum <= 0.0 {
                return Err(vec![format!(
                    "{}: the PNG kernel is all black (its grey levels are divided by their sum)",
                    file.url
                )]);
            }
            kernel
                .iter_mut()
                .for_each(|v| *v = (*v as f64 / sum) as f32);
        }
        Ok(Self::new(shape, kernel, [kh, kw], padding))
    }
}

impl LinearOperator for KernelBlur {
    fn input_len(&self) -> usize {
        self.shape.iter().product()
    }

    fn measurements(&self) -> usize {
        self.input_len()
    }

    fn forward(&self, x: &[f32], y: &mut [f32]) {
        let [_, h, w] = self.shape;
        let [kh, kw] = self.ksize;
        for (xc, yc) in x.chunks_exact(h * w).zip(y.chunks_exact_mut(h * w)) {
            for i in 0..h {
                for j in 0..w {
                    let mut acc = 0.0f32;
                    for a in 0..kh {
                        let Some(si) = self.src_rows[i * kh + a] else {
                            continue;
                        };
                        for b in 0..kw {
                            if let Some(sj) = self.src_cols[j * kw + b] {
                                acc += self.kernel[a * kw + b] * xc[si * w + sj];
                            }
                        }
                    }
                    yc[i * w + j] = acc;
                }
            }
        }
    }

    fn adjoint(&self, y: &[f32], x: &mut [f32]) {
        let [_, h, w] = self.shape;
        let [kh, kw] = self.ksize;
        x.fill(0.0);
        for (yc, xc) in y.chunks_exact(h * w).zip(x.chunks_exact_mut(h * w)) {
            for i in 0..h {
                for j in 0..w {
                    let v = yc[i * w + j];
                    for a in 0..kh {
                        let Some(si) = self.src_rows[i * kh + a] else {
                            continue;
                        };
                        for b in 0..kw {
                            if let Some(sj) = self.src_cols[j * kw + b] {
                                xc[si * w + sj] += self.kernel[a * kw + b] * v;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::operators::apply;
    use crate::restore::operators::test_util::{assert_adjoint, randn};

    fn blur(shape: [usize; 3], ksize: [usize; 2], padding: Padding) -> KernelBlur {
        KernelBlur::new(shape, randn(ksize[0] * ksize[1], 7), ksize, padding)
    }

    #[test]
    fn adjoint_identity() {
        for padding in [Padding::Zero, Padding::Reflect] {
            assert_adjoint(&blur([3, 9, 7], [3, 5], padding));
            assert_adjoint(&blur([1, 6, 6], [5, 5], padding));
            // Wider than the image: reflect is periodic, zero sees mostly padding.
            assert_adjoint(&blur([2, 3, 4], [9, 11], padding));
        }
    }

    #[test]
    fn it_is_convolution_not_correlation() {
        // An asymmetric kernel on a delta: convolution copies the kernel as it is.
        let k: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let op = KernelBlur::new([1, 5, 5], k.clone(), [3, 3], Padding::Zero);
        let mut x = vec![0.0; 25];
        x[2 * 5 + 2] = 1.0;
        let y = apply(&op, &x);
        for a in 0..3 {
            for b in 0..3 {
                assert_eq!(y[(1 + a) * 5 + 1 + b], k[a * 3 + b], "({a},{b})");
            }
        }
        assert_eq!(y.iter().sum::<f32>(), 45.0);
    }

    #[test]
    fn known_values_with_both_paddings() {
        // 1×3 line [1, 2, 3], kernel [1, 0, 0] (1×3): y[j] = x̃[j + 1] (convolution
        // shifts left). Zero: [2, 3, 0]; reflect (c | a b c | c): [2, 3, 3].
        let x = [1.0, 2.0, 3.0];
        let k = vec![1.0, 0.0, 0.0];
        let zero = KernelBlur::new([1, 1, 3], k.clone(), [1, 3], Padding::Zero);
        assert_eq!(apply(&zero, &x), vec![2.0, 3.0, 0.0]);
        let reflect = KernelBlur::new([1, 1, 3], k, [1, 3], Padding::Reflect);
        assert_eq!(apply(&reflect, &x), vec![2.0, 3.0, 3.0]);
        // A box kernel keeps a constant image constant under reflect padding only.
        let bx = KernelBlur::new([1, 4, 4], vec![1.0 / 9.0; 9], [3, 3], Padding::Reflect);
        assert!(apply(&bx, &[1.0; 16])
            .iter()
            .all(|v| (v - 1.0).abs() < 1e-6));
    }

    #[test]
    fn kernel_files_are_checked() {
        let shape = [1, 8, 8];
        let err = |f: FileArray| {
            KernelBlur::from_file(&f, shape, Padding::Zero)
                .unwrap_err()
                .join("\n")
        };
        let even = err(FileArray::npy_f32("k.npy", &[4, 3], vec![0.1; 12]));
        assert!(
            even.contains("k.npy: expected a 2-D kernel with odd sides")
                && even.contains("found (4, 3) float32"),
            "{even}"
        );
        let ints = FileArray {
            file_type: FileType::Npy("uint8"),
            ..FileArray::npy_f32("k.npy", &[3, 3], vec![1.0; 9])
        };
        assert!(err(ints).contains("found (3, 3) uint8"));
        let mut values = vec![0.1; 9];
        values[4] = f32::INFINITY;
        assert!(err(FileArray::npy_f32("k.npy", &[3, 3], values))
            .contains("1 of 9 values are not finite"));
        let black = FileArray {
            file_type: FileType::GreyPng(8),
            ..FileArray::npy_f32("k.png", &[3, 3], vec![0.0; 9])
        };
        assert!(err(black).contains("all black"));
        // A PNG is normalised to sum 1.
        let png = FileArray {
            file_type: FileType::GreyPng(8),
            ..FileArray::npy_f32("k.png", &[1, 3], vec![255.0, 510.0, 255.0])
        };
        let op = KernelBlur::from_file(&png, shape, Padding::Reflect).unwrap();
        assert!(apply(&op, &[1.0; 64])
            .iter()
            .all(|v| (v - 1.0).abs() < 1e-6));
    }
}
