#!/usr/bin/env bash
# On the device machine: prove ONNX Runtime's CUDA execution provider under adps and time it.
#
#   scripts/gpu/cuda-check.sh --out "$OUT" [--devices "cpu cuda"] [--adps .gpu-bin/adps]
#       [--model DIR] [--input DIR] [--steps 10] [--batches "8 64 256"]
#
# 1. environment: nvidia-smi, the machine's own onnxruntime (python) and its providers;
# 2. the GPU build: .gpu-ort/lib from ort-gpu-assemble.sh (ADPS_ORT_DYLIB points at it) and
#    the CUDA 13 user-space libraries of the machine's pip nvidia-* packages (cuBLAS, cuDNN,
#    cuFFT, cuRAND, cudart, nvrtc: every site-packages/nvidia/**/lib*.so* folder) put on
#    LD_LIBRARY_PATH; `ldd` of the CUDA provider must find everything;
# 3. agreement: the same 64 images restored (cs:256, Euler 20 steps, --write-f32) on CPU and on
#    CUDA, for the dense path (--clip none --gradient dense) and the VJP path (--clip residual,
#    the default): per-image PSNR difference and max |Δ pixel| (models/bench/gpu_check.py);
#    `--device auto` must say it runs on CUDA;
# 4. throughput: images/s and NFE/s (adps's own `run finished` numbers, and wall time) for
#    the dense and VJP paths at batch 8, 64 and 256, on each of --devices.
# Without a GPU (rehearsal) use --devices cpu: the CUDA parts are skipped, `auto` must fall
# back to CPU. Writes env.txt, compare.jsonl, throughput.jsonl, throughput.md and
# cuda-check.log to --out (5 files). Exit 0 when every step that ran worked.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out="" devices="cpu cuda" adps=.gpu-bin/adps model="" input="" steps=10 batches="8 64 256" check_images=64
while (($#)); do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --devices) devices=$2; shift 2 ;;
    --adps) adps=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --input) input=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --check-images) check_images=$2; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cuda-check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n $out ]] || { echo "cuda-check.sh: --out DIR is required (on the device: --out \"\$OUT\")" >&2; exit 2; }
mkdir -p "$out"
PY=${PY:-python3}
work=$(mktemp -d /tmp/adps-cuda-check.XXXXXX)
logf=$out/cuda-check.log
t0=$(date +%s)
log() { echo "[cuda-check $(( $(date +%s) - t0 ))s] $*" | tee -a "$logf"; }
fails=0
cores=$(nproc)
fail() { fails=$((fails + 1)); log "FAIL: $*"; }

# Inputs: the model (tree or set aside), the test images (carried models/data/full/test, or the demo).
if [[ -z $model ]]; then
  model=models/fmnist-p0.4; [[ -f $model/card.json ]] || model=.gpu-aside/models/fmnist-p0.4
