"""Aimed replay: does rehearsing the facts the forecast puts at risk undo SFT's excess forgetting?

Pre-registered experiment (written and committed before any run of it; ``PREREGISTERED`` below
is the text ``verdict.json`` records, hashed into every cell key). It is the "fix aimed by the
forecast" of the culprits issue, and a second per-fact test of localized interference: if SFT's
forgetting falls on facts the forecast can name from the base and the SFT set (the ones whose
representations the new facts overwrite), rehearsing *those* facts must save much more of it than
rehearsing as many facts chosen without the forecast: at random, or by the trivial baseline (the
facts the base knows least firmly, lowest gold log-prob).

Per seed, the plan of ``culprits.plan`` on one base (the same SFT set of 400 facts, 50% Unknown,
the same 1,200 watched facts, the same forecast risk), and a replay budget n = b x the SFT set
for each b in ``budgets``. Three orderings of the watched facts, each nested across budgets (the
2.5% list is the head of the 5% list):

- *targeted*: by forecast risk, highest first;
- *random*: a seeded permutation;
- *fragile*: by base gold log-prob, lowest first (5% only: the trivial baseline).

Arms (one in-memory run each, all for the same ``sft.max_steps`` updates, never stopped early):

===========================  ====================================================================
arm                          training set / method
===========================  ====================================================================
full                         the SFT set, plain SFT
drift                        the SFT set's Known facts only (what fine-tuning costs without new facts)
self_distill                 the SFT set, cross-entropy + KL to the base's format teacher
replay_targeted_<b>          the SFT set + the first n targeted watched facts as QA examples
replay_random_<b>            the SFT set + the first n random watched facts
replay_fragile_0.05          the SFT set + the n = 5% most fragile watched facts
===========================  ====================================================================

Read-out at equal learning: each arm at the first evaluation where it answers ``learned_at`` of
the new (Unknown) facts it trains on; ``drift`` (no new facts) at the step where ``full``
learned. Step-matched (last step) reported too. F(arm) = forgetting rate of the watched facts the
base knew (``metrics.forgetting``, the one forgetting function).

Recovery of an arm: the share of SFT's excess forgetting it removes,
Rec(arm) = mean_s(F_full - F_arm) / mean_s(F_full - F_drift), a ratio of seed means with the
linearised t-interval (``metrics.stats.ratio_estimate``, as the decomposition's shares).

Primary endpoint: D = mean_s(F_fragile5 - F_targeted5) / mean_s(F_full - F_drift) = Rec(targeted,
5%) - Rec(fragile, 5%): the share of SFT's excess forgetting that aiming a 5% replay by the
forecast saves beyond aiming it at the facts the base knows least firmly.

Predictions. localized: D >= 0.25: forgetting falls on the specific facts the new ones overlap,
which the forecast names and base confidence does not. capacity: D ~ 0 (hi < 0.05): forgetting
goes to the facts stored least firmly, so rehearsing the most fragile facts saves as much as
rehearsing the forecast's. behavior_cloning: D ~ 0: forgetting comes from learning to answer
Unknown questions at all and falls on facts regardless of their overlap with the new ones.

Rule: main_driver if lo >= 0.25; contributes if lo > 0; not_supported if hi < 0.05; else
inconclusive. Required check: full and every replay arm reached ``learned_at`` in every seed (a
replay that stops SFT from learning is no fix); else a positive verdict is inconclusive. The
issue's goal (reported beside the word, not deciding it): Rec(targeted, 5%) >= 0.5 and >=
2 x Rec(random, 5%), with the new facts learned.

Secondary, not deciding: Rec per arm and budget (retention against budget, targeted vs random);
Rec of self-distillation; Rec counted on the facts no arm replayed (what rehearsal saves beyond
the rehearsed facts themselves); each arm's learning step; the one-off cost of aiming (forecast +
culprits, seconds per seed) and each arm's wall seconds per step on this machine; the curation
route's cost in new facts (the culprits arm of ``culprits`` drops, at most 5% of the set, how many
new facts: counted from the plan, no training).
"""
from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field

import numpy as np

