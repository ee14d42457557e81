#!/usr/bin/env bash
# The demo: restores the committed Fashion-MNIST demo images (models/data/demo) from
# simulated compressed-sensing measurements with the committed ambient model
# models/fmnist-p0.4, and writes the results under ./out/demo.
# Extra arguments go to `adps run`, e.g.  scripts/demo.sh --set task.operator=sr:4 --set sampler.zeta=40
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/onnxruntime.sh >/dev/null
cargo build --locked --quiet
target/debug/adps run pipelines/demo.toml "$@"
cat <<TXT

Results are in $PWD/out/demo:
  part-*.parquet            reconstructions (PNG), metrics and settings, one file per input shard
  __adps/manifests/         written last: a shard is complete when its manifest is there
  __adps/errors/            records that failed, with the reason (only where some did)
Open them with e.g.  python3 -c "import pandas as pd; print(pd.read_parquet('out/demo').describe())"
TXT
