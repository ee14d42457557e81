"""Which sampler restores best at a fixed budget of denoiser evaluations (issue #12 item 5).

Clean model (fmnist-p0.0; --model for another), Gaussian compressed sensing cs:256 (A ~ N(0, 1/M), numpy
default_rng(0)), σ_y = 0, 49 NFE: Euler with 49 steps vs Heun with 25 steps, and Heun
variants of the official Ambient DPS code. ζ is chosen on validation images (ids < 5000,
the first --n-val of models/data/full/val) and the chosen ζ reported on unseen test images
(ids ≥ 5000, the first --n of models/data/full/test). Pinned: ε_0 from default_rng([1, k])
for the k-th image of a split, so every variant starts from the same noise.

    models/.venv/bin/python models/reference/sampler_study.py [--n 32] [--out table.json]

PSNR as adps reports it: on the [0, 1] scale, mean over images.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "models"))
import adps_reference as ref  # noqa: E402
import data  # noqa: E402

# name -> (solver, steps, options, ζ grid searched on validation)
# The batch-norm variants couple the images, so their ζ depends on the batch size: they
# are run once, on the test batch, at the official code's dps_scale = 10 (no search).
VARIANTS = {
    "euler": ("euler", 49, {}, [1, 1.5, 2, 3, 4]),
    "euler-demo": ("euler", 49, {}, [1.5, 2, 3]),
    "heun": ("heun", 25, {}, [0.5, 1, 1.5, 2, 4, 6, 8]),
    "heun+clip-residual": ("heun", 25, {"clip_residual": True}, [2, 4, 6, 8]),
    "official": ("heun", 25, {"clip_residual": True, "norm": "batch"}, [10]),
    "heun+batch-norm": ("heun", 25, {"norm": "batch"}, [10]),
    "heun+guide-after": ("heun", 25, {"heun_guidance": "after"}, [2, 4, 6, 8]),
    "heun+clip-dir": ("heun", 25, {"clip": True}, [2, 4, 6, 8]),
    "euler+clip-dir": ("euler", 49, {"clip": True}, [1.5, 2, 3]),
    "euler+clip-residual": ("euler", 49, {"clip_residual": True}, [1.5, 2, 3, 4]),
    # Not at 49 NFE: Euler on Heun's 25 noise levels (25 NFE), to separate the solver's
    # order from the number of guidance steps.
    "euler-25": ("euler", 25, {}, [1, 2, 3, 4]),
}


def psnr(x, gt):
    mse = (((x - gt) / 2) ** 2).reshape(len(x), -1).mean(axis=1)
    return -10 * np.log10(mse)


def split(name, n):
    u8, ids = data.read_shards(os.path.join(ROOT, "models", "data", "full", name))
    x = data.to_unit(u8[:n])
    eps0 = np.stack([np.random.default_rng([1, k]).standard_normal(x.shape[1:]) for k in range(n)])
    return x, eps0.astype(np.float32), ids[:n]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32, help="test images")
    ap.add_argument("--n-val", type=int, default=8, help="validation images for the ζ search")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out")
    ap.add_argument("--model", default="fmnist-p0.0", help="model folder under models/")
    ap.add_argument("--cache", help="JSON of PSNRs already computed (variant, split, ζ); reused and extended")
    args = ap.parse_args()
    model = ref.DenseModel(os.path.join(ROOT, "models", args.model))
    keep = model.card["sampling_mask"]["keep_prob"]
    A = ref.cs_matrix(256, 1024, 0)
    sets = {"val": split("val", args.n_val), "test": split("test", args.n)}
    assert all(int(i.rsplit("-", 1)[1]) < 5000 for i in sets["val"][2])
    assert all(int(i.rsplit("-", 1)[1]) >= 5000 for i in sets["test"][2])

    cache = {}
    if args.cache and os.path.exists(args.cache):
        with open(args.cache) as f:
            cache = json.load(f)

    def score(which, solver, steps, opts, zeta):
        key = f"{args.model}|{solver}|{steps}|{json.dumps(opts, sort_keys=True)}|{which}|{len(sets[which][0])}|{zeta}"
        if args.model == "fmnist-p0.0":  # keys written before --model existed
            key = key.split("|", 1)[1]
        if key not in cache:
            cache[key] = compute(which, solver, steps, opts, zeta).tolist()
            if args.cache:
                with open(args.cache, "w") as f:
                    json.dump(cache, f)
        return np.array(cache[key])

    def compute(which, solver, steps, opts, zeta):
        x, eps0, _ = sets[which]
        y = x.reshape(len(x), -1) @ A.T
        # The model's own sampling mask, pixel-wise (all ones for the clean model).
        mask = np.stack([(np.random.default_rng([2, k]).random(x.shape[1:]) < keep) for k in range(len(x))])
        out = ref.adps_sample(model, eps0, mask.astype(np.float32), y, A, steps, zeta, solver, **opts)
        return psnr(out, x)

    table = {}
    for name in args.variants.split(","):
        solver, steps, opts, grid = VARIANTS[name]
        t0 = time.time()
        coupled = opts.get("norm") == "batch"
        val = {z: (float("nan") if coupled else float(score("val", solver, steps, opts, z).mean())) for z in grid}
        best = grid[0] if coupled else max(val, key=val.get)
        test = score("test", solver, steps, opts, best)
        table[name] = {"solver": solver, "steps": steps, "options": opts, "val": val, "zeta": best,
                       "test_psnr": float(test.mean()), "test_psnr_sem": float(test.std() / np.sqrt(len(test)))}
        print(f"{name:22s} ζ*={best:<4} val {val[best]:.2f}  test {test.mean():.2f} ± {test.std() / np.sqrt(len(test)):.2f} dB"
              f"   (val grid {', '.join(f'{z}:{v:.2f}' for z, v in val.items())})  [{time.time() - t0:.0f}s]", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
