"""Writes compact copies of the training checkpoints that can be committed.

models/checkpoints/<name>.pt (13.5 MB: weights, EMA weights and Adam moments, git-ignored)
→ models/checkpoints/compact/<name>.pt (3.4 MB: weights and EMA weights in float16,
no optimiser state). train.py resumes from a compact checkpoint when the full one is
missing (a fresh machine); Adam then restarts its moments, everything else (step,
images seen, seeds, mean image, σ_data, session record) carries on.

It also trims each model's curves (models/<name>/loss.csv, eval.csv) to the checkpoint's
step: a training run stopped mid-slice has logged loss rows past its last checkpoint, and
the slice resumed from that checkpoint would log those steps again.

    models/.venv/bin/python models/compact_checkpoints.py
"""
import os
import re
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "checkpoints")
DST = os.path.join(SRC, "compact")


def compact(state):
    out = dict(state)
    out["opt"] = None
    for key in ("net", "ema"):
        out[key] = {k: (v.half() if v.is_floating_point() else v) for k, v in state[key].items()}
    out["compact"] = True
    return out


def trim_curves(name, step):
    """Drops the rows of models/<name>/{loss,eval}.csv past `step`, and the cooldown phases
    of schedule.json that start past it (the checkpoint has none); returns how many rows."""
    schedule = os.path.join(HERE, name, "schedule.json")
    if os.path.isfile(schedule):
        import json
        import convergence
        with open(schedule) as f:
            phases = convergence.cooldown_phases(json.load(f))
        kept = [c for c in phases if c["start"] <= step]
        if not kept:
            os.remove(schedule)
        elif len(kept) < len(phases):
            with open(schedule + ".tmp", "w") as f:
                json.dump({"cooldown": kept}, f, indent=1)
                f.write("\n")
            os.replace(schedule + ".tmp", schedule)
    dropped = 0
    for curve in ("loss.csv", "eval.csv"):
        path = os.path.join(HERE, name, curve)
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            header, *rows = f.read().splitlines()
        kept = [r for r in rows if int(r.split(",", 1)[0]) <= step]
        if len(kept) < len(rows):
            dropped += len(rows) - len(kept)
            with open(path + ".tmp", "w") as f:
                f.write("\n".join([header, *kept]) + "\n")
            os.replace(path + ".tmp", path)
    return dropped


def main():
    os.makedirs(DST, exist_ok=True)
    # Only the models' own checkpoints: unpack-training.sh leaves *.pre-gpu-<time>.pt beside them.
    names = sorted(f for f in os.listdir(SRC) if re.fullmatch(r"fmnist-p0\.\d\.pt", f))
    if not names:
        sys.exit(f"no checkpoints in {SRC}")
    for f in names:
        state = torch.load(os.path.join(SRC, f), weights_only=False)
        tmp = os.path.join(DST, f + ".tmp")
        torch.save(compact(state), tmp)
        os.replace(tmp, os.path.join(DST, f))
        size = os.path.getsize(os.path.join(DST, f)) / 2**20
        dropped = trim_curves(f[:-3], state["step"])
        print(f"{f}: step {state['step']}, {state['images']} images → compact/{f} ({size:.1f} MiB)"
              + (f"; {dropped} curve rows past step {state['step']} dropped" if dropped else ""))


if __name__ == "__main__":
    main()
