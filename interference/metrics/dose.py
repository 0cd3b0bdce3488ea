"""Dose-response of targeted forgetting, and the value-capture signature against a null arm.

Why these statistics: localized interference says a new fact damages the old facts whose
representation it shares, so the damage should (1) land on the entities the new names were built
to resemble, more than on the rest of the *same* run, (2) grow with how much of the name is
shared, and (3) take the form of the look-alike's value replacing the old one. Capacity and
behavior cloning predict none of the three: for them it does not matter which entity a new fact
imitates. Each statistic here is computed within one run (targets vs rest), so run-to-run noise in
the total amount of forgetting cancels and no control run needs subtracting.

All functions are pure: per-fact records (``records.FactOutcomes``) or boolean / string arrays in,
numbers out; forgetting is always ``metrics.forgetting.forgetting_rate``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from interference.evaluate import normalize_answer
from interference.metrics.forgetting import forgetting_rate
from interference.records import FactOutcomes


def _bool(x) -> np.ndarray:
    return np.asarray(x, dtype=bool).ravel()


def targets_minus_rest(base: FactOutcomes, now: FactOutcomes, is_target) -> float:
    """Within-run contrast: forgetting of the targeted entities' facts minus that of all other
    watched facts of the same run (``forgetting_rate`` on each part). 0 when damage ignores which
    entity the new facts resemble."""
    t = _bool(is_target)
    return forgetting_rate(base, now, t) - forgetting_rate(base, now, ~t)


def dose_response_slope(doses: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` on ``doses`` in raw units (here: change in targets-minus-
    rest forgetting per shared name piece). nan with fewer than two distinct finite doses."""
    x, y = np.asarray(doses, float), np.asarray(values, float)
    if x.shape != y.shape:
        raise ValueError(f"{x.size} doses but {y.size} values; pass one value per dose.")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(np.unique(x)) < 2:
        return math.nan
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc ** 2).sum())


def is_monotone(values: Sequence[float], increasing: bool = True) -> bool:
    """Whether a dose series never goes down (or never up); False if any value is not finite."""
    v = np.asarray(values, float)
    if not np.all(np.isfinite(v)):
        return False
    d = np.diff(v)
    return bool(np.all(d >= 0) if increasing else np.all(d <= 0))


def value_capture(predictions: Sequence[str], paired_values: Sequence[str], mask=None) -> float:
    """Share of facts (within ``mask``) whose answer is now their paired new entity's value.

    The pair is set by design (the j-th new entity was built on the j-th target, same relation),
    so no neighbour search is involved; the pair's value never equals the target's own answer
    (``localized`` draws it so), which makes a capture always a wrong answer."""
    p = [normalize_answer(x) for x in predictions]
    v = [normalize_answer(x) for x in paired_values]
    if len(p) != len(v):
        raise ValueError(f"{len(p)} predictions but {len(v)} paired values; pass one pair per fact.")
    hit = np.array([a == b for a, b in zip(p, v)], dtype=bool)
    sel = np.ones(len(hit), bool) if mask is None else _bool(mask)
    return float(hit[sel].mean()) if sel.any() else math.nan


def signature_vs_null(base_ok, arm_ok, arm_predictions, null_ok, null_predictions,
                      paired_values: Sequence[str]) -> dict:
    """The interference signature of an overlap arm against a null arm that taught the same values
    on keys that share nothing with the targets (uuid).

    Per arm: ``rate`` = share of forgotten targets whose wrong answer is the paired value;
    ``capture`` = share of all base-known targets now answering it (defined even when nothing is
    forgotten). ``excess`` = arm rate - null rate, ``capture_excess`` the same for capture. Every
    input is over the target facts only, in one order."""
    b = _bool(base_ok)
    out = {}
    for name, ok, pred in (("arm", arm_ok, arm_predictions), ("null", null_ok, null_predictions)):
        ok = _bool(ok)
        out[f"rate_{name}"] = value_capture(pred, paired_values, b & ~ok)
        out[f"capture_{name}"] = value_capture(pred, paired_values, b)
        out[f"n_forgotten_{name}"] = int((b & ~ok).sum())
    out["excess"] = out["rate_arm"] - out["rate_null"]
    out["capture_excess"] = out["capture_arm"] - out["capture_null"]
    return out
