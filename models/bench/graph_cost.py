"""The cost of each exported graph relative to the plain forward, in ONNX Runtime on CPU.

    models/.venv/bin/python models/bench/graph_cost.py MODEL_DIR [MODEL_DIR ...] [--batch 8 32]

For every model folder and batch size: the median wall time of denoiser.onnx, dps_vjp.onnx
and dps_dense.onnx (cs with M = 256) over `--repeats` runs, and each gradient graph's
ratio to the forward — the gradient needs 2× the forward's convolution FLOPs, so ≈ 2–2.4×
is the target. Folders are timed alternately (A, B, A, B, …) so that a busy machine
slows them alike; the op counts say which graph is which (Conv vs ConvTranspose), and the
counts after ONNX Runtime's own optimization (level "all", as adps runs it) show the layout
it chose: `nchwc:Conv` is MLAS's blocked-channel convolution, `nchwc:Reorder*` the layout
changes around it, and the number of full-tensor elementwise ops left.
A benchmark, not a test: it asserts nothing.
"""
import argparse
import collections
import os
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort


def ops(path):
    return collections.Counter(n.op_type for n in onnx.load(path, load_external_data=False).graph.node)


def optimized_ops(path, threads):
    """Op counts of the graph as ONNX Runtime runs it on this CPU (graph optimization "all")."""
    import tempfile
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3  # the warning that an NCHWc-optimized model is hardware-specific
    with tempfile.TemporaryDirectory() as tmp:
        so.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        graph = onnx.load(so.optimized_model_filepath).graph
    domain = {"com.microsoft.nchwc": "nchwc:", "com.microsoft": "ms:"}
    return collections.Counter(domain.get(n.domain, "") + n.op_type for n in graph.node)


def feeds(sess, batch, shape, m, rng):
    c, h, w = shape
    n = c * h * w
    values = {
        "x_t": rng.standard_normal((batch, c, h, w)).astype(np.float32),
        "sigma": np.full((batch,), 1.0, np.float32),
        "mask": np.ones((batch, c, h, w), np.float32),
        "cotangent": rng.standard_normal((batch, c, h, w)).astype(np.float32),
        "y": rng.standard_normal((batch, m)).astype(np.float32),
        "A": (rng.standard_normal((m, n)) / np.sqrt(m)).astype(np.float32),
    }
    out = {}
    for i in sess.get_inputs():
        v = values[i.name]
        if i.name == "sigma" and len(i.shape) != 1:
            v = v.reshape([batch] + [1] * (len(i.shape) - 1))
        out[i.name] = v
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--m", type=int, default=256)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    graphs = ["denoiser.onnx", "dps_vjp.onnx", "dps_dense.onnx"]
    import json
    sessions, shapes = {}, {}
    for d in args.models:
        card = json.load(open(os.path.join(d, "card.json")))
        shapes[d] = card["shape"] if "shape" in card else card["data"]["shape"]
        for g in graphs:
            sessions[d, g] = ort.InferenceSession(os.path.join(d, g), so, providers=["CPUExecutionProvider"])
        conv = {g: {k: v for k, v in ops(os.path.join(d, g)).items() if k.startswith("Conv")} for g in graphs}
        print(f"{d}: {conv}")
        for g in graphs:
            counts = optimized_ops(os.path.join(d, g), args.threads)
            top = ", ".join(f"{k} {v}" for k, v in counts.most_common(8))
            print(f"  {g} as optimized: {sum(counts.values())} nodes ({top})")
    for b in args.batch:
        times = collections.defaultdict(list)
        inputs = {(d, g): feeds(sessions[d, g], b, shapes[d], args.m, rng) for d in args.models for g in graphs}
        for (d, g), s in sessions.items():  # warm-up
            s.run(None, inputs[d, g])
        for _ in range(args.repeats):
            for d in args.models:
                for g in graphs:
                    t = time.perf_counter()
                    sessions[d, g].run(None, inputs[d, g])
                    times[d, g].append(time.perf_counter() - t)
        print(f"\nbatch {b}, {args.threads} threads, median of {args.repeats}:")
        for d in args.models:
            fwd = statistics.median(times[d, "denoiser.onnx"])
            line = [f"{g} {1e3 * statistics.median(times[d, g]):.1f} ms ({statistics.median(times[d, g]) / fwd:.2f}×)" for g in graphs]
            print(f"  {d}: " + ", ".join(line))


if __name__ == "__main__":
    main()
