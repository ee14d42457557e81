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
σ in {0.1, 0.5, 1, 2}) and has trained --min-minutes, or until --max-minutes each;
--until-plateau PCT also retires a model once its validation MSE falls by less than PCT
percent per hour of training (issue #12's stopping rule, models/convergence.py).
Randomness of step k comes from a generator seeded by (seed, p, k), so slicing does not
change what a model sees. Logs: models/<name>/loss.csv and models/<name>/eval.csv.

On a GPU (`--device auto` picks CUDA when torch sees one) the batch is --gpu-batch (512)
and the learning rate is scaled with it (1e-3 * sqrt(batch/64), at most 2e-3, unless --lr);
the per-step randomness is then drawn on the GPU from the same (seed, p, k) seeds, so it
differs from a CPU run's. --bf16 runs the network under bfloat16 autocast (loss, Adam and
EMA stay float32). Whenever Adam starts without moments (a compact checkpoint), the
learning rate ramps up again over --warmup-steps. scripts/gpu/train-gpu.sh runs all five
models this way, one process each, into a folder given by --out-dir (compact checkpoint
and loss/eval curves per model); --data-source reads the Debian IDX .gz files instead of
models/data/full/, so the GPU machine needs only those two files.

Examples:
  nice -n 10 python models/train.py --all                 # the round-robin driver
  nice -n 19 python models/train.py --all --compile       # the same, 1.35-1.4x faster on CPU
  nice -n 19 python models/train.py --all --compile --bf16 --until-plateau 3
      # on CPUs with AVX512-BF16 (Zen 4, Sapphire Rapids) bf16 autocast adds 1.4-1.5x
      # (AMD EPYC, 2 threads, batch 64: 223-240 -> 329-365 images/s); retire each model
      # once its validation MSE falls by less than 3% per hour of training
  python models/train.py --name fmnist-p0.4 --minutes 10  # one slice of one model
  python models/train.py --name fmnist-p0.4 --device cuda --bf16 --until $(( $(date +%s) + 300 )) \
      --data-source .gpu-data --out-dir /tmp/gpu-train     # one GPU slice ending at a wall time
  python models/train.py --probe --device cuda --data-source .gpu-data   # images/s per batch, fp32 vs bf16
"""
import argparse
import copy
import csv
import json
import os
import platform
import socket
import time

import numpy as np
import torch

import convergence
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
GPU_BATCH, GPU_LR_MAX = 512, 2e-3
P_MEAN, P_STD = -1.2, 1.2
EMA_MAX_HALFLIFE_IMAGES, EMA_RAMP = 20_000, 0.1  # half-life = min(20k, 0.1 x images seen)
SEED = 20260428
EVAL_IMAGES = 512
LOG_EVERY = 50
COOLDOWN_TO = 0.1  # the cooldown's final learning rate, as a fraction of the constant one


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


def pick_device(name):
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    return torch.device(name)


def default_lr(batch):
    """Adam's learning rate for a batch size: 1e-3 at 64, scaled by sqrt(batch/64), at most 2e-3."""
    return min(LR * (batch / BATCH) ** 0.5, max(LR, GPU_LR_MAX))


def cooldown_factor(state, step):
    """The learning rate's factor at `step` (1 without a cooldown): each phase decays it
    linearly from the level the previous one left (1 for the first) to its `to` over `steps`
    steps, then it stays there until the next phase.
    Constant-LR Adam leaves weight noise that only a smaller step removes (the decay phase of
    warmup-stable-decay schedules); the rule of issue #12 is then read after the last phase."""
    level = 1.0
    for c in convergence.cooldown_phases(state):
        if step < c["start"]:
            break
        t = min(1.0, (step - c["start"]) / max(1, c["steps"]))
        if t < 1.0:
            return level + (c["to"] - level) * t
        level = c["to"]
    return level


