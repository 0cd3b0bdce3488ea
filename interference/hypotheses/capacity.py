"""Capacity: does SFT forget because the model has no room for the new facts beside the old ones?

Pre-registered experiment (written and committed before any run of it):

Joint training. The same set of new facts (``count`` new entities with ``uuid`` keys, every
relation) is taught two ways, on each base size of a width x count grid (d64 and d128, counts 25
and 100 entities = 100 and 400 facts). d256 and d32 are left out: this 2-core CPU is shared by
eight jobs, a d128 base alone takes about an hour to pre-train on it, and d32 had memorised only
20% of its statements after 1000 steps (decided before any result, and reported):

- ``sft``: plain SFT on the new facts;
- ``joint``: the same new facts with the ``replay`` method mixing the pre-training corpus
  (statements of every pre-trained entity, the watched ones included, their QA where pre-training
  had it, and the filler lines) into every batch, one replayed example per new one: the model
  may rehearse its old facts while it learns the new ones;
- ``drift``: a Known-only control per size, SFT on QA facts the base already answers (pretrain_qa
  entities), as many as the largest count, for the same number of steps.

Every run takes the same ``steps`` updates (step-matched across the whole grid, never stopped
early) and is also read at the first evaluation where its new facts are learned (>= 0.95):
learning-matched. Forgetting = share of the watched facts (every statement-only fact the base
answered right) now answered wrongly.

Primary endpoint, per seed, over every (size, count) cell of the grid at the step-matched point:

    P = sum_cells (f_joint - f_drift) / sum_cells (f_sft - f_drift)

the share of the forgetting that learning the new facts causes which persists when the model
may rehearse its old facts. 95% t-interval over seeds.

Predictions. capacity: P >= 0.5, the model cannot hold old and new facts at once, so rehearsal
cannot keep the old ones (and excess forgetting rises with the count and falls with the width).
behavior_cloning: P < 0.1, rehearsal keeps old facts; what forgets them is what SFT teaches
(answering without knowing), which does not need room. localized: P < 0.1, rehearsal re-anchors
the representations the new facts overlap.

Rule (``PREREGISTERED``): main_driver if lo >= 0.5; contributes if lo > 0; not_supported if
hi < 0.1; else inconclusive. Required check: in every sft and joint cell the new facts are
learned at the step-matched point (mean plasticity >= 0.95); otherwise a positive verdict becomes
inconclusive (the arms would not be compared at equal learning).

Secondary, pre-registered but not deciding (the width x count sweep at fixed ``uuid`` keys):
per seed, the slope of excess SFT forgetting (f_sft - f_drift) per doubling of the count
(capacity: > 0) and per doubling of the width (capacity: < 0), and its slope per doubling of
new facts per parameter over all cells (capacity: > 0, the same load forgets the same); every
cell's forgetting, persistence and learning with CIs. The learning-matched P is reported beside
the step-matched one. ``consolidations`` adds bases at other consolidation levels (d128 only),
reported per level.
"""
from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass

import numpy as np

from interference.hypotheses.arms import fixed_steps, readout, run_arm
from interference.hypotheses.grid import Cell
from interference.hypotheses.prereg import Preregistration
from interference.train import SFTSpec
from interference.metrics.stats import estimate
from interference.metrics.endpoints import pooled_persistence, slope_per_doubling

NAME = "capacity"
ENDPOINT = ("P = sum over every (size, count) cell of (f_joint - f_drift) / sum of (f_sft - f_drift), "
            "forgetting of the base-known statement-only facts after the same number of steps; "
            "f_sft: plain SFT on new uuid-key facts, f_joint: the same facts with the pre-training corpus "
            "replayed 1:1, f_drift: Known-only SFT; mean and 95% t-interval over seeds")
PREREGISTERED = Preregistration(
    endpoint=ENDPOINT,
    predictions={
        "capacity": "P >= 0.5: with no room for old and new facts, rehearsal cannot keep the old ones; excess "
                    "forgetting also rises with the count and falls with the width",
        "behavior_cloning": "P < 0.1: rehearsal keeps the old facts; what SFT teaches (answering without knowing) "
                            "needs no room",
        "localized": "P < 0.1: rehearsal re-anchors the representations the new facts overlap",
    },
    rule="main_driver if lo >= 0.5; contributes if lo > 0; not_supported if hi < 0.1; else inconclusive. "
         "Required check: mean plasticity >= 0.95 at the step-matched point in every sft and joint cell, "
         "else a positive verdict is inconclusive.",
    main_at=0.5, negligible_below=0.1)
ARMS = ("sft", "joint")
LEARNED_AT = 0.95


