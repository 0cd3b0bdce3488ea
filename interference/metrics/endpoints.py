"""The endpoint statistics of the capacity and behavior-cloning experiments: pure functions.

Per-fact outcomes travel as one character per fact (``OUTCOME_CODES``), so a run's whole curve
fits in its cell file. Every rate is taken among the facts the *base* answered right (the
pre-existing knowledge), as in the paper: forgetting = now not right; hallucination = now a
confident wrong answer (not an abstention); abstention = now "I don't know".
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

OUTCOME_CODES = {"correct": "c", "abstain": "a", "hallucination": "h", "wrong": "w"}


def encode_outcomes(outcomes: Sequence[str]) -> str:
    """['correct', 'hallucination', ...] -> 'ch...'; refuses an outcome it does not know."""
    try:
        return "".join(OUTCOME_CODES[o] for o in outcomes)
    except KeyError as e:
        raise ValueError(f"unknown outcome {e.args[0]!r}; expected one of {list(OUTCOME_CODES)}.") from None


def outcome_rates(base: str, now: str) -> dict[str, float]:
    """Among facts whose ``base`` code is 'c': the share now forgotten (any code but 'c'), now a
    confident wrong answer ('h'), now abstaining ('a'); nan when the base knew none."""
    if len(base) != len(now):
        raise ValueError(f"base has {len(base)} facts but now has {len(now)}; compare the same facts.")
    b, n = np.frombuffer(base.encode(), "S1"), np.frombuffer(now.encode(), "S1")
    known = b == b"c"
    k = int(known.sum())
    if k == 0:
        return {"forgetting": math.nan, "hallucination": math.nan, "abstention": math.nan, "n_known": 0}
    m = n[known]
    return {"forgetting": float((m != b"c").mean()), "hallucination": float((m == b"h").mean()),
            "abstention": float((m == b"a").mean()), "n_known": k}


def first_step_reaching(steps: Sequence[int], values: Sequence[float], at: float) -> int | None:
    """The first step whose value is >= ``at`` (the learning-matched read-out point), or None."""
    for s, v in zip(steps, values):
        if v is not None and v >= at:
            return int(s)
    return None


def pooled_persistence(joint: Sequence[float], plain: Sequence[float], control: Sequence[float]) -> float:
    """sum(joint - control) / sum(plain - control) over the cells of a grid (one seed).

    The share of the forgetting that learning the new facts causes (plain SFT minus a control of
    equal steps) that is still there when the model rehearses its old facts while learning them
    (joint training). Pooled (a ratio of sums, not a mean of ratios) so a cell with almost no
    forgetting cannot blow the statistic up; nan when plain SFT caused no excess forgetting.
    """
    j, p, c = (np.asarray(x, float) for x in (joint, plain, control))
    if not (j.shape == p.shape == c.shape) or j.size == 0:
        raise ValueError("joint, plain and control need one value per cell, and at least one cell.")
    den = float((p - c).sum())
    return float((j - c).sum()) / den if den > 0 else math.nan


def share_of_reference(arm: float, control: float, reference: float) -> float:
    """(arm - control) / (reference - control): how much of a reference effect an arm reproduces;
    nan when the reference shows no effect over the control."""
    den = reference - control
    return (arm - control) / den if den > 0 else math.nan


def slope_per_doubling(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of y on log2(x): the change in y per doubling of x (nan if < 2 x's)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    if len(set(x[ok].tolist())) < 2:
        return math.nan
    return float(np.polyfit(np.log2(x[ok]), y[ok], 1)[0])
