"""Pre-registration and the one verdict rule: the words every hypothesis' verdict is made of.

Every hypothesis module defines ``PREREGISTERED``, a ``Preregistration`` of its primary endpoint
(the one statistic its verdict is decided on), what each of the three hypotheses predicts for
that endpoint, and the decision rule with its thresholds, written before any run. The runner
(``interference.hypotheses.runner``) records it in ``verdict.json["preregistered"]`` with the
hash of its text and folds that hash into every cell key and into the output directory's config,
so a grid computed under one endpoint is never reused as if it had been planned for another.

``decide`` is the one place that turns an endpoint into a word. Each module orients its statistic
so that larger = more support for its own hypothesis and states two thresholds, ``main_at`` and
``negligible_below`` (for a share of forgetting: 0.5 and 0.1). With a 95% interval [lo, hi] over
seeds:

- ``main_driver``  lo >= main_at        : with confidence, the effect is large.
- ``contributes``  lo > 0               : a clear, positive effect, maybe small.
- ``not_supported`` hi < negligible_below: with confidence, at most a negligible effect (or negative).
- ``inconclusive``  otherwise           : the interval reaches both "none" and "something", or
                                          there are fewer than 2 seeds, or a required check failed.

A design whose endpoint needs more than one interval (localized: a dose slope that must also be
monotone and exceed a control) composes its word from ``decide`` in its own ``stats`` module and
says so in its ``rule`` text; no design has a second threshold rule.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from interference.io import number

if TYPE_CHECKING:  # cells are the grid's; the registration only folds its hash into their keys
    from interference.hypotheses.grid import Cell

VERDICTS = ("main_driver", "contributes", "not_supported", "inconclusive")
MAIN_DRIVER_AT = 0.5  # the lower CI bound must reach half of the forgetting
NEGLIGIBLE_BELOW = 0.1  # an upper CI bound under 10% of the forgetting counts as "no part"


def decide(share_mean: float, share_ci: tuple[float, float], *, n_seeds: int = 2,
           checks_pass: bool = True, main_at: float = MAIN_DRIVER_AT,
           negligible_below: float = NEGLIGIBLE_BELOW) -> str:
    """The verdict for ``share`` (mean and 95% CI over seeds); see the module docstring.

    ``checks_pass=False`` (a hypothesis' required secondary test failed, e.g. the learned new
    facts did not reach equal accuracy in the arms being compared) turns a positive verdict into
    ``inconclusive``: the share cannot be trusted then.
    """
    lo, hi = share_ci
    if n_seeds < 2 or any(not math.isfinite(x) for x in (share_mean, lo, hi)):
        return "inconclusive"
    if hi < negligible_below:
        return "not_supported"
    if not checks_pass:
        return "inconclusive"
    if lo >= main_at:
        return "main_driver"
    if lo > 0:
        return "contributes"
    return "inconclusive"


def decide_estimate(est: dict, *, checks_pass: bool = True, main_at: float = MAIN_DRIVER_AT,
                    negligible_below: float = NEGLIGIBLE_BELOW) -> str:
    """``decide`` on an ``estimate`` dict (``metrics.stats.estimate``); a missing number (None, as
    JSON stores nan) is no evidence, so it gives ``inconclusive``."""
    return decide(number(est.get("value")), (number(est.get("low")), number(est.get("high"))),
                  n_seeds=int(est.get("n") or 0), checks_pass=checks_pass, main_at=main_at,
                  negligible_below=negligible_below)


HYPOTHESIS_NAMES = ("capacity", "behavior_cloning", "localized")


class PreregistrationError(ValueError):
    """A pre-registration that does not state what it must."""


@dataclass(frozen=True)
class Preregistration:
    """A hypothesis module's primary endpoint, each hypothesis' prediction for it, and the rule.

    ``predictions`` has exactly one entry per hypothesis name (capacity, behavior_cloning,
    localized): an experiment only discriminates if the three are written down before it runs.
    ``main_at`` / ``negligible_below`` are the thresholds ``decide`` applies to the endpoint.
    """
    endpoint: str
    predictions: dict
    rule: str
    main_at: float = MAIN_DRIVER_AT
    negligible_below: float = NEGLIGIBLE_BELOW

    def __post_init__(self) -> None:
        if set(self.predictions) != set(HYPOTHESIS_NAMES):
            raise PreregistrationError(
                f"predictions name {sorted(self.predictions)}; give exactly one per hypothesis "
                f"{list(HYPOTHESIS_NAMES)}.")
        if not self.endpoint.strip() or not self.rule.strip() or not all(
                isinstance(v, str) and v.strip() for v in self.predictions.values()):
            raise PreregistrationError("endpoint, rule and every prediction must be non-empty text.")
        if not self.negligible_below <= self.main_at:
            raise PreregistrationError(f"negligible_below={self.negligible_below} must not exceed main_at={self.main_at}.")

    def text(self) -> str:
        """The canonical text that is hashed (predictions in a fixed order)."""
        preds = "\n".join(f"- {h}: {self.predictions[h]}" for h in HYPOTHESIS_NAMES)
        return (f"Endpoint: {self.endpoint}\nPredictions:\n{preds}\nRule: {self.rule}\n"
                f"Thresholds: main_at={self.main_at!r}, negligible_below={self.negligible_below!r}\n")

    def hash(self) -> str:
        return hashlib.sha256(self.text().encode()).hexdigest()[:12]

    def record(self) -> dict:
        """What verdict.json stores under ``preregistered``."""
        return {"endpoint": self.endpoint, "predictions": {h: self.predictions[h] for h in HYPOTHESIS_NAMES},
                "rule": self.rule, "main_at": self.main_at, "negligible_below": self.negligible_below,
                "hash": self.hash()}

    def decide(self, est: dict, checks_pass: bool = True) -> str:
        """The verdict for an ``estimate`` dict of the endpoint, with this registration's thresholds."""
        return decide_estimate(est, checks_pass=checks_pass, main_at=self.main_at,
                               negligible_below=self.negligible_below)


def preregistration_of(module) -> Preregistration:
    prereg = getattr(module, "PREREGISTERED", None)
    if not isinstance(prereg, Preregistration):
        raise PreregistrationError(f"hypothesis module {module.__name__} defines no PREREGISTERED "
                                   "Preregistration; state the endpoint, predictions and rule before running it.")
    return prereg


def with_prereg(cells: Sequence["Cell"], prereg_hash: str) -> list["Cell"]:
    """The cells with the pre-registration hash folded into their keys (so into their files)."""
    return [dataclasses.replace(c, key={**c.key, "prereg": prereg_hash}) for c in cells]


def rule_text(share_definition: str) -> str:
    return (f"share = {share_definition}. Over seeds, 95% t-interval [lo, hi]: main_driver if lo >= "
            f"{MAIN_DRIVER_AT}; contributes if lo > 0; not_supported if hi < {NEGLIGIBLE_BELOW}; "
            "else inconclusive (also with < 2 seeds or a failed required check).")
