"""Helpers for scripts/gpu/cuda-check.sh (numpy + pyarrow only: runs under the GPU machine's python3).

    python gpu_check.py compare CPU_OUT CUDA_OUT [--json FILE]
        the same images restored twice (adps restore --write-f32): per-image PSNR difference
        and max |Δ pixel| of reconstruction_f32 (model range [-1, 1]), matched by id
    python gpu_check.py run-stats LOG
        the `run finished` line of an `adps --log-format json` log as one JSON object
    python gpu_check.py table ROWS.jsonl
        the throughput rows cuda-check.sh collected, as a Markdown table
"""
import argparse
import glob
import json
import os
import sys

import numpy as np


def read_output(folder):
    import pyarrow.parquet as pq
    rows = {}
    for path in sorted(glob.glob(os.path.join(folder, "part-*.parquet"))):
        t = pq.read_table(path, columns=["id", "psnr", "reconstruction_f32"])
        for i, psnr, rec in zip(t.column("id").to_pylist(), t.column("psnr").to_pylist(),
                                t.column("reconstruction_f32").to_pylist()):
            rows[i] = (psnr, np.asarray(rec, dtype=np.float32))
    return rows


def compare(a_dir, b_dir):
    a, b = read_output(a_dir), read_output(b_dir)
    ids = sorted(set(a) & set(b))
    if not ids:
        raise SystemExit(f"no common ids between {a_dir} ({len(a)}) and {b_dir} ({len(b)})")
    dpsnr = np.array([b[i][0] - a[i][0] for i in ids])
    dmax = np.array([float(np.abs(b[i][1] - a[i][1]).max()) for i in ids])
    return {"images": len(ids), "only_in_a": len(set(a) - set(b)), "only_in_b": len(set(b) - set(a)),
            "psnr_a_mean": float(np.mean([a[i][0] for i in ids])),
            "psnr_b_mean": float(np.mean([b[i][0] for i in ids])),
            "dpsnr_mean": float(dpsnr.mean()), "dpsnr_abs_max": float(np.abs(dpsnr).max()),
            "maxabs_median": float(np.median(dmax)), "maxabs_max": float(dmax.max())}


def run_stats(log):
    for line in open(log, errors="replace"):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        f = rec.get("fields", {})
        if f.get("message") == "run finished":
            return {k: f.get(k) for k in ("records_ok", "records_failed", "seconds", "nfe_per_second", "mean_psnr")}
    return None


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def table(rows_file):
    rows = [json.loads(l) for l in open(rows_file) if l.strip()]
    out = ["| device | path | batch | images | workers busy | steps | wall s | adps s | images/s | NFE/s | mean PSNR |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r.get("stats") or {}
        secs = s.get("seconds")
        ips = r["images"] / secs if secs else None
        out.append(f"| {r['device']} | {r['path']} | {r['batch']} | {r['images']} | {r.get('workers_busy', '')} | {r['steps']} | "
                   f"{fmt(r.get('wall'), '.2f')} | {fmt(secs, '.2f')} | {fmt(ips, '.1f')} | "
                   f"{fmt(s.get('nfe_per_second'), '.1f')} | {fmt(s.get('mean_psnr'), '.2f')} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--json")
    c.add_argument("--max-dpsnr", type=float, default=0.1, help="tolerance: |PSNR_b − PSNR_a| per image, dB")
    c.add_argument("--max-abs", type=float, default=0.02, help="tolerance: max |Δ pixel| per image, [-1, 1] scale")
    r = sub.add_parser("run-stats")
    r.add_argument("log")
    t = sub.add_parser("table")
    t.add_argument("rows")
    args = ap.parse_args()
    if args.cmd == "compare":
        res = compare(args.a, args.b)
        res["tolerance"] = {"dpsnr_abs_max": args.max_dpsnr, "maxabs_max": args.max_abs}
        res["within"] = res["dpsnr_abs_max"] <= args.max_dpsnr and res["maxabs_max"] <= args.max_abs
        print(json.dumps(res))
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps({"a": args.a, "b": args.b, **res}) + "\n")
    elif args.cmd == "run-stats":
        print(json.dumps(run_stats(args.log)))
    else:
        print(table(args.rows))


if __name__ == "__main__":
    sys.exit(main())
