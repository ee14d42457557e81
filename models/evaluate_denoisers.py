"""Measure the exported denoisers (denoiser.onnx in onnxruntime, not the torch module).

On the first --images images of the test part (models/data/full/test), for each model
folder and σ ∈ {0.1, 0.5, 1, 2}: MSE (on the [-1, 1] scale, mean over pixels and images)
of D(x0 + σ·η, σ, m) against x0, with m = 1 and with the model's own sampling mask (keep
probability from the card). The baseline row predicts the clean training mean image.
Noise is the same for every model (seeded); masks are seeded per model.

Writes models/eval/test-denoising.json and the table between the markers in
models/README.md (--no-readme to only print it).

  python models/evaluate_denoisers.py
"""
import argparse
import json
import os
import re

import numpy as np
import onnxruntime as ort

import data

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = [f"fmnist-p{p:.1f}" for p in (0.0, 0.2, 0.4, 0.6, 0.8)]
SIGMAS = (0.1, 0.5, 1.0, 2.0)
SEED = 11
START, END = "<!-- denoising-table:start -->", "<!-- denoising-table:end -->"


def run_denoiser(sess, x, sigma, mask, batch=100):
    out = []
    for i in range(0, len(x), batch):
        out.append(sess.run(None, {"x_t": x[i:i + batch], "sigma": np.full(len(x[i:i + batch]), sigma, np.float32),
                                   "mask": mask[i:i + batch]})[0])
    return np.concatenate(out)


def evaluate(folder, x0, noise):
    with open(os.path.join(folder, "card.json")) as f:
        card = json.load(f)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(os.path.join(folder, "denoiser.onnx"), opts, providers=["CPUExecutionProvider"])
    p = card["training"]["corruption"]["p"]
    rng = np.random.default_rng([SEED, round(p * 100)])
    own = (rng.random(x0.shape) < card["sampling_mask"]["keep_prob"]).astype(np.float32)
    ones = np.ones_like(x0)
    res = {"mask1": {}, "own": {}}
    for s, eta in zip(SIGMAS, noise):
        xt = (x0 + s * eta).astype(np.float32)
        for label, m in (("mask1", ones), ("own", own)):
            res[label][str(s)] = float(((run_denoiser(sess, xt, s, m) - x0) ** 2).mean())
    return card, res


def fmt_time(seconds):
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def table(rows, baseline, shrink, n_images):
    head = ("| model | p (δ) | params | trained | final loss | " + " | ".join(f"σ={s} m=1" for s in SIGMAS)
            + " | " + " | ".join(f"σ={s} own m" for s in SIGMAS) + " |")
    lines = [head, "|" + "---|" * (5 + 2 * len(SIGMAS))]
    for card, res in rows:
        t = card["training"]
        lines.append(f"| {card['name']} | {t['corruption']['p']} ({t['corruption']['delta']}) | "
                     f"{card['parameters']:,} | {fmt_time(t['seconds'])}, {t['images']:,} img | "
                     f"{t['final_loss']:.4f} | "
                     + " | ".join(f"{res['mask1'][str(s)]:.4f}" for s in SIGMAS) + " | "
                     + " | ".join(f"{res['own'][str(s)]:.4f}" for s in SIGMAS) + " |")
    lines.append("| mean image (baseline) | – | 0 | – | – | " + " | ".join(f"{baseline:.4f}" for _ in SIGMAS)
                 + " | " + " | ".join(f"{baseline:.4f}" for _ in SIGMAS) + " |")
    lines.append("| untrained p = 0 model (shrinkage) | – | – | 0 | – | "
                 + " | ".join(f"{shrink[str(s)]:.4f}" for s in SIGMAS) + " | " + " | ".join("–" for _ in SIGMAS) + " |")
    hw = sorted({card["training"]["hardware"] for card, _ in rows})
    lines += ["", f"MSE on the [-1, 1] scale over the first {n_images} test-part images "
              "(ids fmnist-test-05000…), measured with each folder's denoiser.onnx in onnxruntime. "
              "\"own m\": the model's own sampling mask (keeps a pixel with probability (1−p)(1−δ)). "
              "The shrinkage row is what a model is before training (F = 0, up to its own μ and σd): "
              "μ + σd²/(σ²+σd²)·(x−μ) with the clean mean μ and σd of the p = 0 card. "
              "Training hardware: " + " / ".join(hw) + "."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()
    test_dir = os.path.join(data.DATA, "full", "test")
    if not os.path.isdir(test_dir):
        raise SystemExit(f"{test_dir} missing: run `python models/data.py` first")
    u8, ids = data.read_shards(test_dir)
    x0 = data.to_unit(u8[:args.images])
    mean = data.to_unit(data.load_train()).mean(0)
    baseline = float(((mean[None] - x0) ** 2).mean())
    noise = np.random.default_rng(SEED).standard_normal((len(SIGMAS), *x0.shape)).astype(np.float32)
    rows = []
    for name in args.models:
        card, res = evaluate(os.path.join(HERE, name), x0, noise)
        rows.append((card, res))
        ratios = " ".join(f"{s}:{res['own'][str(s)] / baseline:.3f}" for s in SIGMAS)
        print(f"{name}: own-mask MSE / baseline {ratios}", flush=True)
    sd = next((c["sigma_data"] for c, _ in rows if c["training"]["corruption"]["p"] == 0), rows[0][0]["sigma_data"])
    shrink = {str(s): float(((mean[None] + sd**2 / (s**2 + sd**2) * (x0 + s * eta - mean[None]) - x0) ** 2).mean())
              for s, eta in zip(SIGMAS, noise)}
    md = table(rows, baseline, shrink, len(x0))
    print(md)
    os.makedirs(os.path.join(HERE, "eval"), exist_ok=True)
    with open(os.path.join(HERE, "eval", "test-denoising.json"), "w") as f:
        json.dump({"images": len(x0), "first_id": ids[0], "sigmas": SIGMAS, "baseline_mean_image": baseline, "untrained_shrinkage_mask1": shrink,
                   "models": {c["name"]: {"graph_sha256": c["graphs"]["denoiser.onnx"]["sha256"], **r}
                              for c, r in rows}}, f, indent=2)
    readme = os.path.join(HERE, "README.md")
    if not args.no_readme and os.path.exists(readme):
        text = open(readme).read()
        if START in text and END in text:
            text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: f"{START}\n{md}\n{END}",
                          text, flags=re.S)
            with open(readme, "w") as f:
                f.write(text)
            print(f"updated {readme}")


if __name__ == "__main__":
    main()
