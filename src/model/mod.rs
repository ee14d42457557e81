//! ONNX Runtime: model folders (spec §2), their cards, and sessions implementing
//! [`crate::restore::denoiser::Denoiser`].
