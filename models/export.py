"""Export a denoiser as an adps model folder (spec §2): denoiser.onnx, dps_vjp.onnx,
dps_dense.onnx and card.json, the card embedded in every graph under `adps.card`; and the
optional split VJP pair dps_vjp_forward.onnx / dps_vjp_backward.onnx (the traced dps_vjp
cut where the cotangent enters: the forward returns x0_hat and the values the backward
reads, so adps's VJP path evaluates the network once per step instead of twice).

Gradient graphs: the autograd vector-Jacobian product of the denoiser is traced with make_fx (symbolic shapes)
into plain ATen ops, convolution backward rewritten as a transposed convolution, then
exported with torch.onnx (dynamo, opset 18). Every graph is checked in onnxruntime
against torch autograd (float64) at batch sizes 1, 3 and 8; a graph whose outputs or
gradients deviate by more than --tol (relative to the largest reference value) is not
written, and the worst deviation is printed either way.

Sources:
  --checkpoint models/checkpoints/fmnist-p0.4.pt   one of ours (EMA weights, train.py)
  --edm-pickle net.pkl --p 0.4 [--code-path ~/ambient-diffusion]
        an EDM-style network called as net(x, sigma): NVlabs/edm or
        giannisdaras/ambient-diffusion pickle (dict with "ema", or a pickled Module)
  --state-dict sd.pt --module pkg.mod:Class [--module-kwargs JSON] --p 0.4
        the same network class built from its constructor and a state dict
For EDM-style networks with p > 0 the input is the ambient layout cat([m⊙x, m]) on
channels (2C in, first C channels out), otherwise net(m⊙x, sigma); --input-layout
overrides. EDM-style networks bring their own preconditioning; sigma_data is read from
net.sigma_data (or --sigma-data).

Examples:
  python models/export.py --checkpoint models/checkpoints/fmnist-p0.4.pt --out models/fmnist-p0.4
  python models/export.py --edm-pickle net.pkl --p 0.4 --shape 1 32 32 --out models/my-model
"""
import argparse
import copy
import importlib
import json
import os
import pickle
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as Fn
from torch.fx.experimental.proxy_tensor import make_fx

import card as cardlib
import fused_onnx
import net as netlib

HERE = os.path.dirname(os.path.abspath(__file__))
CHECK_BATCHES = (1, 3, 8)
CHECK_M = 7
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


# ---------------------------------------------------------------------------------------
# Tracing gradient graphs


def _conv_backward(grad_output, input, weight, bias_sizes, stride, padding, dilation,
                   transposed, output_padding, groups, output_mask):
    """aten.convolution_backward for the input gradient only: a convolution with the flipped,
    channel-swapped kernel for stride 1, a transposed convolution otherwise."""
    if output_mask[1] or output_mask[2]:
        raise NotImplementedError("weight/bias gradients are not exported; freeze the parameters")
    nd = input.dim() - 2
    if transposed:
        conv = {1: Fn.conv1d, 2: Fn.conv2d, 3: Fn.conv3d}[nd]
        grad_input = conv(grad_output, weight, None, stride, padding, dilation, groups)
    elif all(s == 1 for s in stride) and groups == 1:
        # Stride 1: the input gradient is a plain convolution of the output gradient with
        # the kernel flipped in space and its in/out channels swapped, padded by
        # dilation·(k − 1) − padding. ONNX Runtime runs Conv 1.5–2× faster than a
        # ConvTranspose of the same shape on CPU (measured on 1.31); the flipped kernel is a
        # constant of the exported graph.
        conv = {1: Fn.conv1d, 2: Fn.conv2d, 3: Fn.conv3d}[nd]
        k = weight.shape[2:]
        flipped = weight.flip(dims=list(range(2, 2 + nd))).transpose(0, 1)
        pad = [dilation[i] * (k[i] - 1) - padding[i] for i in range(nd)]
        if all(p >= 0 for p in pad):
            grad_input = conv(grad_output, flipped, None, 1, pad, dilation, 1)
            return grad_input, None, None
        conv_t = {1: Fn.conv_transpose1d, 2: Fn.conv_transpose2d, 3: Fn.conv_transpose3d}[nd]
        grad_input = conv_t(grad_output, weight, None, stride, padding, 0, groups, dilation)
    else:
        conv_t = {1: Fn.conv_transpose1d, 2: Fn.conv_transpose2d, 3: Fn.conv_transpose3d}[nd]
        k = weight.shape[2:]
        # output_padding recovers the input size lost to a stride > 1
        out_pad = [input.shape[2 + i] - ((grad_output.shape[2 + i] - 1) * stride[i] - 2 * padding[i]
                                         + dilation[i] * (k[i] - 1) + 1) for i in range(nd)]
        grad_input = conv_t(grad_output, weight, None, stride, padding, out_pad, groups, dilation)
    return grad_input, None, None


