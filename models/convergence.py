"""Is training still paying? The stopping rule of issue #12, read off the committed curves.

    models/.venv/bin/python models/convergence.py [--window-steps 2000] [--threshold 3]

For every model folder models/fmnist-p*/: the validation loss of the EMA weights at each
evaluation (eval.csv: own-mask MSE on the 512 fixed validation images, fixed noise, averaged
over σ ∈ {0.1, 0.5, 1, 2}), and how much it fell
- over the last `--window-steps` training steps, and
- per hour of training: that fall divided by the training time those steps took, in hours
  of the machine they ran on (eval.csv's cumulative `seconds`; 2-core CPUs here run
  ≈ 4,000–6,000 steps an hour, a GPU far more, so the per-step column is the portable one;
  `--steps-per-hour N` states the hour as N steps instead, e.g. this machine's rate).
A model has reached the rule's plateau when the fall per hour is under `--threshold`
percent. Evaluations are deterministic (same images, same noise), so the differences are
the weights', not the evaluation's, noise.
"""
import argparse
import csv
import glob
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


def fall(points, window_steps):
    """(percent fall of the loss, training hours, steps) from the evaluation closest to
    `window_steps` before the last one to the last one; None with fewer than two points."""
    if len(points) < 2:
        return None
    last = points[-1]
    earlier = [p for p in points[:-1] if p[0] <= last[0] - window_steps] or points[:1]
    start = earlier[-1]
    hours = max(last[1] - start[1], 1e-9) / 3600
    return 100 * (1 - last[2] / start[2]), hours, last[0] - start[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window-steps", type=int, default=2000)
    ap.add_argument("--threshold", type=float, default=3.0, help="plateau: fall per training hour below this, in percent")
    ap.add_argument("--steps-per-hour", type=float, help="an hour of training is this many steps (default: recorded time)")
    ap.add_argument("--models", default=os.path.join(HERE, "fmnist-p*"))
    args = ap.parse_args()
    print(f"{'model':<12} {'step':>6} {'val MSE':>8} {'window':>13} {'fall':>7} {'per 1k steps':>12} "
          f"{'per hour':>9}  plateau (< {args.threshold}%/h)")
    for folder in sorted(glob.glob(args.models)):
        path = os.path.join(folder, "eval.csv")
        if not os.path.isfile(path):
            continue
        points = curve(path)
        name = os.path.basename(folder)
        result = fall(points, args.window_steps)
        if result is None:
            print(f"{name:<12} {points[-1][0] if points else 0:>6}  (one evaluation: no trend yet)")
            continue
        pct, hours, steps = result
        per_hour = pct / steps * args.steps_per_hour if args.steps_per_hour else pct / hours
        print(f"{name:<12} {points[-1][0]:>6} {points[-1][2]:>8.5f} {f'{steps} st, {hours:.2f} h':>13} "
              f"{pct:>6.1f}% {1000 * pct / max(steps, 1):>11.2f}% {per_hour:>8.1f}%  "
              f"{'yes' if per_hour < args.threshold else 'no'}")


if __name__ == "__main__":
    main()
