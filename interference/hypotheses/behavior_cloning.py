"""Behavior cloning: does SFT on Unknown facts teach the model to answer without knowing?

Pre-registered experiment (written and committed before any run of it):

Watched facts: the statement-only (pre-existing) facts of the ``watched_relations`` (born_in,
lives_in: city values) that the base answers right. Every arm trains on facts that share no
name piece, no relation and no value with them: the ``new_relations`` (works_as, speaks: job and
language values) of entities with ``disjoint`` names (pieces that pre-training shows only in
never-watched entities). The only tokens in common are the QA format's. Arms, per seed, all for
the same ``steps`` updates (step-matched, never stopped early; also read where each learned):

- ``unknown``: ``count`` new disjoint-named entities, taught their (Unknown) answers;
- ``unknown_small``: ``small_count`` of them (the count-scaling arm);
- ``known``: as many Known facts, the QA of pre-trained disjoint-named entities on the same new
  relations (their answers the base already gives): a Known-only SFT run of equal steps;
- ``idk``: the ``unknown`` arm's questions answered "I don't know" (``sft_data.relabel_idk``;
  evaluation counts that answer as an abstention);
- ``reference``: ordinary Unknown SFT, ``count`` new ``semantic`` entities on the watched
  relations (sharing pieces, relations and values with the watched facts), equal steps.

A confident wrong answer (``hallucination``) = a watched fact the base got right, now answered
wrongly with greedy probability >= 0.5 and not "I don't know". H[arm] = their share.

Primary endpoint, per seed, at the step-matched point:

    S = (H[unknown] - H[known]) / (H[reference] - H[known])

the share of ordinary Unknown SFT's rise in confident wrong answers that Unknown facts sharing
nothing with the watched ones cause too. 95% t-interval over seeds.

Predictions. behavior_cloning: S >= 0.5, learning to answer Unknown questions teaches answering
without knowing whatever the facts are about, and relabelling them "I don't know" removes the
rise (H[idk] ~ H[known]). localized: S < 0.1, damage needs overlap, and these facts overlap
nothing. capacity: S > 0 with a rise that grows with the count (H[unknown] > H[unknown_small]);
the idk and known arms store no new facts, so neither rises (the idk arm therefore separates
behavior cloning from localized, the count arm capacity from behavior cloning).

Rule (``PREREGISTERED``): main_driver if lo >= 0.5; contributes if lo > 0; not_supported if
hi < 0.1; else inconclusive. Required check: the idk relabelling lowers the rise (the 95% CI of
H[unknown] - H[idk] lies above 0) and the unknown and reference arms learned their facts (mean
plasticity >= 0.95 at the step-matched point); otherwise a positive verdict becomes inconclusive.

Secondary, not deciding: the rise R = H[unknown] - H[known] and its forgetting (any wrong answer)
version; H[idk] - H[known]; count scaling H[unknown] - H[unknown_small]; abstentions on watched
facts in the idk arm; confident answers to never-seen entities' questions on the new relations
(the cloned behaviour itself) per arm; every arm's learning step; the learning-matched S.
``consolidations`` repeats the experiment on bases at other consolidation levels (reported per
level; the verdict is the default base's).

Dropped from the first version: the linear decodability probe of forgotten answers. It could not
decide anything: at the middle layer even retained facts read only 0.21, and at the last layer a
probe trained on retained facts copies the model's own read-out. And the first version's
endpoint (uuid / semantic forgetting) was one ratio shared with the other two hypotheses.
"""
from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass

from interference.hypotheses.arms import fixed_steps, rates_at, readout, run_arm, step_matched
from interference.hypotheses.grid import Cell
from interference.hypotheses.prereg import Preregistration
from interference.train import SFTSpec
from interference.metrics.stats import estimate
from interference.metrics.endpoints import share_of_reference

NAME = "behavior_cloning"
ENDPOINT = ("S = (H[unknown] - H[known]) / (H[reference] - H[known]), H = share of base-known watched facts "
            "(statement-only, watched relations) answered wrong with confidence >= 0.5 after the same number of "
            "steps; unknown: new disjoint-named entities on relations and values the watched facts do not use; "
            "known: Known facts of the same form; reference: new semantic entities on the watched relations; "
            "mean and 95% t-interval over seeds")
PREREGISTERED = Preregistration(
    endpoint=ENDPOINT,
    predictions={
        "behavior_cloning": "S >= 0.5, and the 'I don't know' relabelling removes the rise (H[idk] ~ H[known])",
        "localized": "S < 0.1: facts that overlap nothing are not damaged",
        "capacity": "S > 0, with a rise that grows with the count (H[unknown] > H[unknown_small]); neither the "
                    "idk nor the known arm stores new facts, so neither rises",
    },
    rule="main_driver if lo >= 0.5; contributes if lo > 0; not_supported if hi < 0.1; else inconclusive. "
         "Required checks: the 95% CI of H[unknown] - H[idk] lies above 0, and the unknown and reference arms "
         "learned their facts (mean plasticity >= 0.95 at the end); else a positive verdict is inconclusive.",
    main_at=0.5, negligible_below=0.1)
