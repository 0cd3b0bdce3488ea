"""Behavior cloning's share, with an "I don't know" arm that cannot tell its Known half from the watched facts.

Pre-registered experiment (written and committed before any run of it). Why it exists: in the
decomposition the ``idk_known`` arm mixed its "I don't know" questions with QA of *pre-trained QA*
entities, while the watched facts are *statement-only* entities; the model could learn "abstain
unless this entity's QA was trained" and abstained on about half of the known watched facts, so
B counted abstentions as damage and decided nothing. Here the Known half is QA of held-back
statement-only entities: the same kind of entity as the watched ones, which the model cannot
tell apart by how it met them in pre-training.

Statement-only entities are split once, by a fixed seeded draw (the same for every seed and
width): half *held back* (their QA is the Known half of the training sets and the drift set),
half *watched* (their facts are F's facts). Per width and seed, each for ``steps`` updates, never
stopped early:

- ``sem``: plain SFT on the decomposition's natural set (``count`` new semantic-name entities on
  every relation; the same facts as decomposition's ``sem`` for that seed);
- ``drift``: Known-only SFT on as many held-back QA facts;
- ``sem_known``: the natural set mixed 1:1 with held-back QA;
- ``idk_known``: the same, the new facts relabelled "I don't know".

F[arm] = share of the watched facts the base answered right that are now wrong (the one
forgetting function), at the step-matched point (the end).

Primary endpoint, per width: B = (F[sem_known] - F[idk_known]) / E, E = F[sem] - F[drift]: the
share of SFT's excess forgetting that *answering* the Unknown questions (not asking them) causes;
ratio of seed means with the linearised 95% t-interval (``metrics.stats.ratio_estimate``), as the
decomposition's shares, in the same unit.

Predictions. behavior_cloning: B >= 0.5 (the damage is learning to answer Unknown questions).
capacity: B >= 0.5 (idk labels store no new facts, so they take no room). localized: B < 0.5 (an
idk label on a look-alike question still moves the shared representation, so the idk arm forgets
too).

Rule, per width (the decomposition's, for this one share): main_driver if lo >= 0.5; contributes
if lo > 0; not_supported if hi < 0.1; else inconclusive. Required checks: E's interval above 0;
mean plasticity >= 0.95 at the end in sem, sem_known and idk_known; and the check the earlier arm
failed: the idk arm abstains on at most 10% of the base-known watched facts (mean over seeds);
else a positive word becomes inconclusive.

Secondary, not deciding: B at equal learning (each arm where it learned its facts, drift at that
step); B in confident-wrong-answer units (H instead of F); every arm's F, H and abstention.
"""
from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass

from interference.hypotheses.arms import fixed_steps, rates_at, readout, run_arm, step_matched
from interference.hypotheses.grid import Cell
from interference.hypotheses.prereg import Preregistration
from interference.metrics.stats import estimate, ratio_estimate
from interference.train import SFTSpec

NAME = "bc_contrast"
ENDPOINT = ("per width (d64, d128), B = (F[sem_known] - F[idk_known]) / (F[sem] - F[drift]): F = share of the "
            "watched half of the statement-only facts the base answered right that are wrong after the same steps; "
            "the Known half of both mixed arms and the drift set is QA of the held-back statement-only entities; "
            "ratio of seed means, 95% t-interval of the linearised ratio")
PREREGISTERED = Preregistration(
    endpoint=ENDPOINT,
    predictions={
        "behavior_cloning": "B >= 0.5: the damage is learning to answer Unknown questions",
        "capacity": "B >= 0.5: idk labels store no new facts, so they take no room",
        "localized": "B < 0.5: an idk label on a look-alike question still moves the shared representation",
    },
    rule="per width: main_driver if lo >= 0.5; contributes if lo > 0; not_supported if hi < 0.1; else "
         "inconclusive. Required checks: the CI of E above 0; mean plasticity >= 0.95 at the end in sem, sem_known "
         "and idk_known; the idk arm abstains on at most 10% of the base-known watched facts (mean over seeds); "
         "else a positive word is inconclusive.",
    main_at=0.5, negligible_below=0.1)
