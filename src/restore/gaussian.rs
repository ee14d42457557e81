//! A closed-form [`Denoiser`] for Gaussian data, for tests of everything above the model.
//!
//! Data x0 ~ N(μ, s²) independently per pixel. Given m⊙(x0 + σ·η), the posterior mean is
//! `D = μ + m⊙k⊙(m⊙x − μ)`, k = s²/(s²+σ²): kept pixels shrink towards μ, erased ones
//! are μ. Its Jacobian is diagonal, m²k, which gives `vjp` and `dense` exactly.

use ndarray::{Array1, Array4, ArrayView1, ArrayView2, ArrayView4, Axis, Zip};

use super::denoiser::{Denoiser, DenseOutput};

/// The Gaussian posterior-mean denoiser, counting its evaluations.
#[derive(Debug, Clone)]
pub struct GaussianDenoiser {
    /// Image shape [C, H, W].
    pub shape: [usize; 3],
    /// Prior mean μ.
    pub mu: f32,
    /// Prior standard deviation s.
    pub s: f32,
    /// Calls to `denoise` so far.
    pub denoise_calls: usize,
    /// Calls to `vjp` so far.
    pub vjp_calls: usize,
    /// Calls to `dense` so far.
    pub dense_calls: usize,
    /// The batch size of every call so far, in order.
    pub call_sizes: Vec<usize>,
}

impl GaussianDenoiser {
    /// A denoiser for N(μ, s²) pixels of shape `[C, H, W]`.
    pub fn new(shape: [usize; 3], mu: f32, s: f32) -> Self {
        Self {
            shape,
            mu,
            s,
            denoise_calls: 0,
            vjp_calls: 0,
            dense_calls: 0,
            call_sizes: Vec::new(),
        }
    }

    /// x0 and the diagonal Jacobian m²k.
    fn posterior(
        &self,
        x: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
    ) -> (Array4<f32>, Array4<f32>) {
        let s2 = self.s * self.s;
        let mut x0 = Array4::zeros(x.raw_dim());
        let mut jac = Array4::zeros(x.raw_dim());
        for (b, &sig) in sigma.iter().enumerate() {
            let k = s2 / (s2 + sig * sig);
            Zip::from(x0.index_axis_mut(Axis(0), b))
                .and(jac.index_axis_mut(Axis(0), b))
                .and(x.index_axis(Axis(0), b))
                .and(mask.index_axis(Axis(0), b))
                .for_each(|x0, j, &x, &m| {
                    *x0 = self.mu + m * k * (m * x - self.mu);
                    *j = m * m * k;
                });
        }
        (x0, jac)
    }
}

impl Denoiser for GaussianDenoiser {
    fn shape(&self) -> [usize; 3] {
        self.shape
    }

    fn denoise(
        &mut self,
        x: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
    ) -> anyhow::Result<Array4<f32>> {
        self.denoise_calls += 1;
        self.call_sizes.push(x.dim().0);
        Ok(self.posterior(x, sigma, mask).0)
    }

    fn vjp(
        &mut self,
        x: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
        cotangent: ArrayView4<f32>,
    ) -> anyhow::Result<(Array4<f32>, Array4<f32>)> {
        self.vjp_calls += 1;
        self.call_sizes.push(x.dim().0);
        let (x0, jac) = self.posterior(x, sigma, mask);
        Ok((x0, jac * cotangent))
    }

    fn dense(
        &mut self,
        x: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
        y: ArrayView2<f32>,
        a: ArrayView2<f32>,
    ) -> anyhow::Result<DenseOutput> {
        self.dense_calls += 1;
        self.call_sizes.push(x.dim().0);
        let (x0_hat, jac) = self.posterior(x, sigma, mask);
        let (bsz, n) = (x.shape()[0], a.ncols());
        let flat = x0_hat.view().into_shape_with_order((bsz, n))?;
        let r = &y - &flat.dot(&a.t()); // [B, M]
        let residual_sq: Array1<f32> = r.rows().into_iter().map(|r| r.dot(&r)).collect();
        // ∇‖y − A D(x)‖² = Jᵀ(−2Aᵀr), J diagonal.
        let at_r = r.dot(&a).into_shape_with_order(x.raw_dim())?;
        let grad = jac * at_r * -2.0;
        Ok(DenseOutput {
            x0_hat,
            residual_sq,
            grad,
        })
    }
}
