#!/usr/bin/env bash
# Fetch the ONNX Runtime shared library adps loads at run time (`ort` load-dynamic).
#
# The library comes from the pinned PyPI wheel (the `ort` crate's own binary download
# cannot work offline); the wheel's sha256 is checked before anything is extracted.
# Idempotent: if the library is already in place with the recorded hash, nothing is done.
#
#   scripts/onnxruntime.sh          # CPU build (onnxruntime)
#   scripts/onnxruntime.sh --gpu    # CUDA build (onnxruntime-gpu); see GPU note below
#
# Prints the library path on success; adps finds it there by itself (or set ADPS_ORT_DYLIB).
#
# GPU note: the onnxruntime-gpu wheel is pinned by hash like the CPU one, but the CUDA
# provider also needs CUDA 13 / cuDNN 9 user-space libraries on the loader path
# (onnxruntime-gpu 1.31.1 requires nvidia-cuda-runtime~=13.0; e.g. the nvidia-* wheels or a
# CUDA install). This path has not been exercised on a GPU machine by adps's tests;
# `--device auto` falls back to CPU with a message if the CUDA provider cannot be
# registered. scripts/gpu/ (README.md there) brings this build to a machine without network.
set -euo pipefail

VERSION=1.31.1
LIB=libonnxruntime.so.${VERSION}
PY_TAG=3.11
PLATFORM=manylinux_2_28_x86_64
# sha256 of the wheels on PyPI (cp311, manylinux_2_28_x86_64).
CPU_WHEEL_SHA256=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f
GPU_WHEEL_SHA256=e26c475fe361b2015f45b4b824bd13f0bb20204e59b62814e6f0acd5f3d491a6

package=onnxruntime
want_sha=$CPU_WHEEL_SHA256
case "${1:-}" in
  "") ;;
  --gpu) package=onnxruntime-gpu; want_sha=$GPU_WHEEL_SHA256 ;;
  -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--gpu]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/third_party/onnxruntime
libdir=$dest/lib
stamp=$dest/INSTALLED  # "<package> <wheel sha256> <library sha256>"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Already installed from the requested wheel, and the library is untouched: nothing to do.
if [[ -f $libdir/$LIB && -f $stamp ]]; then
  read -r have_pkg have_wheel have_lib < "$stamp" || true
  if [[ ${have_pkg:-} == "$package" && ${have_wheel:-} == "$want_sha" \
        && ${have_lib:-} == "$(sha256_of "$libdir/$LIB")" ]]; then
    echo "$libdir/$LIB"
    exit 0
  fi
  echo "onnxruntime.sh: $libdir/$LIB does not match $stamp; reinstalling" >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "onnxruntime.sh: downloading $package==$VERSION ($PLATFORM, cp${PY_TAG/./})" >&2
python3 -m pip download --quiet --no-deps --only-binary :all: \
  --python-version "$PY_TAG" --platform "$PLATFORM" \
  "$package==$VERSION" -d "$tmp" >&2
shopt -s nullglob
wheels=("$tmp"/*.whl)
if [[ ${#wheels[@]} -ne 1 ]]; then
  echo "onnxruntime.sh: expected one wheel in $tmp, found ${#wheels[@]}" >&2
  exit 1
fi
wheel=${wheels[0]}
got_sha=$(sha256_of "$wheel")
if [[ $got_sha != "$want_sha" ]]; then
  echo "onnxruntime.sh: SHA256 MISMATCH for $(basename "$wheel")" >&2
  echo "  expected $want_sha" >&2
  echo "  got      $got_sha" >&2
  echo "  refusing to install; if the pin is meant to change, update it in $0" >&2
  exit 1
fi

# Extract only the shared libraries (the runtime and, for the GPU wheel, its providers).
rm -rf "$libdir" "$stamp"
mkdir -p "$libdir"
python3 - "$wheel" "$libdir" "$LIB" <<'EOF'
import os, shutil, sys, zipfile

wheel, libdir, lib = sys.argv[1:]
wanted = (lib, "libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so",
          "libonnxruntime_providers_tensorrt.so")
found = []
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        base = os.path.basename(info.filename)
        if info.filename.startswith("onnxruntime/capi/") and base in wanted:
            with z.open(info) as src, open(os.path.join(libdir, base), "wb") as dst:
                shutil.copyfileobj(src, dst)
            found.append(base)
if lib not in found:
    sys.exit(f"onnxruntime.sh: {lib} not found in {os.path.basename(wheel)}")
EOF
# The unversioned name, for tools that look for libonnxruntime.so.
ln -sf "$LIB" "$libdir/libonnxruntime.so"
echo "$package $want_sha $(sha256_of "$libdir/$LIB")" > "$stamp"
echo "$libdir/$LIB"
