#!/usr/bin/env bash
# Create models/.venv from the pinned requirements (Python >= 3.10).
# Fashion-MNIST comes from Debian: sudo apt-get install dataset-fashion-mnist
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install --upgrade pip
.venv/bin/pip install -r requirements.txt
.venv/bin/python -c "import torch, onnx, onnxruntime, onnxscript, pyarrow, PIL; print('models/.venv ready')"