import interference.hypotheses.culprits as C
from interference.hypotheses.arms import fixed_steps
from interference.hypotheses.grid import Cell
from interference.hypotheses.prereg import Preregistration
from interference.metrics.stats import estimate, ratio_estimate
from interference.sft_data import SFTDataConfig
from interference.train import SFTSpec

NAME = "aimed_replay"
ENDPOINT = ("D = mean_s(F_fragile5 - F_targeted5) / mean_s(F_full - F_drift): the share of SFT's excess forgetting "
            "(plain SFT minus Known-only drift, watched facts the base knew) that replaying the 5%-of-the-set most "
            "at-risk facts by the forecast removes beyond replaying as many of the facts the base knows least firmly "
            "(lowest gold log-prob); each run read where it learned its new facts; ratio of seed means with a "
            "linearised 95% t-interval")
PREREGISTERED = Preregistration(
    endpoint=ENDPOINT,
    predictions={
        "localized": "D >= 0.25: forgetting falls on the specific facts the new ones overlap, which the forecast "
                     "names and base confidence does not",
        "capacity": "D ~ 0 (hi < 0.05): forgetting goes to the facts stored least firmly, so rehearsing the most "
                    "fragile facts saves as much as rehearsing the forecast's",
        "behavior_cloning": "D ~ 0: forgetting comes from learning to answer Unknown questions at all and falls on "
                            "facts regardless of their overlap with the new ones",
    },
    rule="main_driver if lo >= 0.25; contributes if lo > 0; not_supported if hi < 0.05; else inconclusive. "
         "Required check: full and every replay arm reached learned_at in every seed; else a positive verdict is "
         "inconclusive. Goal (reported, not deciding): Rec(targeted, 5%) >= 0.5 and >= 2x Rec(random, 5%).",
    main_at=0.25, negligible_below=0.05)
ORDERS = ("targeted", "random")  # swept over budgets; "fragile" only at the primary budget
PRIMARY_BUDGET = 0.05


@dataclass(frozen=True)
class AimedReplayConfig:
    seeds: int = 5
    data: SFTDataConfig = field(default_factory=SFTDataConfig)  # culprits' SFT recipe, the same sets
    data_seed_offset: int = 100
    sft: SFTSpec = SFTSpec(max_steps=600, eval_every=25)
    at_risk: float = 0.05
    budgets: tuple[float, ...] = (0.025, 0.05, 0.1)
    k: int = 10
    learned_at: float = 0.95

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["data"] = self.data.to_dict()
        d["budgets"] = list(self.budgets)
        return d

    @classmethod
    def quick(cls) -> "AimedReplayConfig":
        """The quick world (40 SFT facts, 60 watched): decides nothing, exercises every arm."""
        q = C.CulpritsConfig.quick()
        return cls(seeds=3, data=q.data, at_risk=q.at_risk, budgets=(0.05, 0.1), k=q.k, sft=q.sft)

    def culprits(self) -> C.CulpritsConfig:
        """The culprits design with the same sets, so both experiments read the same plan."""
        return C.CulpritsConfig(seeds=self.seeds, data=self.data, data_seed_offset=self.data_seed_offset,
                                sft=self.sft, at_risk=self.at_risk, budget=PRIMARY_BUDGET, k=self.k,
                                learned_at=self.learned_at)


def config(quick: bool = False) -> AimedReplayConfig:
    return AimedReplayConfig.quick() if quick else AimedReplayConfig()


def arm_name(order: str, budget: float) -> str:
    return f"replay_{order}_{budget:g}"


def arms(cfg: AimedReplayConfig) -> tuple[str, ...]:
    replay = tuple(arm_name(o, b) for b in cfg.budgets for o in ORDERS) + (arm_name("fragile", PRIMARY_BUDGET),)
    return ("full", "drift", "self_distill") + replay


def replay_arms(cfg: AimedReplayConfig) -> tuple[str, ...]:
    return tuple(a for a in arms(cfg) if a.startswith("replay_"))


