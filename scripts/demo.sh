#!/usr/bin/env bash
# The README's first command: set up, pre-train (or reuse) the default base model and print its
# knowledge report, then test the localized-interference hypothesis end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m interference.pretrain
if .venv/bin/python -c "import interference.run_hypothesis" 2>/dev/null; then
  .venv/bin/python -m interference.run_hypothesis localized
fi
