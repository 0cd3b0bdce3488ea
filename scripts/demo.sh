#!/usr/bin/env bash
# The README's first command: set up, pre-train (or reuse) the default base model and print its
# knowledge report (~5 min the first time on 2 cores), then test the localized-interference
# hypothesis end to end (~2 min); the last lines say where its verdict and plots are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m interference.pretrain
.venv/bin/python -m interference.run_hypothesis localized
