"""Is training still paying? The stopping rule of issue #12, read off the committed curves.

    models/.venv/bin/python models/convergence.py [--window-steps 6000] [--threshold 3]

For every model folder models/fmnist-p*/: the validation loss of the EMA weights at each
evaluation (eval.csv: own-mask MSE on the 512 fixed validation images, fixed noise, averaged
over σ ∈ {0.1, 0.5, 1, 2}), and how fast it falls now:
- the trend: a least-squares line through log(MSE) against step over the evaluations of
  the last `--window-steps` steps, one per 1,000 steps (closer ones score nearly the same
  EMA weights), at least five (one evaluation can sit 1–2 % off the trend, a two-point
  difference is not a trend), as percent per 1,000 steps;
- per hour of training: that rate times the steps an hour of training takes, measured on
  the machine they ran on (eval.csv's cumulative `seconds`: 2-core CPUs here run
  ≈ 4,000–20,000 steps an hour depending on --compile/--bf16 and on what else runs, a GPU
  far more, so the per-step column is the portable one; `--steps-per-hour N` states the
  hour as N steps instead, e.g. this machine's idle rate).
A model trained with a learning-rate cooldown (train.py --cooldown-steps; schedule.json beside
its curves) is judged on the evaluations after the cooldown only: the cooldown lowers the loss
by shrinking the step, and the question is whether training at the final rate still pays.
A model has reached the rule's plateau when the fall per hour is under `--threshold`
percent, and so is its one-sided 95% upper bound (the slope steeper by Student's t with
n − 2 degrees of freedom times its standard error): one evaluation a little off the trend
does not retire a model. A significant rise retires it too: more training made it worse. Evaluations are deterministic (same images, same noise), so the differences are
the weights', not the evaluation's, noise. train.py --until-plateau applies the same rule
while it trains.
"""
import argparse
import csv
import math
import glob
import json
import os
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))


def curve(path):
    """[(step, seconds, mean own-mask MSE over σ)] in step order."""
    by_step = OrderedDict()
    with open(path) as f:
        for row in csv.DictReader(f):
            entry = by_step.setdefault(int(row["step"]), [float(row["seconds"]), []])
            entry[1].append(float(row["mse_own_mask"]))
    return [(step, sec, sum(v) / len(v)) for step, (sec, v) in sorted(by_step.items())]


# One-sided 95% quantiles of Student's t by degrees of freedom (n − 2 for a line through
# n points): with a handful of evaluations the normal 1.645 (or 2) would claim more than
# the data can say.
T95 = [6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812,
       1.796, 1.782, 1.771, 1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725]


def t95(df):
    return T95[df - 1] if df <= len(T95) else 1.645


def thinned(points, min_gap):
    """The evaluations at least `min_gap` steps apart, walking back from the last one
    (always kept). Two evaluations a few hundred steps apart score EMA weights that share
    most of their mass: counted as two, they would make the scatter look smaller than it
    is (a slice starved of CPU ends after a few dozen steps)."""
    kept = []
    for p in reversed(points):
        if not kept or kept[-1][0] - p[0] >= min_gap:
            kept.append(p)
    return kept[::-1]


def cooldown_phases(record):
    """The learning-rate cooldowns of a checkpoint state or a schedule.json, in order, each
    {start, steps, to}: a list, or one plain dict as written before the final anneal."""
    c = record.get("cooldown")
    if not c:
        return []
    return list(c) if isinstance(c, list) else [c]


