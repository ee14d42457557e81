//! Pure math of Ambient DPS (spec §1): no I/O, no ONNX Runtime, no Parquet.
//!
//! - [`schedule`]: the EDM σ discretization.
//! - [`rng`]: per-image generators keyed by (run seed, image id).
//! - [`operators`]: forward operators A with adjoints, operator strings, baselines.
//! - [`guidance`] and [`sampler`]: the Ambient DPS sampler over a batch.
//! - [`metrics`]: MSE, PSNR, SSIM and the measurement residual.
//! - [`measurement`]: measured y from the [0, 1] image range to the model's.
//! - [`protocol`]: one image's operator, y, sampling mask and noise, from its id.
//! - [`denoiser`]: the model contract; [`gaussian`]: a closed-form one for tests.

pub mod denoiser;
pub mod gaussian;
pub mod guidance;
pub mod measurement;
pub mod metrics;
pub mod operators;
pub mod protocol;
pub mod rng;
pub mod sampler;
pub mod schedule;
