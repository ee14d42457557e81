#!/usr/bin/env bash
# Train all five models at once on one device for a fixed wall budget, from the committed
# compact checkpoints, and leave compact checkpoints + curves in an output folder (≤ 8
# files of ≤ 16 MiB, the device tool's limits for $OUT). Runs on the device machine
# (scripts/gpu/PLAN.md) and, for rehearsals, on CPU.
#
#   scripts/gpu/train-gpu.sh --out "$OUT" [--budget 300] [--device auto|cpu|cuda]
#       [--bf16 auto|on|off] [--batch N] [--data .gpu-data] [--subset N] [--threads 3]
#       [--probe-seconds 4] [--models "fmnist-p0.0 ..."] [--checkpoints DIR]
#
# --checkpoints: the compact checkpoints to start from; default models/checkpoints/compact,
# or .gpu-aside/models/checkpoints/compact when the tree was trimmed (scripts/gpu/trim.sh)
# and the call carries that folder.
#
# One process per model, all on the same GPU (concurrently: each is launch-bound at this
# model size, so five processes keep the GPU busier than one; each gets the whole budget;
# one failing leaves the others). Every process trains until the same wall time
# (start + budget), then evaluates its EMA weights on 512 validation images and writes
# <name>.pt (compact) and <name>/{loss,eval}.csv. --bf16 auto: a short probe (one
# process, fp32 vs bf16 at the chosen batch, --probe-seconds each) picks bf16 if it is at
# least 10% faster.
#
# Output ($OUT): fmnist-p0.X.pt (5 × 3.4 MB), curves.tar.gz (per-model loss/eval csv,
# logs, probe, environment), summary.txt. Unpack here with scripts/gpu/unpack-training.sh.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
PY=${PY:-python3}
out="" ckpts="" budget=300 device=auto bf16=auto batch="" data=.gpu-data subset="" threads=3 probe_s=4
models="fmnist-p0.0 fmnist-p0.2 fmnist-p0.4 fmnist-p0.6 fmnist-p0.8"
while (($#)); do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --bf16) bf16=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --subset) subset=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --probe-seconds) probe_s=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --checkpoints) ckpts=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "train-gpu.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n $out ]] || { echo "train-gpu.sh: --out DIR is required (on the device: --out \"\$OUT\")" >&2; exit 2; }
t0=$(date +%s)
work=$(mktemp -d /tmp/adps-gpu-train.XXXXXX)
mkdir -p "$out" "$work/logs"
export PYTHONUNBUFFERED=1
log() { echo "[train-gpu $(( $(date +%s) - t0 ))s] $*" | tee -a "$work/logs/driver.log"; }

# Inputs: the data files (checked), the compact checkpoints.
if ! (cd "$data" && sha256sum -c --quiet "$root/scripts/gpu/fmnist.sha256"); then
  log "FAIL: $data/ does not hold the Fashion-MNIST files of scripts/gpu/fmnist.sha256 (carry .gpu-data)"; exit 1
fi
if [[ -z $ckpts ]]; then
  ckpts=models/checkpoints/compact
  [[ -d $ckpts ]] || ckpts=.gpu-aside/models/checkpoints/compact
fi
for m in $models; do
  [[ -f $ckpts/$m.pt ]] || { log "FAIL: $ckpts/$m.pt missing (carry .gpu-aside/models/checkpoints/compact?)"; exit 1; }
done
log "starting from $ckpts: $(cd "$ckpts" && sha256sum $(printf '%s.pt ' $models) | awk '{printf "%s:%s ", $2, substr($1, 1, 12)}')"
{
  echo "date $(date -u +%FT%TZ) host $(hostname)"
  nvidia-smi -L 2>&1 || true
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || true
  $PY -c 'import torch, numpy, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "numpy", numpy.__version__)'
  nproc
} > "$work/logs/env.txt" 2>&1
cat "$work/logs/env.txt"

common=(--device "$device" --data-source "$data" --threads "$threads" --resume-from "$ckpts")
[[ -n $batch ]] && common+=(--batch "$batch")
[[ -n $subset ]] && common+=(--train-subset "$subset")

# Precision: probe fp32 against bf16 at the batch that will be used.
use_bf16=()
case "$bf16" in
  on) use_bf16=(--bf16) ;;
  off) ;;
  auto)
    probe_batch=$batch
    [[ -n $probe_batch ]] || probe_batch=$($PY -c "import sys; sys.path.insert(0, 'models'); import torch, train; \
print(train.GPU_BATCH if train.pick_device('$device').type == 'cuda' else train.BATCH)")
    log "probe: fp32 vs bf16 at batch $probe_batch, ${probe_s}s each"
    if $PY models/train.py --probe "${common[@]}" --probe-batches "$probe_batch" --probe-seconds "$probe_s" \
         > "$work/logs/probe.log" 2>&1; then
      choice=$($PY - "$work/logs/probe.log" <<'PYEOF'
import json, sys
line = [l for l in open(sys.argv[1]) if l.startswith("PROBE ")][-1]
r = {x["bf16"]: x["images_per_s"] or 0 for x in json.loads(line[6:])["results"]}
print("bf16" if r.get(True, 0) >= 1.1 * r.get(False, 0) > 0 else "fp32", round(r.get(False, 0)), round(r.get(True, 0)))
PYEOF
)
      log "probe: fp32 / bf16 images/s (one process): ${choice#* } -> ${choice%% *}"
      [[ ${choice%% *} == bf16 ]] && use_bf16=(--bf16)
    else
      log "probe failed (see probe.log); training in fp32"; tail -5 "$work/logs/probe.log"
    fi
    ;;
  *) echo "train-gpu.sh: --bf16 auto|on|off" >&2; exit 2 ;;
