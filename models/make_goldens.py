"""Write golden tensors for the Rust tests into tests/fixtures/golden/<model>/.

  graphs/   inputs and outputs of every graph at batch 3, computed with onnxruntime:
            x_t, sigma, mask, cotangent, y, A (M = 16) and <graph>.<output>.npy;
            graphs.json lists them with the graph sha256s they were made from.
  cases/cs/ Gaussian CS (M = 64, A ~ N(0, 1/M) from numpy default_rng(seed)), zeta 1
  cases/sr/ sr:2 as a dense 256x1024 average-pooling matrix, zeta 10
            each: eps0, mask (the model's own sampling masks), A, y = A x0, x0 (ground
            truth: the first test-part images of models/data/demo), and x_N_euler /
            x_N_heun from models/reference/adps_reference.py, N = 10; settings in case.json.
All arrays are float32, C-order .npy. Re-run after every re-export (case.json records
the sha256 of the graphs it was made with).

  python models/make_goldens.py --model fmnist-p0.4 --model fmnist-p0.0
"""
import argparse
import json
import os
import sys

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "reference"))
import adps_reference as ref  # noqa: E402
import data  # noqa: E402

GRAPH_INPUTS = {"denoiser.onnx": ("x_t", "sigma", "mask"),
                "dps_vjp.onnx": ("x_t", "sigma", "mask", "cotangent"),
                "dps_dense.onnx": ("x_t", "sigma", "mask", "y", "A")}
SEED = 7
N_STEPS = 10
BATCH = 2
CASES = {"cs": {"operator": "cs:64", "zeta": 1.0}, "sr": {"operator": "sr:2", "zeta": 10.0}}


def save(folder, name, arr):
    os.makedirs(folder, exist_ok=True)
    np.save(os.path.join(folder, name), np.ascontiguousarray(arr, dtype=np.float32))
    return name


def own_masks(card, b, seed):
    keep = card["sampling_mask"]["keep_prob"]
    rng = np.random.default_rng([seed, 3])
    return (rng.random((b, *card["shape"])) < keep).astype(np.float32)


def graph_goldens(model_dir, card, out):
    rng = np.random.default_rng([SEED, 1])
    b, shape, n = 3, card["shape"], int(np.prod(card["shape"]))
    x0, _ = data.read_shards(os.path.join(HERE, "data", "demo"))
    x0 = data.to_unit(x0[:b])
    sigma = np.array([0.05, 0.8, 12.0], np.float32)
    feeds = {"x_t": x0 + sigma[:, None, None, None] * rng.standard_normal(x0.shape),
             "sigma": sigma, "mask": own_masks(card, b, SEED),
             "cotangent": rng.standard_normal((b, *shape)), "A": ref.cs_matrix(16, n, SEED)}
    feeds["y"] = x0.reshape(b, -1) @ feeds["A"].T
    feeds = {k: np.asarray(v, np.float32) for k, v in feeds.items()}
    index = {"batch": b, "inputs": {k: save(out, f"{k}.npy", v) for k, v in feeds.items()}, "outputs": {}}
    for graph, names in GRAPH_INPUTS.items():
        sess = ort.InferenceSession(os.path.join(model_dir, graph), providers=["CPUExecutionProvider"])
        res = sess.run(None, {k: feeds[k] for k in names})
        index["outputs"][graph] = {o.name: save(out, f"{graph[:-5]}.{o.name}.npy", v)
                                   for o, v in zip(sess.get_outputs(), res)}
    index["graph_sha256"] = {g: card["graphs"][g]["sha256"] for g in GRAPH_INPUTS}
    with open(os.path.join(out, "graphs.json"), "w") as f:
        json.dump(index, f, indent=2)


def case_goldens(model_dir, card, name, out):
    spec = CASES[name]
    u8, ids = data.read_shards(os.path.join(HERE, "data", "demo"))
    x0 = data.to_unit(u8[:BATCH])
    n = int(np.prod(card["shape"]))
    if name == "cs":
        m = int(spec["operator"].split(":")[1])
        A, how = ref.cs_matrix(m, n, SEED), f"numpy default_rng({SEED}).standard_normal((M, n)) / sqrt(M)"
    else:
        A, how = ref.avgpool_matrix(int(spec["operator"].split(":")[1]), card["shape"]), \
            "f x f average pooling, rows row-major over output pixels, columns vec(C,H,W) C-order"
    y = x0.reshape(BATCH, -1) @ A.T
    eps0 = np.random.default_rng([SEED, 2]).standard_normal(x0.shape).astype(np.float32)
    mask = own_masks(card, BATCH, SEED + 1)
    files = {"eps0": save(out, "eps0.npy", eps0), "mask": save(out, "mask.npy", mask),
             "A": save(out, "A.npy", A), "y": save(out, "y.npy", y), "x0": save(out, "x0.npy", x0)}
    model = ref.DenseModel(model_dir)
    settings = {"n_steps": N_STEPS, "zeta": spec["zeta"], "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0,
                "clip_x0": False, "s_churn": 0.0}
    solvers = {}
    for solver in ("euler", "heun"):
        x = ref.adps_sample(model, eps0, mask, y, A, N_STEPS, spec["zeta"], solver,
                            settings["sigma_min"], settings["sigma_max"], settings["rho"], False)
        solvers[solver] = {"x_N": save(out, f"x_N_{solver}.npy", x),
                           "nfe": 2 * N_STEPS - 1 if solver == "heun" else N_STEPS,
                           "mse_vs_x0": float(((x - x0) ** 2).mean())}
    case = {"model": card["name"], "model_folder": os.path.relpath(model_dir, ROOT),
            "graph": "dps_dense.onnx", "graph_sha256": card["graphs"]["dps_dense.onnx"]["sha256"],
            "operator": spec["operator"], "M": int(A.shape[0]), "n": n, "A_construction": how, "seed": SEED,
            "sigma_y": 0.0, "batch": BATCH, "image_ids": ids[:BATCH], **settings,
            "schedule": ref.edm_sigmas(N_STEPS, settings["sigma_min"], settings["sigma_max"]).tolist(),
            "files": files, "solvers": solvers,
            "note": "mask = the model's own sampling mask; y = A x0 (no noise); x_N from "
                    "models/reference/adps_reference.py (float32 state between steps)"}
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump(case, f, indent=2)
    return case


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="model folder name under models/ (repeatable)")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "golden"))
    args = ap.parse_args()
    for name in args.model or ["fmnist-p0.4", "fmnist-p0.0"]:
        model_dir = os.path.join(HERE, name)
        with open(os.path.join(model_dir, "card.json")) as f:
            card = json.load(f)
        out = os.path.join(args.out, name)
        graph_goldens(model_dir, card, os.path.join(out, "graphs"))
        for case in CASES:
            c = case_goldens(model_dir, card, case, os.path.join(out, "cases", case))
            err = ref.run_case(os.path.join(out, "cases", case), model_dir)
            print(f"{name} {case}: " + ", ".join(f"{s} mse {v['mse_vs_x0']:.4f}" for s, v in c["solvers"].items())
                  + f"; rerun deviation {err}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
