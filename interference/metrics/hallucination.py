"""Hallucination metrics over per-fact records (``records.FactOutcomes``).

Pure functions, no model. A record's ``outcome`` is one of correct | abstain | hallucination |
wrong (see ``interference.evaluate.outcome_of``: *hallucination* is a wrong answer given with
confidence >= the threshold, *wrong* an unsure one).

The paper's hallucination on held-out knowledge: a fact the base answered right that the
fine-tuned model now answers wrongly *with confidence*. Forgetting (``metrics.forgetting.
forgetting_rate``) counts every wrong answer (our tiny models cannot abstain, docs/CONTRACTS.md),
hallucination only the confident ones. Both compare records fact by fact and refuse records that
do not hold the same facts in the same order.
"""
from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np

from interference.metrics.forgetting import check_same_facts, forgetting_rate, rate
from interference.records import FactOutcomes

OUTCOMES = ("correct", "abstain", "hallucination", "wrong")


def rows_at(timeline: Sequence[Mapping], step: int, eval_set: str | None = None) -> list[Mapping]:
    """The rows of one evaluation (and one set) from a timeline."""
    return [r for r in timeline if r["step"] == step and (eval_set is None or r["set"] == eval_set)]


def hallucination_rate(base: FactOutcomes, now: FactOutcomes) -> float:
    """Share of base-correct facts that ``now`` answers wrongly with confidence."""
    check_same_facts(base, now)
    confident_wrong = np.array([o == "hallucination" for o in now.outcome], dtype=bool)
    return rate(confident_wrong[base.correct])


def abstention_rate(base: FactOutcomes, now: FactOutcomes) -> float:
    """Share of base-correct facts that ``now`` abstains on ("I don't know")."""
    check_same_facts(base, now)
    abstains = np.array([o == "abstain" for o in now.outcome], dtype=bool)
    return rate(abstains[base.correct])


def retained(base: FactOutcomes, now: FactOutcomes) -> float:
    """Share of base-correct facts still correct (1 - forgetting)."""
    return 1.0 - forgetting_rate(base, now)


def outcome_shares(rec: FactOutcomes) -> dict[str, float]:
    """Share of each outcome (correct / abstain / hallucination / wrong) in a record."""
    c = Counter(rec.outcome)
    n = len(rec)
    return {o: (c[o] / n if n else float("nan")) for o in OUTCOMES}


def abstention_share(rec: FactOutcomes) -> float:
    return outcome_shares(rec)["abstain"]


def relative_drop(base: float, value: float) -> float:
    """(base - value) / base: the paper's "relative drop of held-out accuracy"."""
    return (base - value) / base if base else float("nan")


def hallucination_curve(timeline: Sequence[Mapping], eval_set: str = "stability") -> list[dict]:
    """Per evaluation step: forgetting and hallucination rates of ``eval_set`` against step 0
    (each evaluation realigned to step 0's fact order, so row order in the file does not matter)."""
    steps = sorted({r["step"] for r in timeline})
    if not steps:
        return []
    base = FactOutcomes.from_rows(timeline, steps[0], eval_set)
    out = []
    for s in steps:
        now = FactOutcomes.from_rows(timeline, s, eval_set).realign(base.fact_ids)
        out.append({"step": s, "forgetting": forgetting_rate(base, now),
                    "hallucination": hallucination_rate(base, now),
                    **{f"share_{k}": v for k, v in outcome_shares(now).items()}})
    return out
