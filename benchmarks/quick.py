"""Benchmark: what the ``--quick`` commands take on this machine, and what the quick fine-tuning shows.

Goal (issue 22): ``python -m interference.finetune --quick`` learns >= 95% of the new facts and
forgets some held-out known facts (> 0), in seconds, so a first run shows the effect the package
studies. Each command runs as a user would run it (a fresh interpreter, from an empty directory,
its own cache), so the times include start-up and, for the first command, pre-training the quick
base.

    python benchmarks/quick.py    # writes benchmarks/results/quick.json (README's timing table reads it)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)


def run(args: list[str], cwd: Path) -> float:
    env = {**os.environ, "INTERFERENCE_CACHE": str(cwd / "cache"), "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", *args, "--no-progress", "--device", "cpu"], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return round(time.perf_counter() - t0, 1)


def outcome(out: Path) -> dict:
    """Learned share of the new facts, and held-out known facts the base knew and the run lost."""
    m = json.loads((out / "metrics.json").read_text())
    rows = [json.loads(line) for line in (out / "timeline.jsonl").read_text().splitlines() if line]
    last = max(r["step"] for r in rows)
    base = {r["fact_id"]: r["correct"] for r in rows if r["step"] == 0 and r["set"] == "stability"}
    lost = sum(1 for r in rows if r["step"] == last and r["set"] == "stability" and base[r["fact_id"]]
               and not r["correct"])
    return {"learned": m["plasticity_accuracy"]["final"], "n_new": m["plasticity_accuracy"]["n"],
            "forgotten": lost, "n_known_held_out": sum(base.values()),
            "held_out_known_final": m["stability_accuracy"]["final"], "steps": m["steps"]}


def main() -> int:
    result = {"cpu_count": os.cpu_count(), "load_average_1min_start": round(os.getloadavg()[0], 2), "commands": {}}
    cmds = result["commands"]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        cmds["pretrain --quick"] = {"seconds": run(["interference.pretrain", "--quick"], d)}
        for method in ("sft", "self_distill"):
            for seed in SEEDS if method == "sft" else SEEDS[:1]:
                out = d / f"{method}{seed}"
                t = run(["interference.finetune", "--quick", "--method", method, "--seed", str(seed),
                         "--data-seed", str(seed), "--out", str(out)], d)
                cmds[f"finetune --quick --method {method} --seed {seed}"] = {"seconds": t, **outcome(out)}
        cmds["forecast (on the quick sft run)"] = {
            "seconds": run(["interference.forecast", "--sft-data", str(d / "sft0"), "--out", str(d / "fc")], d)}
    sft = [v for k, v in cmds.items() if "--method sft" in k]
    result["goal"] = "finetune --quick (sft) learns >= 0.95 of the new facts and forgets > 0 held-out known facts"
    result["meets_goal"] = all(v["learned"] >= 0.95 and v["forgotten"] > 0 for v in sft)
    result["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    out = ROOT / "benchmarks" / "results" / "quick.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
