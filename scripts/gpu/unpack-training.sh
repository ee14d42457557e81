#!/usr/bin/env bash
# Here, after the GPU training call: take its results (the files train-gpu.sh left in $OUT,
# as the device tool copied them here) into the repository, ready for models/export_all.sh.
#
#   scripts/gpu/unpack-training.sh RESULTS_DIR [--dry-run]
#
# For each fmnist-p*.pt in RESULTS_DIR (compact: float16 weights, no Adam moments):
#   - checks it continues the committed compact checkpoint (same name, seed, p, its training
#     sessions a prefix of the returned ones, more steps);
#   - models/checkpoints/<name>.pt (git-ignored) is kept as <name>.pre-gpu-<time>.pt and
#     replaced by the returned state in float32 (Adam restarts, as from any compact copy);
#   - models/checkpoints/compact/<name>.pt (committed) is replaced by the returned file;
#   - the rows of the returned loss.csv / eval.csv that are newer than the last step of
#     models/<name>/loss.csv / eval.csv are appended (rerunning appends nothing twice).
# curves.tar.gz and summary.txt are kept under .gpu-results/<time>/ (git-ignored).
# Then: models/export_all.sh (export, check, table, goldens), and commit the compact
# checkpoints, the model folders and models/README.md.
# Refuses while the tree is trimmed (scripts/gpu/trim.sh restore first) or while a
# models/train.py runs (it would overwrite models/checkpoints/<name>.pt from its own state).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
src=${1:?usage: $0 RESULTS_DIR [--dry-run]}
dry=${2:-}
PY=${PY:-models/.venv/bin/python}
[[ -e .gpu-aside/MOVED ]] && { echo "unpack-training.sh: the tree is trimmed; run scripts/gpu/trim.sh restore first" >&2; exit 1; }
if [[ $dry != --dry-run ]] && pgrep -f 'models/train.py|[ /]train.py ' >/dev/null 2>&1 && [[ ${FORCE:-} != 1 ]]; then
  echo "unpack-training.sh: a train.py is running (pgrep -af train.py); stop it first (or FORCE=1)" >&2; exit 1
fi
shopt -s nullglob
cks=("$src"/fmnist-p*.pt)
((${#cks[@]})) || { echo "unpack-training.sh: no fmnist-p*.pt in $src" >&2; exit 1; }
stamp=$(date -u +%Y%m%dT%H%M%SZ)
keep=.gpu-results/$stamp
mkdir -p "$keep"
for f in "$src"/curves.tar.gz "$src"/summary.txt; do [[ -f $f ]] && cp "$f" "$keep/"; done
[[ -f $keep/curves.tar.gz ]] && tar -C "$keep" -xzf "$keep/curves.tar.gz"

"$PY" - "$keep" "$stamp" "$dry" "${cks[@]}" <<'PYEOF'
import os, shutil, sys
import torch
keep, stamp, dry, *paths = sys.argv[1:]
dry = dry == "--dry-run"
def last_step(csv):
    if not os.path.exists(csv):
        return -1
    rows = [l for l in open(csv).read().splitlines()[1:] if l.strip()]
    return int(rows[-1].split(",")[0]) if rows else -1
for path in paths:
    new = torch.load(path, map_location="cpu", weights_only=False)
    name = new["name"]
    assert os.path.basename(path) == f"{name}.pt", (path, name)
    assert new.get("compact"), f"{path}: not a compact checkpoint"
    committed = f"models/checkpoints/compact/{name}.pt"
    if open(committed, "rb").read() == open(path, "rb").read():
        print(f"{name}: already unpacked ({committed} is this file)")
        continue
    old = torch.load(committed, map_location="cpu", weights_only=False)
    for k in ("seed", "p", "delta", "channels", "emb", "sigma_data"):
        assert old[k] == new[k], f"{name}: {k} {old[k]} != {new[k]}"
    n = len(old["sessions"])
    assert new["sessions"][:n] == old["sessions"], f"{name}: does not continue {committed}"
    assert new["step"] > old["step"], f"{name}: no new steps ({old['step']} -> {new['step']})"
    added = new["sessions"][n:]
    secs = sum(s["seconds"] for s in added)
    print(f"{name}: step {old['step']} -> {new['step']}, images {old['images']} -> {new['images']} "
          f"(+{new['images'] - old['images']}), {len(added)} session(s), {secs:.0f} s on "
          f"{'; '.join(sorted({s['hardware'] for s in added}))}, batch {added[-1].get('batch_size')}, "
          f"{added[-1].get('precision')}, final loss {new['final_loss']:.4f}")
    ahead = last_step(os.path.join("models", name, "loss.csv"))
    if ahead > old["step"]:
        print(f"  WARNING: models/{name}/loss.csv already reaches step {ahead}, past the checkpoint the GPU "
              f"started from (step {old['step']}): the committed compact checkpoint was stale (refresh it with "
              f"models/compact_checkpoints.py before the GPU call); returned rows up to that step are not appended")
    if dry:
        continue
    full = f"models/checkpoints/{name}.pt"
    if os.path.exists(full):
        os.replace(full, f"models/checkpoints/{name}.pre-gpu-{stamp}.pt")
    state = dict(new)
    for key in ("net", "ema"):
        state[key] = {k: (v.float() if v.is_floating_point() else v) for k, v in new[key].items()}
    state.pop("compact", None)
    state["opt"] = None
    torch.save(state, full + ".tmp")
    os.replace(full + ".tmp", full)
    shutil.copyfile(path, committed + ".tmp")
    os.replace(committed + ".tmp", committed)
    for csv in ("loss.csv", "eval.csv"):
        got = os.path.join(keep, name, csv)
        if not os.path.exists(got):
            print(f"  {name}/{csv}: not returned")
            continue
        mine = os.path.join("models", name, csv)
        after = last_step(mine)
        lines = open(got).read().splitlines()
        rows = [l for l in lines[1:] if l.strip() and int(l.split(",")[0]) > after]
        if not os.path.exists(mine):
            rows = [lines[0]] + rows
        with open(mine, "a") as f:
            f.writelines(r + "\n" for r in rows)
        print(f"  {mine}: +{len(rows)} rows")
PYEOF
echo "unpack-training.sh: results kept in $keep${dry:+ (dry run: nothing else written)}"
[[ $dry == --dry-run ]] || echo "next: models/export_all.sh (export, re-check, table, goldens), then commit models/checkpoints/compact, models/fmnist-p*/, models/README.md"
