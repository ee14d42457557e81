#!/usr/bin/env bash
# The demo: restores the committed Fashion-MNIST demo images (models/data/demo) from
# simulated compressed-sensing measurements with the committed clean model
# models/fmnist-p0.0 (pipelines/demo.toml says why), writes the results under ./out/demo
# and a page about the run to out/demo/__adps/report.html.
# Extra arguments go to `adps run`, e.g.  scripts/demo.sh --set task.operator=sr:4 --set sampler.zeta=40
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/onnxruntime.sh >/dev/null
cargo build --locked --quiet
target/debug/adps run pipelines/demo.toml "$@"
target/debug/adps report out/demo
PY=python3; [[ -x .tools-venv/bin/python ]] && PY=.tools-venv/bin/python
cat <<TXT

Results are in $PWD/out/demo:
  part-*.parquet            reconstructions (PNG), metrics and settings, one file per input shard
  __adps/manifests/         written last: a shard is complete when its manifest is there
  __adps/errors/            records that failed, with the reason (only where some did)
  __adps/report.html        what the run did: settings, counts, residuals, metrics, examples
Open them with pandas (pip install pandas pyarrow, or the test tools' venv: scripts/tools.sh), e.g.
  ${PY:-python3} -c "import pandas as pd; print(pd.read_parquet('out/demo').describe())"
TXT
