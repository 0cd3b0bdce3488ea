#!/usr/bin/env bash
# Create .venv and install interference with its dev extras. Idempotent: a second run only
# checks. TORCH_SPEC picks the torch build: the default CPU wheel is on local disk here; for CUDA
# use e.g. TORCH_SPEC="torch==2.14.1" (a multi-GB CUDA build from PyPI) or a wheel of your own.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import interference, torch, transformer_lens, pytest, xdist, tensorboard" 2>/dev/null; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q "$TORCH_SPEC"
  .venv/bin/pip install -q -e ".[dev]"
fi
.venv/bin/python -c "import torch; print(f'interference ready: torch {torch.__version__}, device', 'cuda' if torch.cuda.is_available() else 'cpu')"
