//! Fused kernels adps registers with ONNX Runtime's CPU sessions, for nodes of the `adps`
//! domain in the exported graphs (models/export.py):
//!
//! - `adps.GroupNormSiLU(x, a, c; groups, eps) -> y`: y = silu(group_norm(x)·a + c);
//! - `adps.GroupNormSiLUGrad(x, a, c, dy; groups, eps) -> dx`: its input gradient;
//! - `adps.Conv3x3(x, w, b) -> y`: a 3×3 convolution, stride 1, zero padding 1, one group
//!   (the exporter makes the wider layers' convolutions, forward and input gradients, such
//!   nodes), computed by Winograd's F(2×2, 3×3) in [`conv3x3`].
//!
//! Each such node calls an ONNX model-local function of the same name that holds the
//! plain decomposition in standard ops, so any runtime runs the graphs: ONNX Runtime
//! inlines a function only when no execution provider has a kernel for the node, and a
//! registered custom op is such a kernel. adps registers them on CPU only; on CUDA the
//! functions are inlined and run as CUDA kernels (a CPU custom op there would copy every
//! activation to the host and back).
//!
//! Why: written out, group norm + SiLU and its gradient are ≈ 30 ONNX Runtime kernels per
//! instance, each a pass over memory — half of a gradient evaluation's time (issue #14);
//! the math is in [`group_norm_silu`]. ONNX Runtime's convolutions already run near the
//! core's matrix-product speed, so the 3×3 ones get faster only by doing fewer
//! multiplications, which is what [`conv3x3`] does.

pub mod conv3x3;
pub mod group_norm_silu;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ort::operator::{
    ComputeContext, Kernel, KernelContext, Operator, OperatorDomain, OperatorInput, OperatorOutput,
};
use ort::value::TensorElementType;

use group_norm_silu::Layout;

/// The ONNX domain of adps's fused ops.
pub const DOMAIN: &str = "adps";

/// Fused-kernel nodes created so far in this process (counted once per node per
/// session): how a test or a benchmark tells that ONNX Runtime took the kernels rather
/// than the functions' decompositions.
pub fn kernels_created() -> u64 {
    KERNELS_CREATED.load(Ordering::Relaxed)
}

static KERNELS_CREATED: AtomicU64 = AtomicU64::new(0);

/// Of [`kernels_created`], the `adps.Conv3x3` ones.
pub fn conv_kernels_created() -> u64 {
    CONV_KERNELS_CREATED.load(Ordering::Relaxed)
}

static CONV_KERNELS_CREATED: AtomicU64 = AtomicU64::new(0);

/// The domain with its ops, for `SessionBuilder::with_operators`, for a session with
/// `intra_threads` intra-op threads (0: ONNX Runtime's default, one per core).
pub fn domain(intra_threads: usize) -> ort::Result<OperatorDomain> {
    let threads = match intra_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    OperatorDomain::new(DOMAIN)?
        .add(GroupNormSiLU)?
        .add(GroupNormSiLUGrad)?
        .add(Conv3x3 { threads })
}

/// The node's attributes, read once when ONNX Runtime creates its kernel.
#[derive(Debug, Clone, Copy)]
struct Attributes {
    groups: usize,
    eps: f32,
}

impl Attributes {
    /// The attributes of the node ONNX Runtime is creating a kernel for (and the kernel
    /// counted in [`kernels_created`]).
    fn for_new_kernel(ctx: &KernelContext) -> ort::Result<Self> {
        let name = ctx.node_name().unwrap_or_default();
        let groups = ctx.get::<i64>("groups").filter(|&g| g > 0).ok_or_else(|| {
            ort::Error::new(format!("node {name}: no positive `groups` attribute"))
        })?;
        let eps = ctx
            .get::<f32>("eps")
            .ok_or_else(|| ort::Error::new(format!("node {name}: no `eps` attribute")))?;
        KERNELS_CREATED.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            groups: groups as usize,
            eps,
        })
    }

    /// The layout of an input of `shape` [B, C, H, W], checked against the buffers.
    fn layout(&self, shape: &[i64], x: usize, a: usize, c: usize) -> ort::Result<Layout> {
        let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        let [batch, channels, h, w] = dims[..] else {
            return Err(ort::Error::new(format!(
                "x has shape {shape:?}, expected [B, C, H, W]"
            )));
        };
        let layout = Layout {
            batch,
            channels,
            hw: h * w,
            groups: self.groups,
        };
        layout.check(x, a, c).map_err(ort::Error::new)?;
        Ok(layout)
    }
}

