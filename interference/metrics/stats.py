"""Small statistics shared by metrics and hypotheses: confidence intervals, rank correlation, AUROC.

Why one module: every verdict in the project is "an effect with an interval", and the
interval must be computed the same way everywhere (same bootstrap, same t quantile), or two
hypotheses could disagree only because of how they summarised seeds. Everything is pure:
numbers in, numbers out, randomness only through an explicit seed.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import stats as _st

from interference.io import number


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a two-sided confidence interval (``level``, e.g. 0.95)."""

    value: float
    low: float
    high: float
    n: int
    level: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n})"


def _as_array(x: Sequence[float], what: str) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    if a.size == 0:
        raise ValueError(f"{what} got no values; pass at least one number.")
    return a


def mean_ci(values: Sequence[float], level: float = 0.95) -> Estimate:
    """Mean with a t-distribution interval: the right interval for a handful of seeds (n = 2-5),
    where a normal or bootstrap interval would be far too narrow. One value gives an infinite
    interval rather than a false claim of certainty."""
    a = _as_array(values, "mean_ci")
    m = float(a.mean())
    if a.size < 2:
        return Estimate(m, -math.inf, math.inf, 1, level)
    half = float(_st.t.ppf(0.5 + level / 2, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size))
    return Estimate(m, m - half, m + half, int(a.size), level)


def bootstrap_ci(data: Sequence | np.ndarray, statistic: Callable[..., float], n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0, paired: Sequence | np.ndarray | None = None) -> Estimate:
    """Percentile bootstrap of ``statistic(data)`` (or ``statistic(data, paired)``, resampling the
    pairs together, as a correlation needs). Used for per-fact statistics, where n is hundreds
    and no closed form exists (Spearman rho, forgetting-rate differences).

    Hand-written rather than ``scipy.stats.bootstrap`` because that one cannot do two things this
    one does: drop resamples whose statistic is undefined (a resample with a constant side gives
    Spearman nan, which scipy propagates into a nan interval), and draw the resamples as
    ``rng.integers(0, n, n)`` from ``seed``, the stream every saved verdict was computed with
    (scipy draws its own, so every stored interval would move)."""
    x = np.asarray(data)
    if x.shape[0] == 0:
        raise ValueError("bootstrap_ci got no values; pass at least one observation.")
    y = None if paired is None else np.asarray(paired)
    if y is not None and y.shape[0] != x.shape[0]:
        raise ValueError(f"bootstrap_ci: data has {x.shape[0]} rows but paired has {y.shape[0]}; pass equal lengths.")
    stat = (lambda idx: statistic(x[idx])) if y is None else (lambda idx: statistic(x[idx], y[idx]))
    n = x.shape[0]
    point = float(stat(np.arange(n)))
    rng = np.random.default_rng(seed)
    boots = np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)], dtype=float)
    boots = boots[np.isfinite(boots)]
    if boots.size == 0:
        return Estimate(point, math.nan, math.nan, n, level)
    lo, hi = np.quantile(boots, [0.5 - level / 2, 0.5 + level / 2])
    return Estimate(point, float(lo), float(hi), n, level)


def ols_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of y on z-scored x: the change in y per standard deviation of x (so
    slopes from predictors on different scales, e.g. overlap at two layers, compare directly).
    Pairs with a non-finite side are dropped; nan with fewer than 3 pairs or a constant x."""
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if x.size != y.size:
        raise ValueError(f"ols_slope: {x.size} x values but {y.size} y values; pass equal lengths.")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or x.std() == 0:
        return math.nan
    z = (x - x.mean()) / x.std()
    return float((z * (y - y.mean())).mean())


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (``scipy.stats.spearmanr``: average ranks for ties); nan when
    either side is constant (checked first: scipy warns there, and bootstraps hit it often)."""
    a, b = _as_array(x, "spearman"), _as_array(y, "spearman")
    if a.size != b.size:
        raise ValueError(f"spearman: {a.size} x values but {b.size} y values; pass equal lengths.")
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    return float(_st.spearmanr(a, b).statistic)