@dataclass(frozen=True)
class CapacityConfig:
    seeds: int = 5
    counts: tuple[int, ...] = (25, 100)  # new uuid entities; x 4 relations = 100 and 400 facts
    sizes: tuple[tuple[str, int], ...] = (("d64", 64), ("d128", 128))
    key_style: str = "uuid"  # fixed key style of the sweep (pieces pre-trained as filler: no new rows)
    # every run: 300 updates at lr 3e-4, batch 32 (400 uuid facts were learned in 100-300 steps in the
    # first version's runs); the CPU budget of a shared machine sets the grid's size, not the science
    sft: SFTSpec = SFTSpec(max_steps=300, eval_every=50)
    replay_ratio: float = 1.0  # replayed pre-training examples per new-fact example
    consolidations: tuple[float, ...] = ()  # extra base consolidation levels (d128), beside the default

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def quick(cls) -> "CapacityConfig":
        return cls(seeds=2, counts=(5, 15), sizes=(("d32", 32), ("d64", 64)),
                   sft=SFTSpec(max_steps=60, batch_size=16, eval_every=20, lr=1e-3))


def config(quick: bool = False) -> CapacityConfig:
    return CapacityConfig.quick() if quick else CapacityConfig()


def size_spec(spec, d_model: int, consolidation: float | None = None):
    """The base spec of another width (heads fixed, MLP 4x) and, optionally, consolidation level."""
    s = spec.with_width(d_model)
    return s if consolidation is None else s.with_consolidation(consolidation)


def watched(world):
    return world.facts(world.split("statement_only"))


def new_facts(world, style: str, count: int, seed: int):
    return world.facts(world.new_entities(count, style, seed=20_000 + seed))


def known_facts(world, n: int, seed: int):
    """QA facts of pretrain_qa entities (the base saw their QA): a Known-only training set."""
    pool = world.facts(world.split("pretrain_qa"))
    return random.Random(f"known-{seed}").sample(pool, min(n, len(pool)))


def _grid(cfg: CapacityConfig, ctx):
    """(level label, size label, base spec) for every base of the grid."""
    default_c = ctx.spec.pretrain.consolidation
    out = [("default", name, size_spec(ctx.spec, d)) for name, d in cfg.sizes]
    big = cfg.sizes[-1]
    out += [(f"c{c:g}", big[0], size_spec(ctx.spec, big[1], c)) for c in cfg.consolidations if c != default_c]
    return out


def cells(cfg: CapacityConfig, ctx) -> list[Cell]:
    world = ctx.world
    out = []
    for seed in range(cfg.seeds):
        for level, size, spec in _grid(cfg, ctx):
            base = {"base": spec.hash(), "level": level, "size": size, "seed": seed}
            for count in cfg.counts:
                train = new_facts(world, cfg.key_style, count, seed)
                for arm in ARMS:
                    sft = fixed_steps(cfg.sft, cfg.sft.max_steps, seed) if arm == "sft" else fixed_steps(
                        cfg.sft, cfg.sft.max_steps, seed, method="replay",
                        method_options={"ratio": cfg.replay_ratio, "seed": seed, "corpus": "pretraining"})
                    key = {**base, "arm": arm, "count": count, "style": cfg.key_style, "sft": sft.to_dict()}
                    out.append(Cell(f"capacity-{arm}", key,
                                    (lambda s=spec, t=train, f=sft: run_arm(ctx, s, t, watched(world), f)),
                                    f"{level} {size} {arm} x{count} seed {seed}", base=spec))
            sft = fixed_steps(cfg.sft, cfg.sft.max_steps, seed)
            train = known_facts(world, max(cfg.counts) * len(world.config.relations), seed)
            key = {**base, "arm": "drift", "count": max(cfg.counts), "sft": sft.to_dict()}
            out.append(Cell("capacity-drift", key, (lambda s=spec, t=train, f=sft: run_arm(ctx, s, t, watched(world), f)),
                            f"{level} {size} drift seed {seed}", base=spec))
    return out


def _n_params(spec) -> float:
    """Parameters of a base (embeddings included), from its pre-training metrics: what "room" is."""
    import json
    from interference.bases import base_dir
    f = base_dir(spec) / "metrics.json"
    return float(json.loads(f.read_text()).get("n_params", math.nan)) if f.exists() else math.nan


