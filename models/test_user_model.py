"""Test export.py's path for users' own EDM-style networks with one of our checkpoints.

Wraps the EMA weights of a checkpoint in net.EDMStyleNet (called as net(x, sigma) with
the ambient input layout cat([m⊙x, m])), saves it (1) as an EDM-style pickle
{"ema": module} and (2) as a state dict, exports both with export.py, and checks that
their denoiser.onnx agrees with the checkpoint's own denoiser (torch, EMA weights), which
is what `export.py --checkpoint` exports.

  python models/test_user_model.py --checkpoint models/checkpoints/fmnist-p0.4.pt
"""
import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort
import torch

import net
import train

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=os.path.join(HERE, "checkpoints", "fmnist-p0.4.pt"))
    args = ap.parse_args()
    state = torch.load(args.checkpoint, weights_only=False)
    kwargs = {"img_channels": 1, "img_resolution": 32, "sigma_data": state["sigma_data"],
              "ambient": state["p"] > 0, "channels": state["channels"], "emb": state["emb"]}
    user = net.EDMStyleNet(**kwargs)
    user.model.load_state_dict(state["ema"])
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "network-snapshot.pkl"), "wb") as f:
            pickle.dump({"ema": user}, f)
        torch.save(user.state_dict(), os.path.join(tmp, "state.pt"))
        runs = {"pickle": ["--edm-pickle", os.path.join(tmp, "network-snapshot.pkl")],
                "state-dict": ["--state-dict", os.path.join(tmp, "state.pt"), "--module", "net:EDMStyleNet",
                               "--module-kwargs", json.dumps(kwargs)]}
        rng = np.random.default_rng(0)
        x = rng.standard_normal((4, 1, 32, 32)).astype(np.float32)
        feeds = {"x_t": x, "sigma": np.array([0.05, 0.5, 2.0, 20.0], np.float32),
                 "mask": (rng.random(x.shape) < 0.5).astype(np.float32)}
        with torch.no_grad():
            want = train.build(state, "ema").eval()(*(torch.from_numpy(feeds[k]) for k in ("x_t", "sigma", "mask")))
        want = want.numpy()
        for label, src in runs.items():
            out = os.path.join(tmp, f"user-{label}")
            subprocess.run([sys.executable, os.path.join(HERE, "export.py"), *src, "--p", str(state["p"]),
                            "--dataset", "Fashion-MNIST (test of the EDM-style path)", "--out", out], check=True)
            got = ort.InferenceSession(os.path.join(out, "denoiser.onnx")).run(None, feeds)[0]
            err = float(np.abs(got - want).max())
            print(f"{label}: max |user export - checkpoint denoiser| = {err:.2e}")
            if err > 1e-4:
                raise SystemExit(f"{label}: EDM-style export disagrees with the checkpoint's denoiser")
    print("EDM-style export path OK")


if __name__ == "__main__":
    main()
