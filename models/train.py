"""Train the fmnist-p* denoisers with the Ambient Diffusion objective (Daras et al. 2023).

Each training image i has a fixed random-inpainting mask A_i (a pixel is erased with
probability p, drawn once from the seed). Every step draws a further mask Ã = A⊙B that
also erases each kept pixel with probability δ, a noise level σ ~ logN(P_mean, P_std²)
and noise η; the network sees Ã⊙(x + σ·η) and Ã, and the loss is EDM-weighted on the
pixels A keeps:  λ(σ)·‖A⊙(D(x+ση, σ, Ã) − x)‖² / ‖A‖₀,  λ = (σ²+σd²)/(σ·σd)².
p = 0 (δ = 0) is ordinary EDM training on clean data.

Training is budgeted by quality. `--all` trains the models round-robin, a slice of
`--slice-minutes` each from its checkpoint (models/checkpoints/<name>.pt), then
evaluates the EMA weights on validation images with the model's own sampling mask
(keep probability (1−p)(1−δ)) against the mean-image predictor, and repeats until every
model passes (MSE ratio ≤ --ratio-clean for p = 0, ≤ --ratio-ambient otherwise, at every
σ in {0.1, 0.5, 1, 2}) and has trained --min-minutes, or until --max-minutes each.
Randomness of step k comes from a generator seeded by (seed, p, k), so slicing does not
change what a model sees. Logs: models/<name>/loss.csv and models/<name>/eval.csv.

Examples:
  nice -n 10 python models/train.py --all                 # the round-robin driver
  python models/train.py --name fmnist-p0.4 --minutes 10  # one slice of one model
"""
import argparse
import json
import os
import platform
import socket
import time

import numpy as np
import torch

import data
from net import Denoiser, count_parameters

HERE = os.path.dirname(os.path.abspath(__file__))
CKPT_DIR = os.path.join(HERE, "checkpoints")
P_VALUES = (0.0, 0.2, 0.4, 0.6, 0.8)
EVAL_SIGMAS = (0.1, 0.5, 1.0, 2.0)
CHANNELS = (16, 48, 96)
EMB = 128
BATCH = 64
LR, LR_RAMP_STEPS = 1e-3, 300
P_MEAN, P_STD = -1.2, 1.2
EMA_MAX_HALFLIFE_IMAGES, EMA_RAMP = 20_000, 0.1  # half-life = min(20k, 0.1 x images seen)
SEED = 20260428
EVAL_IMAGES = 512
LOG_EVERY = 50


def name_of(p):
    return f"fmnist-p{p:.1f}"


def delta_of(p):
    return 0.0 if p == 0 else 0.1


def keep_prob(p):
    return (1 - p) * (1 - delta_of(p))


def training_masks(n, p, seed=SEED):
    """The fixed per-image training masks A (True = kept), [n, 1, 32, 32]."""
    rng = np.random.default_rng([seed, 1, round(p * 100)])
    return torch.from_numpy(rng.random((n, 1, data.SIZE, data.SIZE)) >= p)


def corrupted_stats(x, keep):
    """Per-pixel mean μ over kept pixels, and σd = RMS of (x − μ) over kept pixels."""
    k = keep.to(torch.float64)
    mu = (k * x).sum(0) / k.sum(0).clamp(min=1)
    sd = torch.sqrt((k * (x - mu) ** 2).sum() / k.sum())
    return mu.to(torch.float32), float(sd)


def sampling_masks(n, p, seed, channels=1, size=data.SIZE):
    """Masks fed at evaluation/sampling time: keep with probability (1−p)(1−δ)."""
    rng = np.random.default_rng([seed, 2, round(p * 100)])
    return torch.from_numpy((rng.random((n, channels, size, size)) < keep_prob(p)).astype(np.float32))


def hardware():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} threads (host {socket.gethostname()}, no GPU)"


def new_state(p, x):
    keep = training_masks(len(x), p)
    mu, sd = corrupted_stats(x, keep)
    torch.manual_seed(SEED)
    net = Denoiser(mu, sd, channels=CHANNELS, emb=EMB)
    return {"name": name_of(p), "p": p, "delta": delta_of(p), "seed": SEED, "batch_size": BATCH,
            "channels": list(CHANNELS), "emb": EMB, "mu": mu, "sigma_data": sd,
            "net": net.state_dict(), "ema": net.state_dict(), "opt": None,
            "step": 0, "images": 0, "seconds": 0.0, "sessions": [], "final_loss": None}