def summarize(cfg: CapacityConfig, results, ctx) -> dict:
    per_seed, cell_rows = [], {}
    levels = sorted({lv for lv, _, _ in _grid(cfg, ctx)}, key=lambda x: x != "default")
    facts_per_entity = len(ctx.world.config.relations)
    params = {name: _n_params(size_spec(ctx.spec, d)) for name, d in cfg.sizes}
    for seed in range(cfg.seeds):
        m = {"seed": seed}
        for level in levels:
            sizes = [s for lv, s, _ in _grid(cfg, ctx) if lv == level]
            j_end, p_end, c_end, j_l, p_l, c_l = [], [], [], [], [], []
            load, excess, cnt, width = [], [], [], []
            for size in sizes:
                drift = results.one(level=level, size=size, seed=seed, arm="drift")
                for count in cfg.counts:
                    r = {arm: readout(results.one(level=level, size=size, seed=seed, arm=arm, count=count), LEARNED_AT)
                         for arm in ARMS}
                    d_end = readout(drift, LEARNED_AT)["end"]["forgetting"]
                    # learning-matched: the control read at the step where each arm learned
                    d_at = {arm: _forgetting_at(drift, r[arm]["learned"]["step"]) for arm in ARMS}
                    tag = f"{level}_{size}_n{count}"
                    for arm in ARMS:
                        m[f"forgetting_{arm}_{tag}"] = r[arm]["end"]["forgetting"]
                        m[f"plasticity_{arm}_{tag}"] = r[arm]["end"]["plasticity"]
                        m[f"learned_step_{arm}_{tag}"] = r[arm]["learned"]["step"] if r[arm]["learned"]["reached"] \
                            else math.nan
                        m[f"hallucination_{arm}_{tag}"] = r[arm]["end"]["hallucination"]
                    m[f"forgetting_drift_{tag}"] = d_end
                    m[f"persistence_{tag}"] = pooled_persistence([r["joint"]["end"]["forgetting"]],
                                                                 [r["sft"]["end"]["forgetting"]], [d_end])
                    j_end.append(r["joint"]["end"]["forgetting"]); p_end.append(r["sft"]["end"]["forgetting"])
                    c_end.append(d_end)
                    j_l.append(r["joint"]["learned"]["forgetting"] - d_at["joint"])
                    p_l.append(r["sft"]["learned"]["forgetting"] - d_at["sft"])
                    c_l.append(0.0)
                    excess.append(r["sft"]["end"]["forgetting"] - d_end)
                    cnt.append(count)
                    width.append(dict(cfg.sizes).get(size, math.nan))
                    load.append(count * facts_per_entity / params.get(size, math.nan))
                    cell_rows.setdefault(level, {}).setdefault(size, set()).add(count)
            suffix = "" if level == "default" else f"_{level}"
            m["P" + suffix] = pooled_persistence(j_end, p_end, c_end)
            m["P_learning_matched" + suffix] = pooled_persistence(j_l, p_l, c_l)
            if level == "default":
                m["slope_count"] = float(np.nanmean([slope_per_doubling(
                    [c for c, w in zip(cnt, width) if w == wd], [e for e, w in zip(excess, width) if w == wd])
                    for wd in sorted(set(width))]))
                m["slope_width"] = float(np.nanmean([slope_per_doubling(
                    [w for c, w in zip(cnt, width) if c == ct], [e for e, c in zip(excess, cnt) if c == ct])
                    for ct in sorted(set(cnt))]))
                m["slope_load"] = slope_per_doubling(load, excess)
        per_seed.append(m)
    keys = sorted({k for p in per_seed for k in p if k != "seed"})
    stats = {k: estimate([p.get(k, math.nan) for p in per_seed]) for k in keys}
    endpoint = stats["P"]
    learned = {f"{arm} learned at {lv} {size} x{c}": stats[f"plasticity_{arm}_{lv}_{size}_n{c}"]["value"]
               for lv, sizes in cell_rows.items() if lv == "default" for size, cs in sizes.items()
               for c in cs for arm in ARMS}
    checks = {"new facts learned at the step-matched point in every sft and joint cell (mean >= 0.95)":
              bool(all(v is not None and v >= LEARNED_AT for v in learned.values()))}
    verdict = PREREGISTERED.decide(endpoint, checks_pass=all(checks.values()))
    grid = {lv: {size: {str(c): {k: stats[f"{k}_{lv}_{size}_n{c}"] for k in
                                 ("forgetting_sft", "forgetting_joint", "forgetting_drift", "persistence",
                                  "plasticity_sft", "plasticity_joint", "learned_step_sft", "learned_step_joint",
                                  "hallucination_sft", "hallucination_joint")}
                         for c in sorted(cs)} for size, cs in sizes.items()} for lv, sizes in cell_rows.items()}
    big = cfg.sizes[-1][0]
    headline = [("P, step-matched (endpoint)", endpoint),
                ("P, learning-matched", stats["P_learning_matched"]),
                ("excess SFT forgetting per doubling of count", stats["slope_count"]),
                ("excess SFT forgetting per doubling of width", stats["slope_width"]),
                ("excess SFT forgetting per doubling of facts/parameter", stats["slope_load"])]
    for size in [s for s, _ in cfg.sizes]:
        for c in cfg.counts:
            headline += [(f"forgetting {size} x{c} {arm}", stats[f"forgetting_{arm}_default_{size}_n{c}"])
                         for arm in ("sft", "joint", "drift")]
    for lv in levels[1:]:
        headline.append((f"P at consolidation {lv[1:]} ({big})", stats[f"P_{lv}"]))
    return {"hypothesis": NAME, "verdict": verdict, "share": endpoint, "endpoint": endpoint,
            "share_definition": ENDPOINT, "rule": PREREGISTERED.rule, "checks": checks, "statistics": stats,
            "per_seed": per_seed, "headline": headline,
            "series": {"grid": grid, "params": params, "facts_per_entity": facts_per_entity,
                       "counts": list(cfg.counts), "sizes": [s for s, _ in cfg.sizes], "steps": cfg.sft.max_steps}}


def _forgetting_at(result: dict, step: int) -> float:
    """A control's forgetting at ``step`` (its curve is evaluated on the same steps as every arm)."""
    from interference.hypotheses.arms import rates_at, step_matched
    return rates_at(result, step_matched(result, step))["forgetting"]