fn input<'c>(
    ctx: &'c ComputeContext,
    i: usize,
    name: &str,
) -> ort::Result<ort::value::ValueRef<'c>> {
    ctx.input(i)?
        .ok_or_else(|| ort::Error::new(format!("input {name} is missing")))
}

/// `adps.GroupNormSiLU`.
struct GroupNormSiLU;

struct ForwardKernel(Attributes);

impl Operator for GroupNormSiLU {
    type Kernel<'attr> = ForwardKernel;

    fn name(&self) -> &str {
        "GroupNormSiLU"
    }

    fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
        (0..3).map(|_| OperatorInput::required(TensorElementType::Float32))
    }

    fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
        [OperatorOutput::required(TensorElementType::Float32)]
    }

    fn create_kernel<'attr>(&self, ctx: &KernelContext<'attr>) -> ort::Result<ForwardKernel> {
        Ok(ForwardKernel(Attributes::for_new_kernel(ctx)?))
    }
}

impl Kernel for ForwardKernel {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let (x, a, c) = (
            input(ctx, 0, "x")?,
            input(ctx, 1, "a")?,
            input(ctx, 2, "c")?,
        );
        let (shape, xs) = x.try_extract_tensor::<f32>()?;
        let (_, av) = a.try_extract_tensor::<f32>()?;
        let (_, cv) = c.try_extract_tensor::<f32>()?;
        let layout = self.0.layout(shape, xs.len(), av.len(), cv.len())?;
        let mut y = ctx
            .output(0, shape.to_vec())?
            .ok_or_else(|| ort::Error::new("output y is missing"))?;
        let (_, ys) = y.try_extract_tensor_mut::<f32>()?;
        group_norm_silu::forward(xs, av, cv, layout, self.0.eps, ys);
        Ok(())
    }
}

/// `adps.GroupNormSiLUGrad`.
struct GroupNormSiLUGrad;

struct BackwardKernel(Attributes);

impl Operator for GroupNormSiLUGrad {
    type Kernel<'attr> = BackwardKernel;

    fn name(&self) -> &str {
        "GroupNormSiLUGrad"
    }

    fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
        (0..4).map(|_| OperatorInput::required(TensorElementType::Float32))
    }

    fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
        [OperatorOutput::required(TensorElementType::Float32)]
    }

    fn create_kernel<'attr>(&self, ctx: &KernelContext<'attr>) -> ort::Result<BackwardKernel> {
        Ok(BackwardKernel(Attributes::for_new_kernel(ctx)?))
    }
}

impl Kernel for BackwardKernel {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let (x, a) = (input(ctx, 0, "x")?, input(ctx, 1, "a")?);
        let (c, dy) = (input(ctx, 2, "c")?, input(ctx, 3, "dy")?);
        let (shape, xs) = x.try_extract_tensor::<f32>()?;
        let (_, av) = a.try_extract_tensor::<f32>()?;
        let (_, cv) = c.try_extract_tensor::<f32>()?;
        let (dshape, dys) = dy.try_extract_tensor::<f32>()?;
        if dshape != shape {
            return Err(ort::Error::new(format!(
                "dy has shape {dshape:?}, x has {shape:?}"
            )));
        }
        let layout = self.0.layout(shape, xs.len(), av.len(), cv.len())?;
        let mut dx = ctx
            .output(0, shape.to_vec())?
            .ok_or_else(|| ort::Error::new("output dx is missing"))?;
        let (_, dxs) = dx.try_extract_tensor_mut::<f32>()?;
        group_norm_silu::backward(xs, av, cv, dys, layout, self.0.eps, dxs);
        Ok(())
    }
}

/// `adps.Conv3x3`, for sessions with `threads` intra-op threads.
struct Conv3x3 {
    threads: usize,
}

/// The weights transformed once when they are constant (initializers, as the exporter
/// writes them), else at every call. With several intra-op threads a call's images are
/// split into as many groups, run on ONNX Runtime's thread pool, one scratch each.
struct ConvKernel {
    name: String,
    constant: Option<conv3x3::Weights>,
    threads: usize,
    scratch: Vec<Mutex<conv3x3::Scratch>>,
}

impl Operator for Conv3x3 {
    type Kernel<'attr> = ConvKernel;

    fn name(&self) -> &str {
        "Conv3x3"
    }

    fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
        (0..3).map(|_| OperatorInput::required(TensorElementType::Float32))
    }

    fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
        [OperatorOutput::required(TensorElementType::Float32)]
    }

    fn create_kernel<'attr>(&self, ctx: &KernelContext<'attr>) -> ort::Result<ConvKernel> {
        let name = ctx.node_name().unwrap_or_default();
        let constant = match (
            ctx.constant_input::<ort::value::DynValueTypeMarker>(1),
            ctx.constant_input::<ort::value::DynValueTypeMarker>(2),
        ) {
            (Ok(w), Ok(b)) => Some(
                conv_weights(&w, &b).map_err(|e| ort::Error::new(format!("node {name}: {e}")))?,
            ),
            _ => None,
        };
        KERNELS_CREATED.fetch_add(1, Ordering::Relaxed);
        CONV_KERNELS_CREATED.fetch_add(1, Ordering::Relaxed);
        Ok(ConvKernel {
            name,
            constant,
            threads: self.threads.max(1),
            scratch: Vec::new(),
        })
    }
}

/// [`conv3x3::Weights`] from the node's w [K, C, 3, 3] and b [K].
fn conv_weights(
    w: &ort::value::DynValue,
    b: &ort::value::DynValue,
) -> ort::Result<conv3x3::Weights> {
    let (shape, ws) = w.try_extract_tensor::<f32>()?;
    let (_, bs) = b.try_extract_tensor::<f32>()?;
    let [k, c, 3, 3] = shape[..] else {
        return Err(ort::Error::new(format!(
            "w has shape {shape:?}, expected [K, C, 3, 3]"
        )));
    };
    conv3x3::Weights::new(ws, Some(bs), k.max(0) as usize, c.max(0) as usize)
        .map_err(ort::Error::new)
}

impl Kernel for ConvKernel {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let at = |e: ort::Error| ort::Error::new(format!("node {}: {e}", self.name));
        let x = input(ctx, 0, "x")?;
        let (shape, xs) = x.try_extract_tensor::<f32>()?;
        let per_call;
        let weights = match &self.constant {
            Some(w) => w,
            None => {
                let (w, b) = (input(ctx, 1, "w")?, input(ctx, 2, "b")?);
                per_call = conv_weights(&w, &b).map_err(at)?;
                &per_call
            }
        };
        let [batch, c_in, h, w] = shape[..] else {
            return Err(at(ort::Error::new(format!(
                "x has shape {shape:?}, expected [B, C, H, W]"
            ))));
        };
        let conv_shape = conv3x3::ConvShape {
            batch: batch.max(0) as usize,
            c_in: c_in.max(0) as usize,
            c_out: weights.c_out(),
            h: h.max(0) as usize,
            w: w.max(0) as usize,
        };
        let mut y = ctx
            .output(0, vec![batch, weights.c_out() as i64, h, w])?
            .ok_or_else(|| ort::Error::new("output y is missing"))?;
        let (_, ys) = y.try_extract_tensor_mut::<f32>()?;
        conv3x3::check(xs.len(), ys.len(), weights, conv_shape)
            .map_err(|e| at(ort::Error::new(e)))?;
        let batch = conv_shape.batch;
        let per_group = batch.div_ceil(self.threads.min(batch).max(1)).max(1);
        let groups = batch.div_ceil(per_group).max(1);
        while self.scratch.len() < groups {
            self.scratch.push(Mutex::default());
        }
        if groups == 1 {
            let scratch = self.scratch[0].get_mut().unwrap_or_else(|e| e.into_inner());
            conv3x3::conv(xs, weights, conv_shape, ys, scratch);
            return Ok(());
        }
        let x_len = conv_shape.c_in * conv_shape.h * conv_shape.w;
        let y_len = conv_shape.c_out * conv_shape.h * conv_shape.w;
        let outputs: Vec<Mutex<&mut [f32]>> =
            ys.chunks_mut(per_group * y_len).map(Mutex::new).collect();
        let scratch = &self.scratch;
        ctx.par_for(groups, groups, |g| {
            let first = g * per_group;
            let shape = conv3x3::ConvShape {
                batch: per_group.min(batch - first),
                ..conv_shape
            };
            let x = &xs[first * x_len..][..shape.batch * x_len];
            let mut y = outputs[g].lock().unwrap_or_else(|e| e.into_inner());
            let mut s = scratch[g].lock().unwrap_or_else(|e| e.into_inner());
            conv3x3::conv(x, weights, shape, &mut y, &mut s);
        })
    }
}
