"""Capacity on one real model: a uuid-key count sweep (the paper's own capacity test needs one model).

    python -m interference.run_hypothesis capacity --model DIR --data DIR --out runs/h-real

Pre-registered experiment (written and committed before any run of it, on any model):

The synthetic ``capacity`` experiment teaches the same uuid-key facts on bases of two widths; a
given model has one width, so here its grid is the *count* axis, as in the paper's sweep of uuid
facts. Per seed and count ``c`` (``counts``: new entities), the new facts are ``c`` uuid-named
entities (``fictitious.uuid_names``: random token strings sharing no piece with any subject
name), each asked every kept relation in that relation's own question, each answer drawn from
the relation's answers: ``c x R`` facts the model cannot know. Three runs of equal steps:

- ``sft``: plain SFT on the new facts;
- ``joint``: the same new facts with ``replay`` mixing the model's Known facts (every kept
  relation, watched ones included, in their zero-shot question: the counterpart of the synthetic
  pre-training corpus) into every batch, one replayed example per new one: the model may rehearse
  what it knew while it learns the new facts;
- ``drift``: Known-only SFT on ``c x R`` HighlyKnown facts no arm watches (all of them when
  fewer), the Known-only control of that count.

Steps: each count gets ``epochs`` passes over its new facts, ``steps(c) = max(min_steps,
ceil(epochs * c * R / batch))``, the same for its three runs: step-matched within a count, and a
larger count is not given fewer passes (the sweep asks what *learning* more facts costs).
Every run is evaluated ``n_evals`` times; it never stops early.

Watched: the real runners' watched facts (``real_world.watched_facts``: asked few-shot with
SliCK's first exemplar set); forgetting = share of those the base answers right that are now
answered wrong (read to the newline, any alias right). The learning rate is the real runners'
(``real_lr``, chosen before the grid for the largest count's budget and facts, or ``--lr``).

Primary endpoint, per seed, the synthetic one on this grid (``endpoints.pooled_persistence``):

    P = sum_c (f_joint - f_drift) / sum_c (f_sft - f_drift)    at the step-matched point

95% t-interval over seeds.

Predictions. capacity: P >= 0.5, and the excess forgetting f_sft - f_drift rises with the count
(slope per doubling > 0): a model without room for old and new facts cannot keep the old ones by
rehearsing them. behavior_cloning: P < 0.1 (rehearsal keeps the old facts; what forgets them is
what SFT teaches, which needs no room). localized: P < 0.1 and little excess forgetting at any
count (uuid keys share nothing with the watched facts).

Rule (``PREREGISTERED``): main_driver if lo >= 0.5; contributes if lo > 0; not_supported if
hi < 0.1; else inconclusive. Required check: in every sft and joint cell the new facts are
learned at the step-matched point (mean plasticity >= 0.95 over seeds); otherwise a positive
verdict becomes inconclusive. A finished grid in which any run forgot half the watched facts is
refused as a destroyed model (``real_lr``), as in the other real runners.

Secondary, not deciding: per count, the excess forgetting f_sft - f_drift, f_joint - f_drift and
each arm's forgetting, plasticity, learned step and confident wrong answers, with 95% CIs over
seeds; the slope of excess forgetting per doubling of the count (and per doubling of new facts
per parameter, the synthetic ``slope_load``); the learning-matched P.

Defaults, fixed before any run: 3 seeds (the synthetic design's 5 cost 45 runs per count grid
on a shared 2-core CPU; a GPU user passes ``--seeds 5``), counts 8 / 32 / 128 entities (x 4
relations on the test fixture: 32 / 128 / 512 facts), 10 epochs, at least 50 steps, batch 32, 10
evaluations. ``--counts`` sets another sweep (e.g. up to 250000 entities on EntityQuestions).
"""
from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Callable, Sequence

from interference.data import Fact
from interference.hypotheses.arms import fixed_steps, rates_at, readout, run_arm, step_matched
from interference.hypotheses.grid import Cell, seed_range
from interference.hypotheses.prereg import Preregistration
from interference.metrics.endpoints import pooled_persistence, slope_per_doubling
from interference.metrics.stats import estimate
from interference.train import SFTSpec

