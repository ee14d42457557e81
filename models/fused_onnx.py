"""The `adps` ONNX domain: net.py's group_norm_silu and group_norm_silu_grad as graph nodes.

Each op is exported as one node, `adps.GroupNormSiLU(x, a, c; groups, eps) -> y` and
`adps.GroupNormSiLUGrad(x, a, c, dy; groups, eps) -> dx`, and the model carries an ONNX
function of the same name holding the decomposition in standard opset-18 ops. A runtime
that has a kernel for the node runs it (adps registers fused kernels on CPU,
src/model/fused); any other runtime inlines the function (ONNX Runtime does so for every
node no execution provider claims). The functions are attached after export (`attach`):
torch.onnx inlines functions it emits itself.

The math is net.py's, op for op; export.py checks the graphs, with these functions
inlined, against float64 autograd of torch's own group_norm and silu.
"""
import onnx
import onnxscript
from onnx import defs
from onnxscript import FLOAT
from onnxscript import opset18 as op

DOMAIN, VERSION = "adps", 1
ADPS = onnxscript.values.Opset(DOMAIN, VERSION)


@onnxscript.script(opset=ADPS, default_opset=op)
def GroupNormSiLU(x: FLOAT, a: FLOAT, c: FLOAT, groups: int, eps: float) -> FLOAT:
    shape = op.Shape(x)
    grouped = op.Concat(op.Slice(shape, [0], [1]), op.Reshape(op.Constant(value_int=groups), [1]), [-1], axis=0)
    g = op.Reshape(x, grouped)
    centred = op.Sub(g, op.ReduceMean(g, [2], keepdims=1))
    var = op.ReduceMean(op.Mul(centred, centred), [2], keepdims=1)
    rstd = op.Reciprocal(op.Sqrt(op.Add(var, op.CastLike(op.Constant(value_float=eps), x))))
    z = op.Add(op.Mul(op.Reshape(op.Mul(centred, rstd), shape), a), c)
    return op.Mul(z, op.Sigmoid(z))


@onnxscript.script(opset=ADPS, default_opset=op)
def GroupNormSiLUGrad(x: FLOAT, a: FLOAT, c: FLOAT, dy: FLOAT, groups: int, eps: float) -> FLOAT:
    shape = op.Shape(x)
    grouped = op.Concat(op.Slice(shape, [0], [1]), op.Reshape(op.Constant(value_int=groups), [1]), [-1], axis=0)
    g = op.Reshape(x, grouped)
    centred = op.Sub(g, op.ReduceMean(g, [2], keepdims=1))
    var = op.ReduceMean(op.Mul(centred, centred), [2], keepdims=1)
    rstd = op.Reciprocal(op.Sqrt(op.Add(var, op.CastLike(op.Constant(value_float=eps), x))))
    z = op.Add(op.Mul(op.Reshape(op.Mul(centred, rstd), shape), a), c)
    s = op.Sigmoid(z)
    one = op.CastLike(op.Constant(value_float=1.0), x)
    dz = op.Mul(dy, op.Add(s, op.Mul(op.Mul(z, s), op.Sub(one, s))))
    u = op.Mul(op.Reshape(op.Mul(dz, a), grouped), rstd)
    k = op.Mul(op.Mul(rstd, rstd), op.ReduceMean(op.Mul(u, centred), [2], keepdims=1))
    dx = op.Sub(op.Sub(u, op.ReduceMean(u, [2], keepdims=1)), op.Mul(centred, k))
    return op.Reshape(dx, shape)


FUNCTIONS = {f.name: f for f in (GroupNormSiLU, GroupNormSiLUGrad)}


def _schema(name, inputs, output):
    return defs.OpSchema(
        name, DOMAIN, VERSION,
        inputs=[defs.OpSchema.FormalParameter(n, "T") for n in inputs],
        outputs=[defs.OpSchema.FormalParameter(output, "T")],
        type_constraints=[("T", ["tensor(float)"], "")],
        attributes=[defs.OpSchema.Attribute("groups", defs.OpSchema.AttrType.INT, "groups of channels"),
                    defs.OpSchema.Attribute("eps", defs.OpSchema.AttrType.FLOAT, "added to the variance")])


_FORWARD_NODE = onnxscript.values.Op(ADPS, "GroupNormSiLU", op_schema=_schema("GroupNormSiLU", ("x", "a", "c"), "y"))
_GRAD_NODE = onnxscript.values.Op(ADPS, "GroupNormSiLUGrad",
                                  op_schema=_schema("GroupNormSiLUGrad", ("x", "a", "c", "dy"), "dx"))


def _forward(x, a, c, groups: int, eps: float):
    return _FORWARD_NODE(x, a, c, groups=groups, eps=eps)


def _grad(x, a, c, dy, groups: int, eps: float):
    return _GRAD_NODE(x, a, c, dy, groups=groups, eps=eps)


def translation_table():
    """torch.onnx.export's custom_translation_table: each op as one plain `adps` node."""
    import torch
    import net  # noqa: F401  (registers the torch ops)
    return {torch.ops.adps.group_norm_silu.default: _forward,
            torch.ops.adps.group_norm_silu_grad.default: _grad}


def attach(model):
    """Add the functions of the `adps` nodes in `model` and the domain's opset import."""
    used = {n.op_type for n in model.graph.node if n.domain == DOMAIN}
    have = {f.name for f in model.functions if f.domain == DOMAIN}
    for name in sorted(used - have):
        model.functions.append(FUNCTIONS[name].to_function_proto())
    if used and not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, VERSION))
    return model
