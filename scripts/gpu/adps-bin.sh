#!/usr/bin/env bash
# Here: put a stripped release adps into .gpu-bin/ (git-ignored; name .gpu-bin in the CUDA
# check call's `carry`). Builds it first if target/release/adps is missing or older than
# the sources (cargo build --release --bin adps; long on 2 cores, and never beside another build).
#
#   scripts/gpu/adps-bin.sh [--no-build]
#
# The release profile keeps line tables (debug = 1), so the binary is stripped here; it
# needs glibc ≥ the build machine's (2.36 here; the GPU image is newer) and loads ONNX
# Runtime at run time (ADPS_ORT_DYLIB), so nothing else travels with it. If the stripped
# binary is over 40 MiB it is also xz-compressed (.gpu-bin/adps.xz; cuda-check.sh unpacks it).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bin=${CARGO_TARGET_DIR:-target}/release/adps
if [[ ${1:-} != --no-build ]]; then
  if [[ ! -x $bin ]] || [[ -n $(find src Cargo.toml Cargo.lock -newer "$bin" -print -quit) ]]; then
    nice -n 10 cargo build --release --bin adps
  fi
fi
[[ -x $bin ]] || { echo "adps-bin.sh: $bin missing" >&2; exit 1; }
mkdir -p .gpu-bin
rm -f .gpu-bin/adps .gpu-bin/adps.xz
strip -o .gpu-bin/adps "$bin"
size=$(stat -c %s .gpu-bin/adps)
if ((size > 40 * 1048576)); then
  xz -9 -T2 -c .gpu-bin/adps > .gpu-bin/adps.xz && rm .gpu-bin/adps
fi
ls -l .gpu-bin/
echo "adps-bin.sh: $(stat -c %s "$bin") bytes built, $size stripped; travels as $(du -cb .gpu-bin/* | tail -1 | cut -f1) bytes"
.gpu-bin/adps --version 2>/dev/null || true
