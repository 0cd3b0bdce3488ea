"""Capacity: does SFT forget because the model runs out of room for the new facts?

If so, forgetting grows with the number of new facts *whatever they look like* and shrinks with
model size. Experiment (per seed, on each base size, 100% Unknown SFT trained until learned):

- new entities with ``uuid`` keys (names from pieces no existing name uses) at scaled counts, vs
  the same counts of ``semantic`` keys (random names from the shared pieces), paired fact for
  fact (``values_from``): the j-th uuid entity carries the j-th semantic entity's values, so the
  two arms learn the same answers and differ only in how the keys look;
- a drift control: SFT on Known facts only (QA of pre-training entities) for ``max_steps``, at
  least as many steps as any run above, so steps alone cannot explain forgetting;
- a joint control: new semantic facts at the largest count trained together with the watched old
  facts: if the model holds both, its capacity suffices for old + new.

Forgetting = share of statement-only facts the base answered right that are now wrong.

share = (f[uuid] - f[drift control]) / f[semantic], at the largest count on the largest model:
the part of the forgetting that fitting new facts causes even when they share nothing with the
existing ones, which is all capacity could explain (an upper bound: behavior cloning predicts the
same part). Also reported: slope of uuid forgetting per doubling of the count, per size, and the
ratio of uuid forgetting large/small model. Verdict: ``common.decide``; required check: the
joint control holds old and new facts (plasticity >= 0.9 and forgetting <= 0.1), else capacity
really is short and the share is not interpretable.
"""
from __future__ import annotations

import dataclasses
import math
import random
import sys
from dataclasses import dataclass

import numpy as np

from interference.hypotheses.common import (Cell, Preregistration, SFTSpec, decide, estimate, finetune_on, outcomes,
                                            rule_text)
from interference.metrics.forgetting import forgetting_rate
from interference.records import FactOutcomes

NAME = "capacity"
SHARE_DEFINITION = ("(forgetting with uuid keys - forgetting of a Known-only drift control) / forgetting with "
                    "semantic keys, at the largest count on the largest model")


# Placeholder for the previous endpoint (recorded after its result); replaced by the rewrite.
PREREGISTERED = Preregistration(
    endpoint=f"share = {SHARE_DEFINITION}",
    predictions={"capacity": "see the module docstring", "behavior_cloning": "see the module docstring",
                 "localized": "see the module docstring"},
    rule=rule_text(SHARE_DEFINITION))


@dataclass(frozen=True)
class CapacityConfig:
    seeds: int = 2
    counts: tuple[int, ...] = (25, 100, 300)  # new entities (x relations = facts): 100 to 1,200 facts
    # model sizes (name -> d_model); the default model is d128, the small one d64: both pre-train
    # on 2 CPU cores (CALIBRATION: d256 takes ~24 min, too slow for a default run)
    sizes: tuple[tuple[str, int], ...] = (("d64", 64), ("d128", 128))
    sft: SFTSpec = SFTSpec(max_steps=1500, learned_at=0.95)
    probe_layers: str = "mid,last"  # layers of the decodability probe (behavior_cloning reads it)
    probe_count: int = 100  # probe only the runs behavior_cloning shares (its `count`): probes cost

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def quick(cls) -> "CapacityConfig":
        return cls(seeds=2, counts=(5, 20), sizes=(("d32", 32), ("d64", 64)), probe_count=20,
                   sft=SFTSpec(max_steps=150, batch_size=16, eval_every=10, lr=1e-3, learned_at=0.95))


def config(quick: bool = False) -> CapacityConfig:
    return CapacityConfig.quick() if quick else CapacityConfig()


def size_spec(spec, d_model: int):
    """The base spec of another model size: same world and recipe, width scaled (heads fixed)."""
    m = dataclasses.replace(spec.model, d_model=d_model, d_mlp=4 * d_model)
    return dataclasses.replace(spec, model=m)


def _watch(world):
    return world.facts(world.split("statement_only"))


def new_entities(world, style: str, count: int, seed: int):
    """``count`` new entities of ``style``; uuid ones carry the semantic ones' values (paired)."""
    sem = world.new_entities(count, "semantic", seed=20_000 + seed)
    return sem if style == "semantic" else world.new_entities(count, "uuid", seed=20_000 + seed, values_from=sem)