def _decompositions():
    from torch._decomp import core_aten_decompositions
    table = dict(core_aten_decompositions())
    table[torch.ops.aten.convolution_backward.default] = _conv_backward
    return table


def _pullback(D, x_t, sigma, mask):
    """x0_hat = D(x_t, σ, m) and v -> Jᵀv, via torch.autograd (traceable by make_fx, and it
    also handles networks with custom autograd.Functions such as EDM's attention op)."""
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        x0_hat = D(x, sigma, mask)

    def pullback(v):
        with torch.enable_grad():
            return torch.autograd.grad(x0_hat, x, v, retain_graph=True)[0]
    return x0_hat.detach(), pullback


def graph_functions(D):
    """The three graphs as plain functions of tensors."""
    def denoiser(x_t, sigma, mask):
        return D(x_t, sigma, mask)

    def dps_vjp(x_t, sigma, mask, cotangent):
        x0_hat, pullback = _pullback(D, x_t, sigma, mask)
        return x0_hat, pullback(cotangent)

    def dps_dense(x_t, sigma, mask, y, A):
        x0_hat, pullback = _pullback(D, x_t, sigma, mask)
        r = y - x0_hat.reshape(x0_hat.shape[0], -1) @ A.t()
        residual_sq = (r * r).sum(dim=1)
        grad = pullback((-2.0 * (r @ A)).reshape(x0_hat.shape))
        return x0_hat, residual_sq, grad

    return {"denoiser.onnx": (denoiser, ("x0_hat",)),
            "dps_vjp.onnx": (dps_vjp, ("x0_hat", "vjp")),
            "dps_dense.onnx": (dps_dense, ("x0_hat", "residual_sq", "grad"))}