fi
if [[ -z $input ]]; then
  input=models/data/full/test; ls "$input"/*.parquet >/dev/null 2>&1 || input=models/data/demo
fi
[[ -f $model/card.json ]] || { log "FAIL: no model at $model (carry .gpu-aside/models/fmnist-p0.4)"; exit 1; }
if [[ ! -x $adps && -f $adps.xz ]]; then xz -dc "$adps.xz" > "$adps" 2>/dev/null \
  || $PY -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$adps.xz" "$adps"; chmod +x "$adps"; fi
[[ -x $adps ]] || { log "FAIL: no adps binary at $adps (carry .gpu-bin)"; exit 1; }
log "model $model, input $input ($(ls "$input"/*.parquet | wc -l) shards), adps $adps ($("$adps" --version 2>&1))"

# 1. Environment.
{
  echo "date $(date -u +%FT%TZ) host $(hostname) cores $(nproc)"
  nvidia-smi -L 2>&1; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  $PY -c 'import onnxruntime as o; print("machine onnxruntime", o.__version__, o.get_device(), o.get_available_providers())' 2>&1
  $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' 2>&1
} > "$out/env.txt"
cat "$out/env.txt" | tee -a "$logf"

# 2. The GPU build and the CUDA libraries.
want_cuda=0; [[ " $devices " == *" cuda "* ]] && want_cuda=1
asm=$(scripts/gpu/ort-gpu-assemble.sh 2>&1); echo "$asm" | tee -a "$logf"
if grep -q '^ORT-GPU: READY' <<< "$asm"; then
  export ADPS_ORT_DYLIB=$root/.gpu-ort/lib/libonnxruntime.so.1.31.1
elif ((want_cuda)); then
  fail "the ONNX Runtime GPU build is not assembled (.gpu-ort/lib); the CUDA half cannot run"; want_cuda=0
  devices=${devices//cuda/}
fi
nvdirs=$($PY - <<'PYEOF'
import glob, os, site, sys
roots = set(site.getsitepackages() + [site.getusersitepackages()] + [p for p in sys.path if p.endswith("-packages")])
try:
    import nvidia  # namespace package of the nvidia-* wheels
    roots.update(os.path.dirname(p) for p in nvidia.__path__)
except Exception:
    pass
dirs = set()
for r in roots:
    for so in glob.glob(os.path.join(r, "nvidia", "**", "lib*.so*"), recursive=True):
        dirs.add(os.path.dirname(so))
print(":".join(sorted(dirs)))
PYEOF
)
drv=""; for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu; do [[ -e $d/libcuda.so.1 ]] && { drv=$d; break; }; done
export LD_LIBRARY_PATH=$root/.gpu-ort/lib${nvdirs:+:$nvdirs}${drv:+:$drv}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
log "LD_LIBRARY_PATH: $(tr ':' '\n' <<< "$LD_LIBRARY_PATH" | wc -l) folders ($(tr ':' '\n' <<< "$nvdirs" | grep -c . ) from pip nvidia-*, driver ${drv:-not found})"
if [[ -f .gpu-ort/lib/libonnxruntime_providers_cuda.so ]]; then
  missing=$(ldd .gpu-ort/lib/libonnxruntime_providers_cuda.so 2>&1 | grep 'not found' || true)
  for l in libcudnn.so.9 libcufft.so.12 libnvrtc.so.13; do  # loaded at run time, not NEEDED
    find ${nvdirs//:/ } -maxdepth 1 -name "$l*" 2>/dev/null | grep -q . || missing+=$'\n'"$l (dlopen) not found"
  done
  if [[ -n ${missing//[$'\n' ]/} ]]; then
    ((want_cuda)) && fail "CUDA provider dependencies missing:$missing" || log "CUDA provider dependencies missing here (expected without a GPU):$(echo $missing | head -c 300)"
  else
    log "CUDA provider: every dependency found"
  fi
fi

run_adps() {  # name device extra-args...; log in $work/name.log, wall seconds in $work/name.wall
  local name=$1 dev=$2; shift 2
  local s e rc
  s=$(date +%s.%N)
  timeout 90 "$adps" restore --model "$model" --input "$input" --output "$work/$name" --operator cs:256 \
    --device "$dev" --progress never --log-format json "$@" > "$work/$name.log" 2>&1
  rc=$?
  e=$(date +%s.%N)
  awk -v s="$s" -v e="$e" 'BEGIN{printf "%.3f\n", e - s}' > "$work/$name.wall"
  return $rc
}

# 3. Agreement CPU vs CUDA, and what auto picks.
for path in dense vjp; do
  args=(--limit "$check_images" --steps 20 --batch-size 64 --write-f32)
  [[ $path == dense ]] && args+=(--clip none --gradient dense) || args+=(--gradient vjp)
  for dev in $devices; do
    run_adps "agree-$path-$dev" "$dev" "${args[@]}" || fail "restore $path on $dev (see below)"
    log "agree $path $dev: $($PY models/bench/gpu_check.py run-stats "$work/agree-$path-$dev.log")"
  done
  if ((want_cuda)); then
    res=$($PY models/bench/gpu_check.py compare "$work/agree-$path-cpu" "$work/agree-$path-cuda" --json "$out/compare.jsonl") \
      || fail "compare $path"
    log "cpu vs cuda, $path: $res"
    grep -q '"within": true' <<< "$res" || log "NOTE: $path outside the provisional tolerance (|dPSNR| <= 0.1 dB, max|dx| <= 0.02)"
  fi
done
run_adps auto auto --limit 8 --steps 2 --batch-size 8 || fail "restore --device auto"
if grep -q 'running on CUDA' "$work/auto.log"; then log "auto: picked CUDA"
elif grep -q 'CUDA unavailable' "$work/auto.log"; then
  reason=$(grep -o 'CUDA unavailable[^"]*' "$work/auto.log" | head -1 | cut -c1-300)
  ((want_cuda)) && fail "auto fell back to CPU: $reason" || log "auto: fell back to CPU, as expected here ($reason)"
else log "auto: no device message in the log"; fi

# 4. Throughput.
: > "$out/throughput.jsonl"
for dev in $devices; do
  for path in dense vjp; do
    for b in $batches; do
      # CPU: one restore worker per core, each taking whole batches, so the run needs a
      # batch per core or the table would time idle cores (capped by the 5,000 test images).
      n=$(( b * 8 > 512 ? b * 8 : 512 ))
      [[ $dev == cpu ]] && { n=$(( b * cores > 256 ? b * cores : 256 )); (( n > 4096 )) && n=4096; }
      busy=$(( (n + b - 1) / b )); [[ $dev == cpu ]] && (( busy > cores )) && busy=$cores; [[ $dev == cuda ]] && busy=1
      args=(--limit "$n" --steps "$steps" --batch-size "$b")
      [[ $path == dense ]] && args+=(--clip none --gradient dense) || args+=(--gradient vjp)
      name=tp-$dev-$path-$b
      run_adps "$name" "$dev" "${args[@]}" || fail "throughput $name"
      stats=$($PY models/bench/gpu_check.py run-stats "$work/$name.log")
      echo "{\"device\": \"$dev\", \"path\": \"$path\", \"batch\": $b, \"images\": $n, \"workers_busy\": $busy, \"steps\": $steps, \"wall\": $(cat "$work/$name.wall"), \"stats\": $stats}" >> "$out/throughput.jsonl"
      log "$name: $n images, wall $(cat "$work/$name.wall") s, $stats"
    done
  done
done
$PY models/bench/gpu_check.py table "$out/throughput.jsonl" > "$out/throughput.md"
cat "$out/throughput.md" | tee -a "$logf"
for f in "$work"/*.log; do grep -q '"level":"ERROR"\|^error' "$f" && { echo "== $f"; tail -5 "$f"; } ; done | tee -a "$logf" | head -40
log "done: $fails failure(s); exact commands: adps restore --model $model --input $input --operator cs:256 --steps $steps --batch-size B --limit N --device D [--clip none --gradient dense | --gradient vjp]"
((fails == 0))
