"""The `adps` ONNX domain: net.py's group_norm_silu and group_norm_silu_grad as graph nodes,
and 3×3 convolutions run by a Winograd kernel.

Each op is exported as one node, `adps.GroupNormSiLU(x, a, c; groups, eps) -> y` and
`adps.GroupNormSiLUGrad(x, a, c, dy; groups, eps) -> dx`, and the model carries an ONNX
function of the same name holding the decomposition in standard opset-18 ops. A runtime
that has a kernel for the node runs it (adps registers fused kernels on CPU,
src/model/fused); any other runtime inlines the function (ONNX Runtime does so for every
node no execution provider claims). The functions are attached after export (`attach`):
torch.onnx inlines functions it emits itself.

The math is net.py's, op for op; export.py checks the graphs, with these functions
inlined, against float64 autograd of torch's own group_norm and silu.

A third op, `adps.Conv3x3(x, w, b) -> y` (a Conv with stride 1 and padding 1), is made
after export from the graphs' own 3×3 convolutions with enough input channels
(`conv3x3_nodes`): adps runs it as a Winograd F(2×2, 3×3) kernel, which does 2.25× fewer
multiplications than the direct convolution ONNX Runtime runs. Its function is that Conv,
so the graphs compute exactly what they did before in any runtime that inlines it.
`python fused_onnx.py FOLDER...` applies it to folders exported before it existed.
"""
import numpy as np
import onnx
import onnx.numpy_helper
import onnx.reference
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


@onnxscript.script(opset=ADPS, default_opset=op)
def Conv3x3(x: FLOAT, w: FLOAT, b: FLOAT) -> FLOAT:
    return op.Conv(x, w, b, pads=[1, 1, 1, 1])


FUNCTIONS = {f.name: f for f in (GroupNormSiLU, GroupNormSiLUGrad, Conv3x3)}


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


def _constant(model, name, inits, producers):
    """The value of tensor `name` as an array when it depends on initializers only, through
    default-domain nodes (the gradient graphs' flipped and transposed kernels), else None."""
    chain, stack, seen = [], [name], set()
    while stack:
        t = stack.pop()
        if t in inits or t in seen or not t:
            continue
        node = producers.get(t)
        if node is None or node.domain not in ("", "ai.onnx"):
            return None
        seen.add(t)
        chain.append(node)
        stack.extend(node.input)
    if not chain:
        return onnx.numpy_helper.to_array(inits[name])
    order = {id(n): i for i, n in enumerate(model.graph.node)}
    chain.sort(key=lambda n: order[id(n)])
    used = {i for n in chain for i in n.input}
    graph = onnx.helper.make_graph(chain, "fold", [], [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)],
                                   [inits[i] for i in sorted(used & inits.keys())])
    sub = onnx.helper.make_model(graph, opset_imports=[o for o in model.opset_import if o.domain in ("", "ai.onnx")])
    return onnx.reference.ReferenceEvaluator(sub).run(None, {})[0]


