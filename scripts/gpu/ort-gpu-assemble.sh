#!/usr/bin/env bash
# On the device machine: collect the ONNX Runtime GPU parts that arrived with this call and,
# once all have, rebuild .gpu-ort/lib/ (libonnxruntime.so.1.31.1, the shared and CUDA
# providers), checked against scripts/gpu/ort-gpu-libs.sha256.
#
#   scripts/gpu/ort-gpu-assemble.sh         # run at the start of every call that carries a part
#
# Parts come one per call (.gpu-ort/parts/MANIFEST + .gpu-ort/parts/ort-gpu.tar.xz.part-NN,
# from scripts/gpu/ort-gpu-parts.sh). Each verified part is copied to .gpu-ort/recv/, which
# no call carries, so it survives later calls while the machine stays warm (ignored paths
# persist between consecutive calls); a part with a wrong sha256 is dropped and named.
# Prints "ORT-GPU: READY <dir>" when the library is in place, else "ORT-GPU: have ...,
# missing ..."; exit 0 in both cases (1 only for a broken manifest or a failed rebuild).
# Idempotent: a verified .gpu-ort/lib/ is left as it is. Also runs here, for rehearsals.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
parts=.gpu-ort/parts recv=.gpu-ort/recv lib=.gpu-ort/lib
sums=$root/scripts/gpu/ort-gpu-libs.sha256

if [[ -d $lib ]] && (cd "$lib" && sha256sum -c --quiet --status "$sums"); then
  echo "ORT-GPU: READY $root/$lib"; exit 0
fi
mkdir -p "$recv"
if [[ -f $parts/MANIFEST ]]; then
  if [[ -f $recv/MANIFEST ]] && ! cmp -s "$parts/MANIFEST" "$recv/MANIFEST"; then
    echo "ORT-GPU: a different MANIFEST arrived (parts were re-cut); dropping the parts received before" >&2
    rm -f "$recv"/ort-gpu.tar.xz.part-*
  fi
  cp "$parts/MANIFEST" "$recv/MANIFEST"
fi
[[ -f $recv/MANIFEST ]] || { echo "ORT-GPU: no MANIFEST (carry .gpu-ort/parts/MANIFEST with each part)" >&2; exit 1; }

# Take in what arrived.
shopt -s nullglob
for f in "$parts"/ort-gpu.tar.xz.part-*; do
  name=$(basename "$f")
  want=$(awk -v n="$name" '$1 == "part" && $4 == n {print $2}' "$recv/MANIFEST")
  if [[ -z $want ]]; then echo "ORT-GPU: $name is not in MANIFEST; ignored" >&2; continue; fi
  if [[ $(sha256sum "$f" | cut -d' ' -f1) == "$want" ]]; then
    cmp -s "$f" "$recv/$name" 2>/dev/null || cp -f "$f" "$recv/$name"  # copy: here, the parts stay
  else
    echo "ORT-GPU: $name arrived damaged (sha256 differs); send it again" >&2; rm -f "$f"
  fi
done

have=() missing=()
while read -r kind sha size name; do
  [[ $kind == part ]] || continue
  if [[ -f $recv/$name ]] && [[ $(stat -c %s "$recv/$name") == "$size" ]]; then have+=("${name##*-}"); else missing+=("$name"); fi
done < "$recv/MANIFEST"
if ((${#missing[@]})); then
  echo "ORT-GPU: have parts ${have[*]:-none}; missing ${missing[*]}"; exit 0
fi

# All here: check the whole, unpack, check the libraries.
read -r _ whole_sha whole_size _ < <(grep '^whole ' "$recv/MANIFEST")
got=$(cat $(awk '$1 == "part" {print "'"$recv"'/" $4}' "$recv/MANIFEST") | sha256sum | cut -d' ' -f1)
[[ $got == "$whole_sha" ]] || { echo "ORT-GPU: the joined parts do not match MANIFEST's whole sha256" >&2; rm -f "$recv"/ort-gpu.tar.xz.part-*; exit 1; }
unxz() { if command -v xz >/dev/null; then xz -dc; else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)'; fi; }
rm -rf "$lib.tmp"; mkdir -p "$lib.tmp"
cat $(awk '$1 == "part" {print "'"$recv"'/" $4}' "$recv/MANIFEST") | unxz | tar -C "$lib.tmp" -xf -
if ! (cd "$lib.tmp" && sha256sum -c --quiet "$sums"); then
  echo "ORT-GPU: unpacked libraries do not match scripts/gpu/ort-gpu-libs.sha256" >&2; exit 1
fi
ln -sf libonnxruntime.so.1.31.1 "$lib.tmp/libonnxruntime.so"
rm -rf "$lib"; mv "$lib.tmp" "$lib"
rm -f "$recv"/ort-gpu.tar.xz.part-*
echo "ORT-GPU: READY $root/$lib"
