"""Benchmark: culprits of 10,000 watched facts in 1,000 SFT facts (forecast/culprits.py).

    python benchmarks/culprits.py                 # writes benchmarks/results/culprits.json
    python benchmarks/culprits.py --threads 2    # two intra-op threads (spin-wait under load: see threads.py)

Times ``forecast.culprits.culprits`` (answer-position pair products over every linear unit, the
score matrix, the top-5 culprits of every watched fact) and ``choose_removals`` for the top 5%
of the watched facts at a budget of 50 examples, on the default model size (4 layers x d128).
Goal < 60 s on 2 CPU cores. Uses the cached default base when it exists, else a randomly
initialised model of the default size (the JSON says which): the cost does not depend on what
the weights know. Wall and CPU time both: on a shared machine the wall time measures the load.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from interference.io import atomic_write_json  # noqa: E402


def time_once(model, tok, watch, train) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, examples chosen) of culprits + one removal choice."""
    from interference.forecast.culprits import choose_removals, culprits
    t0, c0 = time.perf_counter(), time.process_time()
    c, _ = culprits(model, tok, watch, train, k=5)
    at_risk = c.watch_ids[: max(1, len(watch) // 20)]
    chosen = choose_removals(c, at_risk, 50)
    return time.perf_counter() - t0, time.process_time() - c0, len(chosen)


def main(argv=None) -> int:
    from forecast import model_and_facts  # benchmarks/forecast.py: the same model and facts
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (1: the package default, threads.py)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "culprits.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tok, watch, train, which = model_and_facts()
    model.eval()
    time_once(model, tok, watch[:200], train[:100])  # warm-up (allocator, lazy imports)
    load_before = os.getloadavg()[0]
    half = time_once(model, tok, watch[:5000], train[:1000])
    full = time_once(model, tok, watch[:10000], train[:1000])
    res = {"seconds_10k_x_1k": round(full[0], 2), "goal_seconds": 60, "cpu_seconds_10k_x_1k": round(full[1], 2),
           "seconds_5k_x_1k": round(half[0], 2), "cpu_seconds_5k_x_1k": round(half[1], 2),
           "n_watched": len(watch[:10000]), "n_sft": len(train[:1000]), "chosen": full[2],
           "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
           "model": which, "threads": args.threads, "cpu_count": os.cpu_count(), "torch": torch.__version__,
           "platform": platform.platform(),
           "note": "culprits(k=5) + choose_removals(top 5% of watched, budget 50); CPU time is the process's"}
    atomic_write_json(args.out, res)
    print(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
