//! `matrix:URL`: a dense linear operator y = A·vec(x) given as a file, A an M×(C·H·W)
//! float32 `.npy` (float64 is converted), vec(x) the image in C, H, W row-major order.
//!
//! The operator the fused `dps_dense` graph takes; `cs:M` is its simulated Gaussian case
//! ([`super::cs::gaussian`]). [`Densified`] gives a structured operator (`sr`, blur, …)
//! its matrix too, when it is small enough, so that it can take that graph as well.

use std::sync::Arc;

use ndarray::linalg::general_mat_vec_mul;
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut1};

use super::file::FileArray;
use super::LinearOperator;

/// A dense `[M, n]` matrix.
#[derive(Debug, Clone)]
pub struct DenseMatrix {
    a: Array2<f32>,
}

impl DenseMatrix {
    /// Wrap an existing matrix (e.g. one recorded by a Python parity test).
    pub fn from_matrix(a: Array2<f32>) -> Self {
        let a = if a.is_standard_layout() {
            a
        } else {
            a.as_standard_layout().into_owned()
        };
        Self { a }
    }

    /// The matrix of a `matrix:` file for images of n = C·H·W values: 2-D, n columns,
    /// at least one row, float32 or float64, every value finite. Every problem is listed,
    /// each naming the file.
    pub fn from_file(file: &FileArray, n: usize) -> Result<Self, Vec<String>> {
        let shape_ok = file.dims2().is_some_and(|[m, cols]| m >= 1 && cols == n);
        file.check(
            &format!("an M×{n} float32 or float64 .npy (M ≥ 1, {n} = C·H·W)"),
            shape_ok,
            file.file_type.is_float(),
        )?;
        let [m, _] = file.dims2().unwrap_or_default();
        Array2::from_shape_vec((m, n), file.values.clone())
            .map(Self::from_matrix)
            .map_err(|e| vec![format!("{}: {e}", file.url)])
    }
}

impl LinearOperator for DenseMatrix {
    fn input_len(&self) -> usize {
        self.a.ncols()
    }

    fn measurements(&self) -> usize {
        self.a.nrows()
    }

    fn forward(&self, x: &[f32], y: &mut [f32]) {
        general_mat_vec_mul(
            1.0,
            &self.a,
            &ArrayView1::from(x),
            0.0,
            &mut ArrayViewMut1::from(y),
        );
    }

    /// `x = Σ_k y_k · A[k, :]`, row by row: contiguous rows vectorize, where ndarray's
    /// product with `Aᵀ` walks A's columns with a stride of n (3% of a VJP-path run).
    fn adjoint(&self, y: &[f32], x: &mut [f32]) {
        x.fill(0.0);
        let n = self.a.ncols();
        let rows = self.a.as_slice().expect("standard layout (from_matrix)");
        for (row, &yk) in rows.chunks_exact(n).zip(y) {
            if yk != 0.0 {
                x.iter_mut().zip(row).for_each(|(x, &a)| *x += yk * a);
            }
        }
    }

    fn dense_matrix(&self) -> Option<ArrayView2<'_, f32>> {
        Some(self.a.view())
    }
}

/// A structured operator together with its dense matrix, so that the fused `dps_dense`
/// graph can take it: one model evaluation per step instead of `denoise` + `vjp` (the VJP
/// path runs the network's forward twice; 1.4–1.5× slower, README, performance).
///
/// `forward` and `adjoint` stay the structured operator's own, so measurements, floors and
/// metrics do not change by a bit; only the guidance gradient is computed through the
/// matrix (the same map, summed in another order).
#[derive(Debug)]
pub struct Densified {
    inner: Arc<dyn LinearOperator>,
    a: Array2<f32>,
}

impl Densified {
    /// `inner`'s matrix, column j = A·e_j, when it has at most `max_entries` entries.
    pub fn new(inner: Arc<dyn LinearOperator>, max_entries: usize) -> Option<Self> {
        let (m, n) = (inner.measurements(), inner.input_len());
        if m.checked_mul(n)? > max_entries {
            return None;
        }
        let mut a = Array2::zeros((m, n));
        let (mut e, mut column) = (vec![0.0f32; n], vec![0.0f32; m]);
        for j in 0..n {
            e[j] = 1.0;
            inner.forward(&e, &mut column);
            e[j] = 0.0;
            a.column_mut(j).assign(&ArrayView1::from(&column[..]));
        }
        Some(Self { inner, a })
    }
}

impl LinearOperator for Densified {
    fn input_len(&self) -> usize {
        self.inner.input_len()
    }

    fn measurements(&self) -> usize {
        self.inner.measurements()
    }

    fn forward(&self, x: &[f32], y: &mut [f32]) {
        self.inner.forward(x, y);
    }

    fn adjoint(&self, y: &[f32], x: &mut [f32]) {
        self.inner.adjoint(y, x);
    }