ARMS = ("unknown", "unknown_small", "known", "idk", "reference")
LEARNED_AT = 0.95


class BehaviorCloningConfigError(ValueError):
    """Relations that cannot give facts disjoint from the watched ones."""


@dataclass(frozen=True)
class BehaviorCloningConfig:
    seeds: int = 5
    count: int = 100  # new entities x 2 new relations = 200 facts; the known arm needs <= n_disjoint_pretrain
    small_count: int = 25
    watched_relations: tuple[str, ...] = ("born_in", "lives_in")  # city values
    new_relations: tuple[str, ...] = ("works_as", "speaks")  # job and language values
    sft: SFTSpec = SFTSpec(max_steps=250, eval_every=25)  # 200-400 facts learned in ~75-300 steps at lr 3e-4
    consolidations: tuple[float, ...] = ()
    # width of the base (None: the default model's). The default-world verdict uses the default
    # d128 base; if that base is not ready in time on the shared CPU, d64 (decided before any run)
    d_model: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def quick(cls) -> "BehaviorCloningConfig":
        return cls(seeds=2, count=12, small_count=4, watched_relations=("born_in",),
                   new_relations=("works_as", "speaks"),
                   sft=SFTSpec(max_steps=60, batch_size=16, eval_every=20, lr=1e-3))


def config(quick: bool = False) -> BehaviorCloningConfig:
    return BehaviorCloningConfig.quick() if quick else BehaviorCloningConfig()


def check_relations(cfg: BehaviorCloningConfig, world) -> None:
    """The new relations must exist and use no value kind a watched relation uses."""
    from interference.world import RELATIONS
    have = set(world.config.relations)
    missing = [r for r in cfg.watched_relations + cfg.new_relations if r not in have]
    if missing:
        raise BehaviorCloningConfigError(f"relations {missing} are not in this world ({sorted(have)}); pick "
                                         "watched_relations and new_relations from its relations.")
    shared = {RELATIONS[r][0] for r in cfg.watched_relations} & {RELATIONS[r][0] for r in cfg.new_relations}
    if shared or set(cfg.watched_relations) & set(cfg.new_relations):
        raise BehaviorCloningConfigError(f"watched and new relations share a relation or value kind ({sorted(shared)});"
                                         " choose new relations whose values the watched facts never use.")
    n_known = sum(e.key_style == "disjoint" for e in world.split("pretrain_qa"))
    if n_known < cfg.count:
        raise BehaviorCloningConfigError(f"the known arm needs {cfg.count} pre-trained disjoint-named entities but the "
                                         f"world has {n_known}; lower count or raise n_disjoint_pretrain.")


def _rel(facts, relations):
    return [f for f in facts if f.relation in relations]


def watched(world, cfg):
    return _rel(world.facts(world.split("statement_only")), cfg.watched_relations)


def never_seen(world, cfg):
    """Questions about never-seen entities on the new relations: does the model answer them?"""
    return _rel(world.facts(world.split("unseen")[:50]), cfg.new_relations)


def arm_facts(world, cfg, arm: str, seed: int):
    from interference.sft_data import relabel_idk
    if arm in ("unknown", "idk", "unknown_small"):
        n = cfg.small_count if arm == "unknown_small" else cfg.count
        facts = _rel(world.facts(world.new_entities(cfg.count, "disjoint", seed=30_000 + seed)[:n]), cfg.new_relations)
        return relabel_idk(facts) if arm == "idk" else facts
    if arm == "known":
        pool = [e for e in world.split("pretrain_qa") if e.key_style == "disjoint"]
        return _rel(world.facts(random.Random(f"bc-known-{seed}").sample(pool, cfg.count)), cfg.new_relations)
    if arm == "reference":
        return _rel(world.facts(world.new_entities(cfg.count, "semantic", seed=30_000 + seed)), cfg.watched_relations)
    raise ValueError(f"unknown arm {arm!r}")


def _levels(cfg, ctx):
    from interference.hypotheses.capacity import size_spec
    spec = ctx.spec if cfg.d_model is None else size_spec(ctx.spec, cfg.d_model)
    default_c = spec.pretrain.consolidation
    return [("default", spec)] + [(f"c{c:g}", spec.with_consolidation(c)) for c in cfg.consolidations if c != default_c]


def cells(cfg: BehaviorCloningConfig, ctx) -> list[Cell]:
    world = ctx.world
    check_relations(cfg, world)
    out = []
    for seed in range(cfg.seeds):
        for level, spec in _levels(cfg, ctx):
            for arm in ARMS:
                train = arm_facts(world, cfg, arm, seed)
                sft = fixed_steps(cfg.sft, cfg.sft.max_steps, seed)
                key = {"base": spec.hash(), "level": level, "seed": seed, "arm": arm, "n_train": len(train),
                       "sft": sft.to_dict(), "watched": list(cfg.watched_relations), "new": list(cfg.new_relations)}
                out.append(Cell(f"bc-{arm}", key,
                                (lambda s=spec, t=train, f=sft: run_arm(ctx, s, t, watched(world, cfg), f,
                                                                        extra={"never_seen": never_seen(world, cfg)})),
                                f"{level} {arm} seed {seed}", base=spec))
    return out


