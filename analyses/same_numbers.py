"""Same numbers before and after a restructuring: run a fixed battery of quick commands from
nothing and write every number they produce, so two checkouts can be compared file by file.

Why a battery of quick runs and not the saved default-world verdicts: the saved verdicts were
computed from cells that live in a machine's cache, and a fresh machine has none; re-training the
default base under another thread count moves its weights, so a before/after comparison on the
default world would compare two bases, not two pipelines. The quick world trains in seconds, and
every hypothesis, the fine-tuning runs, the forecast and the figures go through the same code the
default world does, so identical quick outputs from the old and the new checkout show the
pipeline computes the same thing.

    python analyses/same_numbers.py run --out /tmp/after            # in the new checkout
    python analyses/same_numbers.py compare /tmp/before /tmp/after  # exit 1 on any difference

``run`` writes ``<out>/numbers.json``: for each product (verdict.json of each hypothesis, each
fine-tuning run's metrics.json, the forecast's table, each figure's data JSON) the same JSON with
the fields that are not results removed (wall times, paths, cache counters, commit).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# Fields that say how or where a product was made, not what it found.
VOLATILE = {"seconds", "wall_s", "cpu_s", "elapsed", "time", "timing", "plots", "cells", "path", "out", "dir",
            "commit", "created", "device", "files", "runs_dir", "hypotheses_dir", "forecast_dir", "base_dir",
            "train_seconds", "eval_seconds", "steps_per_s", "run_dir", "generated",
            "sha256"}  # a file's own seal (figure data carry one since the second fault round): not a result


def strip(obj):
    """``obj`` without volatile fields, floats rounded to 12 significant digits (the same
    computation on the same machine gives the same bits; the rounding only hides printing)."""
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in sorted(obj.items()) if k not in VOLATILE}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    if isinstance(obj, float):
        return float(f"{obj:.12g}")
    return obj


def _py(args: list[str], env: dict, cwd: Path) -> None:
    print("$", " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], env=env, cwd=cwd, check=True)


def run(out: Path) -> dict:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "INTERFERENCE_CACHE": str(out / "cache"), "PYTHONPATH": str(repo)}  # this checkout's code
    hyp = out / "hypotheses"
    _py(["-m", "interference.run_hypothesis", "all", "--quick", "--out", str(hyp), "--no-progress"], env, repo)
    for method in ("sft", "self_distill", "freeze", "replay", "ewc", "l2_init"):
        _py(["-m", "interference.finetune", "--quick", "--method", method, "--out", str(out / "runs" / method),
             "--no-progress"], env, repo)
    fig = out / "figures"
    _py(["-m", "interference.figures", "--quick", "--produce", "--out", str(fig), "--runs", str(out / "figruns"),
         "--hypotheses", str(hyp), "--no-progress"], env, repo)
    numbers: dict = {}
    for v in sorted(hyp.glob("*/verdict.json")):
        numbers[f"verdict/{v.parent.name}"] = strip(json.loads(v.read_text()))
    for m in sorted((out / "runs").glob("*/metrics.json")):
        numbers[f"run/{m.parent.name}"] = strip(json.loads(m.read_text()))
    for d in sorted(fig.rglob("*.json")):
        numbers[f"figure/{d.relative_to(fig)}"] = strip(json.loads(d.read_text()))
    (out / "numbers.json").write_text(json.dumps(numbers, indent=1, sort_keys=True))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "interference"], cwd=repo, capture_output=True,
                                text=True).stdout.strip())
    (out / "meta.json").write_text(json.dumps({"commit": commit, "uncommitted_changes": dirty}))
    print(f"{len(numbers)} products -> {out / 'numbers.json'}")
    return numbers


def _diff(a, b, where: str, found: list[str]) -> None:
    if type(a) is not type(b):
        found.append(f"{where}: {a!r} != {b!r}")
    elif isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                found.append(f"{where}/{k}: only in {'after' if k in b else 'before'}")
            else:
                _diff(a[k], b[k], f"{where}/{k}", found)
    elif isinstance(a, list):
        if len(a) != len(b):
            found.append(f"{where}: {len(a)} items before, {len(b)} after")
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{where}[{i}]", found)
    elif a != b:
        found.append(f"{where}: {a!r} != {b!r}")


def compare(before: Path, after: Path) -> list[str]:
    # stripped again: a field declared volatile after a side was run is left out of both
    a = strip(json.loads((before / "numbers.json").read_text()))
    b = strip(json.loads((after / "numbers.json").read_text()))
    found: list[str] = []
    _diff(a, b, "", found)
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--write", type=Path, help="also write the comparison (products, differences) as JSON here")
    args = p.parse_args(argv)
    if args.cmd == "run":
        run(args.out)
        return 0
    found = compare(args.before, args.after)
    products = sorted(json.loads((args.before / "numbers.json").read_text()))
    n = len(products)
    if args.write:
        meta = {d: json.loads((d / "meta.json").read_text()) if (d / "meta.json").exists() else {}
                for d in (args.before, args.after)}
        args.write.write_text(json.dumps({"before": meta[args.before], "after": meta[args.after], "products": products,
                                          "differences": found, "identical": not found}, indent=1) + "\n")
    if found:
        print(f"{len(found)} difference(s) over {n} products:")
        print("\n".join(found[:200]))
        return 1
    print(f"identical: {n} products (every verdict, run metric and figure data file).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
