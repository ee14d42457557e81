#!/usr/bin/env bash
# The test suite, from a fresh clone: installs ONNX Runtime (pinned PyPI wheel, sha256
# checked) and the test tools, starts a local S3 server and a single-node Slurm cluster
# (scripts/slurm.sh: Debian packages, needs root), runs every test, and stops both
# whatever happens. Where Slurm cannot start, the Slurm tests fail and say why;
# ADPS_SKIP_SLURM=1 skips them (and starts no cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/onnxruntime.sh >/dev/null
scripts/tools.sh >/dev/null
trap 'scripts/slurm.sh stop || true; scripts/s3-server.sh stop' EXIT
eval "$(scripts/s3-server.sh start)"
if [ "${ADPS_SKIP_SLURM:-}" != 1 ]; then
  if slurm_env=$(scripts/slurm.sh start); then
    eval "$slurm_env"
  else
    echo "test.sh: the Slurm cluster did not start; the Slurm tests will fail (ADPS_SKIP_SLURM=1 skips them)" >&2
  fi
fi
export ADPS_TOOLS_PYTHON="$PWD/.tools-venv/bin/python"
cargo test --locked --no-fail-fast "$@"
