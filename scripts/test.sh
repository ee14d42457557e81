#!/usr/bin/env bash
# The test suite, from a fresh clone: installs ONNX Runtime (pinned PyPI wheel, sha256
# checked) and the test tools, starts a local S3 server, runs every test, and stops the
# server whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/onnxruntime.sh >/dev/null
scripts/tools.sh >/dev/null
eval "$(scripts/s3-server.sh start)"
trap 'scripts/s3-server.sh stop' EXIT
export ADPS_TOOLS_PYTHON="$PWD/.tools-venv/bin/python"
cargo test --locked --no-fail-fast "$@"
