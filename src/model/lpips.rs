//! LPIPS through ONNX Runtime: a graph with inputs `x0`, `x1` [B, 3, H, W] in [-1, 1] and
//! output `distance` [B] (LPIPS v0.1, AlexNet; built by models/lpips/, see its README).
//!
//! The graph itself does no resizing. The metrics stage ([`Perceptual`]) prepares every
//! pair the same way, whichever model made the reconstruction:
//!
//! * grey images are repeated to three channels;
//! * small images: each side below [`MIN_SIDE`] (64) pixels is upsampled to 64, so a 28×28
//!   or 32×32 image is measured at 64×64 (a 32×100 one at 64×100; larger sides are never
//!   shrunk). The resize is bilinear with half-pixel centres and `align_corners = false`,
//!   i.e. PyTorch's `F.interpolate(x, size, mode="bilinear", align_corners=False)`
//!   without antialiasing, applied identically to the reconstruction and the truth.
//!   AlexNet needs at least 31 pixels a side to reach relu5; 64 gives every tap a few
//!   positions to average over.
//!
//! [`OnnxLpips::distances_rgb`] feeds images as they are (full size, no resize); the
//! calibration against the official values uses it.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;

use super::runtime::{build_session, SessionConfig};
use crate::stages::metrics::Perceptual;

/// Sides shorter than this are upsampled to it before LPIPS.
pub const MIN_SIDE: usize = 64;

/// An LPIPS graph.
pub struct OnnxLpips {
    session: Session,
}

impl OnnxLpips {
    /// Loads the graph and checks its inputs and output by name.
    pub fn load(path: &Path, config: &SessionConfig) -> Result<Self> {
        let (session, _) = build_session(path, config)?;
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if inputs != ["x0", "x1"] || outputs != ["distance"] {
            bail!(
                "{}: an LPIPS graph needs inputs [x0, x1] and output [distance], found {inputs:?} / {outputs:?}",
                path.display()
            );
        }
        Ok(Self { session })
    }

    /// LPIPS distances for a batch of pairs, each [3, H, W] in [-1, 1], as they are (no
    /// resizing).
    pub fn distances_rgb(&mut self, a: &Array4<f32>, b: &Array4<f32>) -> Result<Vec<f64>> {
        if a.shape() != b.shape() || a.shape()[1] != 3 {
            bail!(
                "LPIPS needs two [B, 3, H, W] batches of one shape, got {:?} and {:?}",
                a.shape(),
                b.shape()
            );
        }
        let x0 = TensorRef::from_array_view(a.view()).map_err(|e| anyhow!("{e}"))?;
        let x1 = TensorRef::from_array_view(b.view()).map_err(|e| anyhow!("{e}"))?;
        let out = self
            .session
            .run(ort::inputs!["x0" => x0, "x1" => x1])
            .map_err(|e| anyhow!("LPIPS: ONNX Runtime run failed: {e}"))?;
        let d = out
            .get("distance")
            .context("LPIPS: no output `distance`")?
            .try_extract_array::<f32>()
            .map_err(|e| anyhow!("LPIPS: {e}"))?;
        Ok(d.iter().map(|&v| v as f64).collect())
    }
}

/// The size an H×W image is measured at: each side raised to at least [`MIN_SIDE`].
pub fn lpips_size(h: usize, w: usize) -> (usize, usize) {
    (h.max(MIN_SIDE), w.max(MIN_SIDE))
}

/// Source taps for one output axis of a half-pixel bilinear resize (PyTorch's
/// `align_corners=False`): for each output index, (lower index, upper index, upper weight).
fn bilinear_taps(n_in: usize, n_out: usize) -> Vec<(usize, usize, f32)> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|o| {
            let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(n_in - 1);
            let i1 = (i0 + 1).min(n_in - 1);
            (i0, i1, (src - i0 as f64) as f32)
        })
        .collect()
}

/// Resizes one H×W plane to `oh`×`ow`, bilinear with half-pixel centres and
/// `align_corners = false`, as PyTorch's `F.interpolate(..., mode="bilinear")` (no
/// antialiasing). `out` must hold `oh * ow` values.
pub fn resize_bilinear(
    plane: &[f32],
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    out: &mut [f32],
) {
    assert_eq!(plane.len(), h * w, "plane is not {h}×{w}");
    assert_eq!(out.len(), oh * ow, "output is not {oh}×{ow}");
    if (h, w) == (oh, ow) {
        out.copy_from_slice(plane);
        return;
    }
    let rows = bilinear_taps(h, oh);
    let cols = bilinear_taps(w, ow);
    for (orow, &(y0, y1, ly)) in out.chunks_exact_mut(ow).zip(&rows) {
        let (r0, r1) = (&plane[y0 * w..(y0 + 1) * w], &plane[y1 * w..(y1 + 1) * w]);
        for (o, &(x0, x1, lx)) in orow.iter_mut().zip(&cols) {
            let top = r0[x0] + (r0[x1] - r0[x0]) * lx;
            let bottom = r1[x0] + (r1[x1] - r1[x0]) * lx;
            *o = top + (bottom - top) * ly;
        }
    }
}

/// Stacks CHW images into [B, 3, H', W'] as LPIPS measures them: grey repeated to three
/// channels, sides below [`MIN_SIDE`] upsampled (see [`lpips_size`]).
pub fn stack_rgb(images: &[&[f32]], [c, h, w]: [usize; 3]) -> Result<Array4<f32>> {
    if c != 1 && c != 3 {
        bail!("LPIPS needs grey or RGB images, got {c} channels");
    }
    let (oh, ow) = lpips_size(h, w);
    let mut out = Array4::zeros((images.len(), 3, oh, ow));
    for (i, (mut o, img)) in out.outer_iter_mut().zip(images).enumerate() {
        if img.len() != c * h * w {
            bail!("image {i} has {} values, not {c}×{h}×{w}", img.len());
        }
        let o = o.as_slice_mut().expect("a fresh array is contiguous");
        for ch in 0..3 {
            let src = if c == 1 { 0 } else { ch };
            let plane = &img[src * h * w..(src + 1) * h * w];
            resize_bilinear(
                plane,
                (h, w),
                (oh, ow),
                &mut o[ch * oh * ow..(ch + 1) * oh * ow],
            );
        }
    }
    Ok(out)
}

impl Perceptual for OnnxLpips {
    fn distances(&mut self, pairs: &[(&[f32], &[f32])], shape: [usize; 3]) -> Result<Vec<f64>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let a: Vec<&[f32]> = pairs.iter().map(|p| p.0).collect();
        let b: Vec<&[f32]> = pairs.iter().map(|p| p.1).collect();
        self.distances_rgb(&stack_rgb(&a, shape)?, &stack_rgb(&b, shape)?)
    }
}
