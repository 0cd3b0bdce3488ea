"""Summarise a localized run that the clock cut short, from the cells it finished.

    python analyses/localized_from_cells.py --runs runs/hypotheses --out runs/localized_partial [--world W] [--d-model 64]

Finds, among the stored cells of ``<runs>/cells``, the most seeds for which every core arm
(share0, share1_first, share2, uuid) finished, and the arms finished for all of those seeds; then
runs ``localized`` with exactly that many seeds and arms in ``--out`` (whose ``cells`` links to the
original ones, so nothing is retrained and nothing is recomputed). The verdict says how many seeds
and which arms it rests on (``config.seeds`` / ``config.arms``).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    from interference.hypotheses import localized as L
    from interference.hypotheses.context import Context
    from interference.hypotheses.prereg import preregistration_of, with_prereg
    from interference.hypotheses.runner import run_module
    from interference.bases import BaseSpec
    from interference.world import WorldConfig
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--world")
    ap.add_argument("--d-model", type=int)
    ap.add_argument("--max-seeds", type=int, default=5)
    args = ap.parse_args(argv)
    spec = BaseSpec.default()
    if args.world:
        spec = dataclasses.replace(spec, world=WorldConfig.load(args.world))
    if args.d_model:
        spec = dataclasses.replace(spec, model=dataclasses.replace(spec.model, d_model=args.d_model,
                                                                   d_mlp=4 * args.d_model))
    cells_dir = Path(args.runs) / "cells"
    full = dataclasses.replace(L.LocalizedConfig(), seeds=args.max_seeds)
    ctx = Context(spec, args.out, progress=False)
    h = preregistration_of(L).hash()
    done = {(c.key.get("seed"), c.key["arm"]) for c in with_prereg(L.cells(full, ctx), h) if (cells_dir / c.file).exists()}
    seeds = 0
    while seeds < args.max_seeds and all((seeds, a) in done for a in L.CORE):
        seeds += 1
    if seeds < 2:
        print(f"error: only {seeds} seed(s) have every core arm in {cells_dir}; a verdict needs 2.", file=sys.stderr)
        return 2
    arms = tuple(a for a in L.ARMS if all((s, a) in done for s in range(seeds)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    link = out / "cells"
    if not link.exists():
        link.symlink_to(cells_dir.resolve(), target_is_directory=True)
    cfg = dataclasses.replace(L.LocalizedConfig(), seeds=seeds, arms=arms)
    v = run_module(L, cfg, ctx)
    print(f"{v['verdict']}: dose slope {v['endpoint']}; {seeds} seeds, arms {list(arms)}; "
          f"cells computed {v['cells']['computed']} (must be 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
