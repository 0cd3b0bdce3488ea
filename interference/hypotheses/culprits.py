"""Culprit removal: are the SFT examples the forecast blames the causes of the forgetting?

Pre-registered experiment (written and committed before any run of it; ``PREREGISTERED`` below
is the text ``verdict.json`` records, hashed into every cell key).

Per seed, on one base: the ordinary SFT set of the forecast's evaluation (``data``: 400 facts,
50% Unknown, 1,200 watched stability facts; data seed ``100 + seed``, so no SFT set the packaged
combiner was fitted on is used) and, from the base model and that set alone (no fine-tuning):

- the forecast's risk of every watched fact (``forecast.predict.compute_features`` + the packaged
  combiner); the *at-risk* facts R = the top ``at_risk`` share by risk, split at random (seeded)
  into two halves: *targets* T and *kept* K;
- each watched fact's culprits (``forecast.culprits``: first-order loss rise each SFT example
  causes, ``-lr * steps / N * g_i . g_j``);
- a removal budget n = ``budget`` x the SFT set (5%: 20 of 400).

Arms (one in-memory fine-tuning run each, all for the same ``sft.max_steps`` updates, never
stopped early; the same SFT recipe; only the training set differs):

==================  ==========================================================================
arm                 training set
==================  ==========================================================================
full                the SFT set (which facts plain SFT forgets)
culprits            minus the culprits of the targets T (``choose_removals``: round-robin over
                    T by risk, at most n examples); K's culprits are kept unless shared
random              minus n examples drawn at random (seeded)
fragility           minus n examples chosen without the forecast's ranking: the culprits of the
                    |T| most fragile watched facts (lowest base gold log-prob)
replay_targeted     plus the n most at-risk facts of R as QA examples (secondary: item 5)
replay_random       plus n watched facts drawn at random as QA examples (secondary)
==================  ==========================================================================

Read-out, per arm, at equal learning: the first evaluation at which the arm answers
``learned_at`` of the new (Unknown) facts it still trains on (``metrics.matched``); an arm that
never gets there is read at its last step and flagged. Step-matched (last step) reported too.

Rescue rate of an arm on a set S of watched facts: among the facts of S the base knew and the
``full`` arm got wrong (at its read-out), the share the arm answers right (at its read-out).

Primary endpoint, per seed: E = rescue[culprits](T) - rescue[random](T), the rescue that aiming
the removal by the culprits adds over removing as many examples at random; 95% t-interval over
seeds (a seed where ``full`` forgot no target has no E and is left out, reported).

Predictions. localized: E >= 0.25, culprit removal rescuing at least half of the forgotten
targets and at least twice what random removal rescues, and the kept half K rescued no more than
random (rescue[culprits](K) ~ rescue[random](K)): specific overlapping examples overwrite each
at-risk fact. capacity: E ~ 0 (hi < 0.05): forgetting comes from the amount stored, so removing
5% of the set saves about 5% of the forgotten facts whichever 5% is removed. behavior_cloning:
E ~ 0: forgetting comes from learning to answer Unknown questions at all, which a few examples
fewer of the many teaching it does not change.

Rule: main_driver (localized interference drives the at-risk facts' forgetting) if lo >= 0.25;
contributes if lo > 0; not_supported if hi < 0.05; else inconclusive. Required check: every arm
that removes examples learned its remaining new facts (reached ``learned_at``) in every seed, as
``full`` did; otherwise a positive verdict becomes inconclusive. The issue's goal (mean
rescue[culprits](T) >= 0.5 and >= 2 x mean rescue[random](T)) is reported beside the verdict as
``goal_met``; it does not change the word.

Secondary, not deciding: rescue of T in the fragility arm; rescue of K in the culprit arm;
collateral forgetting (forgetting of the watched facts outside R minus the full arm's) per arm;
rescue of R by the replay arms and their collateral; each arm's learning step and new-fact
learning; the step-matched E.
"""
from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass, field

import numpy as np

from interference.hypotheses.arms import facts_hash, fixed_steps, run_arm
from interference.hypotheses.grid import Cell
from interference.hypotheses.prereg import Preregistration
from interference.metrics.matched import first_crossing
from interference.metrics.stats import estimate
from interference.sft_data import SFTDataConfig
from interference.train import SFTSpec

NAME = "culprits"
ENDPOINT = ("E = rescue[culprits](T) - rescue[random](T): among the at-risk target facts (top share of watched "
            "facts by forecast risk, random half) that the base knew and plain SFT forgot, the share answered right "
            "after SFT without their forecast culprits (at most 5% of the set) minus the share after SFT without as "
            "many random examples; each run read where it learned its remaining new facts; mean and 95% t-interval "
            "over seeds")
