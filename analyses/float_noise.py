"""How far float noise moves a verdict: compare two runs of the same cells that differ only in the
reduction order (another thread count standing in for another CPU), number by number.

    python -m interference.run_hypothesis decomposition --widths 64 --seeds 3 --out runs/demo
    INTERFERENCE_THREADS=2 python -m interference.run_hypothesis decomposition --widths 64 --seeds 3 --out runs/demo_t2
    python analyses/float_noise.py runs/demo/decomposition/verdict.json runs/demo_t2/decomposition/verdict.json \
        --write analyses/results/decomposition/float_noise.json

Why: the pinned base removes pre-training's noise, but fine-tuning on another CPU still adds its
own; the README's numbers can only be promised "up to float noise" once that noise is measured.
Reports the largest absolute difference among the per-seed forgetting rates and among the shares
and their interval bounds, and whether every word is the same.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def _leaves(x, prefix=""):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _leaves(v, f"{prefix}/{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _leaves(v, f"{prefix}/{i}")
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield prefix, float(x)


def _diffs(pa, pb) -> dict[str, float]:
    """|a - b| at every numeric leaf both hold, by its path."""
    la, lb = dict(_leaves(pa)), dict(_leaves(pb))
    return {k: abs(la[k] - lb[k]) for k in la.keys() & lb.keys() if math.isfinite(la[k]) and math.isfinite(lb[k])}


def compare(a: dict, b: dict) -> dict:
    def largest(d: dict) -> tuple[float, str]:
        return max(((v, k) for k, v in d.items()), default=(0.0, ""))
    seeds = _diffs(a["per_seed"], b["per_seed"])
    seed_d, seed_k = largest(seeds)
    share_d, share_k = largest(_diffs(a["series"]["by_width"], b["series"]["by_width"]))
    per_fact = [(k, d) for k, d in seeds.items() if k.split("/")[-1].startswith("F_")]
    return {"same_words": a["verdicts"] == b["verdicts"], "same_verdict": a["verdict"] == b["verdict"],
            "max_abs_diff_per_seed": seed_d, "at_per_seed": seed_k,
            "max_abs_diff_shares_and_bounds": share_d, "at_shares": share_k,
            "forgetting_rates_that_differ": sum(d > 0 for _, d in per_fact), "forgetting_rates": len(per_fact),
            "a_verdict": a["verdict"], "b_verdict": b["verdict"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--write", type=Path)
    args = ap.parse_args(argv)
    try:
        a, b = (json.loads(p.read_text()) for p in (args.a, args.b))
    except (OSError, ValueError) as e:
        print(f"cannot read a verdict ({e}); pass two decomposition verdict.json files.", file=sys.stderr)
        return 2
    out = {"a": str(args.a), "b": str(args.b), **compare(a, b)}
    print(json.dumps(out, indent=2))
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
