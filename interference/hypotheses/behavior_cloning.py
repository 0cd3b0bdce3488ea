"""Behavior cloning: does SFT make the model hallucinate because it learns to answer without knowing?

If so, *any* Unknown SFT example teaches that behaviour, whatever its form: Unknown facts with
``uuid`` keys (names sharing nothing with existing ones) should cause as much forgetting as
``semantic`` ones at the same count and the same learning. Experiment (per seed, default model,
100% Unknown SFT trained until learned, pairs of uuid/semantic entities carrying the same values,
the runs shared with ``capacity``):

- forgetting with uuid keys vs semantic keys at ``count`` new entities, with their plasticity
  (new-fact accuracy) and step counts to show equal learning;
- linear decodability: a logistic-regression probe reads the gold answer from the last prompt
  token (middle and last layer) of the fine-tuned model; trained on facts still answered right,
  tested on held-out retained facts and on the forgotten ones. Decodable forgotten facts mean the
  knowledge is still there and only the read-out was overridden; chance-level means it is gone.

share = f[uuid] / f[semantic]: the fraction of forgetting that Unknown examples cause when their
form shares nothing with existing knowledge (1 if form does not matter, as behavior cloning
predicts). Verdict: ``common.decide``; required check: equal learning (|plasticity difference| <=
0.05 in the mean).
"""
from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass

from interference.hypotheses.capacity import sft_cell
from interference.hypotheses.common import Cell, Preregistration, SFTSpec, decide, estimate, rule_text

NAME = "behavior_cloning"
SHARE_DEFINITION = "forgetting with uuid-key Unknown facts / forgetting with semantic-key Unknown facts, equal count"


# Placeholder for the previous endpoint (recorded after its result); replaced by the rewrite.
PREREGISTERED = Preregistration(
    endpoint=f"share = {SHARE_DEFINITION}",
    predictions={"capacity": "see the module docstring", "behavior_cloning": "see the module docstring",
                 "localized": "see the module docstring"},
    rule=rule_text(SHARE_DEFINITION))


@dataclass(frozen=True)
class BehaviorCloningConfig:
    seeds: int = 3
    count: int = 100  # new entities: 400 facts, matching capacity's middle count (runs are shared)
    sft: SFTSpec = SFTSpec(max_steps=1500, learned_at=0.95)  # = capacity's, so `all` trains each run once
    probe_layers: str = "mid,last"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def quick(cls) -> "BehaviorCloningConfig":
        return cls(seeds=2, count=20,
                   sft=SFTSpec(max_steps=150, batch_size=16, eval_every=10, lr=1e-3, learned_at=0.95))


def config(quick: bool = False) -> BehaviorCloningConfig:
    return BehaviorCloningConfig.quick() if quick else BehaviorCloningConfig()


def cells(cfg: BehaviorCloningConfig, ctx) -> list[Cell]:
    size = ("default", ctx.spec.model.d_model)
    return [sft_cell(ctx, cfg.sft, size, style, cfg.count, seed, cfg.probe_layers)
            for seed in range(cfg.seeds) for style in ("uuid", "semantic")]


def summarize(cfg: BehaviorCloningConfig, results: list[dict], ctx) -> dict:
    per_seed = []
    for seed in range(cfg.seeds):
        u, s = results[2 * seed], results[2 * seed + 1]
        layers = s.get("probe_layers", [])
        mid = layers[0] if layers else None
        m = {"seed": seed, "forgetting_uuid": u["forgetting"], "forgetting_semantic": s["forgetting"],
             "plasticity_uuid": u["plasticity"], "plasticity_semantic": s["plasticity"],
             "steps_uuid": u["steps"], "steps_semantic": s["steps"],
             "share": u["forgetting"] / s["forgetting"] if s["forgetting"] > 0 else math.nan}
        for l in layers:
            for style, r in (("semantic", s), ("uuid", u)):
                m[f"probe_forgotten_{style}_L{l}"] = r.get(f"probe_forgotten_L{l}", math.nan)
                m[f"probe_retained_{style}_L{l}"] = r.get(f"probe_retained_L{l}", math.nan)
        if mid is not None:
            m["probe_forgotten"] = s.get(f"probe_forgotten_L{mid}", math.nan)
            m["probe_retained_heldout"] = s.get(f"probe_retained_L{mid}", math.nan)
        per_seed.append(m)
    keys = sorted({k for p in per_seed for k in p if k != "seed"})
    stats = {k: estimate([p.get(k, math.nan) for p in per_seed]) for k in keys}
    share = stats.pop("share")
    gap = abs(stats["plasticity_uuid"]["value"] - stats["plasticity_semantic"]["value"])
    checks = {"equal learning (|plasticity uuid - semantic| <= 0.05)": bool(gap <= 0.05)}
    verdict = decide(share["value"], (share["low"], share["high"]), n_seeds=share["n"],
                     checks_pass=all(checks.values()))
    chance = results[0].get("chance")
    return {"hypothesis": NAME, "verdict": verdict, "share": share, "share_definition": SHARE_DEFINITION,
            "rule": rule_text(SHARE_DEFINITION), "checks": checks, "statistics": stats, "per_seed": per_seed,
            "series": {"chance": chance},
            "headline": [("forgetting, uuid keys", stats["forgetting_uuid"]),
                         ("forgetting, semantic keys", stats["forgetting_semantic"]),
                         ("new facts learned, uuid", stats["plasticity_uuid"]),
                         ("new facts learned, semantic", stats["plasticity_semantic"]),
                         ("probe reads forgotten facts (mid layer)", stats.get("probe_forgotten", {})),
                         ("probe reads retained held-out facts", stats.get("probe_retained_heldout", {})),
                         ("chance", {"value": chance, "low": None, "high": None})]}


def run(cfg: BehaviorCloningConfig | None = None, ctx=None) -> dict:
    """Run (or reuse) the behavior-cloning grid and write ``<out>/behavior_cloning/verdict.json``."""
    from interference.hypotheses.common import Context, run_module
    from interference.pretrain import BaseSpec
    return run_module(sys.modules[__name__], cfg or BehaviorCloningConfig(),
                      ctx or Context(BaseSpec.default(), "runs/hypotheses"))