def build(state, weights="ema"):
    net = Denoiser(state["mu"], state["sigma_data"], channels=tuple(state["channels"]), emb=state["emb"])
    net.load_state_dict(state[weights])
    return net


def load_state(name, x=None):
    path = os.path.join(CKPT_DIR, f"{name}.pt")
    if os.path.exists(path):
        return torch.load(path, weights_only=False)
    compact = os.path.join(CKPT_DIR, "compact", f"{name}.pt")
    if os.path.exists(compact):
        # Committed float16 copy (compact_checkpoints.py): weights back to float32, fresh Adam.
        state = torch.load(compact, weights_only=False)
        for key in ("net", "ema"):
            state[key] = {k: (v.float() if v.is_floating_point() else v) for k, v in state[key].items()}
        state.pop("compact", None)
        print(f"resuming {name} from {compact} (step {state['step']}; Adam restarts)")
        return state
    if x is None:
        raise SystemExit(f"{path} missing: train the model first (python models/train.py --name {name})")
    return new_state(float(name.split("-p")[1]), x)


def save_state(state):
    os.makedirs(CKPT_DIR, exist_ok=True)
    path = os.path.join(CKPT_DIR, f"{state['name']}.pt")
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)


def append_csv(path, header, row):
    new = not os.path.exists(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        if new:
            f.write(",".join(header) + "\n")
        f.write(",".join(str(v) for v in row) + "\n")


def train_slice(state, x, keep, minutes):
    """Train `state` in place for about `minutes` of wall time."""
    p, delta, sd = state["p"], state["delta"], state["sigma_data"]
    net = build(state, "net").to(memory_format=torch.channels_last).train()
    ema = build(state, "ema").eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8)
    if state["opt"] is not None:
        opt.load_state_dict(state["opt"])
    loss_csv = os.path.join(HERE, state["name"], "loss.csv")
    start, t_last, losses, steps0 = time.time(), time.time(), [], state["step"]
    while time.time() - start < minutes * 60:
        k = state["step"]
        g = torch.Generator().manual_seed(hash((state["seed"], round(p * 100), k)) % 2**62)
        idx = torch.randint(0, len(x), (BATCH,), generator=g)
        x0, A = x[idx], keep[idx].float()
        sigma = torch.exp(torch.randn(BATCH, generator=g) * P_STD + P_MEAN)
        noise = torch.randn(x0.shape, generator=g) * sigma[:, None, None, None]
        A_tilde = A * (torch.rand(A.shape, generator=g) >= delta).float()
        xin = (x0 + noise).contiguous(memory_format=torch.channels_last)
        D = net(xin, sigma, A_tilde.contiguous(memory_format=torch.channels_last))
        weight = ((sigma**2 + sd**2) / (sigma * sd) ** 2)[:, None, None, None]
        loss = (weight * A * (D - x0) ** 2).sum() / A.sum().clamp(min=1)
        lr = LR * min(1.0, (k + 1) / LR_RAMP_STEPS)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for prm in net.parameters():
            if prm.grad is not None:
                torch.nan_to_num_(prm.grad, nan=0, posinf=1e5, neginf=-1e5)
        opt.step()
        state["step"] += 1
        state["images"] += BATCH
        halflife = min(EMA_MAX_HALFLIFE_IMAGES, max(EMA_RAMP * state["images"], BATCH))
        beta = 0.5 ** (BATCH / halflife)
        with torch.no_grad():
            for pe, pn in zip(ema.parameters(), net.parameters()):
                pe.lerp_(pn.detach(), 1 - beta)
        losses.append(loss.item())
        if len(losses) == LOG_EVERY or time.time() - start >= minutes * 60:  # also flush at slice end
            now = time.time()
            state["seconds"] += now - t_last
            t_last = now
            state["final_loss"] = float(np.mean(losses))
            append_csv(loss_csv, ["step", "images", "seconds", "loss", "lr"],
                       [state["step"], state["images"], round(state["seconds"], 1),
                        f"{state['final_loss']:.6f}", f"{lr:.2e}"])
            losses = []
    state["seconds"] += time.time() - t_last
    state["net"] = {k: v.contiguous() for k, v in net.state_dict().items()}
    state["ema"] = ema.state_dict()
    state["opt"] = opt.state_dict()
    state["sessions"].append({"host": socket.gethostname(), "hardware": hardware(),
                              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
                              "seconds": round(time.time() - start, 1), "steps": state["step"] - steps0})
    return state