def orderings(p: C.Plan, seed: int) -> dict[str, list[int]]:
    """Watched-fact indices in each replay order (pure given the plan): forecast risk highest first,
    a seeded permutation, base gold log-prob lowest first."""
    n = len(p.watch)
    perm = list(range(n))
    random.Random(f"aimed-replay-{seed}").shuffle(perm)
    return {"targeted": [int(i) for i in np.argsort(-p.risk, kind="stable")],
            "random": perm,
            "fragile": [int(i) for i in np.argsort(-p.neg_gold_logprob, kind="stable")]}


def replayed(cfg: AimedReplayConfig, p: C.Plan, seed: int) -> dict[str, list[int]]:
    """Arm -> the watched-fact indices it replays (the head of its ordering, n = budget x set)."""
    from interference.forecast.culprits import budget_of
    order = orderings(p, seed)
    out = {}
    for a in replay_arms(cfg):
        _, o, b = a.split("_", 2)
        out[a] = order[o][:budget_of(float(b), len(p.train))]
    return out


def arm_train(cfg: AimedReplayConfig, p: C.Plan, seed: int, arm: str) -> list:
    if arm == "drift":
        return [f for f in p.train if f.fact_id not in p.new_ids]
    add = [p.watch[i] for i in replayed(cfg, p, seed).get(arm, ())]
    return list(p.train) + add


def cells(cfg: AimedReplayConfig, ctx) -> list[Cell]:
    out = []
    for seed in range(cfg.seeds):
        p = C.plan(cfg.culprits(), ctx, seed)
        new = [f for f in p.train if f.fact_id in p.new_ids]
        for arm in arms(cfg):
            train = arm_train(cfg, p, seed, arm)
            sft = fixed_steps(cfg.sft, cfg.sft.max_steps, seed,
                              **({"method": "self_distill"} if arm == "self_distill" else {}))
            out.append(C.plan_cell("aimed", ctx, p, seed, arm, train, sft, new))
    return out


# ------------------------------------------------------------------ read-outs (pure)
def read_at(result: dict, step: int) -> dict:
    """An arm's row at ``step`` in the shape of ``culprits.read`` (drift, read at full's step)."""
    rows = [r for r in result["curve"] if r["step"] == step] or [result["curve"][-1]]
    return {"codes": rows[0]["watch"], "step": rows[0]["step"], "base": result["curve"][0]["watch"],
            "learned": C.learned_share(rows[0].get("new", "")), "reached": True}


def readouts(cfg: AimedReplayConfig, got: dict, matched: bool) -> dict:
    r = {a: C.read(res, cfg.learned_at, matched) for a, res in got.items() if a != "drift"}
    r["drift"] = read_at(got["drift"], r["full"]["step"])
    return r


def seed_row(cfg: AimedReplayConfig, p: C.Plan, seed: int, got: dict) -> dict:
    """One seed's forgetting per arm (all watched facts the base knew, and those no arm replayed),
    at equal learning and at equal steps, plus learning, cost and curation numbers."""
    rep = replayed(cfg, p, seed)
    everyone = list(range(len(p.watch)))
    never = sorted(set(everyone) - {i for v in rep.values() for i in v})
    m = {"seed": seed, "n_watch": len(p.watch), "n_never_replayed": len(never), "plan_seconds": p.seconds}
    for sfx, matched in (("", True), ("_step_matched", False)):
        r = readouts(cfg, got, matched)
        for a in arms(cfg):
            m[f"F_{a}{sfx}"] = C.forgetting_among(r[a], everyone)
            m[f"Fnever_{a}{sfx}"] = C.forgetting_among(r[a], never)
        if not sfx:
            for a in arms(cfg):
                m[f"reached_{a}"] = float(r[a]["reached"])
                m[f"learned_{a}"] = r[a]["learned"]
                m[f"learned_step_{a}"] = r[a]["step"] if r[a]["reached"] else math.nan
    for a in arms(cfg):
        sec = got[a].get("seconds")
        m[f"seconds_per_step_{a}"] = sec / got[a]["steps"] if sec and got[a].get("steps") else math.nan
    dropped = set(p.removed.get("culprits", ()))
    m["curation_new_dropped"] = sum(f.fact_id in p.new_ids for f in p.train if f.fact_id in dropped)
    m["curation_new_dropped_share"] = m["curation_new_dropped"] / max(1, len(p.new_ids))
    return m


