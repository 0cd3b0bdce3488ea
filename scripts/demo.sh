#!/usr/bin/env bash
# The README's first command: set up, install the pinned default base model (committed in
# interference/pinned: no pre-training, the same weights on every machine) and print its knowledge
# report and weights fingerprint, then decompose SFT's forgetting into the three hypotheses' shares
# on the pinned d64 base, 3 seeds in 2 worker processes (18 fine-tuning cells), ending in a word per
# hypothesis by the common rule; the last lines say where its verdict and plots are. A re-run
# reuses every finished cell. The README's demo numbers come from the same cells
# (analyses/results/decomposition/demo.json), so this prints what the README reports.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m interference.pretrain --no-progress
.venv/bin/python -m interference.run_hypothesis decomposition --widths 64 --seeds 3 --jobs 2 --out runs/demo
