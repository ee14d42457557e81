//! `cs:M`: Gaussian compressed sensing, A ∈ R^{M×n} with N(0, 1/M) entries (the
//! simulated case of `matrix:URL`), and the minimum-norm least-squares baseline of any
//! wide dense A.

use ndarray::{Array2, ArrayView1, ArrayView2};
use rand::RngCore;

pub use super::matrix::DenseMatrix;

/// The Gaussian matrix of `cs:M`: a [`DenseMatrix`] drawn from the run generator.
pub type GaussianCs = DenseMatrix;

/// Draw A [M, n] row by row with entries N(0, 1/M): columns then have unit norm on
/// average, so `‖A x‖ ≈ ‖x‖` for a fixed x. One matrix per run (the run generator).
pub fn gaussian<R: RngCore + ?Sized>(m: usize, n: usize, rng: &mut R) -> DenseMatrix {
    let mut data = vec![0.0f32; m * n];
    crate::restore::rng::fill_standard_normal(rng, &mut data);
    let scale = 1.0 / (m as f32).sqrt();
    data.iter_mut().for_each(|v| *v *= scale);
    DenseMatrix::from_matrix(Array2::from_shape_vec((m, n), data).expect("m·n entries"))
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
    use crate::restore::operators::{apply, residual_norm, LinearOperator};
    use crate::restore::rng::{run_rng, RunStream};

    fn op(m: usize, n: usize) -> DenseMatrix {
        gaussian(m, n, &mut run_rng(42, RunStream::CsMatrix))
    }

    fn a(op: &DenseMatrix) -> Array2<f32> {
        op.dense_matrix().unwrap().to_owned()
    }

    #[test]
    fn adjoint_identity() {
        assert_adjoint(&op(20, 48));
    }

    #[test]
    fn same_run_seed_same_matrix() {
        assert_eq!(a(&op(4, 12)), a(&op(4, 12)));
        assert_ne!(
            a(&op(4, 12)),
            a(&gaussian(4, 12, &mut run_rng(43, RunStream::CsMatrix)))
        );
    }

    #[test]
    fn columns_have_unit_norm_on_average() {
        let a = a(&op(256, 300));
        let mean_sq: f32 = a.columns().into_iter().map(|c| c.dot(&c)).sum::<f32>() / 300.0;
        assert!(
            (mean_sq - 1.0).abs() < 0.02,
            "mean squared column norm {mean_sq}"
        );
    }

    #[test]
    fn known_values_on_a_fixed_matrix() {
        let cs = DenseMatrix::from_matrix(ndarray::array![[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]]);
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
