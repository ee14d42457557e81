"""Model card (spec §2): the graph signatures every adps model folder must have,
and writing a folder's card.json plus the `adps.card` metadata inside each graph.

The card embedded in a graph is card.json less the `sha256` of each graph (a file
cannot hold its own hash); everything else, including the signatures, is identical.
Dynamic dimensions are the strings "B" (batch) and "M" (measurement count).
"""
import copy
import hashlib
import json
import os
import platform

import onnx

CARD_KEY = "adps.card"
ONNX_IR_VERSION = 10  # onnx 1.23 writes IR 14 by default; ONNX Runtime 1.31 accepts <= 13
OPSET = 18
GRAPHS = ("denoiser.onnx", "dps_vjp.onnx", "dps_dense.onnx")
# Optional: dps_vjp as one network evaluation (a forward that keeps what its backward
# reads, then the backward); both or neither. Signatures: check_split_vjp.
SPLIT_VJP = ("dps_vjp_forward.onnx", "dps_vjp_backward.onnx")


def check_split_vjp(graphs, shape):
    """The rules src/model/card.rs applies to the optional pair; raises ValueError."""
    forward, backward = (graphs.get(n) for n in SPLIT_VJP)
    if forward is None and backward is None:
        return
    if forward is None or backward is None:
        raise ValueError(f"the split VJP pair needs both {SPLIT_VJP[0]} and {SPLIT_VJP[1]}")
    vjp = signatures(shape)["dps_vjp.onnx"]
    img = vjp["inputs"]["cotangent"]
    base = {k: v for k, v in vjp["inputs"].items() if k != "cotangent"}
    if forward["inputs"] != base or forward["outputs"].get("x0_hat") != img:
        raise ValueError(f"{SPLIT_VJP[0]}: inputs {forward['inputs']} / x0_hat, want {base} / {img}")
    bad = [n for n, d in forward["outputs"].items() if not d or d[0] != "B"]
    if bad:
        raise ValueError(f"{SPLIT_VJP[0]}: kept outputs {bad} do not start with the batch B")
    if backward["outputs"] != {"vjp": img} or backward["inputs"].get("cotangent") != img:
        raise ValueError(f"{SPLIT_VJP[1]}: want cotangent {img} in, vjp {img} out")
    known = {**forward["inputs"], **{k: v for k, v in forward["outputs"].items() if k != "x0_hat"}}
    for name, dims in backward["inputs"].items():
        if name != "cotangent" and known.get(name) != dims:
            raise ValueError(f"{SPLIT_VJP[1]}: input {name} {dims} is not a value of {SPLIT_VJP[0]}")


def signatures(shape):
    """Input/output names and shapes of the three graphs for an image shape [C, H, W]."""
    c, h, w = shape
    img = ["B", c, h, w]
    base = {"x_t": img, "sigma": ["B"], "mask": img}
    return {
        "denoiser.onnx": {"inputs": dict(base), "outputs": {"x0_hat": img}},
        "dps_vjp.onnx": {"inputs": {**base, "cotangent": img},
                         "outputs": {"x0_hat": img, "vjp": img}},
        "dps_dense.onnx": {"inputs": {**base, "y": ["B", "M"], "A": ["M", c * h * w]},
                           "outputs": {"x0_hat": img, "residual_sq": ["B"], "grad": img}},
    }


def graph_signature(model):
    """(inputs, outputs) of an onnx.ModelProto as {name: [dim, ...]} with symbolic dims as strings."""
    def dims(v):
        return [d.dim_param if d.dim_param else d.dim_value
                for d in v.type.tensor_type.shape.dim]
    return ({v.name: dims(v) for v in model.graph.input},
            {v.name: dims(v) for v in model.graph.output})


def rename_split_dims(model, graph_name, shape):
    """rename_dims for the split VJP pair: the dps_vjp names keep their dims, every kept
    value's first dimension becomes "B" (its others are fixed)."""
    known = {**signatures(shape)["dps_vjp.onnx"]["inputs"], **signatures(shape)["dps_vjp.onnx"]["outputs"]}
    for v in list(model.graph.input) + list(model.graph.output):
        dims = v.type.tensor_type.shape.dim
        want = known.get(v.name) or ["B"] + [d.dim_value for d in dims[1:]]
        if len(dims) != len(want) or any(not isinstance(w, str) and d.dim_value != w for d, w in zip(dims, want)):
            raise ValueError(f"{graph_name}: {v.name} has dims {[d.dim_value or d.dim_param for d in dims]}, want {want}")
        for d, w in zip(dims, want):
            if isinstance(w, str):
                d.Clear()
                d.dim_param = w
    return model


