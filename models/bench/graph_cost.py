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
`--profile GRAPH` instead times that graph under ONNX Runtime's profiler and prints the
kernel time per op type (share of the total, calls, and GFLOP/s for the convolutions),
which is what the graph work is steered by.
`--read-profile FILE...` summarises profiles that adps itself wrote
(`ADPS_ORT_PROFILE=/tmp/p cargo bench --bench restore`, one file per session), the only
view of the fused kernels' share inside a graph.
Timed in onnxruntime for Python, which has no kernels for the `adps.GroupNormSiLU(Grad)`
nodes and runs their ONNX functions (the plain decomposition): what a stock runtime pays,
not what adps pays on CPU with its fused kernels (`cargo bench --bench restore` times that).
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


def conv_flops(path, batch):
    """Multiply-add FLOPs of every Conv/ConvTranspose node, by node name (shape inference)."""
    model = onnx.shape_inference.infer_shapes(onnx.load(path))
    g = model.graph
    shapes = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        dims = [d.dim_value if d.HasField("dim_value") else batch for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    for init in g.initializer:
        shapes[init.name] = list(init.dims)
    flops = {}
    for n in g.node:
        if n.op_type not in ("Conv", "ConvTranspose") or n.output[0] not in shapes or n.input[1] not in shapes:
            continue
        out, w = shapes[n.output[0]], shapes[n.input[1]]
        if n.op_type == "Conv":
            per_out = int(np.prod(w[1:]))  # C_in/groups * kh * kw
            flops[n.name] = 2 * int(np.prod(out)) * per_out
        else:
            inp = shapes.get(n.input[0])
            if inp:
                flops[n.name] = 2 * int(np.prod(inp)) * int(np.prod(w[1:]))
    return sum(flops.values())


def profile(d, graph, batch, args, rng):
    import json
    import tempfile
    path = os.path.join(d, graph)
    card = json.load(open(os.path.join(d, "card.json")))
    shape = card["shape"] if "shape" in card else card["data"]["shape"]
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "prof")
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        inputs = feeds(sess, batch, shape, args.m, rng)
        sess.run(None, inputs)  # warm-up, excluded below
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            sess.run(None, inputs)
        wall = (time.perf_counter() - t0) / args.repeats
        events = json.load(open(sess.end_profiling()))
    per_op, runs = kernel_times(events)
    gflop = conv_flops(path, batch) / 1e9
    print(f"{d} {graph} batch {batch}, {args.threads} thread(s): {1e3 * wall:.1f} ms per run, "
          f"kernels {sum(v[0] for v in per_op.values()):.1f} ms, conv {gflop:.2f} GFLOP per run")
    print_kernel_times(per_op, gflop)


def kernel_times(events):
    """Kernel milliseconds and calls per run, by op type, from an ONNX Runtime profile; the
    first run (warm-up: allocations, kernel creation) is left out when there are others."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    skip_until = runs[0]["ts"] + runs[0]["dur"] if len(runs) > 1 else 0
    counted = max(1, len(runs) - 1) if len(runs) > 1 else max(1, len(runs))
    per_op = collections.defaultdict(lambda: [0.0, 0])
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < skip_until:
            continue
        op = e["args"].get("op_name", "?")
        per_op[op][0] += e["dur"] / 1e3 / counted
        per_op[op][1] += 1
    return {op: (ms, calls // counted) for op, (ms, calls) in per_op.items()}, counted


def print_kernel_times(per_op, gflop=None):
    total = sum(v[0] for v in per_op.values())
    for op, (ms, calls) in sorted(per_op.items(), key=lambda kv: -kv[1][0]):
        extra = f", {gflop / (ms / 1e3):.0f} GFLOP/s (all convs)" if gflop and op == "Conv" else ""
        print(f"  {op:24s} {ms:8.2f} ms {100 * ms / total:5.1f}%  {calls:4d} calls{extra}")


def read_profiles(paths):
    """Summarise profiles that adps wrote (ADPS_ORT_PROFILE=PREFIX): these time adps's own
    fused kernels, which this script's sessions cannot run."""
    import json
    for path in paths:
        per_op, runs = kernel_times(json.load(open(path)))
        total = sum(v[0] for v in per_op.values())
        print(f"{path}: {runs} run(s) counted, kernels {total:.2f} ms per run")
        print_kernel_times(per_op)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*")
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--m", type=int, default=256)
    ap.add_argument("--profile", metavar="GRAPH", help="per-op kernel time of one graph, e.g. dps_dense.onnx")
    ap.add_argument("--read-profile", nargs="+", metavar="JSON",
                    help="summarise profiles written by adps under ADPS_ORT_PROFILE=PREFIX instead")
    args = ap.parse_args()
    if args.read_profile:
        read_profiles(args.read_profile)
        return
    if not args.models:
        ap.error("give model folders, or --read-profile")
    rng = np.random.default_rng(0)
    if args.profile:
        for d in args.models:
            for b in args.batch:
                profile(d, args.profile, b, args, rng)
        return
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