def _confident_share(result: dict, row: dict) -> float:
    """Share of never-seen questions answered with a confident (wrong) answer, not abstaining."""
    codes = row["never_seen"]
    return sum(c == "h" for c in codes) / len(codes) if codes else math.nan


def summarize(cfg: BehaviorCloningConfig, results, ctx) -> dict:
    per_seed = []
    levels = [lv for lv, _ in _levels(cfg, ctx)]
    for seed in range(cfg.seeds):
        m = {"seed": seed}
        for level in levels:
            sfx = "" if level == "default" else f"_{level}"
            got = {arm: results.one(level=level, seed=seed, arm=arm) for arm in ARMS}
            r = {arm: readout(res, LEARNED_AT) for arm, res in got.items()}
            H = {arm: r[arm]["end"]["hallucination"] for arm in ARMS}
            F = {arm: r[arm]["end"]["forgetting"] for arm in ARMS}
            m["S" + sfx] = share_of_reference(H["unknown"], H["known"], H["reference"])
            # learning-matched: each Unknown arm read where it learned, the known arm at the same step
            lu, lref = r["unknown"]["learned"], r["reference"]["learned"]
            hk = lambda step: rates_at(got["known"], step_matched(got["known"], step))["hallucination"]  # noqa: E731
            m["S_learning_matched" + sfx] = (lu["hallucination"] - hk(lu["step"])) / (
                lref["hallucination"] - hk(lref["step"])) if lref["hallucination"] - hk(lref["step"]) > 0 else math.nan
            m["rise" + sfx] = H["unknown"] - H["known"]
            m["rise_forgetting" + sfx] = F["unknown"] - F["known"]
            m["rise_idk" + sfx] = H["idk"] - H["known"]
            m["idk_lowering" + sfx] = H["unknown"] - H["idk"]
            m["count_scaling" + sfx] = H["unknown"] - H["unknown_small"]
            m["reference_rise" + sfx] = H["reference"] - H["known"]
            m["abstention_idk" + sfx] = r["idk"]["end"]["abstention"]
            for arm in ARMS:
                m[f"hallucination_{arm}{sfx}"] = H[arm]
                m[f"forgetting_{arm}{sfx}"] = F[arm]
                m[f"plasticity_{arm}{sfx}"] = r[arm]["end"]["plasticity"]
                m[f"learned_step_{arm}{sfx}"] = r[arm]["learned"]["step"] if r[arm]["learned"]["reached"] else math.nan
                m[f"never_seen_confident_{arm}{sfx}"] = _confident_share(got[arm], step_matched(got[arm]))
            m["never_seen_confident_base" + sfx] = _confident_share(got["known"], got["known"]["curve"][0])
        per_seed.append(m)
    keys = sorted({k for p in per_seed for k in p if k != "seed"})
    stats = {k: estimate([p.get(k, math.nan) for p in per_seed]) for k in keys}
    endpoint = stats["S"]
    low = stats["idk_lowering"]["low"]
    checks = {"'I don't know' relabelling lowers the rise (CI of H[unknown] - H[idk] above 0)":
              bool(low is not None and math.isfinite(low) and low > 0),
              "unknown and reference arms learned their facts (mean plasticity >= 0.95)":
              bool(all((stats[f"plasticity_{a}"]["value"] or 0) >= LEARNED_AT for a in ("unknown", "reference")))}
    verdict = PREREGISTERED.decide(endpoint, checks_pass=all(checks.values()))
    headline = [("S, step-matched (endpoint)", endpoint), ("S, learning-matched", stats["S_learning_matched"]),
                ("rise H[unknown] - H[known]", stats["rise"]),
                ("rise, any wrong answer", stats["rise_forgetting"]),
                ("reference rise H[reference] - H[known]", stats["reference_rise"]),
                ("H[idk] - H[known]", stats["rise_idk"]), ("H[unknown] - H[idk]", stats["idk_lowering"]),
                (f"count scaling H[x{cfg.count}] - H[x{cfg.small_count}]", stats["count_scaling"]),
                ("abstentions on watched facts, idk arm", stats["abstention_idk"])]
    headline += [(f"never-seen questions answered confidently: {a}", stats[f"never_seen_confident_{a}"])
                 for a in ("unknown", "idk", "known")]
    headline += [(f"S at consolidation {lv[1:]}", stats[f"S_{lv}"]) for lv in levels[1:]]
    return {"hypothesis": NAME, "verdict": verdict, "share": endpoint, "endpoint": endpoint,
            "share_definition": ENDPOINT, "rule": PREREGISTERED.rule, "checks": checks, "statistics": stats,
            "per_seed": per_seed, "headline": headline,
            "series": {"arms": list(ARMS), "levels": levels, "steps": cfg.sft.max_steps}}