esac

n=$(wc -w <<< "$models")
until=$(( $(date +%s) + budget ))
log "training $n models until $(date -u -d "@$until" +%TZ) (budget ${budget}s from now) ${use_bf16[*]:-fp32} ${common[*]}"
mon=""
if command -v nvidia-smi >/dev/null; then  # GPU load while training, every 10 s
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw --format=csv -l 10 \
    > "$work/logs/gpu-util.csv" 2>&1 &
  mon=$!
fi
declare -A pids
for m in $models; do
  $PY models/train.py --name "$m" "${common[@]}" "${use_bf16[@]}" --sharing "$n" --until "$until" \
      --out-dir "$work" > "$work/logs/$m.log" 2>&1 &
  pids[$m]=$!
done
fails=0
for m in $models; do
  if wait "${pids[$m]}"; then
    log "$m: $(grep -E '^[0-9:]+ fmnist' "$work/logs/$m.log" | tail -1)"
  else
    fails=$((fails + 1)); log "$m FAILED:"; tail -20 "$work/logs/$m.log" | tee -a "$work/logs/driver.log"
  fi
done
[[ -n $mon ]] && { kill "$mon" 2>/dev/null; wait "$mon" 2>/dev/null; log "GPU utilisation %: $(awk -F', ' 'NR > 1 {print $2}' "$work/logs/gpu-util.csv" | tr -d ' %' | tr '\n' ' ')"; }

# Package: the checkpoints as they are, everything small in one tarball.
for m in $models; do [[ -f $work/$m.pt ]] && cp "$work/$m.pt" "$out/$m.pt"; done
tar -C "$work" -czf "$out/curves.tar.gz" logs $(cd "$work" && ls -d fmnist-p*/ 2>/dev/null)
grep -hE '^[0-9:]+ fmnist' "$work"/logs/fmnist-*.log > "$out/summary.txt" 2>/dev/null || true
echo "wall ${budget}s budget, $(( $(date +%s) - t0 ))s in all, ${use_bf16[*]:-fp32}, $fails failed" >> "$out/summary.txt"
big=0
for f in "$out"/*; do
  s=$(stat -c %s "$f"); ((s > 16 * 1048576)) && { log "TOO BIG for \$OUT: $f ($s bytes)"; big=1; }
done
log "out: $(ls "$out" | wc -l) files, $(du -cb "$out"/* | tail -1 | cut -f1) bytes; $fails of $n failed"
cat "$out/summary.txt"
((fails == 0 && big == 0))
