#!/usr/bin/env bash
# Copy the Fashion-MNIST images train-gpu.sh needs into .gpu-data/ (git-ignored; name it in
# the device call's `carry`): the Debian package's train- and t10k-images-idx3-ubyte.gz
# (26.4 MB + 4.4 MB), checked against scripts/gpu/fmnist.sha256.
#
#   scripts/gpu/train-data.sh [SOURCE]   # default /usr/share/datasets/fashion-mnist
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
src=${1:-/usr/share/datasets/fashion-mnist}
mkdir -p "$root/.gpu-data"
for f in train-images-idx3-ubyte.gz t10k-images-idx3-ubyte.gz; do
  [[ -f $src/$f ]] || { echo "train-data.sh: $src/$f missing (apt-get install dataset-fashion-mnist)" >&2; exit 1; }
  cp -p "$src/$f" "$root/.gpu-data/$f"
done
(cd "$root/.gpu-data" && sha256sum -c --quiet "$root/scripts/gpu/fmnist.sha256")
du -cb "$root/.gpu-data"/*.gz | tail -1 | awk '{printf "train-data.sh: .gpu-data/ holds %.1f MiB\n", $1/1048576}'