def example_inputs(shape, batch, m=CHECK_M, p=0.0, seed=0, dtype=torch.float32):
    """Inputs for every graph: noisy images over the σ range, the model's own masks."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = shape
    x0 = torch.rand((batch, c, h, w), generator=g) * 2 - 1
    sigma = torch.exp(torch.linspace(np.log(0.01), np.log(40.0), batch)) if batch > 1 else torch.tensor([0.7])
    x_t = x0 + sigma[:, None, None, None] * torch.randn((batch, c, h, w), generator=g)
    keep = (1 - p) * (1 - (0.0 if p == 0 else 0.1))
    mask = (torch.rand((batch, c, h, w), generator=g) < keep).float()
    A = torch.randn((m, c * h * w), generator=g) / np.sqrt(m)
    y = (x0.reshape(batch, -1) @ A.t()) + 0.05 * torch.randn((batch, m), generator=g)
    cot = torch.randn((batch, c, h, w), generator=g)
    all_ = {"x_t": x_t, "sigma": sigma, "mask": mask, "cotangent": cot, "y": y, "A": A}
    return {k: v.to(dtype) for k, v in all_.items()}


INPUTS = {"denoiser.onnx": ("x_t", "sigma", "mask"),
          "dps_vjp.onnx": ("x_t", "sigma", "mask", "cotangent"),
          "dps_dense.onnx": ("x_t", "sigma", "mask", "y", "A")}


def trace(fn, input_names, example):
    """make_fx (symbolic) over fn: plain ATen ops, symbolic batch."""
    args = tuple(example[n] for n in input_names)
    return make_fx(fn, tracing_mode="symbolic", decomposition_table=_decompositions(),
                   _allow_non_fake_inputs=True)(*args).eval()


def to_onnx(fn, input_names, output_names, example):
    """make_fx (symbolic) over fn, then torch.onnx dynamo export with dynamic B (and M)."""
    return gm_to_onnx(trace(fn, input_names, example), input_names, output_names,
                      [example[n] for n in input_names])


def gm_to_onnx(gm, input_names, output_names, args):
    """torch.onnx dynamo export of a traced graph; every input's first dimension is the
    batch B except A's (M), and y's second is M."""
    B, M = torch.export.Dim("B", min=1, max=4096), torch.export.Dim("M", min=1, max=1 << 20)
    dyn = {"y": {0: B, 1: M}, "A": {0: M}}
    program = torch.onnx.export(gm, tuple(args), dynamo=True, opset_version=cardlib.OPSET,
                                input_names=list(input_names), output_names=list(output_names),
                                dynamic_shapes=tuple(dyn.get(n, {0: B}) for n in input_names),
                                custom_translation_table=fused_onnx.translation_table(),
                                external_data=False, optimize=True, verbose=False)
    model = program.model_proto
    fused_onnx.conv3x3_nodes(model, fused_onnx.CONV3X3_MIN_CHANNELS)
    return fused_onnx.attach(model)


VJP_INPUTS = ("x_t", "sigma", "mask", "cotangent")


def split_vjp(gm):
    """Cut the traced dps_vjp graph where the cotangent enters: (forward, backward,
    backward input names, number of kept values).

    Backward: every node that depends on the cotangent. Kept: forward nodes that depend on
    an input and feed the backward, returned by the forward as kept_0, kept_1, …; an input
    the backward reads is passed under its own name, a batch size it reads is taken from
    the cotangent's shape, and values that depend on no input (reshaped weights) are
    recomputed in the backward rather than passed."""
    g = gm.graph
    placeholders = [n for n in g.nodes if n.op == "placeholder"]
    cot = placeholders[VJP_INPUTS.index("cotangent")]
    output = next(n for n in g.nodes if n.op == "output")
    x0_node, vjp_node = output.args[0]
    back, dep = set(), set()
    for n in g.nodes:
        if n.op == "output":
            continue
        if n is cot or any(a in back for a in n.all_input_nodes):
            back.add(n)
        if n.op == "placeholder" or any(a in dep for a in n.all_input_nodes):
            dep.add(n)
    kept = [n for n in g.nodes if n in dep and n not in back and any(u in back for u in n.users)]
    kept_inputs = [n for n in kept if n.op == "placeholder"]
    kept_tensors = [n for n in kept if n.op != "placeholder" and hasattr(n.meta.get("val"), "shape")]
    kept_sizes = [n for n in kept if n.op != "placeholder" and not hasattr(n.meta.get("val"), "shape")]

    fwd, env = torch.fx.Graph(), {}
    for n in g.nodes:
        if n not in back and n.op != "output":
            env[n] = fwd.node_copy(n, lambda a: env[a])
    fwd.output((env[x0_node], *[env[n] for n in kept_tensors]))

    bwd, env = torch.fx.Graph(), {}
    for n in kept_inputs:
        env[n] = bwd.placeholder(VJP_INPUTS[placeholders.index(n)])
    for i, n in enumerate(kept_tensors):
        env[n] = bwd.placeholder(f"kept_{i}")
    env[cot] = bwd.placeholder("cotangent")
    for n in kept_sizes:
        env[n] = bwd.call_function(torch.ops.aten.sym_size.int, (env[cot], 0))
    constants = set()

    def need(n):
        if n not in env and n not in constants:
            constants.add(n)
            for a in n.all_input_nodes:
                need(a)
    for n in back:
        for a in n.all_input_nodes:
            if a not in back and a not in dep:
                need(a)
    for n in g.nodes:
        if n in constants or (n in back and n is not cot):
            env[n] = bwd.node_copy(n, lambda a: env[a])
    bwd.output(env[vjp_node])
    backward_inputs = [VJP_INPUTS[placeholders.index(n)] for n in kept_inputs] + \
        [f"kept_{i}" for i in range(len(kept_tensors))] + ["cotangent"]
    return (torch.fx.GraphModule(gm, fwd), torch.fx.GraphModule(gm, bwd), backward_inputs,
            len(kept_tensors))


def split_vjp_onnx(D, example):
    """The split VJP pair as ONNX models {file name: ModelProto}, batch dims named B."""
    fwd, bwd, bwd_inputs, kept = split_vjp(trace(graph_functions(D)["dps_vjp.onnx"][0], VJP_INPUTS, example))
    fwd_args = [example[n] for n in VJP_INPUTS[:3]]
    named = {**example, **{f"kept_{i}": v for i, v in enumerate(fwd(*fwd_args)[1:])}}
    forward = gm_to_onnx(fwd, VJP_INPUTS[:3], ["x0_hat"] + [f"kept_{i}" for i in range(kept)], fwd_args)
    backward = gm_to_onnx(bwd, bwd_inputs, ["vjp"], [named[n] for n in bwd_inputs])
    return {cardlib.SPLIT_VJP[0]: forward, cardlib.SPLIT_VJP[1]: backward}


# ---------------------------------------------------------------------------------------
# Checking against autograd


def reference_dtype(D64):
    """The dtype the autograd reference runs in: float64, unless the network cannot (an
    EDMPrecond that casts its input to float32 before stock torch.nn layers, whose float64
    weights then meet float32 activations), in which case float32 — said in the log and the card."""
    return next((p.dtype for p in D64.parameters()), torch.float64)


def reference(D64, graph, feeds):
    """Outputs of a graph computed with torch autograd in float64 (see `reference_dtype`),
    through torch's own ops (training mode's group_norm and silu, not the exported graphs'
    hand-written backward)."""
    dtype = reference_dtype(D64)
    t = {k: torch.from_numpy(v).to(dtype) for k, v in feeds.items()}
    x = t["x_t"].clone().requires_grad_(True)
    export_mode, netlib.EXPORT_MODE = netlib.EXPORT_MODE, False
    try:
        x0 = D64(x, t["sigma"], t["mask"]).double()  # EDM nets may compute in float32 internally
    finally:
        netlib.EXPORT_MODE = export_mode
    t = {k: v.double() for k, v in t.items()}
    if graph == "denoiser.onnx":
        return {"x0_hat": x0.detach()}
    if graph == "dps_vjp.onnx":
        (vjp,) = torch.autograd.grad(x0, x, t["cotangent"])
        return {"x0_hat": x0.detach(), "vjp": vjp}
    r = t["y"] - x0.reshape(len(x0), -1) @ t["A"].t()
    residual_sq = (r * r).sum(1)
    (grad,) = torch.autograd.grad(residual_sq.sum(), x)
    return {"x0_hat": x0.detach(), "residual_sq": residual_sq.detach(), "grad": grad}


def check_split_vjp(forward, backward, D64, shape, p):
    """Worst relative deviation of the pair chained in ORT (forward, then backward on its
    kept values) from float64 autograd, per output, over batch sizes 1, 3, 8."""
    f = ort.InferenceSession(forward.SerializeToString(), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(backward.SerializeToString(), providers=["CPUExecutionProvider"])
    worst = {}
    for batch in CHECK_BATCHES:
        ex = example_inputs(shape, batch, p=p, seed=100 + batch)
        feeds = {n: ex[n].numpy() for n in VJP_INPUTS}
        out = dict(zip([o.name for o in f.get_outputs()], f.run(None, {n: feeds[n] for n in VJP_INPUTS[:3]})))
        values = {**feeds, **out}
        (vjp,) = b.run(None, {i.name: values[i.name] for i in b.get_inputs()})
        got = {"x0_hat": out["x0_hat"], "vjp": vjp}
        for name, ref in reference(D64, "dps_vjp.onnx", feeds).items():
            ref = ref.numpy()
            err = float(np.abs(got[name] - ref).max() / max(np.abs(ref).max(), 1e-12))
            if name not in worst or not err <= worst[name][0]:
                worst[name] = (err, batch)
    return worst


def check_graph(model, graph, D64, shape, p):
    """Worst relative deviation of ORT from float64 autograd per output over batch sizes 1, 3, 8."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    worst = {}
    for b in CHECK_BATCHES:
        ex = example_inputs(shape, b, p=p, seed=100 + b)
        feeds = {n: ex[n].numpy() for n in INPUTS[graph]}
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        want = reference(D64, graph, feeds)
        for name, ref in want.items():
            ref = ref.numpy()
            err = float(np.abs(got[name] - ref).max() / max(np.abs(ref).max(), 1e-12))
            if name not in worst or not err <= worst[name][0]:
                worst[name] = (err, b)
    return worst


