"""What the VJP path would gain from one network evaluation per step instead of two.

    models/.venv/bin/python models/bench/split_vjp.py [--checkpoint models/checkpoints/compact/fmnist-p0.4.pt]

Today the VJP path (per-image operators: inpainting, per-record Fourier masks; and
`--clip residual`) evaluates `denoiser.onnx` for x0, forms the cotangent c = −Aᵀr/‖r‖ in
Rust, then evaluates `dps_vjp.onnx`, which runs the forward again before its backward:
three forwards' worth of convolutions per step where the dense path needs two.

This script cuts the traced `dps_vjp` graph in two (`export.split_vjp`, which the exporter
now writes into every model folder as dps_vjp_forward/backward.onnx), the way an autograd
engine keeps its tape: a forward graph that returns x0_hat together with every value the backward reads
(for the exported nets: the input of each fused group norm + SiLU and its scale/shift,
≈ 0.24 M floats per 32×32 image), and a backward graph that takes those values and the
cotangent and returns Jᵀc. Values that depend on no input (reshaped weights) are
recomputed in the backward instead of being passed. Then it
1. checks the pair against the joint graph of the same weights (outputs of ONNX Runtime),
2. times `denoiser + dps_vjp` against `forward + backward` in onnxruntime for Python (one
   intra-op thread, as one adps restore worker runs; Python ORT runs the group-norm
   functions' decompositions, not adps's fused kernels), alternating, median of rounds.

A benchmark: it asserts nothing beyond the agreement check. adps's own gain, with its
fused kernels: `cargo bench --bench restore` on a folder with and without the pair.
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import export  # noqa: E402
import graph_cost  # noqa: E402
import net as netlib  # noqa: E402

NAMES = export.VJP_INPUTS


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
        forward, backward = export.split_vjp_onnx(D, example).values()
        bwd_inputs = [i.name for i in backward.graph.input]
        kept = len(forward.graph.output) - 1
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
