"""The endpoint statistics of the capacity and behavior-cloning experiments: pure functions.

Per-fact outcomes arrive as ``records.FactOutcomes`` (cells store them in its compact codec).
Every rate is taken among the facts the *base* answered right (the
pre-existing knowledge), as in the paper: forgetting = now not right; hallucination = now a
confident wrong answer (not an abstention); abstention = now "I don't know".
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from interference.metrics.forgetting import forgetting_rate
from interference.metrics.hallucination import abstention_rate, hallucination_rate
from interference.records import FactOutcomes

def outcome_rates(base: FactOutcomes, now: FactOutcomes) -> dict[str, float]:
    """Among the facts ``base`` answered right: the share now forgotten (``forgetting_rate``), now
    a confident wrong answer (``hallucination_rate``), now abstaining (``abstention_rate``); nan
    when the base knew none."""
    known = int(base.correct.sum())
    if known == 0:
        return {"forgetting": math.nan, "hallucination": math.nan, "abstention": math.nan, "n_known": 0}
    return {"forgetting": forgetting_rate(base, now), "hallucination": hallucination_rate(base, now),
            "abstention": abstention_rate(base, now), "n_known": known}


EXCESS_EPS = 1e-9  # far below any share of a fact set (1/n), far above float round-off


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
    # no excess is no excess: shares are multiples of 1/n, so a sum that cancels leaves only float residue
    # (2.8e-18 in a real count sweep, which read P = -1.1e16)
    return float((j - c).sum()) / den if den > EXCESS_EPS else math.nan


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