# ---------------------------------------------------------------------------------------
# Sources


class EDMStyleAdapter(torch.nn.Module):
    """D(x, σ, m) from an EDM-style net(x, sigma) (preconditioning inside the network)."""

    def __init__(self, net, channels, layout):
        super().__init__()
        self.net, self.channels, self.layout = net, channels, layout

    def forward(self, x, sigma, mask):
        xm = mask * x
        inp = torch.cat([xm, mask], dim=1) if self.layout == "concat-mask" else xm
        return self.net(inp, sigma)[:, :self.channels]


def load_edm_style(args):
    for path in args.code_path or []:
        sys.path.insert(0, os.path.abspath(path))
    if args.edm_pickle:
        with open(args.edm_pickle, "rb") as f:
            obj = pickle.load(f) if not args.edm_pickle.endswith(".pt") else torch.load(f, weights_only=False)
        net = obj["ema"] if isinstance(obj, dict) and "ema" in obj else obj
    else:
        mod_name, cls_name = args.module.split(":")
        cls = getattr(importlib.import_module(mod_name), cls_name)
        net = cls(**json.loads(args.module_kwargs or "{}"))
        sd = torch.load(args.state_dict, map_location="cpu", weights_only=True)
        net.load_state_dict(sd.get("state_dict", sd) if isinstance(sd, dict) else sd)
    if not isinstance(net, torch.nn.Module):
        raise SystemExit(f"{args.edm_pickle or args.state_dict}: not a torch.nn.Module ({type(net).__name__})")
    sigma_data = args.sigma_data if args.sigma_data is not None else getattr(net, "sigma_data", None)
    if sigma_data is None:
        raise SystemExit("the network has no sigma_data attribute: pass --sigma-data")
    layout = args.input_layout or ("concat-mask" if args.p > 0 else "plain")
    D = EDMStyleAdapter(net.float().eval(), args.shape[0], layout)
    src = os.path.basename(args.edm_pickle or args.state_dict)
    card = {"name": os.path.basename(os.path.normpath(args.out)), "dataset": args.dataset,
            "shape": list(args.shape), "sigma_data": float(sigma_data),
            "preconditioning": f"EDM-style network from {src}; input layout {layout}",
            "training": {"corruption": {"kind": "random-inpainting", "p": args.p, "delta": args.delta},
                         "steps": None, "batch_size": None, "seed": None, "final_loss": None,
                         "hardware": None, "seconds": None, "source": src}}
    if args.training_json:
        with open(args.training_json) as f:
            record = json.load(f)
        if not isinstance(record, dict) or "corruption" in record:
            raise SystemExit(f"--training-json {args.training_json}: a JSON object of the training record "
                             f"(steps, batch_size, …); the corruption comes from --p and --delta")
        card["training"].update(record)
    # One call before tracing: a wrong --shape or --input-layout fails here with a hint
    # instead of deep inside torch.export.
    ex = example_inputs(tuple(args.shape), 1, p=args.p)
    try:
        with torch.no_grad():
            D(ex["x_t"], ex["sigma"], ex["mask"])
    except RuntimeError as e:
        fed = 2 * args.shape[0] if layout == "concat-mask" else args.shape[0]
        raise SystemExit(f"the network fails on a {list(args.shape)} input in the {layout} layout "
                         f"({fed} channels fed): {str(e).splitlines()[0]}. Check --shape and --input-layout "
                         f"(concat-mask feeds cat([m*x, m]), 2C channels, the default for p > 0; plain feeds "
                         f"m*x, C channels)")
    return D, card