def sft_cell(ctx, sft: SFTSpec, size: tuple[str, int], style: str, count: int, seed: int,
             probe_layers: str) -> Cell:
    """One Unknown-SFT run; shared by capacity and behavior_cloning (same key -> same stored run)."""
    spec = size_spec(ctx.spec, size[1])
    key = {"base": spec.hash(), "arm": f"sft-{style}", "count": count, "seed": seed,
           "sft": sft.to_dict(), "probe_layers": probe_layers}
    return Cell(f"unknown-sft-{style}", key, lambda: _sft(ctx, spec, sft, style, count, seed, probe_layers),
                f"{size[0]} {style} x{count} seed {seed}")


def _layers(spec_layers: str, n_layers: int) -> list[int]:
    named = {"mid": (n_layers - 1) // 2, "last": n_layers - 1}
    return sorted({named[s] if s in named else int(s) for s in spec_layers.split(",")})


def _sft(ctx, spec, sft: SFTSpec, style: str, count: int, seed: int, probe_layers: str, extra=None) -> dict:
    model, tok = ctx.base(spec)
    world = ctx.world
    train = world.facts(new_entities(world, style, count, seed)) if style != "known_only" else \
        random.Random(seed).sample(world.facts(world.split("pretrain_qa")), min(count * len(world.config.relations),
                                                                          len(world.split("pretrain_qa")) * len(world.config.relations)))
    watch = _watch(world)
    if extra == "joint":
        train = train + watch
    run_spec = dataclasses.replace(sft, seed=seed, learned_at=1.01 if style == "known_only" else sft.learned_at)
    base_ok, _ = outcomes(model, tok, watch)
    res = finetune_on(model, tok, train, run_spec)
    ok, preds = outcomes(res.model, tok, watch)
    ids = [f.fact_id for f in watch]
    out = {"style": style, "count": count, "seed": seed, "steps": res.steps, "plasticity": res.plasticity,
           "forgetting": forgetting_rate(FactOutcomes.from_mask(ids, base_ok), FactOutcomes.from_mask(ids, ok)),
           "n_known": int(base_ok.sum()),
           "chance": 1.0 / world.config.n_values}
    if extra is None and style != "known_only" and probe_layers:
        out.update(_decodability(res.model, tok, watch, base_ok, ok, _layers(probe_layers, spec.model.n_layers), seed))
    return out


def _decodability(model, tok, watch, base_ok, ok, layers, seed) -> dict:
    """Linear probe (last prompt token -> gold answer) trained on facts still answered right, tested
    on held-out retained facts and on the forgotten ones."""
    import warnings
    from interference.metrics.overlap import probe_readout
    from interference.probes import capture
    hooks = [f"blocks.{i}.hook_resid_post" for i in layers]
    acts = capture(model, tok, watch, hooks, "last")
    y = np.array([f.answer for f in watch])
    retained = np.where(base_ok & ok)[0]
    forgotten = np.where(base_ok & ~ok)[0]
    rng = np.random.default_rng(seed)
    rng.shuffle(retained)
    n_te = max(1, len(retained) // 5)
    te, tr = retained[:n_te], retained[n_te:]
    out = {"probe_layers": layers}
    for l, h in zip(layers, hooks):
        x = acts[h].numpy()
        if len(set(y[tr].tolist())) < 2 or len(forgotten) == 0:
            out[f"probe_forgotten_L{l}"] = out[f"probe_retained_L{l}"] = math.nan
            continue
        with warnings.catch_warnings():  # few examples per class and capped iterations are expected here
            warnings.simplefilter("ignore")
            r_f = probe_readout(x[tr], y[tr], x[forgotten], y[forgotten], seed=seed, max_iter=300)
            r_r = probe_readout(x[tr], y[tr], x[te], y[te], seed=seed, max_iter=300)
        out[f"probe_forgotten_L{l}"], out[f"probe_retained_L{l}"] = r_f.accuracy, r_r.accuracy
    return out


def cells(cfg: CapacityConfig, ctx) -> list[Cell]:
    out = []
    big = cfg.sizes[-1]
    for seed in range(cfg.seeds):
        for size in cfg.sizes:
            for count in cfg.counts:
                for style in ("uuid", "semantic"):
                    probe = cfg.probe_layers if count == cfg.probe_count else ""
                    out.append(sft_cell(ctx, cfg.sft, size, style, count, seed, probe))
        spec = size_spec(ctx.spec, big[1])
        for arm, style, extra in (("drift", "known_only", None), ("joint", "semantic", "joint")):
            key = {"base": spec.hash(), "arm": arm, "count": cfg.counts[-1], "seed": seed, "sft": cfg.sft.to_dict()}
            out.append(Cell(f"capacity-{arm}", key,
                            (lambda st=style, ex=extra, s=seed: _sft(ctx, spec, cfg.sft, st, cfg.counts[-1], s, "",
                                                                      extra=ex)),
                            f"{big[0]} {arm} seed {seed}"))
    return out


def summarize(cfg: CapacityConfig, results: list[dict], ctx) -> dict:
    per_cell = iter(results)
    table = {}
    for seed in range(cfg.seeds):
        for size in cfg.sizes:
            for count in cfg.counts:
                for style in ("uuid", "semantic"):
                    table[(seed, size[0], count, style)] = next(per_cell)
        table[(seed, "drift")] = next(per_cell)
        table[(seed, "joint")] = next(per_cell)
    big, small, top = cfg.sizes[-1][0], cfg.sizes[0][0], cfg.counts[-1]
    per_seed = []
    for seed in range(cfg.seeds):
        m = {"seed": seed}
        for (s, size, count, style), r in ((k, v) for k, v in table.items() if len(k) == 4 and k[0] == seed):
            m[f"forgetting_{style}_{size}_n{count}"] = r["forgetting"]
            m[f"plasticity_{style}_{size}_n{count}"] = r["plasticity"]
            m[f"steps_{style}_{size}_n{count}"] = r["steps"]
        fu, fs = table[(seed, big, top, "uuid")]["forgetting"], table[(seed, big, top, "semantic")]["forgetting"]
        fd = table[(seed, "drift")]["forgetting"]
        m.update({"forgetting_uuid": fu, "forgetting_semantic": fs, "drift_control_forgetting": fd,
                  "drift_control_steps": table[(seed, "drift")]["steps"],
                  "joint_forgetting": table[(seed, "joint")]["forgetting"],
                  "joint_plasticity": table[(seed, "joint")]["plasticity"],
                  "share": (fu - fd) / fs if fs > 0 else math.nan})
        for size in cfg.sizes:
            x = np.log2(cfg.counts)
            y = [table[(seed, size[0], c, "uuid")]["forgetting"] for c in cfg.counts]
            m[f"uuid_slope_per_doubling_{size[0]}"] = float(np.polyfit(x, y, 1)[0]) if len(x) > 1 else math.nan
        fu_small = table[(seed, small, top, "uuid")]["forgetting"]
        m["uuid_forgetting_ratio_large_over_small"] = fu / fu_small if fu_small > 0 else math.nan
        per_seed.append(m)
    keys = sorted({k for p in per_seed for k in p if k != "seed"})
    stats = {k: estimate([p.get(k, math.nan) for p in per_seed]) for k in keys}
    share = stats.pop("share")
    checks = {"joint control holds old + new (plasticity >= 0.9, forgetting <= 0.1)":
              bool(stats["joint_plasticity"]["value"] >= 0.9 and stats["joint_forgetting"]["value"] <= 0.1)}
    verdict = decide(share["value"], (share["low"], share["high"]), n_seeds=share["n"],
                     checks_pass=all(checks.values()))
    by_count = {size[0]: {style: {str(c): stats[f"forgetting_{style}_{size[0]}_n{c}"] for c in cfg.counts}
                          for style in ("uuid", "semantic")} for size in cfg.sizes}
    return {"hypothesis": NAME, "verdict": verdict, "share": share, "share_definition": SHARE_DEFINITION,
            "rule": rule_text(SHARE_DEFINITION), "checks": checks, "statistics": stats, "per_seed": per_seed,
            "series": {"forgetting_by_count": by_count, "facts_per_entity": len(ctx.world.config.relations)},
            "headline": [(f"forgetting uuid ({big}, {top} new entities)", stats["forgetting_uuid"]),
                         (f"forgetting semantic ({big}, {top} new entities)", stats["forgetting_semantic"]),
                         ("forgetting, Known-only drift control", stats["drift_control_forgetting"]),
                         (f"uuid slope per doubling ({big})", stats[f"uuid_slope_per_doubling_{big}"]),
                         (f"uuid forgetting {big}/{small}", stats["uuid_forgetting_ratio_large_over_small"]),
                         ("joint control: forgetting", stats["joint_forgetting"]),
                         ("joint control: new facts learned", stats["joint_plasticity"])]}


def run(cfg: CapacityConfig | None = None, ctx=None) -> dict:
    """Run (or reuse) the capacity grid and write ``<out>/capacity/verdict.json``."""
    from interference.hypotheses.common import Context, run_module
    from interference.pretrain import BaseSpec
    return run_module(sys.modules[__name__], cfg or CapacityConfig(),
                      ctx or Context(BaseSpec.default(), "runs/hypotheses"))
