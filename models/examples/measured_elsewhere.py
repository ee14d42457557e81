"""An archive "measured elsewhere", restored by adps (README: "Worked example").

`make` plays the instrument, without adps: it takes the committed demo test images
(models/data/demo, Fashion-MNIST 32×32 grey), holds the originals back, and writes three
measured archives in [0, 1] units (adps's default `y_range = "unit"`):

  matrix/   y = A·vec(u) + σ_y·n, A an M×1024 Gaussian matrix of its own (N(0, 1/M),
            numpy default_rng(seed)), saved as A.npy; σ_y = 0.01 by default.
  sr/       low-resolution images made with Pillow: Image.resize((32/f, 32/f), BICUBIC)
            of the 8-bit image, stored as 8-bit PNG `y_image`.
  fourier/  k-space samples y = [Re, Im] of numpy.fft.fft2(u, norm="ortho") at a
            variable-density random mask (dense near frequency 0, sparse outside; NumPy's
            unshifted layout), saved as kspace-mask.png.

and the plain baselines' reconstructions scored against the originals: minimum-norm least
squares (pinv(A)·y), Pillow bicubic upsampling of the low-resolution image, zero-filled
inverse DFT (Re ifft2 of the zero-filled k-space). Each archive has a validation split
(the first --val images) and a test split (the next --test).

`run` then restores each archive with adps (`matrix:A.npy`, `sr-bicubic:f`,
`fourier:kspace-mask.png`), picks ζ per operator by mean PSNR on the validation split from
a small grid, restores the test split with it, and scores against the originals:

    python models/examples/measured_elsewhere.py make out/elsewhere
    python models/examples/measured_elsewhere.py run out/elsewhere --adps target/release/adps

`results.json` holds every number and `results.md` the table. PSNR on the [0, 1] scale
(peak 1), mean over images, as adps reports it. Needs numpy, Pillow and pyarrow (the test
tools' venv, .tools-venv, or models/.venv).
"""
import argparse
import glob
import io
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BICUBIC = getattr(Image, "Resampling", Image).BICUBIC
OPERATORS = ["matrix", "sr", "fourier"]
BASELINE = {
    "matrix": "minimum-norm least squares",
    "sr": "Pillow bicubic upsampling",
    "fourier": "zero-filled inverse DFT",
}
# ζ grids searched on validation (log-spaced; ζ scales with the operator's norm: about
# √(n/M) for the Gaussian matrix, about 1/f for downsampling, 1 for the unitary DFT).
ZETAS = {"matrix": [1, 2, 4], "sr": [2.5, 5, 10, 20], "fourier": [0.5, 1, 2, 4, 8]}


def read_images(folder, count):
    """The first `count` (id, uint8 H×W) images of the shards under `folder`."""
    out = []
    for path in sorted(glob.glob(os.path.join(folder, "*.parquet"))):
        t = pq.read_table(path)
        ids = t.column("id").to_pylist()
        for rid, img in zip(ids, t.column("image").to_pylist()):
            out.append((rid, np.asarray(Image.open(io.BytesIO(img["bytes"])).convert("L"))))
            if len(out) == count:
                return out
    raise SystemExit(f"{folder} has fewer than {count} images")


def png(u8):
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="PNG")
    return buf.getvalue()