LR_BEFORE_GPU = 1e-3  # sessions recorded before train.py wrote these all used Adam lr 1e-3, batch 64
SESSION_DEFAULTS = {"batch_size": 64, "lr": LR_BEFORE_GPU, "precision": "float32", "sharing": None}


def optimizer_text(where):
    lrs = sorted({lr for w in where.values() for lr in w.get("lrs", [])})
    if lrs in ([], [LR_BEFORE_GPU]):
        return "Adam lr 1e-3, 300-step warm-up"
    return ("Adam lr " + " / ".join(f"{lr:.2g}" for lr in lrs) + " (by machine and batch, see where), "
            "300-step warm-up, again after each restart without Adam moments")


def load_checkpoint(path):
    state = torch.load(path, map_location="cpu", weights_only=False)
    import train
    D = train.build(state, "ema").eval()
    hw = sorted({s["hardware"] for s in state["sessions"]})
    where = {}
    for s in state["sessions"]:  # one entry per training slice, summarised per machine
        w = where.setdefault(s["hardware"], {"hardware": s["hardware"], "slices": 0, "seconds": 0.0,
                                             "steps": 0, "first_start": s["started"]})
        w["slices"] += 1
        w["steps"] += s["steps"]
        w["seconds"] = round(w["seconds"] + s["seconds"], 1)
        w["last_start"] = s["started"]
        for key, field in (("batch_size", "batch_sizes"), ("lr", "lrs"), ("precision", "precisions"),
                           ("sharing", "models_training_at_once")):  # recorded since GPU training
            v = s.get(key, SESSION_DEFAULTS[key])
            if v is not None and v not in w.setdefault(field, []):
                w[field].append(v)
    card = {"name": state["name"],
            "dataset": "Fashion-MNIST train (60k), 28x28 zero-padded to 32x32, grey, [-1,1]; models/data.py",
            "shape": [1, 32, 32], "sigma_data": state["sigma_data"],
            "preconditioning": ("EDM (Karras et al. 2022) around a fixed per-pixel mean image mu estimated "
                                "from the corrupted training data: D = mu + c_skip*m*(x-mu) + "
                                "c_out*F(c_in*m*(x-mu), m, c_noise); sigma_data = RMS of (x-mu) over kept pixels"),
            "network": {"kind": "U-Net (models/net.py)", "channels": state["channels"], "emb": state["emb"],
                        "weights": "EMA"},
            "training": {"corruption": {"kind": "random-inpainting", "p": state["p"], "delta": state["delta"]},
                         "objective": "ambient diffusion: loss on pixels A keeps, net sees A~ = A*B (extra erasure delta)",
                         "steps": state["step"], "images": state["images"], "batch_size": state["batch_size"],
                         "seed": state["seed"], "final_loss": state["final_loss"],
                         "loss_definition": "EDM-weighted MSE on kept pixels, mean over the last 50 steps",
                         "hardware": "; ".join(hw), "seconds": round(state["seconds"], 1),
                         "where": list(where.values()), "optimizer": optimizer_text(where),
                         "sigma_sampling": "log-normal P_mean -1.2 P_std 1.2", "loss_curve": "loss.csv"}}
    return D, card