def rename_dims(model, graph_name, shape):
    """Give the dynamic dims of inputs/outputs the card's symbols ("B", "M") and check the rest."""
    want = signatures(shape)[graph_name]
    for values, spec in ((model.graph.input, want["inputs"]), (model.graph.output, want["outputs"])):
        if sorted(v.name for v in values) != sorted(spec):
            raise ValueError(f"{graph_name}: names {[v.name for v in values]} != {list(spec)}")
        for v in values:
            dims = v.type.tensor_type.shape.dim
            if len(dims) != len(spec[v.name]):
                raise ValueError(f"{graph_name}: {v.name} has rank {len(dims)}, want {spec[v.name]}")
            for d, s in zip(dims, spec[v.name]):
                if isinstance(s, str):
                    d.Clear()
                    d.dim_param = s
                elif d.dim_value != s:
                    d.Clear()
                    d.dim_value = s
    return model


def versions():
    import onnxruntime
    out = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
           "python": platform.python_version()}
    try:
        import torch
        out["torch"] = torch.__version__
    except ImportError:
        pass
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_folder(folder, card, models):
    """Write models {graph file name: ModelProto} and card.json into folder.

    card must not contain "graphs"; it is filled in here from the graphs themselves.
    """
    os.makedirs(folder, exist_ok=True)
    shape = card["shape"]
    card = copy.deepcopy(card)
    card["graphs"] = {}
    names = GRAPHS + tuple(n for n in SPLIT_VJP if n in models)
    for name in names:
        ins, outs = graph_signature(models[name])
        if name in GRAPHS and {"inputs": ins, "outputs": outs} != signatures(shape)[name]:
            raise ValueError(f"{name}: signature {ins} -> {outs} does not match spec §2")
        card["graphs"][name] = {"inputs": ins, "outputs": outs}
    check_split_vjp(card["graphs"], shape)
    embedded = json.dumps(card, sort_keys=True)
    for name in names:
        m = models[name]
        del m.metadata_props[:]
        onnx.helper.set_model_props(m, {CARD_KEY: embedded})
        m.ir_version = ONNX_IR_VERSION
        onnx.checker.check_model(m, full_check=True)
        path = os.path.join(folder, name)
        onnx.save_model(m, path, save_as_external_data=False)
        card["graphs"][name]["sha256"] = sha256(path)
    with open(os.path.join(folder, "card.json"), "w") as f:
        json.dump(card, f, indent=2)
        f.write("\n")
    return card


def check_folder(folder):
    """Load a model folder and check graphs against card.json (names, shapes, hashes, metadata).

    Returns the card; raises ValueError naming the file on the first disagreement.
    """
    with open(os.path.join(folder, "card.json")) as f:
        card = json.load(f)
    embedded_expected = copy.deepcopy(card)
    for g in embedded_expected["graphs"].values():
        g.pop("sha256", None)
    unknown = set(card["graphs"]) - set(GRAPHS) - set(SPLIT_VJP)
    if unknown:
        raise ValueError(f"{folder}/card.json: unknown graphs {sorted(unknown)}")
    check_split_vjp(card["graphs"], card["shape"])
    missing = [n for n in GRAPHS if n not in card["graphs"]]
    if missing:
        raise ValueError(f"{folder}/card.json: no `graphs` entry for {missing}")
    for name in GRAPHS + tuple(n for n in SPLIT_VJP if n in card["graphs"]):
        path = os.path.join(folder, name)
        entry = card["graphs"][name]
        if not os.path.isfile(path):
            raise ValueError(f"{path}: missing (card.json lists it)")
        if "sha256" not in entry:
            raise ValueError(f"{folder}/card.json: graphs.{name} has no sha256")
        if sha256(path) != entry["sha256"]:
            raise ValueError(f"{path}: sha256 differs from card.json")
        m = onnx.load(path)
        ins, outs = graph_signature(m)
        if ins != entry["inputs"] or outs != entry["outputs"]:
            raise ValueError(f"{path}: signature {ins} -> {outs} differs from card.json")
        if name in GRAPHS and {"inputs": ins, "outputs": outs} != signatures(card["shape"])[name]:
            raise ValueError(f"{path}: signature differs from spec §2")
        meta = {p.key: p.value for p in m.metadata_props}
        if json.loads(meta.get(CARD_KEY, "null")) != embedded_expected:
            raise ValueError(f"{path}: metadata {CARD_KEY} differs from card.json")
        # Default domain only, except ops the file defines as functions (fused_onnx.py).
        defined = {(f.domain, f.name) for f in m.functions}
        undefined = {(n.domain, n.op_type) for n in m.graph.node
                     if n.domain not in ("", "ai.onnx") and (n.domain, n.op_type) not in defined}
        other = {o.domain for o in m.opset_import} - {"", "ai.onnx"} - {d for d, _ in defined}
        if m.ir_version > 13 or undefined or other:
            raise ValueError(f"{path}: ir_version {m.ir_version} / opsets {m.opset_import} / "
                             f"ops without a function {sorted(undefined)}")
        if min(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) < 17:
            raise ValueError(f"{path}: opset < 17")
    return card
