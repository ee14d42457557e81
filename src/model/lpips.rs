//! LPIPS through ONNX Runtime: a graph with inputs `x0`, `x1` [B, 3, H, W] in [-1, 1] and
//! output `distance` [B] (built by models/lpips/, see its README). Grey images are
//! repeated to three channels here; any resizing is inside the graph, so every model's
//! reconstructions are measured the same way.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;

use super::runtime::{build_session, SessionConfig};
use crate::stages::metrics::Perceptual;

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

    /// LPIPS distances for a batch of pairs, each [3, H, W] in [-1, 1].
    pub fn distances_rgb(&mut self, a: &Array4<f32>, b: &Array4<f32>) -> Result<Vec<f64>> {
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

/// Stacks CHW images into [B, 3, H, W], repeating grey to three channels.
fn stack_rgb(images: &[&[f32]], [c, h, w]: [usize; 3]) -> Result<Array4<f32>> {
    if c != 1 && c != 3 {
        bail!("LPIPS needs grey or RGB images, got {c} channels");
    }
    let mut out = Array4::zeros((images.len(), 3, h, w));
    for (mut o, img) in out.outer_iter_mut().zip(images) {
        for ch in 0..3 {
            let src = if c == 1 { 0 } else { ch };
            let plane = &img[src * h * w..(src + 1) * h * w];
            o.index_axis_mut(ndarray::Axis(0), ch)
                .iter_mut()
                .zip(plane)
                .for_each(|(d, s)| *d = *s);
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