def final_phase_start(folder):
    """The step from which the trend is read: the end of the model's last learning-rate
    cooldown (schedule.json, written by train.py --cooldown-steps), else None (the whole curve). The
    cooldown itself lowers the loss by shrinking the step; whether training still pays is a
    question about the steps after it."""
    path = os.path.join(folder, "schedule.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        last = cooldown_phases(json.load(f))[-1]
    return last["start"] + last["steps"]


def fall(points, window_steps, min_points=5, min_gap=1000, since=None):
    """(fall of the loss in percent per 1,000 steps, its 95% upper bound, training hours,
    steps) over the evaluations of the last `window_steps` steps, thinned to one per
    `min_gap` steps (see `thinned`) and extended back to `min_points` of them: the slope of
    a least-squares line through log(MSE) against step, and the slope one-sided 95% (t with
    n − 2 degrees of freedom) steeper. One evaluation can sit 1–2% off the trend (EMA
    weights of the last few hundred steps), so a plateau is only declared when even the
    upper bound is flat. None with fewer than `min_points` thinned evaluations."""
    if since is not None:
        points = [p for p in points if p[0] >= since]
    points = thinned(points, min_gap)
    if len(points) < max(3, min_points):
        return None
    last = points[-1]
    window = [p for p in points if p[0] >= last[0] - window_steps]
    if len(window) < min_points:
        window = points[-min_points:]
    steps = [p[0] for p in window]
    logs = [math.log(p[2]) for p in window]
    mean_s, mean_l = sum(steps) / len(steps), sum(logs) / len(logs)
    sxx = max(sum((s - mean_s) ** 2 for s in steps), 1e-9)
    slope = sum((s - mean_s) * (v - mean_l) for s, v in zip(steps, logs)) / sxx
    residual = sum((v - mean_l - slope * (s - mean_s)) ** 2 for s, v in zip(steps, logs))
    df = len(steps) - 2
    se = math.sqrt(residual / df / sxx)
    per_1k = 100 * (1 - math.exp(1000 * slope))
    per_1k_bound = 100 * (1 - math.exp(1000 * (slope - t95(df) * se)))
    hours = max(last[1] - window[0][1], 1e-9) / 3600
    return per_1k, per_1k_bound, hours, last[0] - window[0][0]


def per_hour(per_1k, hours, steps, steps_per_hour=None):
    """The fall per hour of training: per 1,000 steps times the steps an hour takes
    (`steps_per_hour`, else the rate the window's steps were trained at)."""
    rate = steps_per_hour if steps_per_hour else steps / hours
    return per_1k * rate / 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window-steps", type=int, default=6000)
    ap.add_argument("--threshold", type=float, default=3.0, help="plateau: fall per training hour below this, in percent")
    ap.add_argument("--steps-per-hour", type=float, help="an hour of training is this many steps (default: recorded time)")
    ap.add_argument("--models", default=os.path.join(HERE, "fmnist-p*"))
    args = ap.parse_args()
    print(f"{'model':<12} {'step':>6} {'val MSE':>8} {'window':>16} {'per 1k steps':>12} "
          f"{'per hour':>9} {'95% bound':>9}  plateau (bound < {args.threshold}%/h)")
    for folder in sorted(glob.glob(args.models)):
        path = os.path.join(folder, "eval.csv")
        if not os.path.isfile(path):
            continue
        points = curve(path)
        name = os.path.basename(folder)
        since = final_phase_start(folder)
        result = fall(points, args.window_steps, since=since)
        if result is None:
            last = points[-1][0] if points else 0
            where = f" after the cooldown (step {since})" if since is not None else ""
            if since is not None and last < since:
                print(f"{name:<12} {last:>6}  (in its learning-rate cooldown until step {since}: no trend yet)")
            else:
                print(f"{name:<12} {last:>6}  (under five evaluations 1,000 steps apart{where}: no trend yet)")
            continue
        per_1k, per_1k_bound, hours, steps = result
        hourly = per_hour(per_1k, hours, steps, args.steps_per_hour)
        bound = per_hour(per_1k_bound, hours, steps, args.steps_per_hour)
        print(f"{name:<12} {points[-1][0]:>6} {points[-1][2]:>8.5f} {f'{steps} st, {hours:.2f} h':>16} "
              f"{per_1k:>11.2f}% {hourly:>8.1f}% {bound:>8.1f}%  {'yes' if bound < args.threshold else 'no'}")


if __name__ == "__main__":
    main()