def spearman_ci(x: Sequence[float], y: Sequence[float], n_boot: int = 1000, level: float = 0.95,
                seed: int = 0) -> Estimate:
    """Spearman rho with a pairs-bootstrap interval (the overlap-vs-forgetting statistic)."""
    return bootstrap_ci(np.asarray(x, float), spearman, n_boot, level, seed, paired=np.asarray(y, float))


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve = P(score of a random positive > score of a random negative),
    ties counting one half (``sklearn.metrics.roc_auc_score``). nan when one class is missing
    (where scikit-learn raises)."""
    from sklearn.metrics import roc_auc_score
    s, l = _as_array(scores, "auroc"), np.asarray(labels, dtype=bool).ravel()
    if s.size != l.size:
        raise ValueError(f"auroc: {s.size} scores but {l.size} labels; pass equal lengths.")
    if l.all() or not l.any():
        return math.nan
    return float(roc_auc_score(l, s))


def ratio_estimate(numerator: Sequence[float], denominator: Sequence[float], level: float = 0.95) -> dict:
    """mean(numerator) / mean(denominator) over seeds (paired: one pair per seed) with a
    t-interval from the linearised ratio: d_s = num_s - R den_s, se = sd(d) / (sqrt(n) mean(den)).

    Why a ratio of means and not a mean of per-seed ratios: a share of a small quantity (SFT's
    excess forgetting is a few percent of known facts, less at larger widths) has seeds whose own
    denominator is near zero, and one such seed throws a mean of ratios anywhere; the ratio of
    means is the share of the *average* excess, and its interval still widens when the excess is
    uncertain. Seeds with a missing value on either side are left out; a mean denominator <= 0
    (no excess to share) gives nan. Same ``estimate`` dict as ``estimate``."""
    pairs = [(float(a), float(b)) for a, b in zip(numerator, denominator, strict=True)
             if a is not None and b is not None and math.isfinite(float(a)) and math.isfinite(float(b))]
    nan = {"value": math.nan, "low": math.nan, "high": math.nan, "n": len(pairs), "level": level}
    if not pairs:
        return nan
    a, b = (np.array(x) for x in zip(*pairs))
    if b.mean() <= 0:
        return nan
    r = float(a.mean() / b.mean())
    if len(pairs) < 2:
        return {**nan, "value": r, "low": -math.inf, "high": math.inf}
    se = float((a - r * b).std(ddof=1) / (math.sqrt(len(pairs)) * b.mean()))
    half = float(_st.t.ppf(0.5 + level / 2, len(pairs) - 1)) * se
    return {"value": r, "low": r - half, "high": r + half, "n": len(pairs), "level": level}


def estimate(values: Sequence[float]) -> dict:
    """Mean and 95% t-interval over seeds, ignoring nan seeds; JSON-ready. The one estimate dict
    of verdicts, analyses and tables (``format_estimate`` prints it)."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return {"value": math.nan, "low": math.nan, "high": math.nan, "n": 0, "level": 0.95}
    e: Estimate = mean_ci(v)
    return {"value": e.value, "low": e.low, "high": e.high, "n": e.n, "level": e.level}


def format_estimate(e, missing_ci: str = "[n/a]") -> str:
    """'mean [low, high]' of an ``estimate`` dict, for tables printed or written in markdown;
    ``missing_ci`` stands in for an interval that is not there (one seed), "" to leave it out."""
    if not isinstance(e, dict) or not math.isfinite(number(e.get("value"))):
        return "n/a"  # missing (null on disk, nan in memory: e.g. n = 0 seeds), never a number
    lo, hi = number(e.get("low")), number(e.get("high"))
    ci = f"[{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) and math.isfinite(hi) else missing_ci
    return f"{number(e['value']):.3f} {ci}".rstrip()
