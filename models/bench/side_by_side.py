"""adps against a PyTorch-eager Ambient DPS loop on the same weights, images, NFE and batch.

    cargo build --release
    models/.venv/bin/python models/bench/side_by_side.py --checkpoint models/checkpoints/compact/fmnist-p0.4.pt

1. Exports the checkpoint to a temporary model folder (so both sides run the very same
   weights; the exporter checks the graphs against autograd).
2. Takes `--images` test images (models/data/full/test) and, per batch size and gradient
   path, alternates: `adps restore` (wall time of the whole command, start-up included,
   `--workers`/`--threads` as given) and the eager loop below (torch autograd through the
   same network: x0 = D(x, σ, m), r = y − A x0, g = ∇‖r‖², Euler step then x ← x − ζ·g/‖r‖,
   the reference update of spec §1). `--repeats` rounds, median images/s per side.
   `--baseline-adps BUILD` times a second adps build in the same rounds (A, B, torch, A, B,
   torch, …), so that a change is measured against the build before it on the same busy
   machine: its images/s and the ratio of the two builds are printed beside.
   `--baseline-direct` does the same with this build on a copy of the exported folder whose
   `adps.Conv3x3` nodes are plain Convs again (ONNX Runtime's direct convolutions instead
   of adps's Winograd kernel, the same weights).
3. Prints images/s for both, the ratio adps / torch, and the achieved GFLOP/s of the
   convolutions: images/s × NFE × (forward + input-gradient convolution FLOPs per image,
   counted from the exported graphs: 2·C_out·H_out·W_out·C_in·k_h·k_w per Conv, the
   input gradients being Convs of the same size) against a measured ceiling (torch's
   2048×2048 float32 matmul on the same threads) and the machine's nominal FP32 peak = cores ×
   GHz × FLOPs/cycle (32 with AVX2 + FMA: two 8-wide FMA units; 64 with AVX-512 except on
   AMD Zen 4, whose AVX-512 runs on 256-bit units), from /proc/cpuinfo.

A benchmark: it asserts nothing. Run it on an otherwise idle machine.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import pyarrow as pa
import pyarrow.parquet as pq
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))

import export  # noqa: E402
import fused_onnx  # noqa: E402
from reference.adps_reference import edm_sigmas  # noqa: E402


def conv_flops(path, shape):
    """Convolution FLOPs of one image through the graph at `path` (batch 1)."""
    model = onnx.load(path, load_external_data=False)
    fused_onnx.direct_convs(model)  # adps.Conv3x3 nodes count as the Conv they stand for
    inits = {i.name: i for i in model.graph.initializer}
    # Feed batch 1 with concrete shapes, then infer every intermediate shape.
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        shapes[v.name] = [d.dim_value for d in v.type.tensor_type.shape.dim]
    total = 0
    for node in inferred.graph.node:
        if node.op_type != "Conv":
            continue
        w = inits.get(node.input[1])
        wshape = list(w.dims) if w is not None else shapes.get(node.input[1])
        out = shapes.get(node.output[0])
        if not wshape or not out or len(out) < 4:
            continue
        c_out, c_in_g, kh, kw = wshape
        total += 2 * c_out * out[2] * out[3] * c_in_g * kh * kw
    return total


def peak_gflops():
    """FP32 peak of this machine: cores × GHz × FLOPs per cycle (FMA width from the flags).

    GHz is the clock /proc/cpuinfo reports (on a VM often the nominal one; cores may boost
    above it). AVX-512 counts 64 FLOP/cycle (two 16-wide FMA units) except on AMD Zen 4
    (family 25), which runs AVX-512 on two 256-bit units: 32, as AVX2 + FMA."""
    info = open("/proc/cpuinfo").read()
    cores = os.cpu_count() or 1
    mhz = [float(l.split(":")[1]) for l in info.splitlines() if l.startswith("cpu MHz")]
    ghz = (max(mhz) if mhz else 2000.0) / 1000
    field = lambda name: next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith(name)), "")
    flags = field("flags").split()
    zen4 = field("vendor_id") == "AuthenticAMD" and field("cpu family") == "25"
    wide = "avx512f" in flags and not zen4
    per_cycle = 64 if wide else 32 if ("avx2" in flags and "fma" in flags) else 16
    return cores * ghz * per_cycle, f"{cores} cores × {ghz:.2f} GHz × {per_cycle} FLOP/cycle"


def sgemm_gflops(threads):
    """A measured ceiling beside the nominal peak: torch's float32 matmul of two 2048×2048
    matrices on `threads` threads (best of 5), which boosting clocks can put above it."""
    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = min(timed(lambda: a @ b) for _ in range(5))
    return 2 * 2048**3 / best / 1e9


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def test_images(n):
    table = pq.read_table(os.path.join(ROOT, "models/data/full/test")).slice(0, n)
    return table


def eager_loop(D, x_T, mask, y, A, sigmas, zeta):
    """The reference A-DPS Euler loop with torch autograd (spec §1)."""
    x = x_T * float(sigmas[0])
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        x = x.detach().requires_grad_(True)
        sig = torch.full((x.shape[0],), float(s))
        x0 = D(x, sig, mask)
        r = y - x0.reshape(x.shape[0], -1) @ A.t()
        norm = r.norm(dim=1)
        (g,) = torch.autograd.grad((norm ** 2).sum(), x)
        with torch.no_grad():
            d = (x - x0) / s
            # ∇‖r‖ = ∇‖r‖² / (2‖r‖), per image.
            x = x + (s_next - s) * d - zeta * g / (2 * norm.clamp_min(1e-12)).reshape(-1, 1, 1, 1)
    return x.detach()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=os.path.join(ROOT, "models/checkpoints/compact/fmnist-p0.4.pt"))
    ap.add_argument("--adps", default=os.path.join(ROOT, "target/release/adps"))
    ap.add_argument("--baseline-adps", metavar="BUILD",
                    help="another adps build to time in the same rounds (e.g. the one before a change)")
    ap.add_argument("--baseline-direct", action="store_true",
                    help="time this build on the graphs with plain Convs for adps.Conv3x3 as the baseline")
    ap.add_argument("--images", type=int, default=64,
                    help="at least batch × cores, so that every adps restore worker gets a batch")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--gradient", nargs="+", default=["dense", "vjp"])
    ap.add_argument("--steps", type=int, default=19, help="Euler steps = NFE")
    ap.add_argument("--m", type=int, default=256, help="cs:M")
    ap.add_argument("--zeta", type=float, default=2.0)
    ap.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    ap.add_argument("--threads", type=int, default=0, help="adps --threads (0: its default)")
    ap.add_argument("--workers", type=int, default=0, help="adps --workers (0: its default, one per core)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)
    work = tempfile.mkdtemp(prefix="adps-side-by-side-")
    model_dir = os.path.join(work, "model")
    D, card = export.load_checkpoint(args.checkpoint)
    export.export(D, card, model_dir, p=card["training"]["corruption"]["p"])
    shape = card["shape"]
    n = int(np.prod(shape))
    fwd = conv_flops(os.path.join(model_dir, "denoiser.onnx"), shape)
    grad = conv_flops(os.path.join(model_dir, "dps_dense.onnx"), shape)
    peak, peak_how = peak_gflops()
    print(f"convolution FLOPs per image: forward {fwd / 1e6:.1f} M, forward + input gradient {grad / 1e6:.1f} M")
    sgemm = sgemm_gflops(args.torch_threads)
    print(f"FP32 peak {peak:.0f} GFLOP/s ({peak_how}); measured SGEMM {sgemm:.0f} GFLOP/s "
          f"({args.torch_threads} threads)")

    table = test_images(args.images)
    inp = os.path.join(work, "input")
    os.makedirs(inp)
    pq.write_table(table, os.path.join(inp, "shard-00000.parquet"))
    # The eager side's images, measurements and masks (values matter little for timing).
    rng = np.random.default_rng(0)
    x_T = torch.from_numpy(rng.standard_normal((args.images, *shape)).astype(np.float32))
    A = torch.from_numpy((rng.standard_normal((args.m, n)) / np.sqrt(args.m)).astype(np.float32))
    y = torch.from_numpy(rng.standard_normal((args.images, args.m)).astype(np.float32))
    keep = (1 - card["training"]["corruption"]["p"]) * (1 - card["training"]["corruption"]["delta"])
    mask = torch.from_numpy((rng.random((args.images, *shape)) < keep).astype(np.float32))
    sigmas = edm_sigmas(args.steps)

    direct_dir = os.path.join(work, "model-direct")
    if args.baseline_direct:
        fused_onnx.convert_folder(model_dir, out=direct_dir, rewrite=fused_onnx.direct_convs)

    def run_adps(batch, gradient, k, binary=args.adps, model=model_dir):
        # A fresh output folder per run: an existing one would be resumed, not restored.
        tag = "baseline" if (binary, model) != (args.adps, model_dir) else "adps"
        out = os.path.join(work, f"out-{batch}-{gradient}-{k}-{tag}")
        t = time.perf_counter()
        subprocess.run([binary, "restore", "--model", model, "--input", inp, "--output", out,
                        "--operator", f"cs:{args.m}", "--steps", str(args.steps), "--sampler", "euler", "--clip", "none",
                        "--zeta", str(args.zeta), "--batch-size", str(batch), "--gradient", gradient,
                        "--device", "cpu", "--progress", "never"]
                       + (["--threads", str(args.threads)] if args.threads else [])
                       + (["--workers", str(args.workers)] if args.workers else []),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return args.images / (time.perf_counter() - t)

    def run_torch(batch):
        t = time.perf_counter()
        for s in range(0, args.images, batch):
            sl = slice(s, s + batch)
            eager_loop(D, x_T[sl], mask[sl], y[sl], A, sigmas, args.zeta)
        return args.images / (time.perf_counter() - t)

    print(f"\n{args.images} images, cs:{args.m}, {args.steps} Euler steps (NFE {args.steps}), "
          f"torch {args.torch_threads} threads, adps --workers {args.workers or 'default'} "
          f"--threads {args.threads or 'default'}; median of {args.repeats}")
    base = args.baseline_adps or args.baseline_direct
    print(f"{'batch':>5} {'path':>6} {'adps img/s':>11} {'torch img/s':>12} {'ratio':>6} {'adps GFLOP/s':>13} {'% peak':>7} {'% SGEMM':>8}"
          + (f" {'baseline img/s':>15} {'adps / baseline':>16}" if base else ""))
    eager_loop(D, x_T[:1], mask[:1], y[:1], A, sigmas[-3:], args.zeta)  # warm-up
    for batch in args.batch:
        for gradient in args.gradient:
            a, b, t = [], [], []
            for k in range(args.repeats):  # alternate, so a busy machine slows all alike
                a.append(run_adps(batch, gradient, k))
                if args.baseline_adps:
                    b.append(run_adps(batch, gradient, k, args.baseline_adps))
                elif args.baseline_direct:
                    b.append(run_adps(batch, gradient, k, model=direct_dir))
                t.append(run_torch(batch))
            ma, mt = statistics.median(a), statistics.median(t)
            gflops = ma * args.steps * grad / 1e9
            row = f"{batch:>5} {gradient:>6} {ma:>11.2f} {mt:>12.2f} {ma / mt:>6.2f} {gflops:>13.1f} {100 * gflops / peak:>6.1f}% {100 * gflops / sgemm:>7.1f}%"
            if base:
                mb = statistics.median(b)
                row += f" {mb:>15.2f} {ma / mb:>16.3f}"
            print(row, flush=True)


if __name__ == "__main__":
    main()
