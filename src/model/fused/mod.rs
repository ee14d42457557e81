//! Fused kernels adps registers with ONNX Runtime's CPU sessions, for nodes of the `adps`
//! domain in the exported graphs (models/export.py):
//!
//! - `adps.GroupNormSiLU(x, a, c; groups, eps) -> y`: y = silu(group_norm(x)·a + c);
//! - `adps.GroupNormSiLUGrad(x, a, c, dy; groups, eps) -> dx`: its input gradient.
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
//! the math is in [`group_norm_silu`].

pub mod group_norm_silu;

use std::sync::atomic::{AtomicU64, Ordering};

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

/// The domain with both ops, for `SessionBuilder::with_operators`.
pub fn domain() -> ort::Result<OperatorDomain> {
    OperatorDomain::new(DOMAIN)?
        .add(GroupNormSiLU)?
        .add(GroupNormSiLUGrad)
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
