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

RESULTS = Path(__file__).resolve().parent / "results"
ARMS = ("sem", "drift", "self")
LEARNED_AT = 0.95  # the decomposition's


def self_train(model, tok, sem: list) -> tuple[list, dict]:
    """``sem``'s questions answered with the base's greedy answers, and what those answers are."""
    from interference.evaluate import score_facts
    from interference.sft_data import relabel_own
    from interference.world import IDK_ANSWER
    scored = score_facts(model, tok, sem)
    n = len(sem)
    about = {"share_true_answer": sum(r.correct for r in scored) / n,
             "share_unknown": sum(r.prediction == IDK_ANSWER for r in scored) / n,
             "mean_p_own_answer": sum(r.confidence for r in scored) / n}
    return relabel_own(sem, [r.prediction for r in scored]), about


def seed_reads(got: dict) -> dict:
    """One (width, seed)'s reads from its three arm results (``run_arm`` with ``movement``)."""
    from interference.hypotheses.arms import rates_at, readout, step_matched
    r = {a: readout(got[a], LEARNED_AT) for a in ARMS}
    m = {}
    for a in ARMS:
        m[f"F_{a}"], m[f"H_{a}"] = r[a]["end"]["forgetting"], r[a]["end"]["hallucination"]
        m[f"abstain_{a}"], m[f"plasticity_{a}"] = r[a]["end"]["abstention"], r[a]["end"]["plasticity"]
        m[f"D_{a}"] = got[a]["update_norm"]
        m[f"p0_{a}"], m[f"pend_{a}"] = got[a]["curve"][0]["train_p"], got[a]["curve"][-1]["train_p"]
    step = r["sem"]["learned"]["step"] if r["sem"]["learned"]["reached"] else None
    m["sem_learned_step"] = step if step is not None else math.nan
    for a in ARMS:  # every arm read at the step sem learned its facts
        m[f"Fl_{a}"] = rates_at(got[a], step_matched(got[a], step))["forgetting"] if step is not None else math.nan
    m.update({f"self_{k}": v for k, v in got["self"]["self_targets"].items()})
    return m


def pilot_reads(rows: list[dict]) -> dict:
    """G, M and R of the doc, and their secondaries, from one width's per-seed rows (pure)."""
    from interference.metrics.stats import estimate, ratio_estimate
    col = lambda k: [r.get(k, math.nan) for r in rows]  # noqa: E731
    diff = lambda a, b: [x - y for x, y in zip(col(a), col(b))]  # noqa: E731
    E, S = diff("F_sem", "F_drift"), diff("F_self", "F_drift")
    per_move = lambda xs, ds: [x / d if d > 0 else math.nan for x, d in zip(xs, ds)]  # noqa: E731
    out = {"E": estimate(E), "G": ratio_estimate(S, E),
           "M": ratio_estimate(col("D_self"), col("D_sem")),
           "R": ratio_estimate(per_move(S, col("D_self")), per_move(E, col("D_sem"))),
           "G_learned": ratio_estimate(diff("Fl_self", "Fl_drift"), diff("Fl_sem", "Fl_drift")),
           "G_hallucination": ratio_estimate(diff("H_self", "H_drift"), diff("H_sem", "H_drift"))}
    for k in ("F_sem", "F_drift", "F_self", "H_sem", "H_self", "abstain_self", "plasticity_sem", "D_sem", "D_self",
              "D_drift", "p0_self", "pend_self", "p0_sem", "pend_sem", "sem_learned_step", "self_share_true_answer",
              "self_share_unknown", "self_mean_p_own_answer"):
        out[k] = estimate(col(k))
    return out


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
    from interference.hypotheses.arms import fixed_steps, run_arm
    from interference.hypotheses.capacity import watched
    from interference.hypotheses.context import Context
    from interference.hypotheses.grid import Cell, run_grid
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
            for arm in ARMS:
                facts = dc.arm_facts(ctx.world, cfg, "drift" if arm == "drift" else "sem", seed)

                def fn(s=spec, t=facts, f=sft, own=arm == "self"):
                    about = None
                    if own:  # the base's answers are read inside the cell: its weights, not the world, set them
                        t, about = self_train(*ctx.base(s), t)
                    res = run_arm(ctx, s, t, watch, f, movement=True)
                    return {**res, "self_targets": about} if own else res
                key = {"pilot": "bc_self", "base": spec.hash(), "width": width, "seed": seed, "arm": arm,
                       "targets": "base_greedy" if arm == "self" else "set", "n_train": len(facts), "sft": sft.to_dict()}
                cells.append(Cell(f"bcself-{arm}", key, fn, f"d{width} {arm} seed {seed}", base=spec))
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