@torch.no_grad()
def evaluate(denoise, p, x0, clean_mean, seed=SEED, batch=128):
    """Denoising MSE per σ, own sampling mask and mask = 1, and the mean-image predictor.

    denoise(x, sigma, mask) -> x0_hat on numpy or torch float32 arrays (torch here).
    """
    n = len(x0)
    own = sampling_masks(n, p, seed)
    rows = []
    for j, s in enumerate(EVAL_SIGMAS):
        g = torch.Generator().manual_seed(seed * 10 + j)
        xt = x0 + s * torch.randn(x0.shape, generator=g)
        sig = torch.full((n,), s)
        mse = {}
        for label, m in (("own", own), ("ones", torch.ones_like(own))):
            out = torch.cat([torch.as_tensor(denoise(xt[i:i + batch], sig[i:i + batch], m[i:i + batch]))
                             for i in range(0, n, batch)])
            mse[label] = float(((out - x0) ** 2).mean())
        mse["mean"] = float(((clean_mean - x0) ** 2).mean())
        rows.append({"sigma": s, **mse})
    return rows


def eval_state(state, x_val, clean_mean):
    net = build(state, "ema").eval()
    rows = evaluate(net, state["p"], x_val, clean_mean)
    path = os.path.join(HERE, state["name"], "eval.csv")
    for r in rows:
        append_csv(path, ["step", "images", "seconds", "sigma", "mse_own_mask", "mse_mask1", "mse_mean_image", "ratio_own"],
                   [state["step"], state["images"], round(state["seconds"], 1), r["sigma"],
                    f"{r['own']:.6f}", f"{r['ones']:.6f}", f"{r['mean']:.6f}", f"{r['own'] / r['mean']:.4f}"])
    return rows


def passes(state, rows, ratio_clean, ratio_ambient):
    limit = ratio_clean if state["p"] == 0 else ratio_ambient
    return all(r["own"] <= limit * r["mean"] for r in rows)


def load_data():
    x = torch.from_numpy(data.to_unit(data.load_train()))
    val_u8, _ = data.read_shards(os.path.join(data.DATA, "full", "val"))
    return x, torch.from_numpy(data.to_unit(val_u8[:EVAL_IMAGES])), x.mean(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--all", action="store_true", help="round-robin over all five models")
    ap.add_argument("--name", help="train one model, e.g. fmnist-p0.4")
    ap.add_argument("--minutes", type=float, default=10, help="with --name: minutes to train")
    ap.add_argument("--slice-minutes", type=float, default=6, help="with --all: minutes per slice")
    ap.add_argument("--min-minutes", type=float, default=60, help="with --all: train each model at least this long")
    ap.add_argument("--max-minutes", type=float, default=240, help="with --all: stop a model after this long")
    ap.add_argument("--ratio-clean", type=float, default=0.5, help="pass: MSE/mean-MSE for p = 0")
    ap.add_argument("--ratio-ambient", type=float, default=0.95, help="pass: MSE/mean-MSE for p > 0")
    ap.add_argument("--models", nargs="+", help="with --all: model names in the order to train them")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not args.all and not args.name:
        ap.error("give --all or --name")
    torch.set_num_threads(args.threads)
    x, x_val, clean_mean = load_data()
    names = (args.models or [name_of(p) for p in P_VALUES]) if args.all else [args.name]
    done = set()
    while len(done) < len(names):
        for name in names:
            if name in done:
                continue
            state = load_state(name, x)
            keep = training_masks(len(x), state["p"])
            minutes = args.slice_minutes if args.all else args.minutes
            train_slice(state, x, keep, minutes)
            save_state(state)
            rows = eval_state(state, x_val, clean_mean)
            ok = passes(state, rows, args.ratio_clean, args.ratio_ambient)
            ratios = " ".join(f"{r['sigma']}:{r['own'] / r['mean']:.3f}" for r in rows)
            print(f"{time.strftime('%H:%M:%S')} {name} step {state['step']} images {state['images']} "
                  f"min {state['seconds'] / 60:.1f} loss {state['final_loss'] or float('nan'):.4f} ratio_own {ratios} "
                  f"{'PASS' if ok else 'fail'}", flush=True)
            minutes_done = state["seconds"] / 60
            if not args.all or minutes_done >= args.max_minutes or (ok and minutes_done >= args.min_minutes):
                done.add(name)
    print("all done", flush=True)


if __name__ == "__main__":
    main()