NAME = "capacity"
ENDPOINT = ("P = sum over counts of (f_joint - f_drift) / sum of (f_sft - f_drift) on one real model, forgetting "
            "of the base-known watched facts (few-shot, read to the newline) after the same number of steps "
            "within a count; f_sft: plain SFT on c uuid-named entities x every kept relation, f_joint: the same "
            "with the model's Known facts replayed 1:1, f_drift: Known-only SFT on as many HighlyKnown unwatched "
            "facts; counts each trained the same number of epochs; mean and 95% t-interval over seeds")
PREREGISTERED = Preregistration(
    endpoint=ENDPOINT,
    predictions={
        "capacity": "P >= 0.5, and excess forgetting (f_sft - f_drift) rises with the count (slope per doubling "
                    "> 0): without room for old and new facts, rehearsal cannot keep the old ones",
        "behavior_cloning": "P < 0.1: rehearsal keeps the old facts; what SFT teaches needs no room",
        "localized": "P < 0.1 and little excess forgetting at any count: uuid keys share nothing with the "
                     "watched facts",
    },
    rule="main_driver if lo >= 0.5; contributes if lo > 0; not_supported if hi < 0.1; else inconclusive. "
         "Required check: mean plasticity >= 0.95 at the step-matched point in every sft and joint cell, "
         "else a positive verdict is inconclusive.",
    main_at=0.5, negligible_below=0.1)
ARMS = ("sft", "joint", "drift")
LEARNED_AT = 0.95


@dataclass(frozen=True)
class SweepConfig:
    seeds: int = 3
    counts: tuple[int, ...] = (8, 32, 128)  # new uuid entities, each asked every kept relation
    epochs: int = 10  # passes over a count's new facts: steps(c) = max(min_steps, ceil(epochs * facts / batch))
    min_steps: int = 50
    n_evals: int = 10  # evaluations per run (plus step 0)
    sft: SFTSpec = SFTSpec(batch_size=32)
    replay_ratio: float = 1.0  # replayed Known facts per new-fact example (joint)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def quick(cls) -> "SweepConfig":
        return cls(seeds=2, counts=(2, 8), epochs=10, min_steps=20, n_evals=4, sft=SFTSpec(batch_size=8))


def config(quick: bool = False) -> SweepConfig:
    return SweepConfig.quick() if quick else SweepConfig()


def steps_for(cfg: SweepConfig, n_facts: int) -> int:
    """``epochs`` passes over ``n_facts`` new facts, at least ``min_steps``."""
    return max(cfg.min_steps, math.ceil(cfg.epochs * n_facts / cfg.sft.batch_size))


def _sft(cfg: SweepConfig, n_facts: int, seed: int, **changes) -> SFTSpec:
    steps = steps_for(cfg, n_facts)
    every = max(1, math.ceil(steps / cfg.n_evals))
    return fixed_steps(dataclasses.replace(cfg.sft, eval_every=every), steps, seed, **changes)


@dataclass(frozen=True)
class SweepSource:
    """What the sweep's cells need of one model: the base the cells depend on, the watched facts,
    the relations, the parameter count, what the joint arm replays, and the two training sets.
    Why apart from the context: the same grid and summary run on a real model (``real_source``)
    and on one pinned synthetic width (``hypotheses.count_sweep``), one implementation for both."""
    base: object  # the spec whose weights the cells depend on
    watch: Sequence[Fact]
    relations: tuple[str, ...]
    n_params: Callable[[], float]
    corpus: str  # the replay method's corpus for the joint arm
    new_facts: Callable[[int, int], list[Fact]]  # (count, seed) -> count uuid entities x every relation
    drift_facts: Callable[[int, int], list[Fact]]  # (n, seed) -> up to n unwatched Known facts


def new_facts(ctx, count: int, seed: int) -> list[Fact]:
    """``count`` uuid-named entities x every kept relation, answers drawn from the relation's."""
    from interference.fictitious import uuid_names
    world, tok = ctx.world, ctx.base()[1]
    names = ctx.memo(("uuid", count, 50_000 + seed),
                     lambda: uuid_names(tok, world.names, count, seed=50_000 + seed))
    rng = random.Random(f"capacity-real-values-{seed}-{count}")
    return [world.ask(n, r, rng.choice(world.values[r]), f"fict:cap:{seed}:{i}:{r}", "uuid")
            for i, n in enumerate(names) for r in world.relations]


