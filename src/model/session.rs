//! [`OnnxDenoiser`]: the three graphs of a validated [`ModelFolder`] (and its optional
//! split VJP pair) as ONNX Runtime sessions behind the [`Denoiser`] trait, with counters
//! of the time spent inside ORT.

use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use ndarray::{Array1, Array4, ArrayView, ArrayView1, ArrayView2, ArrayView4, Dimension, Ix1, Ix4};
use ort::session::{Session, SessionInputValue, SessionOutputs};
use ort::value::TensorRef;

use super::card::Card;
use super::card::SPLIT_VJP;
use super::folder::ModelFolder;
use super::runtime::{self, Device, SessionConfig};
use crate::restore::denoiser::{denoise_then_vjp, CotangentOf, Denoiser, DenseOutput};

/// Calls and seconds inside `Session::run` for one graph.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GraphCounter {
    pub calls: u64,
    pub seconds: f64,
    /// Images fed (sum of batch sizes).
    pub images: u64,
}

/// Time spent inside ONNX Runtime, per graph; compare [`RunCounters::seconds`] with the
/// wall time of a run to get ORT's share.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunCounters {
    pub denoiser: GraphCounter,
    pub vjp: GraphCounter,
    pub dense: GraphCounter,
    /// The split VJP pair (`dps_vjp_forward` + `dps_vjp_backward`, counted as one call).
    pub split_vjp: GraphCounter,
}

impl RunCounters {
    /// Total seconds inside `run` over all graphs.
    pub fn seconds(&self) -> f64 {
        self.denoiser.seconds + self.vjp.seconds + self.dense.seconds + self.split_vjp.seconds
    }

    /// Total `run` calls over all graphs (the split pair's two runs count as one).
    pub fn calls(&self) -> u64 {
        self.denoiser.calls + self.vjp.calls + self.dense.calls + self.split_vjp.calls
    }

    /// Sum of two counters (e.g. over workers).
    pub fn merged(&self, other: &RunCounters) -> RunCounters {
        let add = |a: GraphCounter, b: GraphCounter| GraphCounter {
            calls: a.calls + b.calls,
            seconds: a.seconds + b.seconds,
            images: a.images + b.images,
        };
        RunCounters {
            denoiser: add(self.denoiser, other.denoiser),
            vjp: add(self.vjp, other.vjp),
            dense: add(self.dense, other.dense),
            split_vjp: add(self.split_vjp, other.split_vjp),
        }
    }
}

/// A model folder's three graphs loaded in ONNX Runtime.
pub struct OnnxDenoiser {
    card: Card,
    device: Device,
    denoiser: Session,
    vjp: Session,
    dense: Session,
    split_vjp: Option<SplitVjp>,
    counters: RunCounters,
}

/// The optional pair: the forward keeps values, the backward reads them by name.
struct SplitVjp {
    forward: Session,
    backward: Session,
    /// The backward's inputs other than `cotangent`: forward inputs or kept outputs.
    backward_inputs: Vec<String>,
}

impl std::fmt::Debug for OnnxDenoiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxDenoiser")
            .field("model", &self.card.name)
            .field("device", &self.device)
            .field("counters", &self.counters)
            .finish()
    }
}

impl OnnxDenoiser {
    /// Open and validate `dir`, then load its graphs.
    pub fn load(dir: impl AsRef<std::path::Path>, config: &SessionConfig) -> Result<Self> {
        Self::new(&ModelFolder::open(dir)?, config)
    }

    /// Load the graphs of an already validated folder.
    pub fn new(folder: &ModelFolder, config: &SessionConfig) -> Result<Self> {
        let load = |name: &str, config: &SessionConfig| -> Result<(Session, Device)> {
            let (session, device) = runtime::build_session(&folder.graph_path(name), config)?;
            check_session_names(&session, folder, name)?;
            Ok((session, device))
        };
        let (denoiser, device) = load("denoiser.onnx", config)?;
        // The other graphs follow the first one's device, so `auto` never splits a model.
        let config = SessionConfig { device, ..*config };
        let (vjp, _) = load("dps_vjp.onnx", &config)?;
        let (dense, _) = load("dps_dense.onnx", &config)?;
        let split_vjp = if folder.card().has_split_vjp() {
            let (forward, _) = load(SPLIT_VJP[0], &config)?;
            let (backward, _) = load(SPLIT_VJP[1], &config)?;
            let backward_inputs = backward
                .inputs()
                .iter()
                .map(|i| i.name().to_string())
                .filter(|n| n != "cotangent")
                .collect();
            Some(SplitVjp {
                forward,
                backward,
                backward_inputs,
            })
        } else {
            None
        };
        Ok(Self {
            card: folder.card().clone(),
            device,
            denoiser,
            vjp,
            dense,
            split_vjp,
            counters: RunCounters::default(),
        })
    }