def write_shard(folder, ids, column, values):
    """One Parquet shard: `id` and a `y` vector column or a `y_image` image column."""
    os.makedirs(folder, exist_ok=True)
    if column == "y":
        arr = pa.array([np.asarray(v, np.float32).tolist() for v in values], pa.list_(pa.float32()))
    else:
        arr = pa.array([{"bytes": png(v), "path": None} for v in values],
                       pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    pq.write_table(pa.table({"id": ids, column: arr}), os.path.join(folder, "measured.parquet"))


def psnr(x, truth):
    """PSNR on [0, 1], peak 1."""
    mse = float(np.mean((np.clip(x, 0, 1) - truth) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def variable_density_mask(h, w, rng, centre=3.0, keep=0.3):
    """A random k-space mask in NumPy's unshifted layout: every position within `centre`
    of frequency 0 kept, the others with a probability falling with the distance, scaled
    so that about `keep` of all positions are kept."""
    fy, fx = np.meshgrid(np.fft.fftfreq(h) * h, np.fft.fftfreq(w) * w, indexing="ij")
    r = np.sqrt(fy ** 2 + fx ** 2)
    density = (1 - r / r.max()) ** 4
    outside = r > centre
    scale = (keep * h * w - (~outside).sum()) / density[outside].sum()
    return ~outside | (rng.random((h, w)) < np.clip(scale * density, 0, 1))


def make(args):
    rng = np.random.default_rng(args.seed)
    images = read_images(args.images, args.val + args.test)
    splits = {"val": images[: args.val], "test": images[args.val:]}
    h, w = images[0][1].shape
    n, f = h * w, args.factor
    a = (rng.standard_normal((args.m, n)) / np.sqrt(args.m)).astype(np.float32)
    np.save(os.path.join(args.out, "A.npy"), a)
    a_pinv = np.linalg.pinv(a.astype(np.float64))
    mask = variable_density_mask(h, w, rng, keep=args.keep)
    Image.fromarray((mask * 255).astype(np.uint8)).save(os.path.join(args.out, "kspace-mask.png"))
    baselines = {op: {} for op in OPERATORS}
    truth = {}
    for split, rows in splits.items():
        ids = [rid for rid, _ in rows]
        ys = {op: [] for op in OPERATORS}
        for rid, u8 in rows:
            u = u8.astype(np.float64) / 255.0
            truth[rid] = u8
            # (a) its own matrix, noisy.
            y = a.astype(np.float64) @ u.reshape(-1) + args.sigma_y * rng.standard_normal(args.m)
            ys["matrix"].append(y)
            base_a = (a_pinv @ y).reshape(h, w)
            # (b) Pillow's bicubic downsampling of the 8-bit image, and its upsampling.
            lr = Image.fromarray(u8).resize((w // f, h // f), BICUBIC)
            ys["sr"].append(np.asarray(lr))
            base_b = np.asarray(lr.resize((w, h), BICUBIC), np.float64) / 255.0
            # (c) k-space at the mask's positions (row-major), Re then Im.
            k = np.fft.fft2(u, norm="ortho")
            ys["fourier"].append(np.concatenate([k[mask].real, k[mask].imag]))
            base_c = np.fft.ifft2(np.where(mask, k, 0), norm="ortho").real
            for op, x in [("matrix", base_a), ("sr", base_b), ("fourier", base_c)]:
                baselines[op][rid] = psnr(x, u)
        for op in OPERATORS:
            write_shard(os.path.join(args.out, op, split), ids,
                        "y_image" if op == "sr" else "y", ys[op])
    np.savez(os.path.join(args.out, "truth.npz"), ids=np.array(list(truth)),
             images=np.stack(list(truth.values())))
    meta = {"splits": {s: [rid for rid, _ in r] for s, r in splits.items()},
            "m": args.m, "sigma_y": args.sigma_y, "factor": f, "kept": int(mask.sum()),
            "positions": n, "seed": args.seed, "baselines": baselines}
    with open(os.path.join(args.out, "archive.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    print(f"wrote {args.out}: {len(splits['val'])} validation and {len(splits['test'])} test "
          f"images; A {args.m}×{n}, low resolution {h // f}×{w // f}, k-space mask keeps "
          f"{int(mask.sum())} of {n}")


def operator_string(op, out, meta):
    return {"matrix": f"matrix:{os.path.join(out, 'A.npy')}",
            "sr": f"sr-bicubic:{meta['factor']}",
            "fourier": f"fourier:{os.path.join(out, 'kspace-mask.png')}"}[op]


def scores(run_dir, truth):
    """PSNR of every restored row of an adps output, by id."""
    out = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "part-*.parquet"))):
        t = pq.read_table(path, columns=["id", "reconstruction"])
        for rid, rec in zip(t.column("id").to_pylist(), t.column("reconstruction").to_pylist()):
            x = np.asarray(Image.open(io.BytesIO(rec["bytes"])).convert("L"), np.float64) / 255.0
            out[rid] = psnr(x, truth[rid].astype(np.float64) / 255.0)
    return out


def restore(args, op, split, zeta, meta):
    dest = os.path.join(args.out, "runs", f"{op}-{split}-zeta{zeta:g}")
    cmd = [args.adps, "restore", "--model", args.model, "--input",
           os.path.join(args.out, op, split), "--output", dest,
           "--operator", operator_string(op, args.out, meta),
           "--steps", str(args.steps), "--zeta", f"{zeta:g}", "--device", args.device,
           "--batch-size", str(args.batch_size)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return dest


def run(args):
    with open(os.path.join(args.out, "archive.json")) as fh:
        meta = json.load(fh)
    t = np.load(os.path.join(args.out, "truth.npz"))
    truth = dict(zip(t["ids"].tolist(), t["images"]))
    zetas = {op: [float(z) for z in args.zetas[op].split(",")] if args.zetas.get(op) else ZETAS[op]
             for op in OPERATORS}
    results = {"model": args.model, "steps": args.steps, "archive": {k: v for k, v in meta.items()
               if k not in ("baselines", "splits")}, "operators": {}}
    for op in args.operators:
        curve = {}
        for z in zetas[op]:
            s = scores(restore(args, op, "val", z, meta), truth)
            curve[f"{z:g}"] = float(np.mean(list(s.values())))
        best = max(zetas[op], key=lambda z: curve[f"{z:g}"])
        test = scores(restore(args, op, "test", best, meta), truth)
        ids = meta["splits"]["test"]
        ours = np.array([test[i] for i in ids])
        base = np.array([meta["baselines"][op][i] for i in ids])
        results["operators"][op] = {
            "operator": operator_string(op, args.out, meta), "baseline": BASELINE[op],
            "zeta": best, "zeta_edge": best in (min(zetas[op]), max(zetas[op])),
            "validation_psnr": curve, "test_images": len(ids),
            "adps_psnr": float(ours.mean()), "adps_psnr_se": float(ours.std(ddof=1) / np.sqrt(len(ids))) if len(ids) > 1 else 0.0,
            "baseline_psnr": float(base.mean()),
            "baseline_psnr_se": float(base.std(ddof=1) / np.sqrt(len(ids))) if len(ids) > 1 else 0.0,
            "wins": int((ours > base).sum()),
        }
        print(f"{op}: ζ = {best:g} (validation {curve}); test PSNR adps {ours.mean():.2f} dB, "
              f"{BASELINE[op]} {base.mean():.2f} dB", flush=True)
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1)
    lines = ["| archive | adps operator | ζ (validation) | adps PSNR | baseline | baseline PSNR | images adps wins |",
             "|---|---|---:|---:|---|---:|---:|"]
    for op, r in results["operators"].items():
        name = r["operator"].replace(args.out + os.sep, "")
        lines.append(f"| {op} | `{name}` | {r['zeta']:g} | {r['adps_psnr']:.2f} ± {r['adps_psnr_se']:.2f} | "
                     f"{r['baseline']} | {r['baseline_psnr']:.2f} ± {r['baseline_psnr_se']:.2f} | "
                     f"{r['wins']} of {r['test_images']} |")
    with open(os.path.join(args.out, "results.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="write the measured archives and the baselines (no adps)")
    mk.add_argument("out")
    mk.add_argument("--images", default=os.path.join(ROOT, "models/data/demo"))
    mk.add_argument("--val", type=int, default=8)
    mk.add_argument("--test", type=int, default=32)
    mk.add_argument("--m", type=int, default=256, help="rows of A")
    mk.add_argument("--sigma-y", type=float, default=0.01, help="noise of the matrix archive, [0, 1] units")
    mk.add_argument("--factor", type=int, default=2, help="downsampling factor")
    mk.add_argument("--keep", type=float, default=0.3, help="fraction of k-space kept")
    mk.add_argument("--seed", type=int, default=0)
    rn = sub.add_parser("run", help="restore with adps, ζ chosen on validation, score the test split")
    rn.add_argument("out")
    rn.add_argument("--adps", default=os.path.join(ROOT, "target/release/adps"))
    rn.add_argument("--model", default=os.path.join(ROOT, "models/fmnist-p0.0"))
    rn.add_argument("--steps", type=int, default=49)
    rn.add_argument("--device", default="cpu")
    rn.add_argument("--batch-size", type=int, default=16)
    rn.add_argument("--operators", nargs="+", default=OPERATORS, choices=OPERATORS)
    for op in OPERATORS:
        rn.add_argument(f"--zetas-{op}", default=None, help=f"comma-separated ζ grid (default {ZETAS[op]})")
    args = ap.parse_args()
    if args.cmd == "make":
        os.makedirs(args.out, exist_ok=True)
        make(args)
    else:
        args.zetas = {op: getattr(args, f"zetas_{op}") for op in OPERATORS}
        run(args)


if __name__ == "__main__":
    sys.exit(main())