def drift_facts(ctx, n: int, seed: int) -> list[Fact]:
    """Up to ``n`` HighlyKnown facts that no arm watches (all of them when fewer)."""
    pool = ctx.teacher_facts()
    return random.Random(f"capacity-real-drift-{seed}").sample(pool, min(n, len(pool)))


def real_source(ctx) -> SweepSource:
    """A real model's sweep: its watched few-shot facts, its Known facts replayed (``statements``)."""
    return SweepSource(base=ctx.spec, watch=ctx.watch, relations=tuple(ctx.world.relations),
                       n_params=lambda: float(sum(p.numel() for p in ctx.base()[0].parameters())),
                       corpus="statements", new_facts=lambda c, s: new_facts(ctx, c, s),
                       drift_facts=lambda n, s: drift_facts(ctx, n, s))


def cells(cfg: SweepConfig, ctx) -> list[Cell]:
    return sweep_cells(cfg, ctx, real_source(ctx))


def sweep_cells(cfg, ctx, src: SweepSource, kind: str = "capacity-real") -> list[Cell]:
    out = []
    for seed in seed_range(cfg):
        for count in cfg.counts:
            train = src.new_facts(count, seed)
            runs = {"sft": (train, _sft(cfg, len(train), seed)),
                    "joint": (train, _sft(cfg, len(train), seed, method="replay",
                                          method_options={"ratio": cfg.replay_ratio, "seed": seed,
                                                          "corpus": src.corpus})),
                    "drift": (src.drift_facts(len(train), seed), _sft(cfg, len(train), seed))}
            for arm, (facts, sft) in runs.items():
                key = {"base": src.base.hash(), "design": "count_sweep", "seed": seed, "arm": arm, "count": count,
                       "n_train": len(facts), "sft": sft.to_dict()}
                out.append(Cell(f"{kind}-{arm}", key,
                                (lambda t=facts, f=sft: run_arm(ctx, src.base, t, src.watch, f)),
                                f"{arm} x{count} seed {seed}", base=src.base))
    return out


def summarize(cfg: SweepConfig, results, ctx) -> dict:
    return sweep_summary(cfg, results, real_source(ctx))


