"""What the training-dynamics figures need, read from cached runs: accuracy curves per method,
the stability-plasticity trade-off, hallucination vs Unknown fraction, freezing bars.

Each function takes a config and a ``FigureContext`` and returns a small JSON-able dict (the
figure's data); the plot functions in ``plot_training`` draw only from that dict.
"""
from __future__ import annotations

from typing import Sequence

from interference.figures.config import ArmsConfig
from interference.io import json_ready
from interference.metrics.stats import estimate as stats_estimate

SETS = ("task", "plasticity", "stability")


def estimate(values: Sequence[float]) -> dict:
    """``metrics.stats.estimate`` as figure data stores it: a missing number (no seed, or one
    seed's infinite interval) is None, and the level (always 0.95) is left out."""
    return {k: v for k, v in json_ready(stats_estimate(values)).items() if k != "level"}


def _history_by_step(records) -> tuple[list[int], dict[str, list[list[float]]]]:
    """Steps common to all seeds and, per set, the per-seed accuracies at those steps."""
    hists = [{h["step"]: h for h in r.metrics["history"]} for r in records]
    steps = sorted(set.intersection(*(set(h) for h in hists)))
    return steps, {s: [[h[t][s] for h in hists] for t in steps] for s in SETS}


def curves(cfg: ArmsConfig, ctx) -> dict:
    """Held-out known (stability), new-fact (plasticity) and task accuracy over training, per arm."""
    out = {}
    for arm in cfg.arms:
        recs = ctx.cache.seeds(arm, cfg.seeds, cfg.run)
        steps, per = _history_by_step(recs)
        out[arm.label] = {"method": arm.method, "steps": steps,
                          **{s: [estimate(v) for v in per[s]] for s in SETS}}
    return {"arms": out, "order": [a.label for a in cfg.arms], "seeds": cfg.seeds}


def _final(recs, key: str) -> dict:
    return estimate([r.metrics[f"{key}_accuracy"]["final"] for r in recs])


def tradeoff(cfg: ArmsConfig, ctx) -> dict:
    """Final plasticity vs final stability for every (method, strength) arm."""
    pts = []
    for arm in cfg.arms:
        recs = ctx.cache.seeds(arm, cfg.seeds, cfg.run)
        pts.append({"label": arm.label, "method": arm.method, "strength": arm.strength,
                    "plasticity": _final(recs, "plasticity"), "stability": _final(recs, "stability"),
                    "task": _final(recs, "task")})
    return {"points": pts, "seeds": cfg.seeds}


def _rates(rec) -> dict:
    """Hallucination and forgetting of the base-known held-out facts at the end of one run."""
    from interference.metrics.forgetting import forgetting_rate
    from interference.metrics.hallucination import hallucination_rate
    from interference.records import FactOutcomes
    base, now = FactOutcomes.base_and_final(rec.timeline())
    return {"hallucination": hallucination_rate(base, now), "forgetting": forgetting_rate(base, now)}


def hallucination(cfg: ArmsConfig, ctx) -> dict:
    """Gekhman et al.'s curve: confident wrong answers on known facts vs Unknown share of the SFT set."""
    rows = []
    for arm in sorted(cfg.arms, key=lambda a: a.unknown_fraction):
        recs = ctx.cache.seeds(arm, cfg.seeds, cfg.run)
        rates = [_rates(r) for r in recs]
        steps, per = _history_by_step(recs)
        rows.append({"label": arm.label, "method": arm.method, "unknown_fraction": arm.unknown_fraction,
                     "hallucination": estimate([r["hallucination"] for r in rates]),
                     "forgetting": estimate([r["forgetting"] for r in rates]),
                     "plasticity": _final(recs, "plasticity"),
                     "steps": steps, "stability_curve": [estimate(v) for v in per["stability"]]})
    return {"fractions": rows, "seeds": cfg.seeds}


def freezing(cfg: ArmsConfig, ctx) -> dict:
    """Task / plasticity / stability at the end of training, per set of trained parameter groups."""
    bars = []
    for arm in cfg.arms:
        recs = ctx.cache.seeds(arm, cfg.seeds, cfg.run)
        bars.append({"label": arm.label, "groups": arm.options.get("groups", "all"),
                     "n_trainable": recs[0].metrics.get("n_trainable"),
                     **{s: _final(recs, s) for s in SETS}})
    return {"arms": bars, "seeds": cfg.seeds}
