"""Compare fine-tuning methods at matched learning, not at matched steps.

Why: a method that learns the new facts more slowly also moves the weights less per step, so
at equal steps it looks gentler on old knowledge for a trivial reason. The paper compares
methods at equal plasticity (share of new facts learned). Two readings of a run's evaluation
history give that without extra runs:

- ``first_crossing``: the first evaluation where plasticity reaches a threshold (e.g. 0.95);
  read retention there. Undefined (None) for a run that never gets there, which is itself a
  result (the method blocks learning).
- ``interpolate_at``: along the run's own trajectory, linear interpolation of a retention
  measure at the step where plasticity first reaches the threshold (between the two evaluations
  that bracket it), so evaluation spacing does not favour one method.

Both are pure: a list of evaluation dicts (``{"step", "plasticity", ...}``) in, numbers out.

``is_learned`` is the one definition of "learned" in the project: a share of the new facts
answered as trained that reaches the threshold. ``first_crossing`` (an evaluation history), the
hypothesis arms' learning-matched read (``hypotheses.arms.learned_step``) and the loop callback
that stops or reads a run once it has learned (``callbacks.WhenLearned``) all ask it, and all
skip step 0 (the base is never asked whether it already knows the new facts).
"""
from __future__ import annotations

import math
from typing import Sequence


def _sorted(history: Sequence[dict]) -> list[dict]:
    return sorted(history, key=lambda h: h["step"])


def is_learned(share: float | None, threshold: float) -> bool:
    """Whether a share of new facts answered as trained counts as learned (>= ``threshold``); a
    missing or nan share is not."""
    return share is not None and share >= threshold


def first_crossing(history: Sequence[dict], threshold: float, key: str = "plasticity") -> dict | None:
    """The first evaluation (after step 0) whose ``key`` is learned at ``threshold``; None if none is."""
    for h in _sorted(history):
        if h["step"] > 0 and is_learned(h.get(key), threshold):
            return h
    return None


def interpolate_at(history: Sequence[dict], threshold: float, value_key: str, key: str = "plasticity") -> float:
    """``value_key`` linearly interpolated at the point where ``key`` first reaches ``threshold``
    (between the last evaluation below it and the first at or above it); nan if never reached.
    If the very first evaluation is already at or above it, that evaluation's value is returned."""
    hs = [h for h in _sorted(history) if h.get(key) is not None and h.get(value_key) is not None]
    for i, h in enumerate(hs):
        if h[key] >= threshold:
            if i == 0 or hs[i - 1][key] >= h[key]:
                return float(h[value_key])
            a, b = hs[i - 1], h
            t = (threshold - a[key]) / (b[key] - a[key])
            return float(a[value_key] + t * (b[value_key] - a[value_key]))
    return math.nan
