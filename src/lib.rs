//! adps: Ambient DPS over ONNX Runtime, as a dataflow pipeline.
//!
//! The module tree follows the data flow:
//! - [`io`]: object stores, Parquet and image codecs (the edges).
//! - [`stages`]: one file per pipeline stage, in flow order (list → fetch → decode →
//!   batch → restore → metrics → write → commit).
//! - [`pipeline`]: the run configuration, the validated plan, and the one place that
//!   wires stages ([`pipeline::topology`]).
//! - [`restore`]: pure math — schedule, operators, sampler, DPS guidance, metrics. No I/O.
//! - [`model`]: ONNX Runtime sessions implementing [`restore::denoiser::Denoiser`].
//! - [`status`]: where a run stands, read back from its outputs.
//! - [`cli`] and [`app`]: the command line.

pub mod app;
pub mod cli;
pub mod evaluate;
pub mod io;
pub mod model;
pub mod pipeline;
pub mod report;
pub mod restore;
pub mod run_report;
pub mod stages;
pub mod status;