    fn dense_matrix(&self) -> Option<ArrayView2<'_, f32>> {
        Some(self.a.view())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::operators::apply;
    use crate::restore::operators::file::FileType;
    use crate::restore::operators::test_util::{assert_adjoint, randn};

    #[test]
    fn densified_operators_keep_their_map_and_gain_its_matrix() {
        use crate::restore::operators::OperatorSpec;
        use crate::restore::rng::ImageRngs;
        let shape = [1, 8, 8];
        for spec in ["sr:2", "sr-bicubic:2", "blur-gauss:1"] {
            let family = OperatorSpec::parse(spec).unwrap().build(shape, 0).unwrap();
            let op = family.for_image(&mut ImageRngs::new(0, "a").operator);
            assert!(op.dense_matrix().is_none(), "{spec} is structured");
            let dense = Densified::new(op.clone(), 64 * 64).unwrap();
            let a = dense.dense_matrix().unwrap();
            assert_eq!(a.dim(), (op.measurements(), 64), "{spec}");
            // The matrix is the operator: A·x and Aᵀ·y agree with the structured map.
            let x = randn(64, 1);
            let y = randn(op.measurements(), 2);
            let ax = a.dot(&ArrayView1::from(&x[..]));
            let aty = a.t().dot(&ArrayView1::from(&y[..]));
            let (want_ax, mut want_aty) = (apply(op.as_ref(), &x), vec![0.0; 64]);
            op.adjoint(&y, &mut want_aty);
            for (got, want) in ax.iter().zip(&want_ax).chain(aty.iter().zip(&want_aty)) {
                assert!((got - want).abs() < 1e-5, "{spec}: {got} vs {want}");
            }
            // forward and adjoint are the structured operator's own, bit for bit.
            assert_eq!(apply(&dense, &x), want_ax, "{spec}");
        }
        let sr = OperatorSpec::parse("sr:2")
            .unwrap()
            .build(shape, 0)
            .unwrap();
        let sr = sr.for_image(&mut ImageRngs::new(0, "a").operator);
        assert!(Densified::new(sr.clone(), 16 * 64).is_some());
        assert!(
            Densified::new(sr, 16 * 64 - 1).is_none(),
            "over the entry budget"
        );
    }

    #[test]
    fn adjoint_identity() {
        let file = FileArray::npy_f32("a.npy", &[7, 24], randn(7 * 24, 3));
        assert_adjoint(&DenseMatrix::from_file(&file, 24).unwrap());
    }

    #[test]
    fn known_values_and_the_dense_path() {
        let file = FileArray::npy_f32("a.npy", &[2, 3], vec![1.0, 2.0, 0.0, 0.0, -1.0, 3.0]);
        let op = DenseMatrix::from_file(&file, 3).unwrap();
        assert_eq!(apply(&op, &[1.0, 1.0, 1.0]), vec![3.0, 2.0]);
        let mut x = vec![0.0; 3];
        op.adjoint(&[1.0, 1.0], &mut x);
        assert_eq!(x, vec![1.0, 1.0, 3.0]);
        assert_eq!(
            op.dense_matrix().unwrap(),
            ndarray::array![[1.0f32, 2.0, 0.0], [0.0, -1.0, 3.0]]
        );
    }

    #[test]
    fn bad_files_are_named_with_expected_and_found() {
        let err = |f: FileArray| DenseMatrix::from_file(&f, 12).unwrap_err().join("\n");
        let wrong_cols = err(FileArray::npy_f32("s3://b/a.npy", &[4, 10], vec![0.0; 40]));
        assert!(
            wrong_cols.contains("s3://b/a.npy: expected an M×12 float32 or float64 .npy")
                && wrong_cols.contains("found (4, 10) float32"),
            "{wrong_cols}"
        );
        let one_d = err(FileArray::npy_f32("a.npy", &[12], vec![0.0; 12]));
        assert!(one_d.contains("found (12,) float32"), "{one_d}");
        let ints = FileArray {
            file_type: FileType::Npy("int64"),
            ..FileArray::npy_f32("a.npy", &[1, 12], vec![0.0; 12])
        };
        assert!(err(ints).contains("found (1, 12) int64"));
        let mut values = vec![0.0; 24];
        values[3] = f32::NAN;
        values[5] = f32::INFINITY;
        let nan = err(FileArray::npy_f32("a.npy", &[2, 12], values));
        assert!(
            nan.contains("a.npy: 2 of 24 values are not finite"),
            "{nan}"
        );
        // Shape and values wrong together: both said.
        let mut values = vec![0.0; 10];
        values[0] = f32::NAN;
        let both =
            DenseMatrix::from_file(&FileArray::npy_f32("a.npy", &[1, 10], values), 12).unwrap_err();
        assert_eq!(both.len(), 2, "{both:?}");
    }
}
