#!/usr/bin/env bash
# Here (with network): fetch ONNX Runtime's CUDA build for the device machine and cut it
# into parts that fit one device call each (64 MiB per call, tree included).
#
#   scripts/gpu/ort-gpu-parts.sh [--part-mib 59]
#
# 1. pip download onnxruntime-gpu==1.31.1 (cp312, manylinux_2_28_x86_64), wheel sha256 pinned;
# 2. extract libonnxruntime.so.1.31.1, libonnxruntime_providers_shared.so and
#    libonnxruntime_providers_cuda.so, checked against scripts/gpu/ort-gpu-libs.sha256;
# 3. one tar of the three (reproducible order and times), xz -9e (the device machine has no
#    network and maybe no zstd; xz or Python's lzma is always there), split into parts of
#    --part-mib MiB: .gpu-ort/parts/ort-gpu.tar.xz.part-NN, and .gpu-ort/parts/MANIFEST
#    (sha256 of every part and of the whole .tar.xz).
# Carry .gpu-ort/parts/MANIFEST and ONE part per call (name the files, not the folder:
# a carried folder replaces the folder there); scripts/gpu/ort-gpu-assemble.sh there keeps
# each arrived part in .gpu-ort/recv/ and builds .gpu-ort/lib/ once all have arrived.
# Idempotent: an existing, verified .gpu-ort/parts/ is kept.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
VERSION=1.31.1
WHEEL_SHA256=05d548956197b9d01f59b625de740e0d6be3593f874e241a12dc0362650ecdf7  # cp312 manylinux_2_28_x86_64
LIBS=(libonnxruntime.so.$VERSION libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so)
part_mib=59
[[ ${1:-} == --part-mib ]] && part_mib=$2
PY=${PY:-python3}
for py in "$PY" models/.venv/bin/python; do "$py" -m pip --version >/dev/null 2>&1 && { PY=$py; break; }; done

parts=.gpu-ort/parts
verified() {  # every part named in MANIFEST present with its sha256
  [[ -f $parts/MANIFEST ]] || return 1
  (cd "$parts" && awk '$1 == "part" {print $2 "  " $4}' MANIFEST | sha256sum -c --quiet --status)
}
if verified; then
  echo "ort-gpu-parts.sh: $parts already holds verified parts:"; cat "$parts/MANIFEST"; exit 0
fi
mkdir -p .gpu-ort/wheel .gpu-ort/stage
wheel=.gpu-ort/wheel/onnxruntime_gpu-$VERSION-cp312-cp312-manylinux_2_28_x86_64.whl
if [[ ! -f $wheel ]] || [[ $(sha256sum "$wheel" | cut -d' ' -f1) != "$WHEEL_SHA256" ]]; then
  echo "ort-gpu-parts.sh: downloading onnxruntime-gpu==$VERSION (cp312, manylinux_2_28_x86_64)" >&2
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 "onnxruntime-gpu==$VERSION" -d .gpu-ort/wheel >&2
fi
got=$(sha256sum "$wheel" | cut -d' ' -f1)
[[ $got == "$WHEEL_SHA256" ]] || { echo "ort-gpu-parts.sh: wheel sha256 $got, expected $WHEEL_SHA256" >&2; exit 1; }

rm -rf .gpu-ort/stage/* "$parts"
"$PY" - "$wheel" .gpu-ort/stage "${LIBS[@]}" <<'PYEOF'
import os, shutil, sys, zipfile
wheel, dest, *libs = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for lib in libs:
        with z.open(f"onnxruntime/capi/{lib}") as src, open(os.path.join(dest, lib), "wb") as dst:
            shutil.copyfileobj(src, dst)
PYEOF
(cd .gpu-ort/stage && sha256sum -c --quiet "$root/scripts/gpu/ort-gpu-libs.sha256")
echo "ort-gpu-parts.sh: libraries: $(cd .gpu-ort/stage && du -cb "${LIBS[@]}" | tail -1 | cut -f1) bytes" >&2
mkdir -p "$parts"
# Reuse an existing .gpu-ort/ort-gpu.tar.xz whose members are exactly these libraries.
if [[ -f .gpu-ort/ort-gpu.tar.xz ]] && "$PY" - .gpu-ort/ort-gpu.tar.xz "$root/scripts/gpu/ort-gpu-libs.sha256" <<'PYEOF'
import hashlib, lzma, sys, tarfile
want = dict(reversed(l.split()) for l in open(sys.argv[2]) if l.strip())
got = {}
with tarfile.open(fileobj=lzma.open(sys.argv[1]), mode="r|") as t:
    for m in t:
        f = t.extractfile(m)
        h = hashlib.sha256()
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
        got[m.name] = h.hexdigest()
sys.exit(0 if got == want else 1)
PYEOF
then
  echo "ort-gpu-parts.sh: reusing .gpu-ort/ort-gpu.tar.xz (members verified)" >&2
else
  echo "ort-gpu-parts.sh: compressing (xz -9e; several minutes on 2 cores)" >&2
  tar -C .gpu-ort/stage --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - "${LIBS[@]}" \
    | nice -n 10 xz -9e -T2 -c > .gpu-ort/ort-gpu.tar.xz.tmp
  mv .gpu-ort/ort-gpu.tar.xz.tmp .gpu-ort/ort-gpu.tar.xz
fi
split -b "${part_mib}M" -d -a 2 .gpu-ort/ort-gpu.tar.xz "$parts/ort-gpu.tar.xz.part-"
{
  echo "# ort-gpu-parts.sh $(date -u +%FT%TZ): onnxruntime-gpu $VERSION, tar.xz in ${part_mib} MiB parts"
  echo "whole $(sha256sum .gpu-ort/ort-gpu.tar.xz | cut -d' ' -f1) $(stat -c %s .gpu-ort/ort-gpu.tar.xz) ort-gpu.tar.xz"
  for f in "$parts"/ort-gpu.tar.xz.part-*; do
    echo "part $(sha256sum "$f" | cut -d' ' -f1) $(stat -c %s "$f") $(basename "$f")"
  done
} > "$parts/MANIFEST.tmp"
mv "$parts/MANIFEST.tmp" "$parts/MANIFEST"
verified
cat "$parts/MANIFEST"
echo "ort-gpu-parts.sh: carry per call: .gpu-ort/parts/MANIFEST and one of:" >&2
ls -1 "$parts"/ort-gpu.tar.xz.part-* >&2