def start_cooldown(state, steps, lr, to=COOLDOWN_TO, log_dir=None):
    """Starts a cooldown to `to` at the model's current step and records it beside the
    curves (schedule.json, read by convergence.py). A model keeps a cooldown it is in; one
    whose last cooldown has ended at a higher level gets another phase (train.py
    --cooldown-to 0.01 after a finished 0.1); one already at `to` or lower gets nothing."""
    phases = convergence.cooldown_phases(state)
    if not steps:
        return False
    if phases:
        last = phases[-1]
        if state["step"] < last["start"] + last["steps"] or last["to"] <= to:
            return False
    phases.append({"start": state["step"], "steps": steps, "to": to})
    state["cooldown"] = phases
    folder = log_dir or os.path.join(HERE, state["name"])
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "schedule.json"), "w") as f:
        json.dump({"cooldown": [{**c, "lr": lr} for c in phases]}, f, indent=1)
        f.write("\n")
    return True


def to_cpu(obj):
    """Tensors (in dicts/lists, e.g. an optimiser state) moved to the CPU, for saving."""
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def hardware(device=torch.device("cpu")):
    if device.type == "cuda":
        return (f"GPU {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, "
                f"torch {torch.__version__} (host {socket.gethostname()})")
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


def load_state(name, x=None, resume_from=None):
    """The training state of `name`: models/checkpoints/<name>.pt, else the committed compact
    copy, else a new model. resume_from: a folder whose <name>.pt (full or compact) must be used."""
    path = os.path.join(resume_from or CKPT_DIR, f"{name}.pt")
    if resume_from and not os.path.exists(path):
        raise SystemExit(f"{path} missing")
    state = None
    if os.path.exists(path):
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not state.get("compact"):
            return state
        compact = path
    else:
        compact = os.path.join(CKPT_DIR, "compact", f"{name}.pt")
        if os.path.exists(compact):
            state = torch.load(compact, map_location="cpu", weights_only=False)
    if state is not None:
        # Float16 copy (compact_checkpoints.py): weights back to float32, fresh Adam.
        for key in ("net", "ema"):
            state[key] = {k: (v.float() if v.is_floating_point() else v) for k, v in state[key].items()}
        state.pop("compact", None)
        print(f"resuming {name} from {compact} (step {state['step']}; Adam restarts)")
        return state
    if x is None:
        raise SystemExit(f"{path} missing: train the model first (python models/train.py --name {name})")
    return new_state(float(name.split("-p")[1]), x)


def save_state(state, out_dir=None):
    """Full checkpoint to models/checkpoints/<name>.pt, or with out_dir a compact one
    (float16 weights, no Adam moments: compact_checkpoints.py) to out_dir/<name>.pt."""
    state = to_cpu(state)
    if out_dir:
        import compact_checkpoints
        state = compact_checkpoints.compact(state)
    folder = out_dir or CKPT_DIR
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{state['name']}.pt")
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)
    return path


