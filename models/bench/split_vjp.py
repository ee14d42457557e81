"""What the VJP path would gain from one network evaluation per step instead of two.

    models/.venv/bin/python models/bench/split_vjp.py [--checkpoint models/checkpoints/compact/fmnist-p0.4.pt]

Today the VJP path (per-image operators: inpainting, per-record Fourier masks; and
`--clip residual`) evaluates `denoiser.onnx` for x0, forms the cotangent c = −Aᵀr/‖r‖ in
Rust, then evaluates `dps_vjp.onnx`, which runs the forward again before its backward:
three forwards' worth of convolutions per step where the dense path needs two.

This script cuts the traced `dps_vjp` graph in two, the way an autograd engine keeps its
tape: a forward graph that returns x0_hat together with every value the backward reads
(for the exported nets: the input of each fused group norm + SiLU and its scale/shift,
≈ 0.24 M floats per 32×32 image), and a backward graph that takes those values and the
cotangent and returns Jᵀc. Values that depend on no input (reshaped weights) are
recomputed in the backward instead of being passed. Then it
1. checks the pair against the joint graph of the same weights (outputs of ONNX Runtime),
2. times `denoiser + dps_vjp` against `forward + backward` in onnxruntime for Python (one
   intra-op thread, as one adps restore worker runs; Python ORT runs the group-norm
   functions' decompositions, not adps's fused kernels), alternating, median of rounds.

A benchmark and a design probe for a model-contract change (spec §2 would gain an
optional graph pair); it asserts nothing beyond the agreement check.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch.fx.experimental.proxy_tensor import make_fx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import card as cardlib  # noqa: E402
import export  # noqa: E402
import fused_onnx  # noqa: E402
import graph_cost  # noqa: E402
import net as netlib  # noqa: E402

NAMES = ("x_t", "sigma", "mask", "cotangent")


def split(gm):
    """Cut a traced dps_vjp FX graph into (forward, backward, names of the kept values).

    Backward: every node that depends on the cotangent. Kept: forward nodes that depend on
    an input and feed the backward; a kept input placeholder is passed to the backward
    under its own name, a kept batch size is re-read from the cotangent's shape."""
    g = gm.graph
    placeholders = [n for n in g.nodes if n.op == "placeholder"]
    cot = placeholders[NAMES.index("cotangent")]
    output = next(n for n in g.nodes if n.op == "output")
    x0_node, vjp_node = output.args[0]
    back, dep = set(), set()
    for n in g.nodes:
        if n.op == "output":
            continue
        if n is cot or any(a in back for a in n.all_input_nodes):
            back.add(n)
        if n.op == "placeholder" or any(a in dep for a in n.all_input_nodes):
            dep.add(n)
    kept = [n for n in g.nodes if n in dep and n not in back and any(u in back for u in n.users)]
    kept_inputs = [n for n in kept if n.op == "placeholder"]
    kept_tensors = [n for n in kept if n.op != "placeholder" and hasattr(n.meta.get("val"), "shape")]
    kept_sizes = [n for n in kept if n.op != "placeholder" and not hasattr(n.meta.get("val"), "shape")]

    fwd, env = torch.fx.Graph(), {}
    for n in g.nodes:
        if n in back or n.op == "output":
            continue
        env[n] = fwd.node_copy(n, lambda a: env[a])
    fwd.output((env[x0_node], *[env[n] for n in kept_tensors]))

    bwd, env = torch.fx.Graph(), {}
    for n in kept_inputs:
        env[n] = bwd.placeholder(NAMES[placeholders.index(n)])
    for i, n in enumerate(kept_tensors):
        env[n] = bwd.placeholder(f"kept_{i}")
    env[cot] = bwd.placeholder("cotangent")
    for n in kept_sizes:
        env[n] = bwd.call_function(torch.ops.aten.sym_size.int, (env[cot], 0))
    constants = set()

    def need(n):
        if n in env or n in constants:
            return
        constants.add(n)
        for a in n.all_input_nodes:
            need(a)
    for n in back:
        for a in n.all_input_nodes:
            if a not in back and a not in dep:
                need(a)
    for n in g.nodes:
        if n in constants or (n in back and n is not cot):
            env[n] = bwd.node_copy(n, lambda a: env[a])
    bwd.output(env[vjp_node])
    backward_inputs = [NAMES[placeholders.index(n)] for n in kept_inputs] + \
        [f"kept_{i}" for i in range(len(kept_tensors))] + ["cotangent"]
    return torch.fx.GraphModule(gm, fwd), torch.fx.GraphModule(gm, bwd), backward_inputs, len(kept_tensors)


