#!/usr/bin/env bash
# The test command of the README (and of .ci/run): set up if needed, then run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Two workers, one per core, each test file kept on one worker (--dist loadfile) so a module's
# fixtures are built once. Measured on 2 cores: 455 s against 586 s serial (worksteal, which
# splits files, took 492 s: module fixtures get built twice). INTERFERENCE_TEST_WORKERS=0 runs
# serially, e.g. to read a failure's output in order.
exec .venv/bin/python -m pytest -q -n "${INTERFERENCE_TEST_WORKERS:-2}" --dist loadfile "$@"
