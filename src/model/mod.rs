//! ONNX Runtime: model folders (spec §2), their cards, and sessions implementing
//! [`crate::restore::denoiser::Denoiser`].
//!
//! - [`runtime`]: loading the ONNX Runtime library once, devices, building sessions.
//! - [`card`]: `card.json` and the graph signatures spec §2 requires.
//! - [`folder`]: [`ModelFolder::open`], which checks a folder against its card.
//! - [`session`]: [`OnnxDenoiser`], the three graphs behind the `Denoiser` trait.
//! - [`fused`]: the `adps.*` kernels (group norm + SiLU) registered with CPU sessions.
//! - [`inspect`](inspect()): a folder summarised for `adps inspect`.

pub mod card;
pub mod folder;
pub mod fused;
mod inspect;
pub mod lpips;
mod onnx_proto;
pub mod runtime;
pub mod session;

pub use card::{Card, Corruption, Dim, GraphEntry, Training};
pub use folder::{GraphFile, ModelFolder};
pub use inspect::{describe, inspect};
pub use runtime::{init, library_path, Device, SessionConfig};
pub use session::{GraphCounter, OnnxDenoiser, RunCounters};