def to_onnx(gm, input_names, output_names, args):
    batch = torch.export.Dim("B", min=1, max=4096)
    program = torch.onnx.export(gm, tuple(args), dynamo=True, opset_version=cardlib.OPSET,
                                input_names=list(input_names), output_names=list(output_names),
                                dynamic_shapes=tuple({0: batch} for _ in input_names),
                                custom_translation_table=fused_onnx.translation_table(),
                                external_data=False, optimize=True, verbose=False)
    model = fused_onnx.attach(program.model_proto)
    model.ir_version = cardlib.ONNX_IR_VERSION
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=os.path.join(HERE, "..", "checkpoints", "compact", "fmnist-p0.4.pt"))
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20, help="calls per timing")
    args = ap.parse_args()
    D, card = export.load_checkpoint(args.checkpoint)
    D = D.eval().requires_grad_(False)
    shape = tuple(card["shape"])
    p = card["training"]["corruption"]["p"]
    example = export.example_inputs(shape, 2, m=5, p=p)
    netlib.EXPORT_MODE = True
    try:
        fns = export.graph_functions(D)
        joint = {g: export.to_onnx(fns[g][0], export.INPUTS[g], fns[g][1], example)
                 for g in ("denoiser.onnx", "dps_vjp.onnx")}
        traced = make_fx(fns["dps_vjp.onnx"][0], tracing_mode="symbolic",
                         decomposition_table=export._decompositions(),
                         _allow_non_fake_inputs=True)(*(example[n] for n in NAMES))
        fwd, bwd, bwd_inputs, kept = split(traced)
        fwd_args = [example[n] for n in NAMES[:3]]
        kept_values = fwd(*fwd_args)[1:]
        named = {**{n: example[n] for n in NAMES}, **{f"kept_{i}": v for i, v in enumerate(kept_values)}}
        forward = to_onnx(fwd, NAMES[:3], ["x0_hat"] + [f"kept_{i}" for i in range(kept)], fwd_args)
        backward = to_onnx(bwd, bwd_inputs, ["vjp"], [named[n] for n in bwd_inputs])
    finally:
        netlib.EXPORT_MODE = False

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for name, model in {**joint, "forward": forward, "backward": backward}.items():
            path = os.path.join(tmp, name)
            onnx.save(model, path)
            sessions[name] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        print(f"{card['name']}: backward reads {kept} kept values besides {bwd_inputs[:-kept - 1] or 'no'} "
              f"input(s) and the cotangent")
        for batch in args.batch:
            feeds = graph_cost.feeds(sessions["dps_vjp.onnx"], batch, shape, 5, rng)
            forward_feeds = {n: feeds[n] for n in NAMES[:3]}

            def two_graphs():
                sessions["denoiser.onnx"].run(None, forward_feeds)
                return sessions["dps_vjp.onnx"].run(None, feeds)

            def split_graphs():
                out = sessions["forward"].run(None, forward_feeds)
                kept_feeds = {f"kept_{i}": v for i, v in enumerate(out[1:])}
                back = sessions["backward"].run(None, {n: kept_feeds.get(n, feeds.get(n)) for n in bwd_inputs})
                return [out[0], back[0]]

            old, new = two_graphs(), split_graphs()
            dev = [float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12)) for a, b in zip(old, new)]
            floats = sum(v.size for v in sessions["forward"].run(None, forward_feeds)[1:]) // batch
            times = {"denoiser + dps_vjp": [], "forward + backward": []}
            for _ in range(args.rounds):
                for name, fn in (("denoiser + dps_vjp", two_graphs), ("forward + backward", split_graphs)):
                    t = time.perf_counter()
                    for _ in range(args.calls):
                        fn()
                    times[name].append((time.perf_counter() - t) / args.calls)
            a, b = (statistics.median(times[k]) for k in times)
            print(f"batch {batch}: denoiser + dps_vjp {1e3 * a:.2f} ms, forward + backward {1e3 * b:.2f} ms "
                  f"({a / b:.2f}x); kept {floats / 1e6:.2f} M floats per image; "
                  f"relative deviation x0 {dev[0]:.1e}, vjp {dev[1]:.1e}")


if __name__ == "__main__":
    main()
