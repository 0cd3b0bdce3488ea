#!/usr/bin/env bash
# The README's first command: set up, pre-train (or reuse) the default base model and print its
# knowledge report (4,500 steps to the consolidation criterion: ~8 min on 2 quiet cores, by the
# old loop's ~10 steps/s), then test the localized-interference hypothesis end to end on 3 seeds
# (33 fine-tuning cells of 250 steps; not yet timed on a quiet machine, expect tens of minutes);
# the last lines say where its verdict and plots are. A re-run reuses every finished cell.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m interference.pretrain
.venv/bin/python -m interference.run_hypothesis localized --seeds 3
