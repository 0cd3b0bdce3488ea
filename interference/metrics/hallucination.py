"""Hallucination metrics over per-fact evaluation rows (timeline rows or FactResult dicts).

Pure functions, no model. A row needs ``fact_id``, ``correct`` and ``outcome`` (correct |
abstain | hallucination | wrong; see ``interference.evaluate.outcome_of``: *hallucination* is a
wrong answer given with confidence >= the threshold, *wrong* an unsure one).

The paper's hallucination on held-out knowledge: a fact the base answered right that the
fine-tuned model now answers wrongly *with confidence*. ``forgotten`` counts every wrong answer
(our tiny models cannot abstain, CALIBRATION.md), ``hallucinated`` only the confident ones.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping, Sequence

OUTCOMES = ("correct", "abstain", "hallucination", "wrong")


def by_fact(rows: Iterable[Mapping]) -> dict[str, Mapping]:
    return {r["fact_id"]: r for r in rows}


def rows_at(timeline: Iterable[Mapping], step: int, eval_set: str | None = None) -> list[Mapping]:
    """The rows of one evaluation (and one set) from a timeline."""
    return [r for r in timeline if r["step"] == step and (eval_set is None or r["set"] == eval_set)]


def is_hallucination(base_row: Mapping, row: Mapping) -> bool:
    """Known to the base, now answered wrongly with confidence."""
    return bool(base_row["correct"]) and row["outcome"] == "hallucination"


def is_forgotten(base_row: Mapping, row: Mapping) -> bool:
    """Known to the base, now not answered correctly (confident or not, abstentions included)."""
    return bool(base_row["correct"]) and not row["correct"]


def _rate(base: Sequence[Mapping], now: Sequence[Mapping], pred) -> float:
    b, n = by_fact(base), by_fact(now)
    known = [f for f, r in b.items() if r["correct"] and f in n]
    return sum(pred(b[f], n[f]) for f in known) / len(known) if known else float("nan")


def hallucination_rate(base: Sequence[Mapping], now: Sequence[Mapping]) -> float:
    """Share of base-correct facts that are now confident wrong answers."""
    return _rate(base, now, is_hallucination)


def forgetting_rate(base: Sequence[Mapping], now: Sequence[Mapping]) -> float:
    """Share of base-correct facts no longer answered correctly (1 - retained)."""
    return _rate(base, now, is_forgotten)


def retained(base: Sequence[Mapping], now: Sequence[Mapping]) -> float:
    """Share of base-correct facts still correct: CALIBRATION.md's "retained"."""
    return 1.0 - forgetting_rate(base, now)


def outcome_shares(rows: Sequence[Mapping]) -> dict[str, float]:
    """Share of each outcome (correct / abstain / hallucination / wrong) among ``rows``."""
    c = Counter(r["outcome"] for r in rows)
    n = len(rows)
    return {o: (c[o] / n if n else float("nan")) for o in OUTCOMES}


def abstention_share(rows: Sequence[Mapping]) -> float:
    return outcome_shares(rows)["abstain"]


def relative_drop(base: float, value: float) -> float:
    """(base - value) / base: the paper's "relative drop of held-out accuracy"."""
    return (base - value) / base if base else float("nan")


def hallucination_curve(timeline: Sequence[Mapping], eval_set: str = "stability") -> list[dict]:
    """Per evaluation step: forgetting and hallucination rates of ``eval_set`` against step 0."""
    steps = sorted({r["step"] for r in timeline})
    base = rows_at(timeline, steps[0], eval_set) if steps else []
    out = []
    for s in steps:
        now = rows_at(timeline, s, eval_set)
        out.append({"step": s, "forgetting": forgetting_rate(base, now),
                    "hallucination": hallucination_rate(base, now),
                    **{f"share_{k}": v for k, v in outcome_shares(now).items()}})
    return out
