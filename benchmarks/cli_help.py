"""Benchmark: how long each command takes to print ``--help`` (goal: under 2 s).

Why it matters: a user's first contact with a command is ``--help``; it took 11-16 s when the
parsers imported torch, transformers and transformer_lens. Each command runs in a fresh
interpreter (``python -m interference.<cli> --help``), ``--repeats`` times; the median and the
worst are recorded with the machine's 1-minute load average (the cores are shared).

    python benchmarks/cli_help.py   # writes benchmarks/results/cli_help.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIS = ("finetune", "pretrain", "run_hypothesis", "forecast", "figures")
GOAL_SECONDS = 2.0


def time_help(cli: str, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", f"interference.{cli}", "--help"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rows = {}
    for cli in CLIS:
        t = time_help(cli, args.repeats)
        rows[cli] = {"median_seconds": round(statistics.median(t), 3), "max_seconds": round(max(t), 3)}
    result = {"goal_seconds": GOAL_SECONDS, "repeats": args.repeats, "load_average_1min": round(os.getloadavg()[0], 2),
              "cpu_count": os.cpu_count(), "commands": rows,
              "meets_goal": all(r["max_seconds"] < GOAL_SECONDS for r in rows.values())}
    out = ROOT / "benchmarks" / "results" / "cli_help.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
