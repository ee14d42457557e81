"""Test export.py's path for users' own EDM-style networks with one of our checkpoints.

Wraps the EMA weights of a checkpoint in net.EDMStyleNet (called as net(x, sigma) with
the ambient input layout cat([m⊙x, m])), saves it (1) as an EDM-style pickle
{"ema": module} and (2) as a state dict, exports both with export.py, and checks that
their denoiser.onnx agrees with the checkpoint's own denoiser (torch, EMA weights), which
is what `export.py --checkpoint` exports. Then (3) a network written the way NVlabs/edm's
EDMPrecond is, from stock torch.nn layers (GroupNorm, Linear, a strided Conv2d and a
ConvTranspose2d) behind an input cast to float32: it cannot run in float64, so the
exporter's autograd reference must fall back to float32 (said in the card), and the
optional split VJP pair is written only where it traces; the folder must still match the
network.

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


class StockPrecond(torch.nn.Module):
    """EDM preconditioning around stock torch.nn layers, casting its input to float32 as
    NVlabs/edm's EDMPrecond does; RGB 16×16, ambient layout (2C input channels)."""

    def __init__(self, c=3, ch=8, sigma_data=0.5):
        super().__init__()
        self.sigma_data = sigma_data
        self.emb = torch.nn.Linear(1, ch)
        self.a = torch.nn.Conv2d(2 * c, ch, 3, padding=1)
        self.norm = torch.nn.GroupNorm(2, ch)
        self.down = torch.nn.Conv2d(ch, ch, 3, stride=2, padding=1)
        self.up = torch.nn.ConvTranspose2d(ch, ch, 2, stride=2)
        self.b = torch.nn.Conv2d(ch, 2 * c, 3, padding=1)

    def forward(self, x, sigma):
        x, sigma = x.to(torch.float32), sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        sd = self.sigma_data
        c_skip, c_out = sd ** 2 / (sigma ** 2 + sd ** 2), sigma * sd / (sigma ** 2 + sd ** 2).sqrt()
        c_in, c_noise = 1 / (sd ** 2 + sigma ** 2).sqrt(), sigma.log().reshape(-1, 1) / 4
        h = self.a(c_in * x) + self.emb(c_noise)[:, :, None, None]
        h = torch.nn.functional.silu(self.norm(h))
        h = h + self.up(torch.nn.functional.silu(self.down(h)))
        return c_skip * x + c_out * self.b(h)


def stock_network(tmp):
    """(3): exports StockPrecond and checks the folder against the network."""
    torch.manual_seed(0)
    user = StockPrecond().eval()
    torch.save(user.state_dict(), os.path.join(tmp, "stock.pt"))
    out = os.path.join(tmp, "user-stock")
    subprocess.run([sys.executable, os.path.join(HERE, "export.py"), "--state-dict", os.path.join(tmp, "stock.pt"),
                    "--module", "test_user_model:StockPrecond", "--code-path", HERE, "--p", "0.4",
                    "--shape", "3", "16", "16", "--out", out], check=True)
    with open(os.path.join(out, "card.json")) as f:
        check = json.load(f)["exporter"]["check"]
    if "float32" not in check:
        raise SystemExit(f"stock network: the card's check should say the reference ran in float32: {check}")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    m = (rng.random(x.shape) < 0.54).astype(np.float32)
    s = np.array([0.05, 1.0, 20.0], np.float32)
    with torch.no_grad():
        want = user(torch.from_numpy(np.concatenate([m * x, m], 1)), torch.from_numpy(s))[:, :3].numpy()
    got = ort.InferenceSession(os.path.join(out, "denoiser.onnx")).run(None, {"x_t": x, "sigma": s, "mask": m})[0]
    err = float(np.abs(got - want).max())
    print(f"stock: max |export - network| = {err:.2e}; pair written: "
          f"{os.path.isfile(os.path.join(out, 'dps_vjp_forward.onnx'))}")
    if err > 1e-4:
        raise SystemExit("stock network: export disagrees with the network")


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
        stock_network(tmp)
    print("EDM-style export path OK")


if __name__ == "__main__":
    main()