    pub fn card(&self) -> &Card {
        &self.card
    }

    /// The device the sessions run on (`Cpu` or `Cuda`, never `Auto`).
    pub fn device(&self) -> Device {
        self.device
    }

    /// Whether the VJP path runs the split pair (one network evaluation per step).
    pub fn has_split_vjp(&self) -> bool {
        self.split_vjp.is_some()
    }

    /// Time and calls inside ONNX Runtime since creation or the last reset.
    pub fn counters(&self) -> RunCounters {
        self.counters
    }

    pub fn reset_counters(&mut self) {
        self.counters = RunCounters::default();
    }

    /// "model fmnist-p0.4 expects 1×32×32 images, got 3×64×64"; also checks `others`
    /// have x_t's shape and `sigma` its batch.
    fn check_batch(
        &self,
        x_t: &ArrayView4<f32>,
        sigma: &ArrayView1<f32>,
        others: &[(&str, &ArrayView4<f32>)],
    ) -> Result<()> {
        let (b, c, h, w) = x_t.dim();
        if [c, h, w] != self.card.shape {
            bail!(
                "model {} expects {} images, got {c}×{h}×{w}",
                self.card.name,
                self.card.shape_string()
            );
        }
        if sigma.len() != b {
            bail!(
                "model {}: sigma has {} entries for a batch of {b}",
                self.card.name,
                sigma.len()
            );
        }
        for (name, a) in others {
            if a.dim() != x_t.dim() {
                bail!(
                    "model {}: {name} is {}, x_t is {}",
                    self.card.name,
                    dims(a.shape()),
                    dims(x_t.shape())
                );
            }
        }
        Ok(())
    }
}

fn dims(shape: &[usize]) -> String {
    shape
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("×")
}

/// The session must have exactly the spec's (for the split pair: the card's) input and
/// output names (ModelFolder checked the file; this checks what ONNX Runtime made of it).
fn check_session_names(session: &Session, folder: &ModelFolder, name: &str) -> Result<()> {
    let card = folder.card();
    let (mut want_in, mut want_out): (Vec<&str>, Vec<&str>) =
        match super::card::spec_signature(name, card.shape) {
            Some(sig) => (
                sig.inputs.iter().map(|(n, _)| *n).collect(),
                sig.outputs.iter().map(|(n, _)| *n).collect(),
            ),
            None => {
                let entry = card
                    .graphs
                    .get(name)
                    .with_context(|| format!("card.json lists no {name}"))?;
                (
                    entry.inputs.keys().map(String::as_str).collect(),
                    entry.outputs.keys().map(String::as_str).collect(),
                )
            }
        };
    let mut have_in: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
    let mut have_out: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    for v in [&mut have_in, &mut have_out, &mut want_in, &mut want_out] {
        v.sort_unstable();
    }
    if have_in != want_in || have_out != want_out {
        bail!(
            "{}: ONNX Runtime sees inputs {have_in:?} / outputs {have_out:?}, spec §2 wants {want_in:?} / {want_out:?}",
            folder.graph_path(name).display()
        );
    }
    Ok(())
}

/// A borrowed tensor of an array (copied only if it is not contiguous in standard order).
fn tensor<'a, D: Dimension + 'static>(
    a: &'a ndarray::CowArray<'a, f32, D>,
) -> Result<SessionInputValue<'a>> {
    Ok(TensorRef::from_array_view(a.view())
        .map_err(|e| anyhow!("{e}"))?
        .into())
}

/// Run `session` on named inputs, timing only the ORT call.
fn run<'s>(
    session: &'s mut Session,
    counter: &mut GraphCounter,
    batch: usize,
    graph: &str,
    inputs: Vec<(&'static str, SessionInputValue<'_>)>,
) -> Result<SessionOutputs<'s>> {
    let inputs = inputs.into_iter().map(|(n, v)| (n.into(), v)).collect();
    run_named(session, counter, batch, graph, inputs)
}

