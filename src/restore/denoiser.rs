//! The model contract of spec §2, as the sampler sees it.
//!
//! The ONNX implementation lives in `crate::model`; tests use closed-form denoisers.
//! All arrays are NCHW float32; every output row depends only on the same input row,
//! which is what lets a batch be split or reordered without changing any image.

use ndarray::{Array1, Array4, ArrayView1, ArrayView2, ArrayView4};

/// Outputs of the fused dense-operator graph (`dps_dense.onnx`).
#[derive(Debug, Clone)]
pub struct DenseOutput {
    /// D(x_t, σ, m), [B, C, H, W].
    pub x0_hat: Array4<f32>,
    /// ‖y − A·vec(x0_hat)‖² per image, [B].
    pub residual_sq: Array1<f32>,
    /// ∇_{x_t} residual_sq per image, [B, C, H, W].
    pub grad: Array4<f32>,
}

/// A denoiser `D(x, σ, m) ≈ E[x0 | m⊙(x0 + σ·η), m]` with the two DPS gradient graphs.
pub trait Denoiser {
    /// Image shape [C, H, W] the model was trained on.
    fn shape(&self) -> [usize; 3];

    /// `denoiser.onnx`: x0_hat for a batch.
    fn denoise(
        &mut self,
        x_t: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
    ) -> anyhow::Result<Array4<f32>>;

    /// `dps_vjp.onnx`: (x0_hat, Jᵀ·cotangent) with J = ∂x0_hat/∂x_t, per image.
    fn vjp(
        &mut self,
        x_t: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
        cotangent: ArrayView4<f32>,
    ) -> anyhow::Result<(Array4<f32>, Array4<f32>)>;

    /// `dps_dense.onnx`: x0_hat, ‖y − A x0_hat‖² and its gradient, A [M, C·H·W] shared.
    fn dense(
        &mut self,
        x_t: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
        y: ArrayView2<f32>,
        a: ArrayView2<f32>,
    ) -> anyhow::Result<DenseOutput>;
}