# ---------------------------------------------------------------------------------------


def float64_copy(D, shape, p):
    """D in float64 for the autograd reference, or D's float32 copy when the network cannot
    run in float64 (see `reference_dtype`)."""
    D64 = copy.deepcopy(D).double()
    ex = example_inputs(shape, 1, p=p, dtype=torch.float64)
    try:
        with torch.no_grad():
            D64(ex["x_t"], ex["sigma"], ex["mask"])
        return D64
    except RuntimeError as e:
        print(f"note: the network does not run in float64 ({str(e).splitlines()[0]}); the "
              f"autograd reference runs in float32", flush=True)
        return copy.deepcopy(D).float()


def split_pair(D, D64, example, shape, p, tol, name):
    """The split VJP pair, traced and checked: (graphs, None), or (None, why not)."""
    try:
        pair = split_vjp_onnx(D, example)
        for graph, model in pair.items():
            cardlib.rename_split_dims(model, graph, shape)
            model.ir_version = cardlib.ONNX_IR_VERSION
        worst = check_split_vjp(*pair.values(), D64, shape, p)
    except Exception as e:  # the cut is best effort: torch.export's shape guards vary by net
        while e.__cause__ is not None or e.__context__ is not None:  # the innermost reason
            e = e.__cause__ or e.__context__
        lines = [l for l in str(e).splitlines() if l.strip()]
        return None, f"it did not trace: {type(e).__name__}: {lines[0] if lines else ''}"[:400]
    report = ", ".join(f"{k} {e:.1e} (batch {b})" for k, (e, b) in worst.items())
    kept = len(pair[cardlib.SPLIT_VJP[0]].graph.output) - 1
    print(f"{name} {' + '.join(pair)} ({kept} kept values): worst relative deviation "
          f"from autograd: {report}", flush=True)
    bad = [f"{k} deviates by {e:.2e} at batch {b} (> {tol})" for k, (e, b) in worst.items() if not e <= tol]
    return (None, "; ".join(bad)) if bad else (pair, None)