ARMS = ("sem", "drift", "sem_known", "idk_known")
LEARNED_ARMS = ("sem", "sem_known", "idk_known")
LEARNED_AT = 0.95
MAX_IDK_ABSTENTION = 0.10
EXTENDABLE = ("widths",)


@dataclass(frozen=True)
class BCContrastConfig:
    seeds: int = 5
    widths: tuple[int, ...] = (64, 128)
    count: int = 100  # the decomposition's natural set: 100 new entities x 4 relations
    sft: SFTSpec = SFTSpec(max_steps=300, eval_every=50)  # the decomposition's steps and recipe

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def quick(cls) -> "BCContrastConfig":
        return cls(seeds=2, widths=(32,), count=8, sft=SFTSpec(max_steps=60, batch_size=16, eval_every=20, lr=1e-3))


def config(quick: bool = False) -> BCContrastConfig:
    return BCContrastConfig.quick() if quick else BCContrastConfig()


def split_statement_only(world) -> tuple[list, list]:
    """(held-back entities, watched entities): one fixed draw, half each."""
    ents = list(world.split("statement_only"))
    held = set(random.Random("bc-contrast-held-back").sample(range(len(ents)), len(ents) // 2))
    return [e for i, e in enumerate(ents) if i in held], [e for i, e in enumerate(ents) if i not in held]


def watched_half(world) -> list:
    return world.facts(split_statement_only(world)[1])


def arm_facts(world, cfg: BCContrastConfig, arm: str, seed: int, known_per_new: int = 1) -> list:
    """An arm's training set. ``known_per_new``: Known facts after each new one in the mixed arms
    (the design's 1:1; larger in the Known-share pilot, docs/bc_mix_pilot.md, where the held-back
    sample repeats once it is used up)."""
    from interference.hypotheses.decomposition import mixed_with_known
    from interference.sft_data import relabel_idk
    sem = world.facts(world.new_entities(cfg.count, "semantic", seed=40_000 + seed))  # decomposition's sem
    if arm == "sem":
        return sem
    pool = world.facts(split_statement_only(world)[0])
    n = known_per_new * len(sem)
    known = random.Random(f"bc-known-{seed}").sample(pool, min(n, len(pool)))
    known = (known * (n // len(known) + 1))[:n] if n > len(known) else known
    if arm == "drift":
        return known
    return mixed_with_known(relabel_idk(sem) if arm == "idk_known" else sem, known, known_per_new)


def cells(cfg: BCContrastConfig, ctx) -> list[Cell]:
    watch = watched_half(ctx.world)
    out = []
    for seed in range(cfg.seeds):
        for width in cfg.widths:
            spec = ctx.spec.with_width(width)
            for arm in ARMS:
                train = arm_facts(ctx.world, cfg, arm, seed)
                sft = fixed_steps(cfg.sft, cfg.sft.max_steps, seed)
                key = {"base": spec.hash(), "width": width, "seed": seed, "arm": arm, "count": cfg.count,
                       "n_train": len(train), "sft": sft.to_dict()}
                out.append(Cell(f"bcc-{arm}", key, (lambda s=spec, t=train, f=sft: run_arm(ctx, s, t, watch, f)),
                                f"d{width} {arm} seed {seed}", base=spec))
    return out


def seed_reads(results, width: int, seed: int) -> dict:
    got = {a: results.one(width=width, seed=seed, arm=a) for a in ARMS}
    r = {a: readout(got[a], LEARNED_AT) for a in ARMS}
    m = {}
    for a in ARMS:
        m[f"F_{a}"], m[f"H_{a}"] = r[a]["end"]["forgetting"], r[a]["end"]["hallucination"]
        m[f"abstain_{a}"], m[f"plasticity_{a}"] = r[a]["end"]["abstention"], r[a]["end"]["plasticity"]
        if a != "drift":
            step = r[a]["learned"]["step"]
            m[f"Fx_learned_{a}"] = r[a]["learned"]["forgetting"] - rates_at(got["drift"], step_matched(got["drift"], step))["forgetting"]
    return m


def shares(rows: list[dict]) -> dict:
    """B, its excess and its secondary reads from per-seed rows (pure)."""
    col = lambda k: [r.get(k, math.nan) for r in rows]  # noqa: E731
    diff = lambda a, b: [x - y for x, y in zip(col(a), col(b))]  # noqa: E731
    E = diff("F_sem", "F_drift")
    El = col("Fx_learned_sem")
    return {"E": estimate(E), "B": ratio_estimate(diff("F_sem_known", "F_idk_known"), E),
            "E_learned": estimate(El),
            "B_learned": ratio_estimate([a - b for a, b in zip(col("Fx_learned_sem_known"), col("Fx_learned_idk_known"))], El),
            "B_hallucination": ratio_estimate(diff("H_sem_known", "H_idk_known"), diff("H_sem", "H_drift")),
            "abstain_idk_known": estimate(col("abstain_idk_known"))}


def checks_of(sh: dict, rows: list[dict]) -> dict:
    learned = {a: estimate([r[f"plasticity_{a}"] for r in rows])["value"] for a in LEARNED_ARMS}
    ab = sh["abstain_idk_known"]["value"]
    return {"excess": bool(sh["E"]["low"] is not None and math.isfinite(sh["E"]["low"]) and sh["E"]["low"] > 0),
            "learned": all(v is not None and v >= LEARNED_AT for v in learned.values()),
            "idk arm abstains on <= 10% of the known watched facts": bool(ab is not None and math.isfinite(ab)
                                                                          and ab <= MAX_IDK_ABSTENTION)}


def summarize(cfg: BCContrastConfig, results, ctx) -> dict:
    per_seed = []
    for seed in range(cfg.seeds):
        m = {"seed": seed}
        for w in cfg.widths:
            m.update({f"{k}_d{w}": v for k, v in seed_reads(results, w, seed).items()})
        per_seed.append(m)
    stats = {k: estimate([p.get(k, math.nan) for p in per_seed]) for k in sorted({k for p in per_seed for k in p} - {"seed"})}
    by_width, words, checks = {}, {}, {}
    for w in cfg.widths:
        rows = [{k[: -len(f"_d{w}")]: v for k, v in p.items() if k.endswith(f"_d{w}")} for p in per_seed]
        sh = shares(rows)
        ck = checks_of(sh, rows)
        by_width[str(w)] = sh
        words[str(w)] = {"step_matched": PREREGISTERED.decide(sh["B"], checks_pass=all(ck.values())),
                         "learning_matched": PREREGISTERED.decide(sh["B_learned"], checks_pass=all(ck.values()))}
        checks.update({f"d{w} {k}": v for k, v in ck.items()})
    main = str(128 if 128 in cfg.widths else cfg.widths[-1])
    headline = []
    for w in cfg.widths:
        sh = by_width[str(w)]
        headline += [(f"d{w} E = F[sem] - F[drift]", sh["E"]), (f"d{w} B ({words[str(w)]['step_matched']})", sh["B"]),
                     (f"d{w} B, learning-matched ({words[str(w)]['learning_matched']})", sh["B_learned"]),
                     (f"d{w} B in confident-wrong-answer units", sh["B_hallucination"]),
                     (f"d{w} idk arm's abstention on known watched facts", sh["abstain_idk_known"])]
    return {"hypothesis": NAME, "verdict": words[main]["step_matched"], "share": by_width[main]["B"],
            "endpoint": by_width[main]["B"], "words": words, "share_definition": ENDPOINT,
            "rule": PREREGISTERED.rule, "checks": checks, "statistics": stats, "per_seed": per_seed,
            "headline": headline, "series": {"widths": list(cfg.widths), "by_width": by_width, "arms": list(ARMS),
                                             "steps": cfg.sft.max_steps}}
