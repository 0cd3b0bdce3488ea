"""The pilot of ``docs/bc_mix_pilot.md``: does a larger Known share make the "I don't know" arm
abstain selectively (on never-seen questions, not on known facts)? Decides nothing about any
hypothesis; it chooses, or rules out, a mix for a design registered later.

    python analyses/bc_mix_pilot.py [--width 64] [--out runs/bc_mix_pilot] [--shares 1,2,4] [--seeds 2]

Cells are stored under ``--out/cells`` (a rerun reuses them); the summary is written to
``analyses/results/bc_mix_pilot.json`` (d64, the pilot's width) or ``bc_mix_pilot_d{W}.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
N_NEVER_SEEN = 50  # new semantic entities per seed, never trained: 200 questions
MAX_KNOWN_ABSTENTION, MIN_NEVER_SEEN_ABSTENTION, MIN_PLASTICITY = 0.10, 0.5, 0.95  # the doc's rule


def arm_train(world, cfg, arm: str, r: int, seed: int) -> list:
    """``bc_contrast``'s mixed arm with ``r`` Known facts after each new one (r = 1: that design's own)."""
    from interference.hypotheses import bc_contrast as bcc
    return bcc.arm_facts(world, cfg, {"idk": "idk_known", "sem": "sem_known"}[arm], seed, known_per_new=r)


def read(result: dict) -> dict:
    from interference.hypotheses.arms import rates_at, step_matched
    end = step_matched(result)
    w = rates_at(result, end)
    never = end["never_seen"]
    return {"abstain_known": w["abstention"], "F": w["forgetting"], "H": w["hallucination"],
            "abstain_never_seen": never.count("a") / len(never), "plasticity": end["plasticity"]}


def _shares(text: str) -> list[int]:
    """Why a type: argparse turns its ValueError into one sentence naming the flag, not a traceback."""
    try:
        shares = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers; try 1,2,4") from None
    if any(r < 1 for r in shares):
        raise argparse.ArgumentTypeError(f"every share must be at least 1 Known fact per new fact, got {text!r}")
    return shares


def main(argv=None) -> int:
    from interference.bases import BaseSpec
    from interference.hypotheses import bc_contrast as bcc
    from interference.hypotheses.arms import fixed_steps, run_arm
    from interference.hypotheses.context import Context
    from interference.hypotheses.grid import Cell, run_grid
    from interference.metrics.stats import estimate
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/bc_mix_pilot")
    ap.add_argument("--shares", default="1,2,4", type=_shares,
                    help="comma-separated Known facts per new fact, e.g. 1,2,4")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--width", type=int, default=64, help="the pinned base's width (64: the pilot; 128: its extension)")
    args = ap.parse_args(argv)
    result = RESULTS / ("bc_mix_pilot.json" if args.width == 64 else f"bc_mix_pilot_d{args.width}.json")
    shares = args.shares
    spec = BaseSpec.default().with_width(args.width)
    ctx = Context(spec, args.out, progress=True)
    cfg = bcc.BCContrastConfig()
    watch = bcc.watched_half(ctx.world)
    cells = []
    for seed in range(args.seeds):
        never = ctx.world.facts(ctx.world.new_entities(N_NEVER_SEEN, "semantic", seed=95_000 + seed))
        for r in shares:
            for arm in ("idk", "sem"):
                train = arm_train(ctx.world, cfg, arm, r, seed)
                sft = fixed_steps(cfg.sft, cfg.sft.max_steps, seed)
                key = {"pilot": "bc_mix", "base": spec.hash(), "seed": seed, "arm": arm, "r": r,
                       "n_train": len(train), "sft": sft.to_dict()}
                cells.append(Cell(f"bcmix-{arm}", key, (lambda t=train, f=sft, n=never: run_arm(
                    ctx, spec, t, watch, f, extra={"never_seen": n})), f"{arm} r={r} seed {seed}", base=spec))
    rep = run_grid(cells, Path(args.out) / "cells", desc="bc mix pilot", fingerprint=ctx.fingerprint)
    rows = [{"seed": c.key["seed"], "arm": c.key["arm"], "r": c.key["r"], "n_train": c.key["n_train"], **read(res)}
            for c, res in zip(cells, rep.results)]
    by = {}
    for r in shares:
        for arm in ("idk", "sem"):
            sel = [x for x in rows if x["r"] == r and x["arm"] == arm]
            by[f"{arm}_{r}"] = {k: estimate([x[k] for x in sel]) for k in
                                ("abstain_known", "abstain_never_seen", "F", "H", "plasticity")}
    qualifies = {r: bool(by[f"idk_{r}"]["abstain_known"]["value"] <= MAX_KNOWN_ABSTENTION
                         and by[f"idk_{r}"]["abstain_never_seen"]["value"] >= MIN_NEVER_SEEN_ABSTENTION
                         and by[f"idk_{r}"]["plasticity"]["value"] >= MIN_PLASTICITY) for r in shares}
    out = {"pilot": "docs/bc_mix_pilot.md", "base_fingerprint": ctx.fingerprint(spec), "width": args.width,
           "seeds": args.seeds, "shares": shares, "steps": cfg.sft.max_steps, "by_arm": by, "per_cell": rows,
           "qualifies": {str(r): q for r, q in qualifies.items()},
           "chosen_share": next((r for r in shares if qualifies[r]), None),
           "rule": f"idk arm: abstention on known watched <= {MAX_KNOWN_ABSTENTION}, on never-seen >= "
                   f"{MIN_NEVER_SEEN_ABSTENTION}, plasticity >= {MIN_PLASTICITY} (means over seeds)",
           "cells": {"computed": rep.computed, "reused": rep.reused}}
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text(json.dumps(out, indent=1) + "\n")
    fmt = lambda e: "n/a" if e["value"] is None or not math.isfinite(e["value"]) else f"{e['value']:.3f}"  # noqa: E731
    print(f"{'arm':8} {'abstain known':>14} {'abstain never-seen':>19} {'F':>7} {'H':>7} {'plasticity':>11}")
    for k, v in by.items():
        print(f"{k:8} {fmt(v['abstain_known']):>14} {fmt(v['abstain_never_seen']):>19} {fmt(v['F']):>7} "
              f"{fmt(v['H']):>7} {fmt(v['plasticity']):>11}")
    print(f"qualifying shares: {[r for r in shares if qualifies[r]] or 'none'}; wrote {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
