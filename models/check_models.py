"""Check model folders the way adps does: card vs graphs (names, shapes, sha256, embedded
card, opset, IR version), then load every graph in onnxruntime and run it at batch 2.

  python models/check_models.py                      # the five fmnist folders + the Gaussian fixtures
  python models/check_models.py models/my-model
"""
import argparse
import glob
import os
import sys

import numpy as np
import onnxruntime as ort

import card as cardlib

HERE = os.path.dirname(os.path.abspath(__file__))


def smoke(folder, card):
    c, h, w = card["shape"]
    rng = np.random.default_rng(0)
    feeds = {"x_t": rng.standard_normal((2, c, h, w)), "sigma": np.array([0.5, 5.0]),
             "mask": np.ones((2, c, h, w)), "cotangent": rng.standard_normal((2, c, h, w)),
             "y": rng.standard_normal((2, 3)), "A": rng.standard_normal((3, c * h * w))}
    for g in cardlib.GRAPHS:
        sess = ort.InferenceSession(os.path.join(folder, g), providers=["CPUExecutionProvider"])
        outs = sess.run(None, {i.name: feeds[i.name].astype(np.float32) for i in sess.get_inputs()})
        if not all(np.isfinite(o).all() for o in outs):
            raise ValueError(f"{folder}/{g}: non-finite output")
        if g == "dps_vjp.onnx":
            want = dict(zip([o.name for o in sess.get_outputs()], outs))
    if cardlib.SPLIT_VJP[0] in card["graphs"]:  # chained, the pair gives dps_vjp's outputs
        f, b = (ort.InferenceSession(os.path.join(folder, g), providers=["CPUExecutionProvider"])
                for g in cardlib.SPLIT_VJP)
        ins = {k: v.astype(np.float32) for k, v in feeds.items()}
        kept = dict(zip([o.name for o in f.get_outputs()], f.run(None, {i.name: ins[i.name] for i in f.get_inputs()})))
        (vjp,) = b.run(None, {i.name: {**ins, **kept}[i.name] for i in b.get_inputs()})
        for name, got in (("x0_hat", kept["x0_hat"]), ("vjp", vjp)):
            err = np.abs(got - want[name]).max() / max(np.abs(want[name]).max(), 1e-12)
            if not err <= 1e-5:
                raise ValueError(f"{folder}: the split VJP pair's {name} deviates from dps_vjp's by {err:.1e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="*")
    args = ap.parse_args()
    folders = args.folders or sorted(glob.glob(os.path.join(HERE, "fmnist-p*"))) + \
        [os.path.join(HERE, "..", "tests", "fixtures", g) for g in ("gaussian-model", "gaussian-split")]
    bad = 0
    for folder in folders:
        try:
            card = cardlib.check_folder(folder)
            smoke(folder, card)
            print(f"ok   {os.path.normpath(folder)} (p={card['training']['corruption']['p']})")
        except Exception as e:  # report every folder, then fail
            bad += 1
            print(f"FAIL {os.path.normpath(folder)}: {e}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