def append_csv(path, header, row):
    new = not os.path.exists(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        if new:
            f.write(",".join(header) + "\n")
        f.write(",".join(str(v) for v in row) + "\n")


class Config:
    """How a slice trains: device, batch, learning rate, precision, where logs go."""

    def __init__(self, device=torch.device("cpu"), batch=BATCH, lr=None, bf16=False, log_dir=None,
                 warmup_steps=LR_RAMP_STEPS, sharing=1, log=True, compile=False):
        self.device, self.batch, self.bf16, self.compile = device, batch, bf16, compile
        self.lr = lr if lr is not None else default_lr(batch)
        self.log_dir, self.warmup_steps, self.sharing, self.log = log_dir, warmup_steps, sharing, log


def train_slice(state, x, keep, minutes, cfg=None, eval_every=None, on_eval=None, deadline=None):
    """Train `state` in place for about `minutes` of wall time; returns throughput stats.

    x [N,1,32,32] float32 and keep [N,1,32,32] bool may live on cfg.device (faster) or the CPU.
    on_eval(ema_net): called every `eval_every` steps (state's step, images and seconds up to
    date); its time counts neither as training time nor against the slice, except against
    `deadline` (a Unix time the slice ends by whatever it did: a job's or lease's end).
    """
    cfg = cfg or Config()
    dev, B = cfg.device, cfg.batch
    cuda = dev.type == "cuda"
    x, keep = x.to(dev), keep.to(dev)
    p, delta, sd = state["p"], state["delta"], state["sigma_data"]
    net = build(state, "net").to(dev).to(memory_format=torch.channels_last).train()
    ema = build(state, "ema").to(dev).eval().requires_grad_(False)
    # torch.compile (Inductor) fuses the group norms, SiLUs and their gradients: 1.35-1.4x
    # the steps/s of eager on 2 CPU cores (measured 2026-12-06). One compilation per model
    # (it specialises on sigma_data), cached on disk across slices and processes.
    forward = torch.compile(net) if cfg.compile else net
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                           **({"fused": True} if cuda else {}))
    fresh_adam = state["opt"] is None
    if not fresh_adam:
        opt.load_state_dict(state["opt"])
    log_dir = cfg.log_dir or os.path.join(HERE, state["name"])
    loss_csv = os.path.join(log_dir, "loss.csv")
    ema_params, net_params = list(ema.parameters()), list(net.parameters())
    g = torch.Generator(device=dev)
    start, t_last, steps0 = time.time(), time.time(), state["step"]
    loss_acc, n_acc = torch.zeros((), dtype=torch.float64, device=dev), 0
    timed = None  # (time, step, paused) after the first steps: steady-state throughput
    paused = 0.0  # seconds spent in on_eval

    def over():
        return time.time() - start - paused >= minutes * 60 or (deadline is not None and time.time() >= deadline)
    while not over():
        k = state["step"]
        g.manual_seed(hash((state["seed"], round(p * 100), k)) % 2**62)
        idx = torch.randint(0, len(x), (B,), generator=g, device=dev)
        x0, A = x[idx], keep[idx].float()
        sigma = torch.exp(torch.randn(B, generator=g, device=dev) * P_STD + P_MEAN)
        noise = torch.randn(x0.shape, generator=g, device=dev) * sigma[:, None, None, None]
        A_tilde = A * (torch.rand(A.shape, generator=g, device=dev) >= delta).float()
        xin = (x0 + noise).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            D = forward(xin, sigma, A_tilde.contiguous(memory_format=torch.channels_last))
        D = D.float()
        weight = ((sigma**2 + sd**2) / (sigma * sd) ** 2)[:, None, None, None]
        loss = (weight * A * (D - x0) ** 2).sum() / A.sum().clamp(min=1)
        lr = cfg.lr * min(1.0, (k + 1) / LR_RAMP_STEPS) * cooldown_factor(state, k)
        if fresh_adam and steps0 > 0:  # Adam restarts without moments on a trained model: ramp up again
            lr *= min(1.0, (k - steps0 + 1) / max(1, cfg.warmup_steps))
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for prm in net_params:
            if prm.grad is not None:
                torch.nan_to_num_(prm.grad, nan=0, posinf=1e5, neginf=-1e5)
        opt.step()
        state["step"] += 1
        state["images"] += B
        halflife = min(EMA_MAX_HALFLIFE_IMAGES, max(EMA_RAMP * state["images"], B))
        beta = 0.5 ** (B / halflife)
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, [q.detach() for q in net_params], 1 - beta)
        loss_acc += loss.detach()
        n_acc += 1
        if state["step"] - steps0 == (10 if cuda else 2):  # after warm-up (cuDNN autotuning)
            if cuda:
                torch.cuda.synchronize(dev)
            timed = (time.time(), state["step"], paused)
        if n_acc == LOG_EVERY or over():  # also flush at slice end
            state["final_loss"] = float(loss_acc) / n_acc  # (syncs the device)
            now = time.time()
            state["seconds"] += now - t_last
            t_last = now
            if cfg.log:
                append_csv(loss_csv, ["step", "images", "seconds", "loss", "lr"],
                           [state["step"], state["images"], round(state["seconds"], 1),
                            f"{state['final_loss']:.6f}", f"{lr:.2e}"])
            loss_acc.zero_()
            n_acc = 0
        if on_eval and eval_every and state["step"] % eval_every == 0 and not over():
            if cuda:  # queued training kernels are training time
                torch.cuda.synchronize(dev)
            now = time.time()
            state["seconds"] += now - t_last
            on_eval(ema)
            paused += time.time() - now
            t_last = time.time()
    if n_acc:
        state["final_loss"] = float(loss_acc) / n_acc
    if cuda:
        torch.cuda.synchronize(dev)
    end = time.time()
    state["seconds"] += end - t_last
    state["net"] = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    state["ema"] = {k: v.detach().cpu() for k, v in ema.state_dict().items()}
    state["opt"] = to_cpu(opt.state_dict())
    state["batch_size"] = B
    steps = state["step"] - steps0
    state["sessions"].append({"host": socket.gethostname(), "hardware": hardware(dev),
                              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
                              "seconds": round(end - start - paused, 1), "steps": steps,
                              "device": dev.type, "batch_size": B, "lr": cfg.lr, "compiled": cfg.compile,
                              "precision": "bf16 autocast" if cfg.bf16 else "float32",
                              "sharing": cfg.sharing})
    steady = None
    if timed and state["step"] > timed[1]:
        steady = (state["step"] - timed[1]) * B / (end - timed[0] - (paused - timed[2]))
    return {"steps": steps, "seconds": end - start, "images_per_s": steady}


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