def recoveries(cfg: AimedReplayConfig, per_seed: list[dict], sfx: str = "", prefix: str = "F") -> dict:
    """Rec(arm) = mean(F_full - F_arm) / mean(F_full - F_drift) for every arm but full and drift."""
    col = lambda k: [s.get(f"{prefix}_{k}{sfx}", math.nan) for s in per_seed]  # noqa: E731
    excess = [a - b for a, b in zip(col("full"), col("drift"))]
    return {a: ratio_estimate([f - x for f, x in zip(col("full"), col(a))], excess)
            for a in arms(cfg) if a not in ("full", "drift")}


def summarize(cfg: AimedReplayConfig, results, ctx) -> dict:
    per_seed = []
    for seed in range(cfg.seeds):
        p = C.plan(cfg.culprits(), ctx, seed)
        got = {a: results.one(seed=seed, arm=a) for a in arms(cfg)}
        per_seed.append(seed_row(cfg, p, seed, got))
    keys = sorted({k for s in per_seed for k in s if k != "seed"})
    stats = {k: estimate([s.get(k, math.nan) for s in per_seed]) for k in keys}
    t5, r5, f5 = (arm_name(o, PRIMARY_BUDGET) for o in ("targeted", "random", "fragile"))
    excess = [s["F_full"] - s["F_drift"] for s in per_seed]
    endpoint = ratio_estimate([s[f"F_{f5}"] - s[f"F_{t5}"] for s in per_seed], excess)
    step_endpoint = ratio_estimate([s[f"F_{f5}_step_matched"] - s[f"F_{t5}_step_matched"] for s in per_seed],
                                   [s["F_full_step_matched"] - s["F_drift_step_matched"] for s in per_seed])
    rec = recoveries(cfg, per_seed)
    rec_steps = recoveries(cfg, per_seed, "_step_matched")
    rec_never = recoveries(cfg, per_seed, prefix="Fnever")
    stats.update({f"rec_{a}": e for a, e in rec.items()})
    stats.update({f"rec_{a}_step_matched": e for a, e in rec_steps.items()})
    stats.update({f"rec_never_replayed_{a}": e for a, e in rec_never.items()})
    stats["excess"] = estimate(excess)
    stats["D_vs_random"] = ratio_estimate([s[f"F_{r5}"] - s[f"F_{t5}"] for s in per_seed], excess)
    stats["D_step_matched"] = step_endpoint
    need = ("full",) + replay_arms(cfg)
    ok = all(s[f"reached_{a}"] == 1.0 for s in per_seed for a in need)
    checks = {"full and every replay arm learned their new facts (learned_at) in every seed": bool(ok)}
    verdict = PREREGISTERED.decide(endpoint, checks_pass=all(checks.values()))
    vt, vr = rec[t5]["value"], rec[r5]["value"]
    goal = bool(ok and math.isfinite(vt) and math.isfinite(vr) and vt >= 0.5 and vt >= 2 * vr)
    headline = [("D = Rec(targeted) - Rec(fragile), 5% (endpoint)", endpoint),
                ("D, step-matched", step_endpoint),
                ("Rec(targeted) - Rec(random), 5%", stats["D_vs_random"]),
                ("SFT's excess forgetting F_full - F_drift", stats["excess"])]
    headline += [(f"Rec: {a.replace('_', ' ')}", rec[a]) for a in rec]
    headline += [(f"Rec on facts no arm replayed: {a.replace('_', ' ')}", rec_never[a])
                 for a in (t5, r5, f5, "self_distill")]
    return {"hypothesis": NAME, "verdict": verdict, "share": endpoint, "endpoint": endpoint,
            "share_definition": ENDPOINT, "rule": PREREGISTERED.rule, "checks": checks, "goal_met": goal,
            "statistics": stats, "per_seed": per_seed, "headline": headline,
            "series": {"arms": list(arms(cfg)), "budgets": list(cfg.budgets), "steps": cfg.sft.max_steps,
                       "orders": list(ORDERS)}}
