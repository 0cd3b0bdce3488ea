"""Benchmark: ``python -m interference.figures --quick`` from scratch (fresh base cache, fresh run
cache, fresh output), as a user's first run would be.

Goal (issue 11): under 5 minutes on 2 CPU cores. The machine's load average is recorded before and
after, because on a shared machine the wall time says as much about the neighbours as about us;
the CPU time of the command (children included) is the load-independent number.

    python benchmarks/figures.py               # writes benchmarks/results/figures.json
    python benchmarks/figures.py --jobs 2      # missing runs trained two at a time
    python benchmarks/figures.py --produce     # also the hypothesis and forecast results: every figure
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from interference.io import atomic_write_json  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--produce", action="store_true",
                    help="also run the quick hypothesis and forecast commands, so every figure is built")
    args = ap.parse_args(argv)
    flags = ["--quick", "--jobs", str(args.jobs)] + (["--produce"] if args.produce else [])
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "INTERFERENCE_CACHE": f"{d}/cache", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        cmd = [sys.executable, "-m", "interference.figures", *flags,
               "--out", f"{d}/out", "--runs", f"{d}/runs", "--no-progress"]
        load_before = os.getloadavg()
        t0 = time.time()
        proc = subprocess.run(cmd, env=env, cwd=d, capture_output=True, text=True)
        wall = time.time() - t0
        load_after = os.getloadavg()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        built = sorted(p.stem for p in Path(f"{d}/out").glob("*.png"))
    result = {"command": " ".join(["python", "-m", "interference.figures", *flags]),
              "returncode": proc.returncode, "wall_seconds": round(wall, 1),
              "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1), "figures_built": built,
              "summary": proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:],
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in load_after],
              "cpu_count": os.cpu_count(), "machine": platform.machine(), "goal_seconds": 300,
              "meets_goal": proc.returncode == 0 and wall < 300}
    name = "figures" + (f"_jobs{args.jobs}" if args.jobs > 1 else "") + ("_produce" if args.produce else "")
    out = ROOT / "benchmarks" / "results" / f"{name}.json"
    atomic_write_json(out, result)
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
