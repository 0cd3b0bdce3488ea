"""The fitted combiner: logistic regression on standardised features, and how it is scored.

The fit and its z-scaling are ``metrics.logistic`` (the one logistic fit, which
``metrics.predictors.auroc_increment`` uses with normal scores).

Why logistic regression: a few thousand labelled facts per world, a few dozen features, and the
question "which facts are at risk" wants a ranking and a probability, not a black box; the
coefficients on standardised features say which feature carries the forecast.

Fit on some seeds, score on others (``leave_one_seed_out``): the facts of a held-out seed come
from another SFT set and another training order, so a score there is a forecast, not a fit.
Interaction terms (``INTERACT_WITH``: fragility times every other feature) let a fact's own
weakness gate how much the SFT set's pull matters.

Scores (pure functions): AUROC (``metrics.stats.auroc``), average precision, precision among the
top 5% of risk, and a calibration table (predicted vs observed forgetting per risk bin).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from interference.metrics.logistic import Scaler, fit_logistic
from interference.metrics.stats import auroc

INTERACT_WITH = "neg_gold_logprob"  # the fragility baseline; products with it form the interactions
C_DEFAULT = 0.01  # inverse L2 strength: ~80 correlated features on ~4,500 facts; 0.1 and 1 fit seed noise


class CombinerError(ValueError):
    """A combiner file or feature table that cannot be used together."""


def design(columns: dict[str, np.ndarray], names: Sequence[str], interactions: bool) -> tuple[np.ndarray, list[str]]:
    """The design matrix: the named columns, plus their products with the fragility column."""
    X = np.stack([np.asarray(columns[n], float) for n in names], 1)
    out_names = list(names)
    if interactions and INTERACT_WITH in columns:
        f = np.asarray(columns[INTERACT_WITH], float)
        fz = (f - f.mean()) / (f.std() + 1e-12)  # per-set z-score: the interaction is about rank, not scale
        others = [n for n in names if n != INTERACT_WITH]
        X = np.concatenate([X, np.stack([fz * columns[n] for n in others], 1)], 1) if others else X
        out_names += [f"{INTERACT_WITH}*{n}" for n in others]
    return X, out_names


@dataclass
class Combiner:
    """Standardise -> logistic regression. JSON round-trip so a combiner fitted on one world can
    forecast on another (``forecast/default_combiner.json`` is the one fitted on the default world)."""
    features: list[str]
    interactions: bool = False  # fragility x feature products: no gain on the default world
    C: float = C_DEFAULT
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    coef: list[float] = field(default_factory=list)
    intercept: float = 0.0
    fitted_on: dict = field(default_factory=dict)

    def fit(self, columns: dict[str, np.ndarray], y: np.ndarray) -> "Combiner":
        X, _ = design(columns, self.features, self.interactions)
        y = np.asarray(y, bool)
        if y.all() or not y.any():
            raise CombinerError("the combiner needs both forgotten and kept facts to fit; train on more seeds or facts.")
        scaler, clf = fit_logistic(X, y, "z", C=self.C, max_iter=2000)
        self.mean, self.std = scaler.mean.tolist(), scaler.std.tolist()
        self.coef, self.intercept = clf.coef_[0].tolist(), float(clf.intercept_[0])
        return self

    def predict(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """P(forgotten) per fact."""
        if not self.coef:
            raise CombinerError("this combiner is not fitted; fit it or load a fitted one.")
        missing = [n for n in self.features if n not in columns]
        if missing:
            raise CombinerError(f"the combiner needs feature(s) {missing[:3]} that this forecast lacks "
                                "(a model of another depth?); fit a combiner on this kind of model.")
        X, _ = design(columns, self.features, self.interactions)
        z = Scaler("z", mean=np.asarray(self.mean), std=np.asarray(self.std))(X) @ np.asarray(self.coef) + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def weights(self) -> dict[str, float]:
        """Coefficient per (standardised) design column, largest magnitude first."""
        _, names = design({n: np.zeros(2) for n in self.features} | ({INTERACT_WITH: np.zeros(2)} if self.interactions else {}),
                          self.features, self.interactions)
        return dict(sorted(zip(names, self.coef), key=lambda kv: -abs(kv[1])))

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("features", "interactions", "C", "mean", "std", "coef", "intercept",
                                              "fitted_on")}

    @classmethod
    def from_dict(cls, d: dict) -> "Combiner":
        try:
            return cls(**{k: d[k] for k in ("features", "interactions", "C", "mean", "std", "coef", "intercept")},
                       fitted_on=d.get("fitted_on", {}))
        except (KeyError, TypeError):
            raise CombinerError("the combiner file lacks fields (features, coef, ...); pass one written by "
                                "Combiner.save.") from None

    def save(self, path: str | Path) -> None:
        from interference.io import atomic_write_json
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Combiner":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise CombinerError(f"combiner file {path} does not exist; fit one with --evaluate or pass another.") from None
        except json.JSONDecodeError:
            raise CombinerError(f"combiner file {path} is not JSON; pass a file written by Combiner.save.") from None


def stack(tables: Sequence[dict[str, np.ndarray]], names: Sequence[str]) -> dict[str, np.ndarray]:
    return {n: np.concatenate([np.asarray(t[n], float) for t in tables]) for n in names}


def leave_one_seed_out(columns: Sequence[dict[str, np.ndarray]], labels: Sequence[np.ndarray], features: Sequence[str],
                       interactions: bool = False, C: float = C_DEFAULT) -> list[np.ndarray]:
    """For each seed k: fit on every other seed, predict seed k. Returns one score array per seed.
    The fragility interaction is z-scored within each seed's table before stacking (see ``design``),
    so no statistic of the held-out seed leaks into the fit."""
    out = []
    for k in range(len(columns)):
        train = [i for i in range(len(columns)) if i != k]
        cols = [_zf(columns[i], features, interactions) for i in train]
        y = np.concatenate([labels[i] for i in train])
        if y.all() or not y.any():  # nothing to learn from (tiny runs): this seed gets no score
            out.append(np.full(len(labels[k]), np.nan))
            continue
        out.append(Combiner(list(features), interactions, C).fit(stack(cols, list(cols[0])), y).predict(columns[k]))
    return out


def _zf(cols: dict[str, np.ndarray], features: Sequence[str], interactions: bool) -> dict[str, np.ndarray]:
    keep = set(features) | ({INTERACT_WITH} if interactions and INTERACT_WITH in cols else set())
    return {n: np.asarray(cols[n], float) for n in keep}


def fit_all(columns: Sequence[dict[str, np.ndarray]], labels: Sequence[np.ndarray], features: Sequence[str],
            interactions: bool = False, C: float = C_DEFAULT, fitted_on: dict | None = None) -> Combiner:
    cols = [_zf(c, features, interactions) for c in columns]
    return Combiner(list(features), interactions, C, fitted_on=fitted_on or {}).fit(
        stack(cols, list(cols[0])), np.concatenate(list(labels)))


# ------------------------------------------------------------------ scores
def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    y = np.asarray(labels, bool)
    if not y.any():
        return math.nan
    from sklearn.metrics import average_precision_score
    return float(average_precision_score(y, np.asarray(scores, float)))


def precision_at(scores: np.ndarray, labels: np.ndarray, frac: float = 0.05) -> float:
    """Share forgotten among the top ``frac`` of facts by risk (at least one fact)."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    if not s.size:
        return math.nan
    k = max(1, int(round(frac * s.size)))
    top = np.argsort(-s, kind="stable")[:k]
    return float(y[top].mean())


def calibration(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[dict]:
    """Equal-count bins of predicted probability: mean predicted vs observed forgetting."""
    p, y = np.asarray(probs, float), np.asarray(labels, bool)
    order = np.argsort(p, kind="stable")
    out = []
    for chunk in np.array_split(order, bins):
        if chunk.size:
            out.append({"predicted": float(p[chunk].mean()), "observed": float(y[chunk].mean()), "n": int(chunk.size)})
    return out


def scores(risk: np.ndarray, labels: np.ndarray, top: float = 0.05) -> dict[str, float]:
    if np.isnan(np.asarray(risk, float)).any():
        return {"auroc": math.nan, "average_precision": math.nan, "precision_at_top": math.nan,
                "base_rate": float(np.mean(labels))}
    return {"auroc": auroc(risk, labels), "average_precision": average_precision(risk, labels),
            "precision_at_top": precision_at(risk, labels, top), "base_rate": float(np.mean(labels))}
