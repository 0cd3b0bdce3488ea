"""Capacity as the paper tests it, on one pinned synthetic width: a uuid-key count sweep.

    python -m interference.run_hypothesis capacity_sweep            # the pinned d64 base
    python -m interference.run_hypothesis capacity_sweep --quick    # tiny world, for tests

Pre-registered experiment (written and committed before any run of it; issue 19, item 3):

The real-model count sweep (``hypotheses.capacity_sweep``: its grid, its endpoint and its rule)
run on the pinned synthetic base of one width (``width``: d64 by default, the width at which the
uuid arm forgot most in the decomposition), so that capacity's own test also runs where the
world's knowledge is known exactly. Per seed and count ``c`` (``counts``: new entities), the new
facts are ``c`` uuid-keyed entities of the world (``World.new_entities(c, "uuid")``: keys that
share no name piece with any pre-training entity), every relation each, ``c x 4`` facts. Three
runs of equal steps within a count:

- ``sft``: plain SFT on the new facts;
- ``joint``: the same, with 1:1 replay of the base's own pre-training corpus (the synthetic
  counterpart of the real sweep's Known-fact replay; the decomposition's replay arm uses the
  same corpus);
- ``drift``: Known-only SFT on ``c x 4`` QA facts of pre-training entities (all 1,600 of them
  when fewer; they repeat over the epochs then).

Steps: ``steps(c) = max(min_steps, ceil(epochs * c * 4 / batch))``, 10 evaluations, no early
stop. Watched: the statement-only entities' QA facts (1,600), which the base learned from
statements only; forgetting is the share of those the base answers right that are now wrong.

Endpoint, per seed (``endpoints.pooled_persistence``, as in the real sweep):

    P = sum_c (f_joint - f_drift) / sum_c (f_sft - f_drift)    at the step-matched point

95% t-interval over seeds. Predictions and rule: the real sweep's ``PREREGISTERED``, unchanged
(capacity: P >= 0.5 and the excess rising with the count; behavior_cloning and localized:
P < 0.1). The rule's required check is that the new facts are learned (plasticity >= 0.95) in
every sft and joint cell. A count too large for the width to learn in its budget therefore makes
a positive verdict ``inconclusive``. That is itself a capacity observation, and it is reported as one.

Defaults, fixed before any run: width 64, counts 25 / 100 / 400 / 1,600 entities (100 to 6,400
new facts: from a sixteenth to twice the 3,200 entity facts the base was pre-trained on), 3
seeds, 10 epochs, at least 50 steps, batch 32, lr 3e-4. The paper sweeps to 1M facts; this
sweep stops at 6,400 because the largest count alone costs 2,000 steps per arm on 2 CPU cores.
"""
from __future__ import annotations

from dataclasses import dataclass

from interference.hypotheses.capacity_sweep import PREREGISTERED as REAL_SWEEP
from interference.hypotheses.capacity_sweep import SweepConfig, SweepSource, sweep_cells, sweep_summary
from interference.hypotheses.capacity import known_facts, watched
from interference.hypotheses.prereg import Preregistration
from interference.train import SFTSpec

NAME = "capacity_sweep"
ENDPOINT = ("P = sum over counts of (f_joint - f_drift) / sum of (f_sft - f_drift) on one pinned synthetic base, "
            "forgetting of the base-known statement-only QA facts after the same number of steps within a count; "
            "f_sft: plain SFT on c uuid-keyed entities x every relation, f_joint: the same with the base's "
            "pre-training corpus replayed 1:1, f_drift: Known-only SFT on as many pre-training-entity QA facts; "
            "counts each trained the same number of epochs; mean and 95% t-interval over seeds")
PREREGISTERED = Preregistration(endpoint=ENDPOINT, predictions=REAL_SWEEP.predictions,
                                rule=REAL_SWEEP.rule, main_at=REAL_SWEEP.main_at,
                                negligible_below=REAL_SWEEP.negligible_below)
EXTENDABLE = ("counts",)  # cells are keyed per count: a run with more counts extends one with fewer


@dataclass(frozen=True)
class CountSweepConfig(SweepConfig):
    seeds: int = 3
    counts: tuple[int, ...] = (25, 100, 400, 1600)
    width: int | None = 64  # d_model of the pinned base; None: the context's own base (the quick world)
    sft: SFTSpec = SFTSpec(batch_size=32, lr=3e-4)

    @classmethod
    def quick(cls) -> "CountSweepConfig":
        return cls(seeds=2, counts=(2, 8), epochs=10, min_steps=20, n_evals=4, width=None,
                   sft=SFTSpec(batch_size=8, lr=1e-3))


def config(quick: bool = False) -> CountSweepConfig:
    return CountSweepConfig.quick() if quick else CountSweepConfig()


def source(cfg: CountSweepConfig, ctx) -> SweepSource:
    """The synthetic base of ``cfg.width`` as the sweep's one model."""
    spec = ctx.spec if cfg.width is None else ctx.spec.with_width(cfg.width)
    world = ctx.world
    return SweepSource(
        base=spec, watch=watched(world), relations=tuple(world.config.relations),
        n_params=lambda: float(sum(p.numel() for p in ctx.base(spec)[0].parameters())), corpus="pretraining",
        new_facts=lambda c, s: world.facts(world.new_entities(c, "uuid", seed=50_000 + s)),
        drift_facts=lambda n, s: known_facts(world, n, s))


def cells(cfg: CountSweepConfig, ctx):
    if len(cfg.counts) < 2 or min(cfg.counts) < 1:
        raise ValueError(f"counts {list(cfg.counts)}: the sweep needs at least two different positive counts.")
    return sweep_cells(cfg, ctx, source(cfg, ctx), kind="count-sweep")


def summarize(cfg: CountSweepConfig, results, ctx) -> dict:
    v = sweep_summary(cfg, results, source(cfg, ctx))
    return {**v, "hypothesis": NAME, "width": cfg.width,
            "series": {**v["series"], "width": cfg.width}}
