#!/usr/bin/env bash
# Re-export every model from its checkpoint, then re-measure the README table, rewrite the
# golden tensors and check all folders. Safe while train.py runs (checkpoints are replaced
# atomically). Usage: models/export_all.sh [--compact] [model names...]
# --compact: export the committed compact checkpoints even where a newer full one exists.
# The weights reports/fmnist-v2 was made with (the cards' training.steps) are the compact
# checkpoints of commit a102182: `git show a102182:models/checkpoints/compact/<name>.pt`.
set -euo pipefail
cd "$(dirname "$0")"
PY=.venv/bin/python
compact=0
if [ "${1:-}" = "--compact" ]; then compact=1; shift; fi
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(fmnist-p0.0 fmnist-p0.2 fmnist-p0.4 fmnist-p0.6 fmnist-p0.8)
for n in "${names[@]}"; do
  ckpt="checkpoints/$n.pt"
  if [ "$compact" = 1 ] || [ ! -f "$ckpt" ]; then
    ckpt="checkpoints/compact/$n.pt"  # a fresh clone has only the compact ones
  fi
  $PY export.py --checkpoint "$ckpt" --split-vjp yes 2>&1 | grep -E "^fmnist|^note|wrote|refusing|Error" || { echo "export $n failed"; exit 1; }
done
$PY evaluate_denoisers.py
$PY make_goldens.py --model fmnist-p0.4 --model fmnist-p0.0
$PY check_models.py