def export(D, card, out, tol=1e-4, p=0.0, split="auto"):
    """Exports and checks the graphs of D into `out`. `split`: the optional split VJP pair
    — "auto" writes it when it traces and checks, and otherwise says why and leaves it out
    (adps then runs denoiser + dps_vjp), "yes" requires it, "no" skips it."""
    D = D.eval().requires_grad_(False)
    shape = tuple(card["shape"])
    D64 = float64_copy(D, shape, p)
    ref = "float64" if reference_dtype(D64) == torch.float64 else "float32: the network does not run in float64"
    keep = (1 - p) * (1 - card["training"]["corruption"]["delta"])
    card = {"name": card["name"], "dataset": card["dataset"], "shape": list(shape), "value_range": [-1.0, 1.0],
            "sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX, "sigma_data": card["sigma_data"],
            "mask_per": "pixel", "sampling_mask": {"keep_prob": keep, "shared_across_channels": True},
            **{k: v for k, v in card.items() if k not in ("name", "dataset", "shape", "sigma_data")},
            "exporter": {"script": "models/export.py", "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "check": f"onnxruntime vs torch autograd ({ref}), batch {list(CHECK_BATCHES)}, rel err <= {tol}",
                         **cardlib.versions()},
            "parameters": netlib.count_parameters(D)}
    models, failures = {}, []
    netlib.EXPORT_MODE = True
    try:
        example = example_inputs(shape, 2, m=5, p=p)
        for graph, (fn, outputs) in graph_functions(D).items():
            model = to_onnx(fn, INPUTS[graph], outputs, example)
            model = cardlib.rename_dims(model, graph, shape)
            model.ir_version = cardlib.ONNX_IR_VERSION
            worst = check_graph(model, graph, D64, shape, p)
            report = ", ".join(f"{k} {e:.1e} (batch {b})" for k, (e, b) in worst.items())
            print(f"{card['name']} {graph} ({len(model.SerializeToString()) / 1e6:.2f} MB): worst relative "
                  f"deviation from autograd: {report}", flush=True)
            failures += [f"{graph}: {k} deviates by {e:.2e} at batch {b} (> {tol})"
                         for k, (e, b) in worst.items() if not e <= tol]
            models[graph] = model
        if split != "no":
            pair, why = split_pair(D, D64, example, shape, p, tol, card["name"])
            if pair:
                models.update(pair)
            elif split == "yes":
                failures.append(f"split VJP pair: {why}")
            else:
                print(f"note: the optional split VJP pair is left out ({why}); adps runs this "
                      f"model's VJP path as denoiser.onnx + dps_vjp.onnx (pass --split-vjp no "
                      f"to skip the attempt)", flush=True)
    finally:
        netlib.EXPORT_MODE = False
    if failures:
        raise SystemExit(f"refusing to write {out}: " + "; ".join(failures))
    written = cardlib.write_folder(out, card, models)
    cardlib.check_folder(out)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="models/checkpoints/<name>.pt written by train.py")
    src.add_argument("--edm-pickle", help="EDM-style network: pickle (dict with 'ema' or a Module) or torch.save'd Module")
    src.add_argument("--state-dict", help="state dict for --module")
    ap.add_argument("--module", help="with --state-dict: 'package.module:Class' of the network")
    ap.add_argument("--module-kwargs", help="with --state-dict: constructor kwargs as JSON")
    ap.add_argument("--code-path", action="append", help="folder to put on sys.path (e.g. a clone of NVlabs/edm)")
    ap.add_argument("--p", type=float, help="EDM-style: the erasure probability the network was trained with")
    ap.add_argument("--delta", type=float, help="EDM-style: extra erasure (default 0 for p = 0, else 0.1)")
    ap.add_argument("--shape", type=int, nargs=3, default=[1, 32, 32], metavar=("C", "H", "W"))
    ap.add_argument("--sigma-data", type=float, help="EDM-style: override net.sigma_data")
    ap.add_argument("--input-layout", choices=["concat-mask", "plain"], help="EDM-style: how the mask is fed")
    ap.add_argument("--dataset", default="unknown", help="EDM-style: dataset description for the card")
    ap.add_argument("--out", help="output folder (default models/<name> for checkpoints)")
    ap.add_argument("--tol", type=float, default=1e-4, help="max relative deviation ORT vs autograd")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--split-vjp", choices=["auto", "yes", "no"], default="auto",
                    help="the optional dps_vjp_forward/backward pair: auto (default) writes it when it "
                         "traces and checks and otherwise says why and leaves it out; yes requires it")
    ap.add_argument("--training-json", help="EDM-style: a JSON object merged into the card's `training` "
                                            "record (steps, batch_size, seed, final_loss, hardware, seconds, …)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        D, card = load_checkpoint(args.checkpoint)
        p = card["training"]["corruption"]["p"]
        out = args.out or os.path.join(HERE, card["name"])
        card["name"] = os.path.basename(os.path.normpath(out))
    else:
        if args.p is None or not args.out:
            ap.error("EDM-style networks need --p and --out")
        if args.state_dict and not args.module:
            ap.error("--state-dict needs --module")
        args.delta = args.delta if args.delta is not None else (0.0 if args.p == 0 else 0.1)
        D, card = load_edm_style(args)
        p, out = args.p, args.out
    written = export(D, card, out, tol=args.tol, p=p, split=args.split_vjp)
    print(f"wrote {out} ({written['parameters']} parameters)")


if __name__ == "__main__":
    main()
