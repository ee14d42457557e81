//! `cs:M`: Gaussian compressed sensing, A ∈ R^{M×n} with N(0, 1/M) entries, and its
//! minimum-norm least-squares baseline.

use ndarray::linalg::general_mat_vec_mul;
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut1};
use rand::RngCore;

use super::LinearOperator;

/// A dense Gaussian measurement matrix, one per run (drawn from the run generator).
#[derive(Debug, Clone)]
pub struct GaussianCs {
    a: Array2<f32>,
}

impl GaussianCs {
    /// Draw A [M, n] row by row with entries N(0, 1/M): columns then have unit norm on
    /// average, so `‖A x‖ ≈ ‖x‖` for a fixed x.
    pub fn new<R: RngCore + ?Sized>(m: usize, n: usize, rng: &mut R) -> Self {
        let mut data = vec![0.0f32; m * n];
        crate::restore::rng::fill_standard_normal(rng, &mut data);
        let scale = 1.0 / (m as f32).sqrt();
        data.iter_mut().for_each(|v| *v *= scale);
        Self::from_matrix(Array2::from_shape_vec((m, n), data).expect("m·n entries"))
    }

    /// Wrap an existing matrix (e.g. one recorded by a Python parity test).
    pub fn from_matrix(a: Array2<f32>) -> Self {
        Self { a }
    }
}

impl LinearOperator for GaussianCs {
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

    fn adjoint(&self, y: &[f32], x: &mut [f32]) {
        general_mat_vec_mul(
            1.0,
            &self.a.t(),
            &ArrayView1::from(y),
            0.0,
            &mut ArrayViewMut1::from(x),
        );
    }

    fn dense_matrix(&self) -> Option<ArrayView2<'_, f32>> {
        Some(self.a.view())
    }
}

/// The minimum-norm least-squares solution `x = Aᵀ (A Aᵀ)⁻¹ y` of a wide A (M ≤ n):
/// the classical baseline for `cs`. A Aᵀ is factored once per run (Cholesky, f64).
#[derive(Debug, Clone)]
pub struct MinNormSolver {
    a: Array2<f64>,
    /// Lower Cholesky factor L of A Aᵀ = L Lᵀ, row-major M×M.
    l: Array2<f64>,
}

impl MinNormSolver {
    /// Factor A Aᵀ; fails when it is not positive definite (A not of full row rank).
    pub fn new(a: ArrayView2<f32>) -> anyhow::Result<Self> {
        let a = a.mapv(f64::from);
        let g = a.dot(&a.t());
        let m = g.nrows();
        let mut l = Array2::<f64>::zeros((m, m));
        for i in 0..m {
            for j in 0..=i {
                let s: f64 = g[[i, j]] - (0..j).map(|k| l[[i, k]] * l[[j, k]]).sum::<f64>();
                if i == j {
                    anyhow::ensure!(
                        s > 0.0,
                        "A Aᵀ is singular (row {i}): A is not of full row rank"
                    );
                    l[[i, i]] = s.sqrt();
                } else {
                    l[[i, j]] = s / l[[j, j]];
                }
            }
        }
        Ok(Self { a, l })
    }

    /// `Aᵀ (A Aᵀ)⁻¹ y`.
    pub fn solve(&self, y: &[f32]) -> Vec<f32> {
        let m = self.l.nrows();
        assert_eq!(y.len(), m, "y has {} entries, A has {m} rows", y.len());
        // L z = y, then Lᵀ w = z.
        let mut z = vec![0.0f64; m];
        for i in 0..m {
            z[i] =
                (y[i] as f64 - (0..i).map(|k| self.l[[i, k]] * z[k]).sum::<f64>()) / self.l[[i, i]];
        }
        for i in (0..m).rev() {
            z[i] = (z[i] - (i + 1..m).map(|k| self.l[[k, i]] * z[k]).sum::<f64>()) / self.l[[i, i]];
        }
        self.a
            .t()
            .dot(&ArrayView1::from(&z))
            .iter()
            .map(|&v| v as f32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::operators::test_util::{assert_adjoint, randn};
    use crate::restore::operators::{apply, residual_norm};
    use crate::restore::rng::{run_rng, RunStream};

    fn op(m: usize, n: usize) -> GaussianCs {
        GaussianCs::new(m, n, &mut run_rng(42, RunStream::CsMatrix))
    }

    #[test]
    fn adjoint_identity() {
        assert_adjoint(&op(20, 48));
    }

    #[test]
    fn same_run_seed_same_matrix() {
        assert_eq!(op(4, 12).a, op(4, 12).a);
        assert_ne!(
            op(4, 12).a,
            GaussianCs::new(4, 12, &mut run_rng(43, RunStream::CsMatrix)).a
        );
    }

    #[test]
    fn columns_have_unit_norm_on_average() {
        let a = op(256, 300).a;
        let mean_sq: f32 = a.columns().into_iter().map(|c| c.dot(&c)).sum::<f32>() / 300.0;
        assert!(
            (mean_sq - 1.0).abs() < 0.02,
            "mean squared column norm {mean_sq}"
        );
    }

    #[test]
    fn known_values_on_a_fixed_matrix() {
        let cs = GaussianCs::from_matrix(ndarray::array![[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]]);
        assert_eq!(apply(&cs, &[1.0, 1.0, 1.0]), vec![3.0, 2.0]);
        let mut x = vec![0.0; 3];
        cs.adjoint(&[1.0, 1.0], &mut x);
        assert_eq!(x, vec![1.0, 1.0, 3.0]);
    }

    #[test]
    fn min_norm_solution_fits_y_and_lies_in_the_row_space() {
        let cs = op(16, 40);
        let y = randn(16, 9);
        let solver = MinNormSolver::new(cs.dense_matrix().unwrap()).unwrap();
        let x = solver.solve(&y);
        assert!(residual_norm(&cs, &x, &y) < 1e-4);
        // Any other solution x + v (v in the null space) is longer: x ⟂ null(A) ⇔ x = Aᵀ w.
        let x2: Vec<f32> = {
            let z = randn(40, 10);
            let pz = solver.solve(&apply(&cs, &z));
            x.iter()
                .zip(z.iter().zip(&pz))
                .map(|(x, (z, p))| x + z - p)
                .collect()
        };
        assert!(residual_norm(&cs, &x2, &y) < 1e-4);
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
        assert!(norm(&x) < norm(&x2));
    }

    #[test]
    fn rank_deficient_matrix_is_refused() {
        let a = ndarray::array![[1.0f32, 2.0], [2.0, 4.0]];
        assert!(MinNormSolver::new(a.view()).is_err());
    }
}