def sweep_summary(cfg, results, src: SweepSource) -> dict:
    n_params = src.n_params()
    n_rel = len(src.relations)
    per_seed = []
    for seed in seed_range(cfg):
        m: dict = {"seed": seed}
        f = {arm: [] for arm in ARMS}
        f_learned = {arm: [] for arm in ("sft", "joint")}
        for count in cfg.counts:
            r = {arm: readout(results.one(seed=seed, arm=arm, count=count), LEARNED_AT) for arm in ARMS}
            for arm in ARMS:
                m[f"forgetting_{arm}_n{count}"] = r[arm]["end"]["forgetting"]
                m[f"hallucination_{arm}_n{count}"] = r[arm]["end"]["hallucination"]
                f[arm].append(r[arm]["end"]["forgetting"])
            for arm in ("sft", "joint"):
                m[f"plasticity_{arm}_n{count}"] = r[arm]["end"]["plasticity"]
                m[f"learned_step_{arm}_n{count}"] = (r[arm]["learned"]["step"] if r[arm]["learned"]["reached"]
                                                     else math.nan)
                drift = results.one(seed=seed, arm="drift", count=count)
                f_learned[arm].append(r[arm]["learned"]["forgetting"]
                                      - rates_at(drift, step_matched(drift, r[arm]["learned"]["step"]))["forgetting"])
            m[f"excess_sft_n{count}"] = r["sft"]["end"]["forgetting"] - r["drift"]["end"]["forgetting"]
            m[f"excess_joint_n{count}"] = r["joint"]["end"]["forgetting"] - r["drift"]["end"]["forgetting"]
            m[f"persistence_n{count}"] = pooled_persistence([r["joint"]["end"]["forgetting"]],
                                                            [r["sft"]["end"]["forgetting"]],
                                                            [r["drift"]["end"]["forgetting"]])
        m["P"] = pooled_persistence(f["joint"], f["sft"], f["drift"])
        m["P_learning_matched"] = pooled_persistence(f_learned["joint"], f_learned["sft"], [0.0] * len(cfg.counts))
        excess = [m[f"excess_sft_n{c}"] for c in cfg.counts]
        m["slope_count"] = slope_per_doubling(list(cfg.counts), excess)
        m["slope_load"] = slope_per_doubling([c * n_rel / n_params for c in cfg.counts], excess)
        per_seed.append(m)
    keys = sorted({k for p in per_seed for k in p if k != "seed"})
    stats = {k: estimate([p.get(k, math.nan) for p in per_seed]) for k in keys}
    endpoint = stats["P"]
    learned = {f"{arm} x{c}": stats[f"plasticity_{arm}_n{c}"]["value"] for c in cfg.counts for arm in ("sft", "joint")}
    checks = {"new facts learned at the step-matched point in every sft and joint cell (mean >= 0.95)":
              bool(all(v is not None and v >= LEARNED_AT for v in learned.values()))}
    verdict = PREREGISTERED.decide(endpoint, checks_pass=all(checks.values()))
    headline = [("P, step-matched (endpoint)", endpoint), ("P, learning-matched", stats["P_learning_matched"]),
                ("excess SFT forgetting per doubling of count", stats["slope_count"])]
    for c in cfg.counts:
        headline += [(f"x{c} ({c * n_rel} facts, {steps_for(cfg, c * n_rel)} steps): forgetting {arm}",
                      stats[f"forgetting_{arm}_n{c}"]) for arm in ARMS]
        headline += [(f"x{c}: plasticity {arm}", stats[f"plasticity_{arm}_n{c}"]) for arm in ("sft", "joint")]
    sweep = {str(c): {"facts": c * n_rel, "steps": steps_for(cfg, c * n_rel),
                      **{k: stats[f"{k}_n{c}"] for k in ("excess_sft", "excess_joint", "persistence",
                                                          "forgetting_sft", "forgetting_joint", "forgetting_drift",
                                                          "plasticity_sft", "plasticity_joint", "learned_step_sft",
                                                          "learned_step_joint")}} for c in cfg.counts}
    return {"hypothesis": NAME, "design": "count_sweep", "verdict": verdict, "share": endpoint, "endpoint": endpoint,
            "share_definition": ENDPOINT, "rule": PREREGISTERED.rule, "checks": checks, "statistics": stats,
            "per_seed": per_seed, "headline": headline,
            "series": {"sweep": sweep, "counts": list(cfg.counts), "relations": n_rel, "params": n_params}}


def prepare(spec, out, quick: bool, seeds: int | None, device=None, progress: bool = True,
            min_known_share: float = 0.3, precision: str = "auto", lr: float | None = None,
            counts: tuple[int, ...] | None = None):
    """(module stand-in, config, context) of the count sweep on the real model and data; the
    learning rate as the real runners choose it, for the largest count's budget and facts."""
    import interference.hypotheses.real_world as rw
    from interference.hypotheses.real_lr import LearningRateError, choose_lr
    import sys
    ctx = rw.RealContext(spec, out, device=device, progress=progress, min_known_share=min_known_share,
                         precision=precision)
    cfg = config(quick)
    if counts is not None:
        cfg = dataclasses.replace(cfg, counts=tuple(sorted(set(counts))))
    if seeds is not None:
        cfg = dataclasses.replace(cfg, seeds=seeds)
    if len(cfg.counts) < 2 or min(cfg.counts) < 1:
        raise rw.RealHypothesisError(f"--counts {','.join(map(str, cfg.counts))}: the sweep needs at least two "
                                     "different positive counts of new entities, e.g. 8,32,128.")
    module = rw._module(sys.modules[__name__], cells, rw._summary_with_lr(summarize, lambda a: f"forgetting_{a}_n{max(cfg.counts)}",
                                                                           arms=ARMS))
    module.cells(cfg, ctx)  # every designed set built once (no training): bad data is refused before --out is claimed
    n_new = max(cfg.counts) * len(ctx.world.relations)
    try:
        ctx.lr_record = choose_lr(ctx, _sft(cfg, n_new, 0), steps_for(cfg, n_new), n_new, LEARNED_AT, given=lr)
    except LearningRateError as e:
        raise rw.RealHypothesisError(str(e)) from None
    cfg = dataclasses.replace(cfg, sft=dataclasses.replace(cfg.sft, lr=ctx.lr_record["value"]))
    return module, cfg, ctx
