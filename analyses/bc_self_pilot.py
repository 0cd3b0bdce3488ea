"""The pilot of ``docs/bc_self_pilot.md``: does training the Unknown questions on the base's own
answers (the behaviour of answering them, without new content) reproduce SFT's forgetting?
Decides no hypothesis' word; it says whether the share G is worth registering.

    python analyses/bc_self_pilot.py [--widths 64,128,256] [--seeds 4] [--out runs/bc_self_pilot]

Cells are stored under ``--out/cells`` (a rerun reuses them); the summary is written to
``analyses/results/bc_self_pilot.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The arm, its per-seed reads and G, M, R live in the design this pilot led to (one implementation):
from interference.hypotheses.bc_self import reads as pilot_reads, seed_reads, self_train  # noqa: E402,F401

RESULTS = Path(__file__).resolve().parent / "results"
ARMS = ("sem", "drift", "self")


def outcome(reads: dict) -> str:
    """The doc's reading of one width's G and R (a pilot's sentence, not a verdict word)."""
    from interference.io import number  # null or nan bounds compare False: a missing interval decides nothing
    g, rr = reads["G"], reads["R"]
    if number(g.get("high")) < 0.1 and number(rr.get("high")) < 0.5:
        return "against behavior cloning: the behaviour without the content does not reproduce the forgetting"
    if number(g.get("low")) >= 0.5:
        return "for behavior cloning: the behaviour alone reproduces most of the forgetting; register the design"
    return "inconclusive at this pilot's seeds"


def main(argv=None) -> int:
    from interference.bases import BaseSpec
    from interference.hypotheses import decomposition as dc
    from interference.hypotheses.arms import fixed_steps
    from interference.hypotheses.bc_self import arm_cell, arm_facts
    from interference.hypotheses.capacity import watched
    from interference.hypotheses.context import Context
    from interference.hypotheses.grid import run_grid
    from interference.io import atomic_write_json
    from interference.metrics.stats import format_estimate
    from interference.run_hypothesis import UsageError, _widths as parse_widths
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/bc_self_pilot")
    ap.add_argument("--widths", default="64,128,256", help="pinned default-world widths, e.g. 64,128,256")
    ap.add_argument("--seeds", type=int, default=4)
    args = ap.parse_args(argv)
    try:  # the same width rule as run_hypothesis --widths
        args.widths = list(parse_widths(args.widths))
    except UsageError as e:
        ap.error(str(e))
    if args.seeds < 2:
        ap.error(f"--seeds {args.seeds}: an interval needs at least 2 seeds")
    cfg = dc.DecompositionConfig()
    ctx = Context(BaseSpec.default(), args.out, progress=True)
    watch = watched(ctx.world)
    cells = []
    for width in args.widths:
        spec = ctx.spec.with_width(width)
        for seed in range(args.seeds):
            sft = fixed_steps(cfg.sft, cfg.sft.max_steps, seed)
            cells += [arm_cell(ctx, spec, width, seed, arm, arm_facts(ctx.world, cfg, arm, seed), watch, sft,
                               pilot="bc_self") for arm in ARMS]
    rep = run_grid(cells, Path(args.out) / "cells", desc="bc self pilot", fingerprint=ctx.fingerprint)
    got = {(c.key["width"], c.key["seed"], c.key["arm"]): res for c, res in zip(cells, rep.results)}
    by_width, per_seed = {}, []
    for width in args.widths:
        rows = [{"seed": s, **seed_reads({a: got[(width, s, a)] for a in ARMS})} for s in range(args.seeds)]
        per_seed += [{"width": width, **r} for r in rows]
        reads = pilot_reads(rows)
        by_width[str(width)] = {**reads, "outcome": outcome(reads)}
    saved = _saved_agreement(per_seed)
    out = {"pilot": "docs/bc_self_pilot.md", "widths": args.widths, "seeds": args.seeds, "steps": cfg.sft.max_steps,
           "base_fingerprints": {str(w): ctx.fingerprint(ctx.spec.with_width(w)) for w in args.widths},
           "by_width": by_width, "per_seed": per_seed, "saved_decomposition_agreement": saved,
           "cells": {"computed": rep.computed, "reused": rep.reused}}
    path = RESULTS / "bc_self_pilot.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, out)
    fmt = lambda e: format_estimate(e, missing_ci="")  # noqa: E731
    for w, r in by_width.items():
        print(f"d{w}: G {fmt(r['G'])}  M {fmt(r['M'])}  R {fmt(r['R'])}  -> {r['outcome']}")
    print(f"sem/drift against the saved decomposition rows: {saved}; wrote {path}")
    return 0


def _saved_agreement(per_seed: list[dict]) -> dict:
    """Largest |difference| between this pilot's sem and drift forgetting and the saved
    decomposition's rows for the same width and seed: the same sets and recipe, so they should
    agree up to another CPU's float noise."""
    p = RESULTS / "decomposition" / "default.json"
    if not p.exists():
        return {}
    saved = {r["seed"]: r for r in json.loads(p.read_text())["per_seed"]}
    diffs = {}
    for r in per_seed:
        s = saved.get(r["seed"], {})
        for a in ("sem", "drift"):
            x = s.get(f"F_{a}_d{r['width']}")
            if x is not None and math.isfinite(x):
                diffs.setdefault(f"F_{a}", []).append(abs(x - r[f"F_{a}"]))
    return {k: {"max_abs_diff": max(v), "n": len(v)} for k, v in diffs.items()}


if __name__ == "__main__":
    sys.exit(main())