PREREGISTERED = Preregistration(
    endpoint=ENDPOINT,
    predictions={
        "localized": "E >= 0.25, with culprit removal rescuing >= half of the forgotten targets and >= 2x random "
                     "removal, and the kept half K rescued no more than by random removal",
        "capacity": "E ~ 0 (hi < 0.05): removing 5% of the set saves about 5% of the forgotten facts, whichever "
                    "5% is removed",
        "behavior_cloning": "E ~ 0: a few examples fewer of the many that teach answering Unknown questions do "
                            "not change the forgetting",
    },
    rule="main_driver if lo >= 0.25; contributes if lo > 0; not_supported if hi < 0.05; else inconclusive. "
         "Required check: every removal arm reached learned_at on its remaining new facts in every seed, as the "
         "full arm did; else a positive verdict is inconclusive. Goal (reported, not deciding): mean "
         "rescue[culprits](T) >= 0.5 and >= 2x mean rescue[random](T).",
    main_at=0.25, negligible_below=0.05)
REMOVAL_ARMS = ("culprits", "random", "fragility")
REPLAY_ARMS = ("replay_targeted", "replay_random")
ARMS = ("full",) + REMOVAL_ARMS + REPLAY_ARMS
CORRECT = "c"  # records.OUTCOME_CODES["correct"]


@dataclass(frozen=True)
class CulpritsConfig:
    seeds: int = 5
    data: SFTDataConfig = field(default_factory=SFTDataConfig)  # the forecast evaluation's SFT recipe
    data_seed_offset: int = 100  # SFT sets the packaged combiner never saw
    sft: SFTSpec = SFTSpec(max_steps=600, eval_every=25)  # 400 facts learn in ~500 steps at lr 3e-4
    at_risk: float = 0.05  # share of watched facts the forecast puts at risk (R)
    budget: float = 0.05  # examples removed (or replayed), as a share of the SFT set
    k: int = 10  # culprits listed per fact (the budget is spent within these)
    learned_at: float = 0.95

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["data"] = self.data.to_dict()
        return d

    @classmethod
    def quick(cls) -> "CulpritsConfig":
        """The quick world: 40 SFT facts, 30 watched; decides nothing (a handful of forgotten facts)."""
        return cls(seeds=3, data=SFTDataConfig.quick(n_stability=60), at_risk=0.2, budget=0.1, k=5,
                   sft=SFTSpec(max_steps=80, batch_size=16, eval_every=10, lr=1e-3))


def config(quick: bool = False) -> CulpritsConfig:
    return CulpritsConfig.quick() if quick else CulpritsConfig()


# ------------------------------------------------------------------ the plan of one seed (no training)
@dataclass
class Plan:
    """Everything one seed's arms are built from, computed from the base and the SFT set alone."""
    train: list  # the SFT set (Facts)
    new_ids: set
    watch: list  # the watched facts (stability set), in the order the cells store their codes
    risk: np.ndarray  # forecast risk per watched fact
    targets: list[int]  # indices into watch: T (most at risk first)
    kept: list[int]  # K
    removed: dict  # arm -> SFT fact ids removed
    replayed: dict  # arm -> watched fact ids added
    n_budget: int
    neg_gold_logprob: np.ndarray | None = None  # per watched fact, at the base (the fragility baseline)
    seconds: float = math.nan  # wall time of this plan: the one-off cost of aiming (forecast + culprits)


_PLANS: dict = {}