fn run_named<'s>(
    session: &'s mut Session,
    counter: &mut GraphCounter,
    batch: usize,
    graph: &str,
    inputs: Vec<(std::borrow::Cow<'static, str>, SessionInputValue<'_>)>,
) -> Result<SessionOutputs<'s>> {
    let start = Instant::now();
    let out = session.run(inputs);
    counter.seconds += start.elapsed().as_secs_f64();
    counter.calls += 1;
    counter.images += batch as u64;
    out.map_err(|e| anyhow!("{graph}: ONNX Runtime run failed: {e}"))
}

fn output<D: Dimension>(
    outs: &SessionOutputs<'_>,
    graph: &str,
    name: &str,
    shape: &[usize],
) -> Result<ndarray::Array<f32, D>> {
    let value = outs
        .get(name)
        .with_context(|| format!("{graph}: no output `{name}`"))?;
    let view = value
        .try_extract_array::<f32>()
        .map_err(|e| anyhow!("{graph}: output `{name}`: {e}"))?;
    if view.shape() != shape {
        bail!(
            "{graph}: output `{name}` is {:?}, expected {shape:?}",
            view.shape()
        );
    }
    Ok(view.into_dimensionality::<D>().context("rank")?.to_owned())
}

fn empty_image(shape: [usize; 3]) -> Array4<f32> {
    Array4::zeros((0, shape[0], shape[1], shape[2]))
}

fn std_layout<'a, D: Dimension>(a: &'a ArrayView<'a, f32, D>) -> ndarray::CowArray<'a, f32, D> {
    a.as_standard_layout()
}

impl Denoiser for OnnxDenoiser {
    fn shape(&self) -> [usize; 3] {
        self.card.shape
    }

    fn denoise(
        &mut self,
        x_t: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
    ) -> Result<Array4<f32>> {
        self.check_batch(&x_t, &sigma, &[("mask", &mask)])?;
        let b = x_t.dim().0;
        if b == 0 {
            return Ok(empty_image(self.card.shape));
        }
        let (x, s, m) = (std_layout(&x_t), std_layout(&sigma), std_layout(&mask));
        let outs = run(
            &mut self.denoiser,
            &mut self.counters.denoiser,
            b,
            "denoiser.onnx",
            vec![
                ("x_t", tensor(&x)?),
                ("sigma", tensor(&s)?),
                ("mask", tensor(&m)?),
            ],
        )?;
        output::<Ix4>(&outs, "denoiser.onnx", "x0_hat", x_t.shape())
    }

    fn vjp(
        &mut self,
        x_t: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
        cotangent: ArrayView4<f32>,
    ) -> Result<(Array4<f32>, Array4<f32>)> {
        self.check_batch(&x_t, &sigma, &[("mask", &mask), ("cotangent", &cotangent)])?;
        let b = x_t.dim().0;
        if b == 0 {
            return Ok((empty_image(self.card.shape), empty_image(self.card.shape)));
        }
        let (x, s, m, c) = (
            std_layout(&x_t),
            std_layout(&sigma),
            std_layout(&mask),
            std_layout(&cotangent),
        );
        let outs = run(
            &mut self.vjp,
            &mut self.counters.vjp,
            b,
            "dps_vjp.onnx",
            vec![
                ("x_t", tensor(&x)?),
                ("sigma", tensor(&s)?),
                ("mask", tensor(&m)?),
                ("cotangent", tensor(&c)?),
            ],
        )?;
        Ok((
            output::<Ix4>(&outs, "dps_vjp.onnx", "x0_hat", x_t.shape())?,
            output::<Ix4>(&outs, "dps_vjp.onnx", "vjp", x_t.shape())?,
        ))
    }

