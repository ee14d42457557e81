"""Check model folders the way adps does: card vs graphs (names, shapes, sha256, embedded
card, opset, IR version), then load every graph in onnxruntime and run it at batch 2.

  python models/check_models.py                      # the five fmnist folders + the Gaussian fixture
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="*")
    args = ap.parse_args()
    folders = args.folders or sorted(glob.glob(os.path.join(HERE, "fmnist-p*"))) + \
        [os.path.join(HERE, "..", "tests", "fixtures", "gaussian-model")]
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