def eval_state(state, x_val, clean_mean, device=torch.device("cpu"), log_dir=None, net=None):
    """Evaluates the EMA weights (`net`: the live EMA module, else built from `state`) and
    appends the rows to <log_dir>/eval.csv at the state's step."""
    net = net if net is not None else build(state, "ema").to(device).eval()
    rows = evaluate(lambda x, s, m: net(x.to(device), s.to(device), m.to(device)).float().cpu(),
                    state["p"], x_val, clean_mean)
    path = os.path.join(log_dir or os.path.join(HERE, state["name"]), "eval.csv")
    for r in rows:
        append_csv(path, ["step", "images", "seconds", "sigma", "mse_own_mask", "mse_mask1", "mse_mean_image", "ratio_own"],
                   [state["step"], state["images"], round(state["seconds"], 1), r["sigma"],
                    f"{r['own']:.6f}", f"{r['ones']:.6f}", f"{r['mean']:.6f}", f"{r['own'] / r['mean']:.4f}"])
    return rows


def read_eval(state, log_dir=None):
    """The rows eval_state wrote for the state's current step, read back from eval.csv."""
    path = os.path.join(log_dir or os.path.join(HERE, state["name"]), "eval.csv")
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) == state["step"]]
    return [{"sigma": float(r["sigma"]), "own": float(r["mse_own_mask"]), "ones": float(r["mse_mask1"]),
             "mean": float(r["mse_mean_image"])} for r in rows[-len(EVAL_SIGMAS):]]


def passes(state, rows, ratio_clean, ratio_ambient):
    limit = ratio_clean if state["p"] == 0 else ratio_ambient
    return all(r["own"] <= limit * r["mean"] for r in rows)


def load_data(source=None, subset=None):
    """Training images, the first EVAL_IMAGES validation images, and the clean mean image.

    source: a folder with Fashion-MNIST's train- and t10k-images-idx3-ubyte.gz (validation =
    t10k rows 0.., the same images as models/data/full/val) instead of models/data/full/.
    subset: keep only the first n training images (rehearsals; changes the masks drawn).
    """
    if source:
        train_u8 = data.load_split("train", source)
        val_u8 = data.load_split("t10k", source)[data.VAL_IDS.start:data.VAL_IDS.start + EVAL_IMAGES]
    else:
        train_u8 = data.load_train()
        val_u8, _ = data.read_shards(os.path.join(data.DATA, "full", "val"))
    if subset:
        train_u8 = train_u8[:subset]
    x = torch.from_numpy(data.to_unit(train_u8))
    return x, torch.from_numpy(data.to_unit(val_u8[:EVAL_IMAGES])), x.mean(0)