    /// With the split pair: the forward (x0_hat and the kept values), the cotangent from
    /// x0_hat, the backward on the kept values; one network evaluation instead of two.
    fn vjp_of(
        &mut self,
        x_t: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
        cotangent_of: &mut CotangentOf<'_>,
    ) -> Result<(Array4<f32>, Array4<f32>)> {
        if self.split_vjp.is_none() {
            return denoise_then_vjp(self, x_t, sigma, mask, cotangent_of);
        }
        self.check_batch(&x_t, &sigma, &[("mask", &mask)])?;
        let Some(split) = self.split_vjp.as_mut() else {
            unreachable!("checked above")
        };
        let b = x_t.dim().0;
        if b == 0 {
            return Ok((empty_image(self.card.shape), empty_image(self.card.shape)));
        }
        let [forward_name, backward_name] = SPLIT_VJP;
        let (x, s, m) = (std_layout(&x_t), std_layout(&sigma), std_layout(&mask));
        let kept = run(
            &mut split.forward,
            &mut self.counters.split_vjp,
            b,
            forward_name,
            vec![
                ("x_t", tensor(&x)?),
                ("sigma", tensor(&s)?),
                ("mask", tensor(&m)?),
            ],
        )?;
        let x0_hat = output::<Ix4>(&kept, forward_name, "x0_hat", x_t.shape())?;
        let cotangent = cotangent_of(0, x0_hat.view())?;
        if cotangent.dim() != x_t.dim() {
            bail!(
                "model {}: cotangent is {}, x_t is {}",
                self.card.name,
                dims(cotangent.shape()),
                dims(x_t.shape())
            );
        }
        let cotangent = if cotangent.is_standard_layout() {
            cotangent
        } else {
            cotangent.as_standard_layout().into_owned()
        };
        let c = ndarray::CowArray::from(cotangent.view());
        let mut inputs = vec![("cotangent".into(), tensor(&c)?)];
        for name in &split.backward_inputs {
            let value = match name.as_str() {
                "x_t" => tensor(&x)?,
                "sigma" => tensor(&s)?,
                "mask" => tensor(&m)?,
                kept_name => kept
                    .get(kept_name)
                    .with_context(|| format!("{forward_name}: no output `{kept_name}`"))?
                    .into(),
            };
            inputs.push((name.clone().into(), value));
        }
        // The pair counts as one call of b images: the backward adds only its time.
        let mut backward_counter = GraphCounter::default();
        let outs = run_named(
            &mut split.backward,
            &mut backward_counter,
            b,
            backward_name,
            inputs,
        )?;
        self.counters.split_vjp.seconds += backward_counter.seconds;
        let vjp = output::<Ix4>(&outs, backward_name, "vjp", x_t.shape())?;
        Ok((x0_hat, vjp))
    }

    fn dense(
        &mut self,
        x_t: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
        y: ArrayView2<f32>,
        a: ArrayView2<f32>,
    ) -> Result<DenseOutput> {
        self.check_batch(&x_t, &sigma, &[("mask", &mask)])?;
        let b = x_t.dim().0;
        let n = self.card.numel();
        let (m_rows, a_cols) = a.dim();
        if a_cols != n || m_rows == 0 {
            bail!(
                "model {}: A is {m_rows}×{a_cols}, expected M×{n} with M ≥ 1",
                self.card.name
            );
        }
        if y.dim() != (b, m_rows) {
            bail!(
                "model {}: y is {}×{}, expected {b}×{m_rows} (batch × rows of A)",
                self.card.name,
                y.dim().0,
                y.dim().1
            );
        }
        if b == 0 {
            let img = empty_image(self.card.shape);
            return Ok(DenseOutput {
                x0_hat: img.clone(),
                residual_sq: Array1::zeros(0),
                grad: img,
            });
        }
        let (x, s, m) = (std_layout(&x_t), std_layout(&sigma), std_layout(&mask));
        let (yv, av) = (std_layout(&y), std_layout(&a));
        let outs = run(
            &mut self.dense,
            &mut self.counters.dense,
            b,
            "dps_dense.onnx",
            vec![
                ("x_t", tensor(&x)?),
                ("sigma", tensor(&s)?),
                ("mask", tensor(&m)?),
                ("y", tensor(&yv)?),
                ("A", tensor(&av)?),
            ],
        )?;
        Ok(DenseOutput {
            x0_hat: output::<Ix4>(&outs, "dps_dense.onnx", "x0_hat", x_t.shape())?,
            residual_sq: output::<Ix1>(&outs, "dps_dense.onnx", "residual_sq", &[b])?,
            grad: output::<Ix4>(&outs, "dps_dense.onnx", "grad", x_t.shape())?,
        })
    }
}