def plan(cfg: CulpritsConfig, ctx, seed: int) -> Plan:
    """The seed's forecast, culprits and arm sets (cached per context: cells and summary share it)."""
    from interference.bases import load_slick
    from interference.forecast.api import default_combiner
    from interference.forecast.culprits import budget_of, choose_removals, culprits, step_scale
    from interference.forecast.predict import compute_features
    from interference.io import config_hash
    from interference.sft_data import build_sft_data
    key = (ctx.spec.hash(), config_hash({k: v for k, v in cfg.to_dict().items() if k != "seeds"}), seed)
    if key in _PLANS:
        return _PLANS[key]
    t0 = time.perf_counter()
    model, tok = ctx.base()
    slick = load_slick(ctx.base_dir())
    data = build_sft_data(ctx.world, slick, dataclasses.replace(cfg.data, seed=cfg.data_seed_offset + seed))
    train, watch, new_ids = data.train, data.eval_sets["stability"], set(data.unknown_ids)
    table = compute_features(model, tok, watch, train, new_ids, slick)["sft"]
    risk = default_combiner(table.names, "sft").predict(table.columns)
    n_r = max(2, round(cfg.at_risk * len(watch)))
    at_risk = [int(i) for i in np.argsort(-risk, kind="stable")[:n_r]]
    rng = random.Random(f"culprits-{seed}")
    half = set(rng.sample(at_risk, len(at_risk) // 2))
    targets = [i for i in at_risk if i in half]
    kept = [i for i in at_risk if i not in half]
    c, _ = culprits(model, tok, watch, train, k=cfg.k, scale=step_scale(cfg.sft.lr, cfg.sft.max_steps, len(train)))
    n = budget_of(cfg.budget, len(train))
    ids = [f.fact_id for f in watch]
    fragile = [int(i) for i in np.argsort(-table.columns["neg_gold_logprob"], kind="stable")[:len(targets)]]
    removed = {"culprits": choose_removals(c, [ids[i] for i in targets], n),
               "random": [f.fact_id for f in rng.sample(list(train), n)],
               "fragility": choose_removals(c, [ids[i] for i in fragile], n)}
    replayed = {"replay_targeted": [ids[i] for i in at_risk[:n]],
                "replay_random": [ids[i] for i in rng.sample(range(len(watch)), min(n, len(watch)))]}
    p = Plan(list(train), new_ids, list(watch), risk, targets, kept, removed, replayed, n,
             neg_gold_logprob=np.asarray(table.columns["neg_gold_logprob"], dtype=float),
             seconds=time.perf_counter() - t0)
    _PLANS[key] = p
    return p


def arm_train(p: Plan, arm: str) -> list:
    """The arm's training facts (the SFT set minus its removals, plus its replayed facts)."""
    drop = set(p.removed.get(arm, ()))
    add = [f for f in p.watch if f.fact_id in set(p.replayed.get(arm, ()))]
    return [f for f in p.train if f.fact_id not in drop] + add


def cells(cfg: CulpritsConfig, ctx) -> list[Cell]:
    out = []
    for seed in range(cfg.seeds):
        p = plan(cfg, ctx, seed)
        for arm in ARMS:
            train = arm_train(p, arm)
            new = [f for f in train if f.fact_id in p.new_ids]
            out.append(plan_cell("culprits", ctx, p, seed, arm, train, fixed_steps(cfg.sft, cfg.sft.max_steps, seed), new))
    return out


def plan_cell(kind: str, ctx, p: Plan, seed: int, arm: str, train: list, sft, new: list) -> Cell:
    """One arm of a design built on a seed's plan (culprits, aimed_replay): ``train`` fine-tuned
    with ``sft`` on the context's base, the plan's watched facts and ``new`` scored at every
    evaluation; keyed by what it trains on, what it watches and how."""
    key = {"base": ctx.spec.hash(), "seed": seed, "arm": arm, "train": facts_hash(train),
           "watch": facts_hash(p.watch), "sft": sft.to_dict()}
    return Cell(f"{kind}-{arm}", key,
                (lambda t=train, w=p.watch, s=sft, nw=new: run_arm(ctx, ctx.spec, t, w, s, extra={"new": nw})),
                f"{arm} seed {seed}", base=ctx.spec)


# ------------------------------------------------------------------ read-outs (pure)
def learned_share(codes: str) -> float:
    return sum(ch == CORRECT for ch in codes) / len(codes) if codes else math.nan


def read(result: dict, learned_at: float, matched: bool = True) -> dict:
    """The arm's read-out row: where it first learned ``learned_at`` of its remaining new facts
    (``matched``), else (or when it never does) its last evaluation; with ``reached``."""
    rows = [{**r, "plasticity": learned_share(r["new"])} for r in result["curve"]]
    hit = first_crossing(rows, learned_at) if matched else None
    row = hit if hit is not None else rows[-1]
    return {"codes": row["watch"], "step": row["step"], "learned": row["plasticity"],
            "reached": first_crossing(rows, learned_at) is not None, "base": rows[0]["watch"]}


def rescue(full: dict, arm: dict, idx) -> tuple[float, int]:
    """(share of ``idx`` facts the base knew and ``full`` forgot that ``arm`` answers right, how many
    such facts): the rescue rate."""
    lost = [i for i in idx if full["base"][i] == CORRECT and full["codes"][i] != CORRECT]
    if not lost:
        return math.nan, 0
    return sum(arm["codes"][i] == CORRECT for i in lost) / len(lost), len(lost)


def forgetting_among(r: dict, idx) -> float:
    """Share of ``idx`` facts the base knew that the run answers wrong (the forgetting rate)."""
    from interference.metrics.forgetting import forgetting_rate
    from interference.records import FactOutcomes, positional_ids
    ids = positional_ids(len(r["base"]))
    base, now = FactOutcomes.from_codes(ids, r["base"]), FactOutcomes.from_codes(ids, r["codes"])
    return forgetting_rate(base, now, where={ids[i] for i in idx})


def summarize(cfg: CulpritsConfig, results, ctx) -> dict:
    per_seed = []
    for seed in range(cfg.seeds):
        p = plan(cfg, ctx, seed)
        got = {arm: results.one(seed=seed, arm=arm) for arm in ARMS}
        m = {"seed": seed, "n_at_risk": len(p.targets) + len(p.kept), "budget": p.n_budget}
        at_risk = set(p.targets) | set(p.kept)
        others = [i for i in range(len(p.watch)) if i not in at_risk]
        for sfx, matched in (("", True), ("_step_matched", False)):
            r = {arm: read(res, cfg.learned_at, matched) for arm, res in got.items()}
            for arm in ARMS[1:]:
                m[f"rescue_{arm}_targets{sfx}"], m[f"n_forgotten_targets{sfx}"] = rescue(r["full"], r[arm], p.targets)
                m[f"rescue_{arm}_kept{sfx}"], m[f"n_forgotten_kept{sfx}"] = rescue(r["full"], r[arm], p.kept)
                m[f"rescue_{arm}_at_risk{sfx}"], _ = rescue(r["full"], r[arm], sorted(at_risk))
                m[f"collateral_{arm}{sfx}"] = forgetting_among(r[arm], others) - forgetting_among(r["full"], others)
            m["E" + sfx] = m[f"rescue_culprits_targets{sfx}"] - m[f"rescue_random_targets{sfx}"]
            for arm in ARMS:
                m[f"forgetting_{arm}_others{sfx}"] = forgetting_among(r[arm], others)
                m[f"forgetting_{arm}_targets{sfx}"] = forgetting_among(r[arm], p.targets)
            if not sfx:
                for arm in ARMS:
                    m[f"learned_{arm}"] = r[arm]["learned"]
                    m[f"learned_step_{arm}"] = r[arm]["step"] if r[arm]["reached"] else math.nan
                    m[f"reached_{arm}"] = float(r[arm]["reached"])
        per_seed.append(m)
    keys = sorted({k for s in per_seed for k in s if k != "seed"})
    stats = {k: estimate([s.get(k, math.nan) for s in per_seed]) for k in keys}
    endpoint = stats["E"]
    learned_ok = all(s[f"reached_{a}"] == 1.0 for s in per_seed for a in ("full",) + REMOVAL_ARMS)
    checks = {"every removal arm and the full arm learned their remaining new facts (learned_at) in every seed":
              bool(learned_ok)}
    verdict = PREREGISTERED.decide(endpoint, checks_pass=all(checks.values()))
    rc, rr = stats["rescue_culprits_targets"]["value"], stats["rescue_random_targets"]["value"]
    goal = bool(rc is not None and rr is not None and math.isfinite(rc) and math.isfinite(rr)
                and rc >= 0.5 and rc >= 2 * rr)
    headline = [("E = rescue[culprits](T) - rescue[random](T) (endpoint)", endpoint),
                ("E, step-matched", stats["E_step_matched"]),
                ("rescue of targets: culprits removed", stats["rescue_culprits_targets"]),
                ("rescue of targets: random removed", stats["rescue_random_targets"]),
                ("rescue of targets: fragility-aimed removal", stats["rescue_fragility_targets"]),
                ("rescue of kept half K: culprits arm", stats["rescue_culprits_kept"]),
                ("rescue of kept half K: random arm", stats["rescue_random_kept"]),
                ("forgotten targets per seed (full arm)", stats["n_forgotten_targets"]),
                ("collateral forgetting, culprits arm", stats["collateral_culprits"]),
                ("collateral forgetting, random arm", stats["collateral_random"]),
                ("rescue of at-risk facts: targeted replay", stats["rescue_replay_targeted_at_risk"]),
                ("rescue of at-risk facts: random replay", stats["rescue_replay_random_at_risk"]),
                ("collateral forgetting, targeted replay", stats["collateral_replay_targeted"])]
    return {"hypothesis": NAME, "verdict": verdict, "share": endpoint, "endpoint": endpoint,
            "share_definition": ENDPOINT, "rule": PREREGISTERED.rule, "checks": checks, "goal_met": goal,
            "statistics": stats, "per_seed": per_seed, "headline": headline,
            "series": {"arms": list(ARMS), "steps": cfg.sft.max_steps}}