def conv3x3_nodes(model, min_channels):
    """Make every 3×3 convolution of `model` with stride 1, zero padding 1, one group,
    constant weights and at least `min_channels` input channels an `adps.Conv3x3(x, w, b)`
    node (a zero bias where the Conv has none); returns how many. Weights computed from
    initializers (the gradient graphs flip and transpose the forward's kernels) stay so:
    ONNX Runtime folds them into constants before it creates the kernels, which transform
    constant weights once. adps runs the node as a Winograd F(2×2, 3×3) kernel
    (src/model/fused/conv3x3.rs: 2.25× fewer multiplications); any other runtime runs the
    function, the same Conv. Below `min_channels` the direct convolution is as fast (cargo bench --bench
    conv3x3 beside models/bench/conv_engines.py)."""
    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    count = 0
    for node in model.graph.node:
        if node.op_type != "Conv" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        value = _constant(model, node.input[1], inits, producers)
        if value is None or list(value.shape[2:]) != [3, 3] or value.shape[1] < min_channels:
            continue
        dims = value.shape
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        if (attrs.get("group", 1) != 1 or list(attrs.get("strides", [1, 1])) != [1, 1]
                or list(attrs.get("dilations", [1, 1])) != [1, 1]
                or list(attrs.get("pads", [0, 0, 0, 0])) != [1, 1, 1, 1]
                or auto_pad not in (b"NOTSET", "NOTSET")):
            continue
        inputs = list(node.input)
        if len(inputs) < 3 or not inputs[2]:
            bias = f"zero_bias_{dims[0]}"
            if bias not in inits:
                inits[bias] = onnx.numpy_helper.from_array(np.zeros(dims[0], np.float32), bias)
                model.graph.initializer.append(inits[bias])
            inputs = inputs[:2] + [bias]
        node.op_type, node.domain = "Conv3x3", DOMAIN
        del node.input[:]
        node.input.extend(inputs)
        del node.attribute[:]
        count += 1
    return count


def direct_convs(model):
    """The inverse of conv3x3_nodes: every `adps.Conv3x3` node back to the Conv it stands
    for (a zero bias stays an input). For benchmarks: the same weights with ONNX Runtime's
    direct convolutions (models/bench/side_by_side.py --baseline-direct). Returns how many."""
    count = 0
    for node in model.graph.node:
        if node.domain == DOMAIN and node.op_type == "Conv3x3":
            node.op_type, node.domain = "Conv", ""
            node.attribute.extend([onnx.helper.make_attribute("pads", [1, 1, 1, 1])])
            count += 1
    keep = [f for f in model.functions if not (f.domain == DOMAIN and f.name == "Conv3x3")]
    del model.functions[:]
    model.functions.extend(keep)
    return count


def attach(model):
    """Add the functions of the `adps` nodes in `model` and the domain's opset import."""
    used = {n.op_type for n in model.graph.node if n.domain == DOMAIN}
    have = {f.name for f in model.functions if f.domain == DOMAIN}
    for name in sorted(used - have):
        model.functions.append(FUNCTIONS[name].to_function_proto())
    if used and not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, VERSION))
    return model


# Input channels from which the exporter makes a 3×3 convolution an `adps.Conv3x3` node:
# the U-Net's first convolution (2 channels in) and the input gradient of its last (1 in)
# run faster as ONNX Runtime's direct convolution (cargo bench --bench conv3x3 beside
# models/bench/conv_engines.py), every other one faster as the Winograd kernel.
CONV3X3_MIN_CHANNELS = 16


def convert_folder(folder, min_channels=CONV3X3_MIN_CHANNELS, out=None, rewrite=None):
    """Rewrite an exported model folder's graphs with `adps.Conv3x3` nodes (conv3x3_nodes),
    the weights untouched: what export.py now writes, for folders exported before it.
    `rewrite(model) -> count` replaces conv3x3_nodes, `out` writes elsewhere.
    Returns {graph file name: nodes rewritten}."""
    import json
    import os

    import card as cardlib

    with open(os.path.join(folder, "card.json")) as f:
        card = json.load(f)
    graphs = card.pop("graphs")
    models, counts = {}, {}
    for name in graphs:
        model = onnx.load(os.path.join(folder, name))
        counts[name] = rewrite(model) if rewrite else conv3x3_nodes(model, min_channels)
        models[name] = attach(model)
    out = out or folder
    cardlib.write_folder(out, card, models)
    cardlib.check_folder(out)
    return counts


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Rewrite exported model folders' 3×3 convolutions as "
                                             "adps.Conv3x3 nodes (the exporter's output since they exist).")
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--min-channels", type=int, default=CONV3X3_MIN_CHANNELS)
    args = ap.parse_args()
    for folder in args.folders:
        print(folder, convert_folder(folder, args.min_channels))