def probe(state, x, keep, device, batches, seconds):
    """Steady-state training images/s of `state`'s model per (batch, precision); trains copies."""
    results = []
    for batch in batches:
        for bf16 in (False, True):
            s = copy.deepcopy(state)
            stats = train_slice(s, x, keep, seconds / 60, Config(device, batch, bf16=bf16, log=False))
            results.append({"batch": batch, "bf16": bf16, "steps": stats["steps"],
                            "images_per_s": stats["images_per_s"]})
            ips = stats["images_per_s"]
            print(f"probe batch {batch} {'bf16' if bf16 else 'fp32'}: {stats['steps']} steps, "
                  f"{ips if ips is None else round(ips)} images/s", flush=True)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--all", action="store_true", help="round-robin over all five models")
    ap.add_argument("--name", help="train one model, e.g. fmnist-p0.4")
    ap.add_argument("--probe", action="store_true", help="measure training images/s per batch size, fp32 and bf16")
    ap.add_argument("--minutes", type=float, default=10, help="with --name: minutes to train")
    ap.add_argument("--until", type=float, help="with --name: train until this Unix time instead of --minutes")
    ap.add_argument("--slice-minutes", type=float, default=6, help="with --all: minutes per slice")
    ap.add_argument("--min-minutes", type=float, default=60, help="with --all: train each model at least this long")
    ap.add_argument("--max-minutes", type=float, default=240, help="with --all: stop a model after this long")
    ap.add_argument("--until-plateau", type=float, metavar="PCT",
                    help="with --all: also stop a model once its validation MSE falls by less than PCT percent "
                         "per hour of training, upper 95%% bound included (models/convergence.py's trend over "
                         "--plateau-window steps, the "
                         "hour measured at this run's fastest slice, as other work may share the machine)")
    ap.add_argument("--plateau-window", type=int, default=6000, help="with --until-plateau: steps the trend spans")
    ap.add_argument("--plateau-steps-per-hour", type=float,
                    help="with --until-plateau: an hour of training is this many steps (default: the fastest "
                         "slice of this run)")
    ap.add_argument("--cooldown-steps", type=int,
                    help="decay each model's learning rate linearly to --cooldown-to times its value over this "
                         "many steps, from its current step (recorded in the checkpoint and "
                         "models/<name>/schedule.json), then keep it there; a model whose cooldown ended at a "
                         "higher level gets a further phase from where it is; with --until-plateau the trend "
                         "is read only after the last phase")
    ap.add_argument("--cooldown-to", type=float, default=COOLDOWN_TO,
                    help="the final learning rate as a fraction of the constant one")
    ap.add_argument("--eval-every", type=int,
                    help="also evaluate the EMA weights every N steps inside a slice (the rule wants evaluations "
                         "1,000 steps apart; slices end only every few thousand)")
    ap.add_argument("--ratio-clean", type=float, default=0.5, help="pass: MSE/mean-MSE for p = 0")
    ap.add_argument("--ratio-ambient", type=float, default=0.95, help="pass: MSE/mean-MSE for p > 0")
    ap.add_argument("--models", nargs="+", help="with --all: model names in the order to train them")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="where to train (auto: CUDA when torch sees a GPU)")
    ap.add_argument("--batch", type=int, help=f"batch size (default {BATCH} on CPU, --gpu-batch on CUDA)")
    ap.add_argument("--gpu-batch", type=int, default=GPU_BATCH, help="batch size on CUDA")
    ap.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3*sqrt(batch/64), at most 2e-3)")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the network")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the network (first slice of a model compiles for ~1 min)")
    ap.add_argument("--warmup-steps", type=int, default=LR_RAMP_STEPS,
                    help="learning-rate ramp after Adam restarts without moments")
    ap.add_argument("--sharing", type=int, default=1, help="models training at once on this device (recorded)")
    ap.add_argument("--data-source", help="folder with train-/t10k-images-idx3-ubyte.gz (else models/data/full)")
    ap.add_argument("--train-subset", type=int, help="only the first N training images (rehearsals)")
    ap.add_argument("--out-dir", help="with --name: write a compact checkpoint <out-dir>/<name>.pt and the curves "
                                      "<out-dir>/<name>/{loss,eval}.csv instead of models/checkpoints and models/<name>")
    ap.add_argument("--resume-from", help="folder with <name>.pt (full or compact) to start from "
                                         "(default models/checkpoints, then its compact/)")
    ap.add_argument("--probe-batches", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--probe-seconds", type=float, default=3.0, help="with --probe: seconds per configuration")
    args = ap.parse_args()
    if sum(map(bool, (args.all, args.name, args.probe))) != 1:
        ap.error("give one of --all, --name, --probe")
    if args.out_dir and not args.name:
        ap.error("--out-dir goes with --name")
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    batch = args.batch or (args.gpu_batch if device.type == "cuda" else BATCH)
    x, x_val, clean_mean = load_data(args.data_source, args.train_subset)
    if args.probe:
        state = load_state(args.name or "fmnist-p0.4", x, args.resume_from)
        results = probe(state, x, training_masks(len(x), state["p"]), device, args.probe_batches, args.probe_seconds)
        best = max(results, key=lambda r: r["images_per_s"] or 0)
        print("PROBE " + json.dumps({"device": hardware(device), "results": results, "best": best}), flush=True)
        return
    names = (args.models or [name_of(p) for p in P_VALUES]) if args.all else [args.name]
    log_dir = os.path.join(args.out_dir, args.name) if args.out_dir else None
    done, best_ips = set(), 0.0
    while len(done) < len(names):
        for name in names:
            if name in done:
                continue
            state = load_state(name, x, args.resume_from)
            keep = training_masks(len(x), state["p"])
            minutes = args.slice_minutes if args.all else args.minutes
            if args.until is not None and not args.all:
                minutes = max(0.0, (args.until - time.time()) / 60)
            cfg = Config(device, batch, args.lr, args.bf16, log_dir, args.warmup_steps, args.sharing,
                         compile=args.compile)
            if args.cooldown_steps and start_cooldown(state, args.cooldown_steps, cfg.lr, args.cooldown_to, log_dir):
                print(f"{name}: cooldown from step {state['step']} over {args.cooldown_steps} steps to "
                      f"{args.cooldown_to:g} x lr {cfg.lr:g}", flush=True)
            evaluated = set()

            def on_eval(ema_net, state=state):
                eval_state(state, x_val, clean_mean, device, log_dir, net=ema_net)
                evaluated.add(state["step"])
            stats = train_slice(state, x, keep, minutes, cfg, args.eval_every, on_eval,
                                deadline=args.until if not args.all else None)
            saved = save_state(state, args.out_dir)
            if state["step"] in evaluated:  # the last in-slice evaluation scored these weights
                rows = read_eval(state, log_dir)
            else:
                rows = eval_state(state, x_val, clean_mean, device, log_dir)
            ok = passes(state, rows, args.ratio_clean, args.ratio_ambient)
            ratios = " ".join(f"{r['sigma']}:{r['own'] / r['mean']:.3f}" for r in rows)
            ips = stats["images_per_s"]
            print(f"{time.strftime('%H:%M:%S')} {name} step {state['step']} images {state['images']} "
                  f"min {state['seconds'] / 60:.1f} loss {state['final_loss'] or float('nan'):.4f} ratio_own {ratios} "
                  f"{'PASS' if ok else 'fail'} ({stats['steps']} steps this slice, batch {batch}, "
                  f"{'?' if ips is None else round(ips)} images/s on {device.type}; {saved})", flush=True)
            minutes_done = state["seconds"] / 60
            if not args.all or minutes_done >= args.max_minutes or (ok and minutes_done >= args.min_minutes):
                done.add(name)
            # The hour of the rule: the fastest slice of any model in this run (they share
            # one architecture and batch; a slice that shared the CPU would make an hour
            # look short), or --plateau-steps-per-hour.
            best_ips = max(best_ips, ips or 0)
            hour_steps = args.plateau_steps_per_hour or 3600 * best_ips / batch
            if args.all and args.until_plateau is not None and hour_steps:
                folder = log_dir or os.path.join(HERE, name)
                trend = convergence.fall(convergence.curve(os.path.join(folder, "eval.csv")), args.plateau_window,
                                         since=convergence.final_phase_start(folder))
                if trend is not None:
                    per_1k, per_1k_bound, hours, steps = trend
                    hourly = convergence.per_hour(per_1k, hours, steps, hour_steps)
                    bound = convergence.per_hour(per_1k_bound, hours, steps, hour_steps)
                    flat = bound < args.until_plateau
                    print(f"{name}: validation MSE falls {per_1k:.2f}% per 1k steps over the last {steps} "
                          f"steps, {hourly:.1f}% per hour (95% bound {bound:.1f}%) at {hour_steps:.0f} steps/h"
                          f"{' - plateau, done' if flat else ''}", flush=True)
                    if flat:
                        done.add(name)
    print("all done", flush=True)


if __name__ == "__main__":
    main()
