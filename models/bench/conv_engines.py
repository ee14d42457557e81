"""How fast can this CPU run our network's convolutions? Three engines, layer by layer.

    models/.venv/bin/python models/bench/conv_engines.py [--batch 8 32] [--threads 1]

Issue #14 asks for 2x the PyTorch-eager loop at batch 32, and the convolutions are two
thirds of adps's time per step, so the question is whether any engine runs them much
faster than ONNX Runtime does inside adps. For every convolution of the denoiser
(models/net.py at train.py's CHANNELS, in forward order; the gradient graphs' input
gradients are convolutions of the same shapes with flipped kernels) it times, on
`--threads` intra-op threads (adps runs one per restore worker, one worker per core):
- `ort`: the layer as a one-node ONNX model in onnxruntime, graph optimization "all" as
  adps runs it (MLAS's NCHWc convolution, reorders included, as in a graph of such nodes);
- `onednn`: torch's conv2d (oneDNN's direct convolution, what the eager loop runs);
- `winograd`: torch's NNPACK convolution (Winograd F(6x6,3x3) transforms and batched
  products), the way to do fewer multiplications that a new kernel would take.
It prints ms per call and GFLOP/s (2 * 9 * Cin * Cout * H * W per image) per layer and
for the whole forward. Median of `--repeats`. A benchmark, not a test: it asserts nothing.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import train  # noqa: E402  (CHANNELS, EMB: the trained models' architecture)
from net import Denoiser  # noqa: E402


def conv_layers():
    """[(cin, cout, h, w, k)] of every Conv2d in one forward of the denoiser, in order."""
    net = Denoiser(torch.zeros(1, 32, 32), 0.5, channels=train.CHANNELS, emb=train.EMB).eval()
    shapes, hooks = [], []
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out: shapes.append((mod.in_channels, mod.out_channels, inp[0].shape[2],
                                                     inp[0].shape[3], mod.kernel_size[0]))))
    with torch.no_grad():
        net(torch.zeros(1, 1, 32, 32), torch.ones(1), torch.ones(1, 1, 32, 32))
    for h in hooks:
        h.remove()
    return shapes


def median_ms(f, repeats):
    f()
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def ort_conv(cin, cout, k, threads):
    w = np.random.default_rng(0).standard_normal((cout, cin, k, k), dtype=np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[k // 2] * 4)
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(cout, np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": x})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=21)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    layers = conv_layers()
    print(f"{len(layers)} convolutions per forward; {args.threads} thread(s); nnpack: {torch._nnpack_available()}")
    for batch in args.batch:
        totals = {"ort": 0.0, "onednn": 0.0, "winograd": 0.0}
        flops_total = 0.0
        seen = {}
        print(f"\nbatch {batch}: ms per call (GFLOP/s)")
        print(f"{'layer (cin>cout, HxW, k)':<28} {'ort':>16} {'onednn':>16} {'winograd':>16}")
        for cin, cout, h, w, k in layers:
            key = (cin, cout, h, w, k)
            flops = 2 * k * k * cin * cout * h * w * batch
            if key not in seen:
                x = np.random.default_rng(1).standard_normal((batch, cin, h, w), dtype=np.float32)
                xt = torch.from_numpy(x)
                wt = torch.randn(cout, cin, k, k)
                bt = torch.zeros(cout)
                run_ort = ort_conv(cin, cout, k, args.threads)
                with torch.no_grad():
                    t = {"ort": median_ms(lambda: run_ort(x), args.repeats),
                         "onednn": median_ms(lambda: torch.nn.functional.conv2d(xt, wt, bt, padding=k // 2),
                                             args.repeats)}
                    try:
                        t["winograd"] = median_ms(
                            lambda: torch._nnpack_spatial_convolution(xt, wt, bt, [k // 2, k // 2]), args.repeats)
                    except RuntimeError:
                        t["winograd"] = float("nan")
                seen[key] = t
                cells = " ".join(f"{t[e]:>7.3f} ({flops / t[e] / 1e6:>5.0f})" for e in ("ort", "onednn", "winograd"))
                print(f"{f'{cin}>{cout}, {h}x{w}, {k}':<28} {cells}")
            for e in totals:
                totals[e] += seen[key][e]
            flops_total += flops
        cells = " ".join(f"{totals[e]:>7.2f} ({flops_total / totals[e] / 1e6:>5.0f})" for e in totals)
        print(f"{'whole forward':<28} {cells}")


if __name__ == "__main__":
    main()
