//! Pure math of Ambient DPS (spec §1): no I/O, no ONNX Runtime, no Parquet.

pub mod denoiser;
